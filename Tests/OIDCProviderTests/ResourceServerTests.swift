import AnyJSON
import Foundation
import JWTKit
import StateStore
import StateStoreTesting
import Testing

@testable import OIDCProvider

@Suite("Resource servers (RFC 8707 audiences, RFC 9068 access tokens, introspection)")
struct ResourceServerTests {
    static let mcp = "https://mcp.example-tailnet.ts.net/mcp"
    static let other = "https://wiki.example-tailnet.ts.net/api"

    /// Alice, granted both resources.
    static let alice = Fixtures.alice(rules: [
        .object([
            "users": .array([.string("alice@example.com")]),
            "resources": .array([.string(mcp), .string(other)]),
        ])
    ])

    struct Issued {
        var access: String
        var refresh: String
        var idToken: String
    }

    func issue(_ setup: Fixtures.Setup, resource: String?) async throws -> Issued {
        let extra = resource.map { [("resource", $0)] } ?? []
        let code = try await setup.code(identity: Self.alice, extra: extra)
        let response = await setup.redeem(code, extra: extra)
        #expect(response.status == 200)
        let body = Fixtures.json(response.body)
        return Issued(
            access: try #require(body["access_token"] as? String),
            refresh: try #require(body["refresh_token"] as? String),
            idToken: try #require(body["id_token"] as? String))
    }

    func payload(_ jwt: String, part: Int = 1) throws -> [String: Any] {
        let parts = jwt.split(separator: ".")
        try #require(parts.count == 3)
        let data = try #require(Base64URL.decode(parts[part]))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func audience(_ claims: [String: Any]) -> [String] {
        (claims["aud"] as? [String]) ?? [(claims["aud"] as? String) ?? ""]
    }

    func introspect(_ setup: Fixtures.Setup, _ token: String, as id: String, secret: String) async -> [String: Any] {
        Fixtures.json(
            await setup.provider.introspect(
                Fixtures.query([("token", token)]), authorization: Fixtures.basic(id, secret)
            ).body)
    }

    func resourceServer(_ setup: Fixtures.Setup, serving resources: [String]) async throws -> (Client, String) {
        var registration = ClientRegistry.Registration(
            name: "MCP server", redirectURIs: ["https://mcp.example-tailnet.ts.net/callback"])
        registration.resources = resources
        let created = try await setup.provider.clients.register(registration)
        return (created.client, try #require(created.secret))
    }

    @Test("a resource request gets an RFC 9068 JWT whose aud is exactly the resource; JWKS verifies it")
    func jwtByDefault() async throws {
        struct AccessClaims: JWTPayload {
            var iss: IssuerClaim
            var sub: SubjectClaim
            var aud: AudienceClaim
            var exp: ExpirationClaim
            var client_id: String
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let setup = try await Fixtures.provider()
        let issued = try await issue(setup, resource: Self.mcp)
        #expect(try payload(issued.access, part: 0)["typ"] as? String == "at+jwt")
        let keys = JWTKeyCollection()
        try await keys.add(jwksJSON: String(decoding: setup.provider.keys.jwksDocument, as: UTF8.self))
        let claims = try await keys.verify(issued.access, as: AccessClaims.self)
        #expect(claims.aud.value == [Self.mcp])
        #expect(claims.iss.value == Fixtures.issuer)
        #expect(claims.client_id == setup.client.clientID)
        #expect(claims.exp.value == setup.clock.now.addingTimeInterval(300))
        #expect(setup.provider.userInfo(accessToken: issued.access).status == 200)

        // Introspection by the issuing client looks the JWT up like an opaque token.
        let own = await introspect(setup, issued.access, as: setup.client.clientID, secret: setup.secret)
        #expect(own["active"] as? Bool == true)
        #expect(audience(own) == [Self.mcp])
    }

    @Test("a JWT access token carries the identity claims of its scopes, and only those")
    func identityClaimsByScope() async throws {
        let setup = try await Fixtures.provider()
        let issued = try await issue(setup, resource: Self.mcp)
        let claims = try payload(issued.access)
        #expect(claims["email"] as? String == "alice@example.com")
        #expect(claims["email_verified"] as? Bool == true)
        #expect(claims["preferred_username"] as? String == "alice")
        #expect(claims["name"] as? String == "Alice Example")
        #expect(claims["sub"] as? String == "userid:2001")
        let extra = [("resource", Self.mcp)]
        let code = try await setup.code(identity: Self.alice, scope: "openid", extra: extra)
        let body = Fixtures.json(await setup.redeem(code, extra: extra).body)
        let bare = try payload(try #require(body["access_token"] as? String))
        for name in ["email", "email_verified", "preferred_username", "name", "picture", "groups"] {
            #expect(bare[name] == nil, "\(name)")
        }
    }

    @Test("the ID token's audience is the client alone, never the resource, and has no azp")
    func idTokenAudience() async throws {
        let setup = try await Fixtures.provider()
        let issued = try await issue(setup, resource: Self.mcp)
        let claims = try payload(issued.idToken)
        #expect(audience(claims) == [setup.client.clientID])
        #expect(claims["azp"] == nil)
        #expect(try payload(issued.idToken, part: 0)["typ"] as? String != "at+jwt")
    }

    @Test("a refresh keeps the resource audience and may narrow it")
    func refreshKeepsAudience() async throws {
        let setup = try await Fixtures.provider()
        let extra = [("resource", Self.mcp), ("resource", Self.other)]
        let code = try await setup.code(identity: Self.alice, extra: extra)
        let first = Fixtures.json(await setup.redeem(code, extra: extra).body)
        #expect(audience(try payload(try #require(first["access_token"] as? String))) == [Self.mcp, Self.other])
        let refresh = try #require(first["refresh_token"] as? String)
        let kept = Fixtures.json(await setup.refresh(refresh).body)
        let keptAccess = try #require(kept["access_token"] as? String)
        #expect(audience(try payload(keptAccess)) == [Self.mcp, Self.other])
        #expect(audience(try payload(try #require(kept["id_token"] as? String))) == [setup.client.clientID])
        let narrowed = Fixtures.json(
            await setup.provider.token(
                Fixtures.query([
                    ("grant_type", "refresh_token"), ("refresh_token", try #require(kept["refresh_token"] as? String)),
                    ("resource", Self.other),
                ]),
                authorization: Fixtures.basic(setup.client.clientID, setup.secret)
            ).body)
        #expect(audience(try payload(try #require(narrowed["access_token"] as? String))) == [Self.other])
    }

    @Test("without a resource the access token stays opaque; a client registered as opaque keeps opaque tokens")
    func opaqueFormats() async throws {
        let setup = try await Fixtures.provider()
        let plain = try await issue(setup, resource: nil)
        #expect(!plain.access.contains("."))
        #expect(audience(try payload(plain.idToken)) == [setup.client.clientID])

        var registration = ClientRegistry.Registration(name: "Opaque app", redirectURIs: [Fixtures.redirect])
        registration.accessTokenFormat = "opaque"
        let created = try await setup.provider.clients.register(registration)
        let opaque = setup.with(client: created.client, secret: try #require(created.secret))
        let issued = try await issue(opaque, resource: Self.mcp)
        #expect(!issued.access.contains("."))
        #expect(audience(try payload(issued.idToken)) == [created.client.clientID])
        let (server, secret) = try await resourceServer(setup, serving: [Self.mcp])
        let answer = await introspect(setup, issued.access, as: server.clientID, secret: secret)
        #expect(answer["active"] as? Bool == true)
        #expect(audience(answer) == [Self.mcp])
    }

    @Test("a resource server introspects tokens for its own resources, and nothing else")
    func resourceServerIntrospection() async throws {
        let setup = try await Fixtures.provider()
        let (server, secret) = try await resourceServer(setup, serving: [Self.mcp])
        let forMCP = try await issue(setup, resource: Self.mcp)
        let answer = await introspect(setup, forMCP.access, as: server.clientID, secret: secret)
        #expect(answer["active"] as? Bool == true)
        #expect(answer["client_id"] as? String == setup.client.clientID)
        #expect(answer["sub"] as? String == "userid:2001")
        #expect(answer["username"] as? String == "alice@example.com")
        #expect(answer["iss"] as? String == Fixtures.issuer)
        #expect(answer["token_type"] as? String == "Bearer")
        #expect(audience(answer) == [Self.mcp])
        #expect(answer["exp"] as? Int == Int(setup.clock.now.timeIntervalSince1970) + 300)

        // Another resource's token, a token with no resource, a refresh token: nothing.
        let forOther = try await issue(setup, resource: Self.other)
        #expect(await introspect(setup, forOther.access, as: server.clientID, secret: secret).count == 1)
        #expect(
            await introspect(setup, forOther.access, as: server.clientID, secret: secret)["active"] as? Bool == false)
        let plain = try await issue(setup, resource: nil)
        #expect(await introspect(setup, plain.access, as: server.clientID, secret: secret)["active"] as? Bool == false)
        #expect(
            await introspect(setup, forMCP.refresh, as: server.clientID, secret: secret)["active"] as? Bool == false)

        // A client that serves no resource still cannot introspect others' tokens.
        let stranger = try await setup.provider.clients.register(
            .init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let strangerAnswer = await introspect(
            setup, forMCP.access, as: stranger.client.clientID, secret: try #require(stranger.secret))
        #expect(strangerAnswer["active"] as? Bool == false)

        // The wrong secret is a failed authentication, not an answer.
        let wrong = await setup.provider.introspect(
            Fixtures.query([("token", forMCP.access)]), authorization: Fixtures.basic(server.clientID, "wrong"))
        #expect(wrong.status == 401)

        // Expired: inactive for the resource server too.
        setup.clock.advance(301)
        #expect(await introspect(setup, forMCP.access, as: server.clientID, secret: secret)["active"] as? Bool == false)
    }

    @Test("an ID token is never taken for an access token: typ and aud differ, userinfo and introspection refuse it")
    func idTokenIsNotAnAccessToken() async throws {
        let setup = try await Fixtures.provider()
        let (server, secret) = try await resourceServer(setup, serving: [Self.mcp])
        let issued = try await issue(setup, resource: Self.mcp)
        // A resource server that checks the header tells them apart offline…
        #expect(try payload(issued.access, part: 0)["typ"] as? String == "at+jwt")
        #expect(try payload(issued.idToken, part: 0)["typ"] as? String != "at+jwt")
        // …and one that only checks aud finds its own URL in the access token alone.
        #expect(audience(try payload(issued.access)) == [Self.mcp])
        #expect(!audience(try payload(issued.idToken)).contains(Self.mcp))
        // tsidp itself refuses the ID token wherever an access token is expected.
        #expect(setup.provider.userInfo(accessToken: issued.idToken).status == 401)
        #expect(
            await introspect(setup, issued.idToken, as: server.clientID, secret: secret)["active"] as? Bool == false)
        #expect(
            await introspect(setup, issued.idToken, as: setup.client.clientID, secret: setup.secret)["active"] as? Bool
                == false)
    }

    @Test("a public client cannot introspect even when it declares the resource")
    func publicResourceServer() async throws {
        let setup = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "SPA", redirectURIs: [Fixtures.redirect])
        registration.tokenEndpointAuthMethod = "none"
        registration.resources = [Self.mcp]
        let spa = try await setup.provider.clients.register(registration)
        let issued = try await issue(setup, resource: Self.mcp)
        let answer = await setup.provider.introspect(
            Fixtures.query([("token", issued.access), ("client_id", spa.client.clientID)]), authorization: nil)
        #expect(answer.status == 401)
    }

    @Test(
        "bad resource URIs are invalid_client_metadata on every registration path",
        arguments: [
            "http://mcp.example.com/mcp", "https://mcp.example.com/mcp#part", "/mcp", "mcp.example.com",
            "ftp://x.example/",
            "https:///mcp", "https://mcp.example.com/a b", "",
        ])
    func badResources(_ uri: String) async throws {
        let registry = try await ClientRegistry.load(from: StateWriter(store: MemoryStateStore()))
        func message(_ call: () async throws -> Void) async -> String? {
            do {
                try await call()
                return nil
            } catch let error as OAuthError {
                #expect(error.code == .invalidClientMetadata)
                #expect(error.status == 400)
                return error.message
            } catch {
                return "\(error)"
            }
        }
        var registration = ClientRegistry.Registration(name: "MCP", redirectURIs: [Fixtures.redirect])
        registration.resources = [uri]
        #expect(await message { _ = try await registry.register(registration) }?.contains("resource") == true)
        let body = try JSONSerialization.data(withJSONObject: [
            "redirect_uris": [Fixtures.redirect], "resources": [uri],
        ])
        #expect(
            await message { _ = try await registry.registerDynamically(try .init(rfc7591JSON: body)) }?
                .contains("resource") == true)
        let created = try await registry.register(.init(name: "MCP", redirectURIs: [Fixtures.redirect]))
        #expect(
            await message {
                _ = try await registry.update(
                    created.client.clientID, name: "MCP", redirectURIs: [Fixtures.redirect], resources: [uri])
            }?.contains("resource") == true)
        #expect(
            await message {
                _ = try await registry.replaceMetadata(
                    created.client.clientID, with: registration, presentedSecret: nil)
            }?.contains("resource") == true)
        #expect(await registry.client(created.client.clientID)?.resources == [])
    }

    @Test("loopback and tailnet hosts may use plain http; too many resources are refused")
    func resourceRules() async throws {
        let registry = try await ClientRegistry.load(from: StateWriter(store: MemoryStateStore()))
        var registration = ClientRegistry.Registration(name: "MCP", redirectURIs: [Fixtures.redirect])
        registration.resources = ["http://127.0.0.1:8000/mcp", "http://mcp.example-tailnet.ts.net/mcp", Self.mcp]
        let created = try await registry.register(registration)
        #expect(created.client.resources == registration.resources)
        registration.resources = (0...ClientMetadataLimits.resources).map { "https://r\($0).example.com/" }
        await #expect(throws: OAuthError.self) { try await registry.register(registration) }
    }

    @Test("resources survive a restart; a client file without them still loads")
    func persistence() async throws {
        let store = MemoryStateStore()
        let registry = try await ClientRegistry.load(from: StateWriter(store: store))
        var registration = ClientRegistry.Registration(name: "MCP", redirectURIs: [Fixtures.redirect])
        registration.resources = [Self.mcp]
        registration.accessTokenFormat = "opaque"
        let created = try await registry.register(registration)
        let plain = try await registry.register(.init(name: "Plain", redirectURIs: [Fixtures.redirect]))
        let stored = try #require(try await store.read(ClientRegistry.fileKey(plain.client.clientID)))
        #expect(!String(decoding: stored, as: UTF8.self).contains("resources"))
        #expect(!String(decoding: stored, as: UTF8.self).contains("access_token_format"))

        let reloaded = try await ClientRegistry.load(from: StateWriter(store: store))
        let again = try #require(await reloaded.client(created.client.clientID))
        #expect(again.resources == [Self.mcp])
        #expect(again.accessTokenFormat == "opaque")
        #expect(await reloaded.client(plain.client.clientID)?.resources == [])

        let updated = try await reloaded.update(
            created.client.clientID, name: "MCP", redirectURIs: [Fixtures.redirect], resources: [Self.other])
        #expect(updated.resources == [Self.other])
        let renamed = try await reloaded.update(
            created.client.clientID, name: "MCP 2", redirectURIs: [Fixtures.redirect])
        #expect(renamed.resources == [Self.other])
        let third = try await ClientRegistry.load(from: StateWriter(store: store))
        #expect(await third.client(created.client.clientID)?.resources == [Self.other])
    }

    @Test("a failed write of a resource change leaves the client as it was")
    func resourceWriteFault() async throws {
        let faulty = FaultInjectingStateStore(wrapping: MemoryStateStore())
        let registry = try await ClientRegistry.load(from: StateWriter(store: faulty))
        var registration = ClientRegistry.Registration(name: "MCP", redirectURIs: [Fixtures.redirect])
        registration.resources = [Self.mcp]
        let created = try await registry.register(registration)
        faulty.failNextWrite()
        do {
            _ = try await registry.update(
                created.client.clientID, name: "MCP", redirectURIs: [Fixtures.redirect], resources: [Self.other])
            Issue.record("the update succeeded although its write failed")
        } catch let error as OAuthError {
            #expect(error.status == 503)
        }
        #expect(await registry.client(created.client.clientID)?.resources == [Self.mcp])
        let reloaded = try await ClientRegistry.load(from: StateWriter(store: faulty))
        #expect(await reloaded.client(created.client.clientID)?.resources == [Self.mcp])
    }
}

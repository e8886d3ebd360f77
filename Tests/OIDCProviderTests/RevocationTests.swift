import Foundation
import OIDCProvider
import Testing

@Suite("Revocation (RFC 7009) and introspection (RFC 7662)")
struct RevocationTests {
    func tokens(_ setup: Fixtures.Setup) async throws -> (access: String, refresh: String, idToken: String) {
        let body = Fixtures.json(await setup.redeem(try await setup.code()).body)
        return (
            try #require(body["access_token"] as? String), try #require(body["refresh_token"] as? String),
            try #require(body["id_token"] as? String)
        )
    }

    func call(
        _ setup: Fixtures.Setup, _ endpoint: String, _ pairs: [(String, String)], as id: String? = nil,
        secret: String? = nil
    ) async -> TokenResponse {
        let auth = Fixtures.basic(id ?? setup.client.clientID, secret ?? setup.secret)
        return endpoint == "revoke"
            ? await setup.provider.revoke(Fixtures.query(pairs), authorization: auth)
            : await setup.provider.introspect(Fixtures.query(pairs), authorization: auth)
    }

    @Test("revoking an access token kills it; revoking a refresh token kills the family")
    func revoke() async throws {
        let setup = try await Fixtures.provider()
        let first = try await tokens(setup)
        #expect(
            await call(setup, "revoke", [("token", first.access), ("token_type_hint", "access_token")]).status == 200)
        #expect(setup.provider.userInfo(accessToken: first.access).status == 401)
        #expect(await setup.refresh(first.refresh).status == 200)

        let second = try await tokens(setup)
        #expect(await call(setup, "revoke", [("token", second.refresh)]).status == 200)
        #expect(setup.provider.userInfo(accessToken: second.access).status == 401)
        #expect(Fixtures.json(await setup.refresh(second.refresh).body)["error"] as? String == "invalid_grant")
    }

    @Test("revocation needs client authentication and cannot touch other clients' tokens")
    func revokeIsolation() async throws {
        let setup = try await Fixtures.provider()
        let other = try await setup.provider.clients.register(.init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let owned = try await tokens(setup)
        #expect(
            await call(setup, "revoke", [("token", owned.access)], as: other.client.clientID, secret: other.secret)
                .status == 200)
        #expect(setup.provider.userInfo(accessToken: owned.access).status == 200)
        #expect(await call(setup, "revoke", [("token", owned.access)], secret: "wrong").status == 401)
        #expect(await call(setup, "revoke", [("token", "unknown")]).status == 200)
        #expect(Fixtures.json(await call(setup, "revoke", []).body)["error"] as? String == "invalid_request")
        #expect(
            Fixtures.json(await call(setup, "revoke", [("token", "x"), ("token_type_hint", "id_token")]).body)["error"]
                as? String == "unsupported_token_type")
    }

    @Test("introspection answers the owner with claims consistent with the ID token")
    func introspect() async throws {
        let setup = try await Fixtures.provider()
        let issued = try await tokens(setup)
        let answer = Fixtures.json(await call(setup, "introspect", [("token", issued.access)]).body)
        #expect(answer["active"] as? Bool == true)
        #expect(answer["client_id"] as? String == setup.client.clientID)
        #expect(answer["sub"] as? String == "userid:2001")
        #expect(answer["iss"] as? String == Fixtures.issuer)
        #expect(answer["scope"] as? String == "openid email profile")
        #expect(answer["token_type"] as? String == "Bearer")
        let payload =
            try JSONSerialization.jsonObject(with: Base64URL.decode(issued.idToken.split(separator: ".")[1])!)
            as? [String: Any]
        #expect(payload?["sub"] as? String == answer["sub"] as? String)
        let exp = try #require(answer["exp"] as? Int)
        let iat = try #require(answer["iat"] as? Int)
        #expect(exp - iat == 300)
        let refresh = Fixtures.json(await call(setup, "introspect", [("token", issued.refresh)]).body)
        #expect(refresh["active"] as? Bool == true)
        #expect(refresh["token_type"] as? String == "refresh_token")
    }

    @Test("introspection tells strangers, public clients and expired tokens nothing")
    func introspectIsolation() async throws {
        let setup = try await Fixtures.provider()
        let other = try await setup.provider.clients.register(.init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let issued = try await tokens(setup)
        let stranger = Fixtures.json(
            await call(setup, "introspect", [("token", issued.access)], as: other.client.clientID, secret: other.secret)
                .body)
        #expect(stranger["active"] as? Bool == false)
        #expect(stranger.count == 1)
        #expect(
            await setup.provider.introspect(Fixtures.query([("token", issued.access)]), authorization: nil).status
                == 401)
        var publicRegistration = ClientRegistry.Registration(name: "SPA", redirectURIs: [Fixtures.redirect])
        publicRegistration.tokenEndpointAuthMethod = "none"
        let spa = try await setup.provider.clients.register(publicRegistration)
        let publicAnswer = await setup.provider.introspect(
            Fixtures.query([("token", issued.access), ("client_id", spa.client.clientID)]), authorization: nil)
        #expect(publicAnswer.status == 401)
        setup.clock.advance(301)
        #expect(
            Fixtures.json(await call(setup, "introspect", [("token", issued.access)]).body)["active"] as? Bool == false)
        #expect(Fixtures.json(await call(setup, "introspect", [("token", "garbage")]).body)["active"] as? Bool == false)
    }
}

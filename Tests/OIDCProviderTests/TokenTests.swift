import AnyJSON
import Foundation
import JWTKit
import OIDCProvider
import Testing

struct IDTokenPayload: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var nonce: String?
    var email: String?
    var name: String?
    var preferred_username: String?
    var auth_time: Int?
    var at_hash: String?
    var groups: [String]?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

@Suite("Token endpoint")
struct TokenTests {
    @Test("a code redeems for tokens whose ID token verifies against the JWKS")
    func codeFlow() async throws {
        let setup = try await Fixtures.provider()
        let answer = await setup.redeem(try await setup.code())
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        #expect(body["token_type"] as? String == "Bearer")
        #expect(body["expires_in"] as? Int == 300)
        #expect((body["refresh_token"] as? String)?.isEmpty == false)
        #expect(body["scope"] as? String == "openid email profile")
        let idToken = try #require(body["id_token"] as? String)
        let accessToken = try #require(body["access_token"] as? String)

        let keys = JWTKeyCollection()
        try await keys.add(jwksJSON: String(decoding: setup.provider.keys.jwksDocument, as: UTF8.self))
        let payload = try await keys.verify(idToken, as: IDTokenPayload.self)
        #expect(payload.iss.value == Fixtures.issuer)
        #expect(payload.sub.value == "userid:2001")
        #expect(payload.aud.value == [setup.client.clientID])
        #expect(payload.nonce == "n1")
        #expect(payload.email == "alice@example.com")
        #expect(payload.name == "Alice Example")
        #expect(payload.preferred_username == "alice")
        #expect(payload.groups == nil, "groups are released with the groups scope only")
        #expect(payload.auth_time == Int(setup.clock.now.timeIntervalSince1970))
        #expect(payload.at_hash == IDToken.accessTokenHash(accessToken))
        #expect(payload.exp.value.timeIntervalSince(payload.iat.value) == 300)
    }

    @Test("auth_time is kept for silent re-authorization and renewed by prompt=login or an exceeded max_age")
    func authTime() async throws {
        let setup = try await Fixtures.provider()
        func authTime(_ extra: [(String, String)]) async throws -> Int {
            let idToken = try #require(
                Fixtures.json(await setup.redeem(try await setup.code(extra: extra)).body)["id_token"] as? String)
            let payload =
                try JSONSerialization.jsonObject(with: Base64URL.decode(idToken.split(separator: ".")[1])!)
                as? [String: Any]
            return try #require(payload?["auth_time"] as? Int)
        }
        let first = try await authTime([])
        setup.clock.advance(10)
        #expect(try await authTime([("prompt", "none")]) == first)
        #expect(try await authTime([("max_age", "3600")]) == first)
        let renewed = try await authTime([("max_age", "5")])
        #expect(renewed == first + 10)
        setup.clock.advance(10)
        #expect(try await authTime([("prompt", "login")]) == renewed + 10)
        // Another user on another device has a session of their own.
        let bobToken = try #require(
            Fixtures.json(await setup.redeem(try await setup.code(identity: Fixtures.bob)).body)["id_token"] as? String)
        let bob =
            try JSONSerialization.jsonObject(with: Base64URL.decode(bobToken.split(separator: ".")[1])!)
            as? [String: Any]
        #expect(bob?["auth_time"] as? Int == Int(setup.clock.now.timeIntervalSince1970))
    }

    @Test("at_hash follows OIDC Core 3.1.3.6")
    func atHash() {
        // Left half of SHA-256("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), base64url.
        #expect(IDToken.accessTokenHash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ")
        #expect(
            IDToken.accessTokenHash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", algorithm: .es256)
                == "77QmUPtjPfzWtF2AnpK9RQ")
        // Ed25519 signs with SHA-512: the left 32 bytes of SHA-512 of the same token.
        #expect(
            IDToken.accessTokenHash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", algorithm: .edDSA)
                == "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM")
    }

    @Test("each ID token's at_hash uses the hash of its own signing algorithm")
    func atHashPerAlgorithm() async throws {
        let setup = try await Fixtures.provider()
        for algorithm in SigningAlgorithm.allCases {
            var registration = ClientRegistry.Registration(
                name: "App \(algorithm.rawValue)", redirectURIs: [Fixtures.redirect])
            registration.idTokenSignedResponseAlg = algorithm.rawValue
            let created = try await setup.provider.clients.register(registration)
            let client = setup.with(client: created.client, secret: created.secret ?? "")
            let body = Fixtures.json(await client.redeem(try await client.code()).body)
            let idToken = try #require(body["id_token"] as? String)
            let accessToken = try #require(body["access_token"] as? String)
            let parts = idToken.split(separator: ".")
            let header = Fixtures.json(Array(Base64URL.decode(parts[0])!))
            let payload = Fixtures.json(Array(Base64URL.decode(parts[1])!))
            #expect(header["alg"] as? String == algorithm.rawValue)
            #expect(payload["at_hash"] as? String == IDToken.accessTokenHash(accessToken, algorithm: algorithm))
            let length = (payload["at_hash"] as? String)?.count
            #expect(length == (algorithm == .edDSA ? 43 : 22), "\(algorithm): at_hash of \(length ?? 0) characters")
        }
    }

    @Test("codes are single use, and a replay revokes what the first use minted")
    func codeReplay() async throws {
        let setup = try await Fixtures.provider()
        let code = try await setup.code()
        let first = Fixtures.json(await setup.redeem(code).body)
        let access = try #require(first["access_token"] as? String)
        let refresh = try #require(first["refresh_token"] as? String)
        #expect(setup.provider.userInfo(accessToken: access).status == 200)
        let second = await setup.redeem(code)
        #expect(second.status == 400)
        #expect(Fixtures.json(second.body)["error"] as? String == "invalid_grant")
        #expect(setup.provider.userInfo(accessToken: access).status == 401)
        #expect(Fixtures.json(await setup.refresh(refresh).body)["error"] as? String == "invalid_grant")
    }

    @Test("codes expire after five minutes")
    func codeExpiry() async throws {
        let setup = try await Fixtures.provider()
        let code = try await setup.code()
        setup.clock.advance(301)
        let answer = await setup.redeem(code)
        #expect(answer.status == 400)
        #expect(Fixtures.json(answer.body)["error"] as? String == "invalid_grant")
    }

    @Test("redirect_uri must match the authorization request")
    func redirectMismatch() async throws {
        let setup = try await Fixtures.provider(redirectURIs: [Fixtures.redirect, "https://app.example.com/other"])
        let code = try await setup.code()
        let answer = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", "https://app.example.com/other"),
            ]),
            authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        #expect(Fixtures.json(answer.body)["error"] as? String == "invalid_grant")
    }

    @Test("client authentication: basic, post, wrong secret, missing, both methods")
    func clientAuthentication() async throws {
        let setup = try await Fixtures.provider()
        let post = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", try await setup.code()),
                ("redirect_uri", Fixtures.redirect),
                ("client_id", setup.client.clientID), ("client_secret", setup.secret),
            ]), authorization: nil)
        #expect(post.status == 200)

        let wrong = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", try await setup.code()),
                ("redirect_uri", Fixtures.redirect),
            ]),
            authorization: Fixtures.basic(setup.client.clientID, "not-the-secret"))
        #expect(wrong.status == 401)
        #expect(wrong.wwwAuthenticate?.hasPrefix("Basic") == true)
        #expect(Fixtures.json(wrong.body)["error"] as? String == "invalid_client")
        #expect(!String(decoding: wrong.body, as: UTF8.self).contains("not-the-secret"))

        let missing = await setup.provider.token(
            Fixtures.query([("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", Fixtures.redirect)]),
            authorization: nil)
        #expect(missing.status == 401)

        let both = await setup.provider.token(
            Fixtures.query([("grant_type", "authorization_code"), ("code", "x"), ("client_secret", setup.secret)]),
            authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        #expect(both.status == 400)

        for header in ["Basic !!!notbase64", "Bearer abc", "Basic " + Data("no-colon".utf8).base64EncodedString()] {
            let malformed = await setup.provider.token(
                Fixtures.query([("grant_type", "authorization_code")]), authorization: header)
            #expect(malformed.status == 401, "header \(header)")
            #expect(Fixtures.json(malformed.body)["error"] as? String == "invalid_client")
        }
    }

    @Test("a code issued to one client is useless to another")
    func crossClient() async throws {
        let setup = try await Fixtures.provider()
        let other = try await setup.provider.clients.register(.init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let answer = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", try await setup.code()),
                ("redirect_uri", Fixtures.redirect),
            ]),
            authorization: Fixtures.basic(other.client.clientID, other.secret!))
        #expect(Fixtures.json(answer.body)["error"] as? String == "invalid_grant")
    }

    @Test("PKCE: S256 and plain verify; wrong or missing verifier fails; a verifier without challenge fails")
    func pkce() async throws {
        let setup = try await Fixtures.provider()
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let s256 = try await setup.code(extra: [
            ("code_challenge", PKCE.s256Challenge(of: verifier)), ("code_challenge_method", "S256"),
        ])
        #expect(await setup.redeem(s256, extra: [("code_verifier", verifier)]).status == 200)
        let plain = try await setup.code(extra: [("code_challenge", verifier)])
        #expect(await setup.redeem(plain, extra: [("code_verifier", verifier)]).status == 200)
        let wrong = try await setup.code(extra: [
            ("code_challenge", PKCE.s256Challenge(of: verifier)), ("code_challenge_method", "S256"),
        ])
        #expect(
            Fixtures.json(
                await setup.redeem(wrong, extra: [("code_verifier", String(repeating: "x", count: 43))]).body)["error"]
                as? String == "invalid_grant")
        let missing = try await setup.code(extra: [
            ("code_challenge", PKCE.s256Challenge(of: verifier)), ("code_challenge_method", "S256"),
        ])
        #expect(Fixtures.json(await setup.redeem(missing).body)["error"] as? String == "invalid_request")
        let none = try await setup.code()
        #expect(
            Fixtures.json(await setup.redeem(none, extra: [("code_verifier", verifier)]).body)["error"] as? String
                == "invalid_request")
    }

    @Test("public clients authenticate with client_id only and need their verifier")
    func publicClient() async throws {
        let setup = try await Fixtures.provider(authMethod: "none")
        let verifier = String(repeating: "k", count: 64)
        let code = try await setup.code(extra: [
            ("code_challenge", PKCE.s256Challenge(of: verifier)), ("code_challenge_method", "S256"),
        ])
        let answer = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Fixtures.redirect),
                ("client_id", setup.client.clientID), ("code_verifier", verifier),
            ]), authorization: nil)
        #expect(answer.status == 200)
    }

    @Test("refresh tokens rotate; reusing a rotated one revokes the family")
    func refreshRotation() async throws {
        let setup = try await Fixtures.provider()
        let first = Fixtures.json(await setup.redeem(try await setup.code()).body)
        let r1 = try #require(first["refresh_token"] as? String)
        let second = Fixtures.json(await setup.refresh(r1).body)
        let r2 = try #require(second["refresh_token"] as? String)
        let a2 = try #require(second["access_token"] as? String)
        #expect(r1 != r2)
        #expect(second["id_token"] != nil)
        #expect(setup.provider.userInfo(accessToken: a2).status == 200)
        // Replay of r1: refused, and the family (r2, a2) dies with it.
        #expect(Fixtures.json(await setup.refresh(r1).body)["error"] as? String == "invalid_grant")
        #expect(Fixtures.json(await setup.refresh(r2).body)["error"] as? String == "invalid_grant")
        #expect(setup.provider.userInfo(accessToken: a2).status == 401)
    }

    @Test("refresh tokens are bound to their client and may only narrow scopes")
    func refreshBinding() async throws {
        let setup = try await Fixtures.provider()
        let other = try await setup.provider.clients.register(.init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let token = try #require(
            Fixtures.json(await setup.redeem(try await setup.code()).body)["refresh_token"] as? String)
        let stolen = await setup.provider.token(
            Fixtures.query([("grant_type", "refresh_token"), ("refresh_token", token)]),
            authorization: Fixtures.basic(other.client.clientID, other.secret!))
        #expect(Fixtures.json(stolen.body)["error"] as? String == "invalid_grant")
        let wider = await setup.provider.token(
            Fixtures.query([("grant_type", "refresh_token"), ("refresh_token", token), ("scope", "openid groups")]),
            authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        #expect(Fixtures.json(wider.body)["error"] as? String == "invalid_scope")
        let narrower = await setup.provider.token(
            Fixtures.query([("grant_type", "refresh_token"), ("refresh_token", token), ("scope", "openid")]),
            authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        #expect(Fixtures.json(narrower.body)["scope"] as? String == "openid")
    }

    @Test("refresh tokens expire after 30 days")
    func refreshExpiry() async throws {
        let setup = try await Fixtures.provider()
        let token = try #require(
            Fixtures.json(await setup.redeem(try await setup.code()).body)["refresh_token"] as? String)
        setup.clock.advance(30 * 24 * 3600 + 1)
        #expect(Fixtures.json(await setup.refresh(token).body)["error"] as? String == "invalid_grant")
    }

    @Test("grant_type is required and must be supported")
    func grantTypes() async throws {
        let setup = try await Fixtures.provider()
        let auth = Fixtures.basic(setup.client.clientID, setup.secret)
        #expect(
            Fixtures.json(await setup.provider.token(Fixtures.query([]), authorization: auth).body)["error"] as? String
                == "invalid_request")
        for type in ["password", "client_credentials", "implicit", "urn:ietf:params:oauth:grant-type:token-exchange"] {
            let answer = await setup.provider.token(Fixtures.query([("grant_type", type)]), authorization: auth)
            #expect(Fixtures.json(answer.body)["error"] as? String == "unsupported_grant_type")
        }
    }

    @Test("grants cannot overwrite protected claims; allowed extra claims are added")
    func extraClaims() async throws {
        let setup = try await Fixtures.provider()
        let good = Fixtures.alice(rules: [
            .object(["extraClaims": .object(["email_verified": .bool(true), "roles": .array([.string("admin")])])])
        ])
        let body = Fixtures.json(await setup.redeem(try await setup.code(identity: good)).body)
        let idToken = try #require(body["id_token"] as? String)
        let payload = String(decoding: Base64URL.decode(idToken.split(separator: ".")[1])!, as: UTF8.self)
        #expect(payload.contains("\"email_verified\":true"))
        #expect(payload.contains("\"roles\":[\"admin\"]"))

        // A rule that tries to set a protected claim is ignored; the sign-in still works.
        let bad = Fixtures.alice(rules: [.object(["extraClaims": .object(["sub": .string("userid:1")])])])
        let answer = await setup.redeem(try await setup.code(identity: bad))
        #expect(answer.status == 200)
        let badToken = try #require(Fixtures.json(answer.body)["id_token"] as? String)
        let badPayload = String(decoding: Base64URL.decode(badToken.split(separator: ".")[1])!, as: UTF8.self)
        #expect(!badPayload.contains("userid:1\""))
        #expect(badPayload.contains("\"sub\":\"userid:2001\""))
    }

    @Test("no openid scope, no ID token")
    func noOpenID() async throws {
        let setup = try await Fixtures.provider()
        let body = Fixtures.json(await setup.redeem(try await setup.code(scope: "email")).body)
        #expect(body["id_token"] == nil)
        #expect(body["access_token"] != nil)
    }
}

@Suite("Userinfo endpoint")
struct UserInfoTests {
    @Test("userinfo answers the grant's claims and RFC 6750 errors")
    func userinfo() async throws {
        let setup = try await Fixtures.provider()
        let rules: [JSONValue] = [
            .object(["extraClaims": .object(["team": .string("blue")]), "includeInUserInfo": .bool(true)]),
            .object(["extraClaims": .object(["secret_level": .int(3)])]),
        ]
        let body = Fixtures.json(await setup.redeem(try await setup.code(identity: Fixtures.alice(rules: rules))).body)
        let access = try #require(body["access_token"] as? String)
        let info = setup.provider.userInfo(accessToken: access)
        #expect(info.status == 200)
        let claims = Fixtures.json(info.body)
        #expect(claims["sub"] as? String == "userid:2001")
        #expect(claims["email"] as? String == "alice@example.com")
        #expect(claims["username"] as? String == "alice")
        #expect(claims["team"] as? String == "blue")
        #expect(claims["secret_level"] == nil)

        let none = setup.provider.userInfo(accessToken: nil)
        #expect(none.status == 401)
        #expect(none.wwwAuthenticate?.hasPrefix("Bearer") == true)
        let invalid = setup.provider.userInfo(accessToken: "not-a-token")
        #expect(invalid.status == 401)
        #expect(invalid.wwwAuthenticate?.contains("invalid_token") == true)
        setup.clock.advance(301)
        #expect(setup.provider.userInfo(accessToken: access).status == 401)
    }

    @Test("login names without a domain dot get a realish email")
    func realishEmail() {
        var identity = Fixtures.alice()
        identity.loginName = "alice@github"
        #expect(identity.realishEmail(idpHost: "idp.tail1234.ts.net") == "alice@github.idp.tail1234.ts.net")
        identity.loginName = "alice@example.com"
        #expect(identity.realishEmail(idpHost: "idp.tail1234.ts.net") == "alice@example.com")
    }
}

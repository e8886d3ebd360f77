import Foundation
import JWTKit
import StateStore
import Testing

@testable import OIDCProvider

@Suite("Key ring: rotation and algorithms")
struct KeyRotationTests {
    func verifier(_ ring: KeyRing) async throws -> JWTKeyCollection {
        let keys = JWTKeyCollection()
        try await keys.add(jwksJSON: String(decoding: ring.jwksDocument, as: UTF8.self))
        return keys
    }

    @Test("a fresh ring publishes a current and a next key for RS256, ES256 and EdDSA")
    func fresh() async throws {
        let ring = try await KeyRing.load(from: StateWriter(store: MemoryStateStore()))
        let jwks = Fixtures.json(ring.jwksDocument)["keys"] as? [[String: Any]] ?? []
        #expect(jwks.count == 6)
        #expect(Set(jwks.compactMap { $0["kid"] as? String }).count == 6)
        #expect(jwks.first?["alg"] as? String == "RS256")
        #expect(jwks.first?["kid"] as? String == ring.signingKey.kid)
    }

    @Test("rotation: the next key signs, the previous key still verifies, and both persist")
    func rotation() async throws {
        let store = MemoryStateStore()
        let ring = try await KeyRing.load(from: StateWriter(store: store))
        let before = ring.signingKey
        let nextKid = try #require(
            (Fixtures.json(ring.jwksDocument)["keys"] as? [[String: Any]])?.filter { $0["alg"] as? String == "RS256" }
                .compactMap { $0["kid"] as? String }.first { $0 != before.kid })
        let oldToken = try before.sign(payload: #"{"sub":"userid:2001","aud":"x","exp":4102444800,"iat":1}"#)
        try await ring.rotate()
        #expect(ring.signingKey.kid == nextKid)
        let keys = try await verifier(ring)
        struct Minimal: JWTPayload {
            var sub: SubjectClaim
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        #expect(try await keys.verify(oldToken, as: Minimal.self).sub.value == "userid:2001")
        let newToken = try ring.signingKey.sign(payload: #"{"sub":"userid:2002"}"#)
        #expect(try await keys.verify(newToken, as: Minimal.self).sub.value == "userid:2002")
        // A restart sees the same ring, and oidc-key.json follows the current RS256 key.
        let reloaded = try await KeyRing.load(from: StateWriter(store: store))
        #expect(reloaded.signingKey.kid == nextKid)
        #expect(reloaded.key(withID: before.kid) != nil)
        let goFile = String(decoding: try #require(try await store.read(KeyRing.stateKey)), as: UTF8.self)
        #expect(goFile.contains("\"kid\": \(nextKid)"))
    }

    @Test("scheduled rotation happens after the interval; retired keys leave after their retention")
    func schedule() async throws {
        var policy = KeyRing.Policy()
        policy.rotationInterval = 100
        policy.retention = 50
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let ring = try await KeyRing.load(from: StateWriter(store: MemoryStateStore()), policy: policy, now: start)
        let first = ring.signingKey.kid
        #expect(try await ring.maintain(now: start.addingTimeInterval(99)) == false)
        #expect(try await ring.maintain(now: start.addingTimeInterval(100)) == true)
        #expect(ring.signingKey.kid != first)
        #expect(ring.key(withID: first) != nil)
        _ = try await ring.maintain(now: start.addingTimeInterval(151))
        #expect(ring.key(withID: first) == nil)
    }

    @Test("clients choose ES256 or EdDSA ID tokens; the JWKS verifies them")
    func algorithms() async throws {
        for algorithm in ["ES256", "EdDSA"] {
            let setup = try await Fixtures.provider()
            var registration = ClientRegistry.Registration(name: "App", redirectURIs: [Fixtures.redirect])
            registration.idTokenSignedResponseAlg = algorithm
            let created = try await setup.provider.clients.register(registration)
            let other = setup.with(client: created.client, secret: created.secret!)
            let body = Fixtures.json(await other.redeem(try await other.code()).body)
            let idToken = try #require(body["id_token"] as? String)
            let header =
                try JSONSerialization.jsonObject(with: Base64URL.decode(idToken.split(separator: ".")[0])!)
                as? [String: Any]
            #expect(header?["alg"] as? String == algorithm)
            let keys = try await verifier(setup.provider.keys)
            let payload = try await keys.verify(idToken, as: IDTokenPayload.self)
            #expect(payload.sub.value == "userid:2001")
        }
        let setup = try await Fixtures.provider()
        var bad = ClientRegistry.Registration(name: "App", redirectURIs: [Fixtures.redirect])
        bad.idTokenSignedResponseAlg = "none"
        await #expect(throws: OAuthError.self) { try await setup.provider.clients.register(bad) }
    }

    @Test("JWT access tokens (RFC 9068) carry the client's custom scopes and still work at userinfo")
    func jwtAccessTokens() async throws {
        let setup = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "API client", redirectURIs: [Fixtures.redirect])
        registration.accessTokenFormat = "jwt"
        registration.scope = "openid read:metrics"
        let created = try await setup.provider.clients.register(registration)
        let jwtClient = setup.with(client: created.client, secret: created.secret!)
        let body = Fixtures.json(await jwtClient.redeem(try await jwtClient.code(scope: "openid read:metrics")).body)
        let access = try #require(body["access_token"] as? String)
        let parts = access.split(separator: ".")
        #expect(parts.count == 3)
        let header = try JSONSerialization.jsonObject(with: Base64URL.decode(parts[0])!) as? [String: Any]
        #expect(header?["typ"] as? String == "at+jwt")
        struct AccessClaims: JWTPayload {
            var iss: IssuerClaim
            var sub: SubjectClaim
            var aud: AudienceClaim
            var exp: ExpirationClaim
            var client_id: String
            var scope: String
            var jti: String
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let claims = try await verifier(setup.provider.keys).verify(access, as: AccessClaims.self)
        #expect(claims.scope == "openid read:metrics")
        #expect(claims.client_id == created.client.clientID)
        #expect(claims.sub.value == "userid:2001")
        #expect(setup.provider.userInfo(accessToken: access).status == 200)
    }
}

@Suite("RS256 through the system libcrypto")
struct SystemCryptoTests {
    @Test("the system signer produces exactly the swift-crypto signature")
    func sameSignature() async throws {
        let key = try SigningKey.generate(.rs256)
        let payload = #"{"iss":"https://idp.example-tailnet.ts.net","sub":"userid:2001"}"#
        let signed = try key.sign(payload: payload)
        #expect(try key.signWithSwiftCrypto(payload: payload) == signed)
        #expect(key.verify(signed))
        if ProcessInfo.processInfo.environment["CI"] != nil {
            // CI machines are Debian with OpenSSL 3: the fast path must be the one in use there.
            #expect(key.usesSystemCrypto)
        }
    }
}

import AnyJSON
import Crypto
import CryptoExtras
import Foundation
import StateStore
import Synchronization
import Testing

@testable import OIDCProvider

/// A client's own key pair, as a relying party using `private_key_jwt` holds it.
struct ClientKeyPair: Sendable {
    enum Private: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }
    var kid: String
    var key: Private

    static func rsa(_ kid: String) throws -> ClientKeyPair {
        ClientKeyPair(kid: kid, key: .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048)))
    }

    /// The public JWK.
    var jwk: JSONValue {
        switch key {
        case .rsa(let key):
            let parameters = try! key.publicKey.getKeyPrimitives()
            return .object([
                "kty": .string("RSA"), "kid": .string(kid), "n": .string(Base64URL.encode(parameters.modulus)),
                "e": .string(Base64URL.encode(parameters.publicExponent)),
            ])
        case .p256(let key):
            let raw = key.publicKey.rawRepresentation
            return .object([
                "kty": .string("EC"), "crv": .string("P-256"), "kid": .string(kid),
                "x": .string(Base64URL.encode(raw.prefix(32))), "y": .string(Base64URL.encode(raw.suffix(32))),
            ])
        case .ed25519(let key):
            return .object([
                "kty": .string("OKP"), "crv": .string("Ed25519"), "kid": .string(kid),
                "x": .string(Base64URL.encode(key.publicKey.rawRepresentation)),
            ])
        }
    }

    static func jwks(_ pairs: [ClientKeyPair]) -> JSONValue { .object(["keys": .array(pairs.map(\.jwk))]) }

    func sign(_ claims: [String: JSONValue], alg: String? = nil, kid: String? = nil) throws -> String {
        let algorithm: String
        switch key {
        case .rsa: algorithm = alg ?? "RS256"
        case .p256: algorithm = alg ?? "ES256"
        case .ed25519: algorithm = alg ?? "EdDSA"
        }
        let header = JSONValue.object(["alg": .string(algorithm), "kid": .string(kid ?? self.kid)])
        let input =
            Base64URL.encode(try JSONEncoder().encode(header)) + "."
            + Base64URL.encode(try JSONEncoder().encode(JSONValue.object(claims)))
        let data = Data(input.utf8)
        let signature: Data
        switch key {
        case .rsa(let key):
            let padding: _RSA.Signing.Padding = algorithm.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            signature = try key.signature(for: SHA256.hash(data: data), padding: padding).rawRepresentation
        case .p256(let key): signature = try key.signature(for: data).rawRepresentation
        case .ed25519(let key): signature = try key.signature(for: data)
        }
        return input + "." + Base64URL.encode(signature)
    }
}

@Suite("private_key_jwt and client_secret_jwt client authentication (RFC 7523)")
struct ClientAssertionTests {
    static let tokenEndpoint = Fixtures.issuer + "/token"

    static func claims(
        _ clientID: String, aud: JSONValue = .string(tokenEndpoint), jti: String = UUID().uuidString,
        now: Date, lifetime: TimeInterval = 60
    ) -> [String: JSONValue] {
        [
            "iss": .string(clientID), "sub": .string(clientID), "aud": aud, "jti": .string(jti),
            "exp": .int(Int64(now.timeIntervalSince1970 + lifetime)), "iat": .int(Int64(now.timeIntervalSince1970)),
        ]
    }

    /// A provider with a `private_key_jwt` (or other) client.
    static func setup(
        method: String = "private_key_jwt", jwks: JSONValue? = nil, jwksURI: String = "", alg: String? = nil
    ) async throws -> Fixtures.Setup {
        let base = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Assertion App", redirectURIs: [Fixtures.redirect])
        registration.tokenEndpointAuthMethod = method
        registration.jwks = jwks
        registration.jwksURI = jwksURI
        registration.tokenEndpointAuthSigningAlg = alg
        let created = try await base.provider.clients.register(registration)
        return base.with(client: created.client, secret: created.secret ?? "")
    }

    /// Redeems a fresh code authenticating with `assertion` (and `extra` form fields).
    static func redeem(
        _ setup: Fixtures.Setup, assertion: String, extra: [(String, String)] = [], authorization: String? = nil
    ) async throws -> TokenResponse {
        let code = try await setup.code()
        return await setup.provider.token(
            Fixtures.query(
                [
                    ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Fixtures.redirect),
                    ("client_assertion_type", ClientAssertion.type), ("client_assertion", assertion),
                ] + extra),
            authorization: authorization)
    }

    static func error(_ response: TokenResponse) -> String? { Fixtures.json(response.body)["error"] as? String }

    @Test("RS256, PS256, ES256 and EdDSA assertions by a registered key redeem a code")
    func algorithms() async throws {
        let rsa = try ClientKeyPair.rsa("r1")
        let p256 = ClientKeyPair(kid: "e1", key: .p256(P256.Signing.PrivateKey()))
        let ed = ClientKeyPair(kid: "o1", key: .ed25519(Curve25519.Signing.PrivateKey()))
        let setup = try await Self.setup(jwks: ClientKeyPair.jwks([rsa, p256, ed]))
        let id = setup.client.clientID
        #expect(setup.secret.isEmpty)
        for (pair, alg) in [(rsa, "RS256"), (rsa, "PS256"), (p256, "ES256"), (ed, "EdDSA")] {
            let assertion = try pair.sign(Self.claims(id, now: setup.clock.now), alg: alg)
            let answer = try await Self.redeem(setup, assertion: assertion)
            #expect(answer.status == 200, "\(alg): \(String(decoding: answer.body, as: UTF8.self))")
            #expect(Fixtures.json(answer.body)["id_token"] is String)
        }
        // client_id in the form is allowed when it matches.
        let assertion = try rsa.sign(Self.claims(id, now: setup.clock.now))
        #expect(try await Self.redeem(setup, assertion: assertion, extra: [("client_id", id)]).status == 200)
    }

    @Test("a forged, replayed, misaddressed, expired or long-lived assertion is invalid_client")
    func refusals() async throws {
        let key = try ClientKeyPair.rsa("r1")
        let stranger = try ClientKeyPair.rsa("r1")
        let setup = try await Self.setup(jwks: ClientKeyPair.jwks([key]))
        let id = setup.client.clientID
        let now = setup.clock.now
        var cases: [(String, String)] = [
            ("another key with the same kid", try stranger.sign(Self.claims(id, now: now))),
            ("audience elsewhere", try key.sign(Self.claims(id, aud: .string("https://other.example.com"), now: now))),
            ("expired", try key.sign(Self.claims(id, now: now.addingTimeInterval(-600)))),
            ("valid for a day", try key.sign(Self.claims(id, now: now, lifetime: 86_400))),
            ("alg none", try key.sign(Self.claims(id, now: now), alg: "none")),
        ]
        var noJTI = Self.claims(id, now: now)
        noJTI["jti"] = nil
        cases.append(("no jti", try key.sign(noJTI)))
        var otherIssuer = Self.claims(id, now: now)
        otherIssuer["iss"] = .string("someone-else")
        cases.append(("iss is not the client", try key.sign(otherIssuer)))
        var future = Self.claims(id, now: now)
        future["nbf"] = .int(Int64(now.timeIntervalSince1970 + 3600))
        cases.append(("not valid yet", try key.sign(future)))
        // Algorithm confusion: a MAC keyed with the public key's bytes.
        let publicJWK = try JSONEncoder().encode(key.jwk)
        let header = Base64URL.encode(Data(#"{"alg":"HS256","kid":"r1"}"#.utf8))
        let body = Base64URL.encode(try JSONEncoder().encode(JSONValue.object(Self.claims(id, now: now))))
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data((header + "." + body).utf8), using: SymmetricKey(data: publicJWK))
        cases.append(("HS256 under the public key", header + "." + body + "." + Base64URL.encode(Data(mac))))
        for (name, assertion) in cases {
            let answer = try await Self.redeem(setup, assertion: assertion)
            #expect(answer.status == 401, "\(name)")
            #expect(Self.error(answer) == "invalid_client", "\(name)")
            #expect(!String(decoding: answer.body, as: UTF8.self).contains(assertion), "\(name) echoed")
        }
        let once = try key.sign(Self.claims(id, jti: "only-once", now: now))
        #expect(try await Self.redeem(setup, assertion: once).status == 200)
        let replay = try await Self.redeem(setup, assertion: once)
        #expect(replay.status == 401 && Self.error(replay) == "invalid_client")
    }

    @Test("the issuer, the token endpoint and the endpoint called are all accepted audiences")
    func audiences() async throws {
        let key = try ClientKeyPair.rsa("r1")
        let setup = try await Self.setup(jwks: ClientKeyPair.jwks([key]))
        let id = setup.client.clientID
        for aud: JSONValue in [
            .string(Fixtures.issuer), .array([.string("https://x.example.com"), .string(Self.tokenEndpoint)]),
        ] {
            let assertion = try key.sign(Self.claims(id, aud: aud, now: setup.clock.now))
            #expect(try await Self.redeem(setup, assertion: assertion).status == 200)
        }
        // Introspection of the client's own token with an assertion addressed to /introspect.
        let answer = try await Self.redeem(setup, assertion: try key.sign(Self.claims(id, now: setup.clock.now)))
        let access = try #require(Fixtures.json(answer.body)["access_token"] as? String)
        let assertion = try key.sign(
            Self.claims(id, aud: .string(Fixtures.issuer + "/introspect"), now: setup.clock.now))
        let info = await setup.provider.introspect(
            Fixtures.query([
                ("token", access), ("client_assertion_type", ClientAssertion.type), ("client_assertion", assertion),
            ]), authorization: nil)
        #expect(Fixtures.json(info.body)["active"] as? Bool == true)
    }

    @Test("each client uses the method it registered: no secret for a key client, no assertion for a secret client")
    func methodsAreKept() async throws {
        let key = try ClientKeyPair.rsa("r1")
        let setup = try await Self.setup(jwks: ClientKeyPair.jwks([key]))
        let basic = await setup.provider.token(
            Fixtures.query([("grant_type", "authorization_code"), ("code", try await setup.code())]),
            authorization: Fixtures.basic(setup.client.clientID, "guess"))
        #expect(basic.status == 401)
        let secretClient = try await Fixtures.provider()
        let assertion = try key.sign(Self.claims(secretClient.client.clientID, now: secretClient.clock.now))
        let refused = try await Self.redeem(secretClient, assertion: assertion)
        #expect(refused.status == 401 && Self.error(refused) == "invalid_client")
        // Two methods at once.
        let both = try await Self.redeem(
            setup, assertion: try key.sign(Self.claims(setup.client.clientID, now: setup.clock.now)),
            authorization: Fixtures.basic(setup.client.clientID, "x"))
        #expect(both.status == 400 && Self.error(both) == "invalid_request")
        // A registered signing algorithm is the only one accepted.
        let only = try await Self.setup(jwks: ClientKeyPair.jwks([key]), alg: "PS256")
        let rs = try key.sign(Self.claims(only.client.clientID, now: only.clock.now), alg: "RS256")
        #expect(try await Self.redeem(only, assertion: rs).status == 401)
        let ps = try key.sign(Self.claims(only.client.clientID, now: only.clock.now), alg: "PS256")
        #expect(try await Self.redeem(only, assertion: ps).status == 200)
    }

    static func macAssertion(_ claims: [String: JSONValue], secret: String, alg: String = "HS256") throws -> String {
        let header = Base64URL.encode(Data(#"{"alg":"\#(alg)"}"#.utf8))
        let input = header + "." + Base64URL.encode(try JSONEncoder().encode(JSONValue.object(claims)))
        let key = SymmetricKey(data: Data(secret.utf8))
        let mac: Data
        switch alg {
        case "HS512": mac = Data(HMAC<SHA512>.authenticationCode(for: Data(input.utf8), using: key))
        default: mac = Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: key))
        }
        return input + "." + Base64URL.encode(mac)
    }

    @Test("client_secret_jwt: a MAC under the issued secret authenticates; the secret is stored for this method only")
    func clientSecretJWT() async throws {
        let setup = try await Self.setup(method: "client_secret_jwt")
        let id = setup.client.clientID
        #expect(!setup.secret.isEmpty)
        for alg in ["HS256", "HS512"] {
            let assertion = try Self.macAssertion(Self.claims(id, now: setup.clock.now), secret: setup.secret, alg: alg)
            #expect(try await Self.redeem(setup, assertion: assertion).status == 200, "\(alg)")
        }
        let wrong = try Self.macAssertion(Self.claims(id, now: setup.clock.now), secret: "not-the-secret")
        #expect(try await Self.redeem(setup, assertion: wrong).status == 401)
        let stored = String(decoding: try JSONEncoder().encode(setup.client), as: UTF8.self)
        #expect(stored.contains(setup.secret))
        let basicClient = String(
            decoding: try JSONEncoder().encode(try await Fixtures.provider().client), as: UTF8.self)
        #expect(basicClient.contains(#""client_secret":"""#))
        // A regenerated secret is the new MAC key; the old one stops working.
        let (_, fresh) = try await setup.provider.clients.regenerateSecret(id)
        let old = try Self.macAssertion(Self.claims(id, now: setup.clock.now), secret: setup.secret)
        #expect(try await Self.redeem(setup, assertion: old).status == 401)
        let new = try Self.macAssertion(Self.claims(id, now: setup.clock.now), secret: fresh)
        #expect(try await Self.redeem(setup, assertion: new).status == 200)
    }

    @Test("jwks_uri: fetched on first use, and again when the client signs with a key it just added")
    func jwksURI() async throws {
        let first = try ClientKeyPair.rsa("k1")
        let second = try ClientKeyPair.rsa("k2")
        let published = Mutex<[ClientKeyPair]>([first])
        let fetches = Mutex(0)
        let setup = try await Self.setup(jwksURI: "https://app.example.com/jwks.json")
        await setup.provider.clients.setDocumentFetcher { url in
            #expect(url == "https://app.example.com/jwks.json")
            fetches.withLock { $0 += 1 }
            return Array(try JSONEncoder().encode(ClientKeyPair.jwks(published.withLock { $0 })))
        }
        let id = setup.client.clientID
        #expect(
            try await Self.redeem(setup, assertion: try first.sign(Self.claims(id, now: setup.clock.now))).status == 200
        )
        #expect(
            try await Self.redeem(setup, assertion: try first.sign(Self.claims(id, now: setup.clock.now))).status == 200
        )
        #expect(fetches.withLock { $0 } == 1)
        // The client rotates: publishes k2 and signs with it.
        published.withLock { $0 = [first, second] }
        setup.clock.advance(ClientKeySetCache.minimumInterval + 1)
        #expect(
            try await Self.redeem(setup, assertion: try second.sign(Self.claims(id, now: setup.clock.now))).status
                == 200)
        #expect(fetches.withLock { $0 } == 2)
        // An unknown kid soon after a fetch does not make tsidp fetch again.
        let stranger = try ClientKeyPair.rsa("k3")
        #expect(
            try await Self.redeem(setup, assertion: try stranger.sign(Self.claims(id, now: setup.clock.now))).status
                == 401)
        #expect(fetches.withLock { $0 } == 2)
    }

    @Test("a jwks_uri that cannot be read is invalid_client, nothing is issued, and it is not fetched again at once")
    func jwksURIUnreachable() async throws {
        let setup = try await Self.setup(jwksURI: "https://app.example.com/jwks.json")
        let fetches = Mutex(0)
        await setup.provider.clients.setDocumentFetcher { _ in
            fetches.withLock { $0 += 1 }
            throw OAuthError(.serverError, "down")
        }
        let key = try ClientKeyPair.rsa("k1")
        for _ in 0..<3 {
            let answer = try await Self.redeem(
                setup, assertion: try key.sign(Self.claims(setup.client.clientID, now: setup.clock.now)))
            #expect(answer.status == 401 && Self.error(answer) == "invalid_client")
        }
        #expect(fetches.withLock { $0 } == 1)
        setup.clock.advance(ClientKeySetCache.minimumInterval + 1)
        for _ in 0..<2 {
            _ = try await Self.redeem(
                setup, assertion: try key.sign(Self.claims(setup.client.clientID, now: setup.clock.now)))
        }
        #expect(fetches.withLock { $0 } == 2)
    }

    @Test("registration: private_key_jwt needs usable public keys; private keys and both sources are refused")
    func registrationRules() async throws {
        let rsa = try ClientKeyPair.rsa("r1")
        guard case .rsa(let privateKey) = rsa.key else { return }
        var withPrivate = rsa.jwk.objectValue ?? [:]
        withPrivate["d"] = .string(Base64URL.encode(privateKey.derRepresentation))
        let bad: [(JSONValue?, String, String?)] = [
            (nil, "", nil),
            (.object(["keys": .array([])]), "", nil),
            (.object(["keys": .array([.object(withPrivate)])]), "", nil),
            (.string("not a key set"), "", nil),
            (ClientKeyPair.jwks([rsa]), "https://app.example.com/jwks.json", nil),
            (nil, "http://app.example.com/jwks.json", nil),
            (ClientKeyPair.jwks([rsa]), "", "HS256"),
        ]
        for (jwks, uri, alg) in bad {
            do {
                _ = try await Self.setup(jwks: jwks, jwksURI: uri, alg: alg)
                Issue.record("registered: \(String(describing: jwks)) \(uri) \(String(describing: alg))")
            } catch let error as OAuthError {
                #expect(error.code == .invalidClientMetadata)
            }
        }
    }

    @Test("discovery lists both methods and their algorithms at every endpoint that authenticates clients")
    func discovery() async throws {
        let setup = try await Fixtures.provider()
        let document = Fixtures.json(setup.provider.discoveryDocument(includeRegistration: true))
        for endpoint in ["token", "revocation", "introspection"] {
            let methods = try #require(document["\(endpoint)_endpoint_auth_methods_supported"] as? [String])
            #expect(methods.contains("private_key_jwt") && methods.contains("client_secret_jwt"))
            let algs = try #require(document["\(endpoint)_endpoint_auth_signing_alg_values_supported"] as? [String])
            #expect(algs.contains("RS256") && algs.contains("HS256") && !algs.contains("none"))
        }
    }
}

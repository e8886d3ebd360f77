import AnyJSON
import Foundation
import OIDCProvider
import StateStore
import Testing

@Suite("Token exchange (RFC 8693)")
struct TokenExchangeTests {
    static let rules: [JSONValue] = [
        .object([
            "users": .array([.string("alice@example.com")]), "resources": .array([.string("https://api.example.com")]),
        ])
    ]

    struct Rig {
        let setup: Fixtures.Setup
        let gateway: (id: String, secret: String)
        let subjectToken: String
    }

    /// A provider with STS on; alice logs in at the gateway client and gets a subject token.
    func rig(enabled: Bool = true) async throws -> Rig {
        let store = MemoryStateStore()
        let clock = TestClock()
        var settings = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        settings.enableTokenExchange = enabled
        let provider = Provider(
            configuration: settings, keys: try await KeyRing.load(from: StateWriter(store: store)),
            clients: try await ClientRegistry.load(from: StateWriter(store: store)),
            now: { clock.now })
        let created = try await provider.clients.register(.init(name: "Gateway", redirectURIs: [Fixtures.redirect]))
        let setup = Fixtures.Setup(
            provider: provider, clock: clock, store: store, client: created.client, secret: created.secret!)
        let body = Fixtures.json(
            await setup.redeem(try await setup.code(identity: Fixtures.alice(rules: Self.rules))).body)
        return Rig(
            setup: setup, gateway: (created.client.clientID, created.secret!),
            subjectToken: try #require(body["access_token"] as? String))
    }

    func exchange(_ rig: Rig, _ extra: [(String, String)], as client: (id: String, secret: String)? = nil) async
        -> TokenResponse
    {
        let who = client ?? rig.gateway
        return await rig.setup.provider.token(
            Fixtures.query(
                [
                    ("grant_type", TokenType.grantType), ("subject_token", rig.subjectToken),
                    ("subject_token_type", TokenType.accessToken),
                ] + extra), authorization: Fixtures.basic(who.id, who.secret))
    }

    @Test("a granted audience yields a new access token; introspection shows the audience")
    func exchanges() async throws {
        let rig = try await rig()
        let answer = await exchange(rig, [("audience", "https://api.example.com")])
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        #expect(body["issued_token_type"] as? String == TokenType.accessToken)
        #expect(body["token_type"] as? String == "Bearer")
        #expect(body["refresh_token"] == nil)
        #expect(body["id_token"] == nil)
        let token = try #require(body["access_token"] as? String)
        let introspected = Fixtures.json(
            await rig.setup.provider.introspect(
                Fixtures.query([("token", token)]), authorization: Fixtures.basic(rig.gateway.id, rig.gateway.secret)
            ).body)
        #expect(introspected["active"] as? Bool == true)
        #expect(introspected["aud"] as? String == "https://api.example.com")
        #expect(introspected["sub"] as? String == "userid:2001")
    }

    @Test("the issuing client exchanges its own resource-bound token; a resource server of it may not")
    func resourceBoundSubject() async throws {
        let plain = try await rig()
        let setup = plain.setup
        let extra = [("resource", "https://api.example.com")]
        let code = try await setup.code(identity: Fixtures.alice(rules: Self.rules), extra: extra)
        let body = Fixtures.json(await setup.redeem(code, extra: extra).body)
        let bound = Rig(
            setup: setup, gateway: plain.gateway, subjectToken: try #require(body["access_token"] as? String))
        #expect(await exchange(bound, [("audience", "https://api.example.com")]).status == 200)
        var registration = ClientRegistry.Registration(name: "API", redirectURIs: [Fixtures.redirect])
        registration.resources = ["https://api.example.com"]
        let api = try await setup.provider.clients.register(registration)
        let refused = await exchange(
            bound, [("audience", "https://api.example.com")], as: (api.client.clientID, try #require(api.secret)))
        #expect(Fixtures.json(refused.body)["error"] as? String == "invalid_grant")
    }

    @Test("ungranted audiences, foreign clients, bad tokens and disabled STS are refused")
    func refusals() async throws {
        let rig = try await rig()
        #expect(
            Fixtures.json(await exchange(rig, [("audience", "https://other.example.com")]).body)["error"] as? String
                == "invalid_target")
        #expect(Fixtures.json(await exchange(rig, []).body)["error"] as? String == "invalid_request")
        let stranger = try await rig.setup.provider.clients.register(
            .init(name: "Stranger", redirectURIs: [Fixtures.redirect]))
        let foreign = await exchange(
            rig, [("audience", "https://api.example.com")], as: (stranger.client.clientID, stranger.secret!))
        #expect(Fixtures.json(foreign.body)["error"] as? String == "invalid_grant")
        #expect(
            Fixtures.json(
                await exchange(rig, [("audience", "https://api.example.com"), ("scope", "openid groups")]).body)[
                    "error"] as? String == "invalid_scope")
        let wrongType = await rig.setup.provider.token(
            Fixtures.query([
                ("grant_type", TokenType.grantType), ("subject_token", rig.subjectToken),
                ("subject_token_type", "urn:x"), ("audience", "https://api.example.com"),
            ]),
            authorization: Fixtures.basic(rig.gateway.id, rig.gateway.secret))
        #expect(Fixtures.json(wrongType.body)["error"] as? String == "invalid_request")
        rig.setup.clock.advance(301)
        #expect(
            Fixtures.json(await exchange(rig, [("audience", "https://api.example.com")]).body)["error"] as? String
                == "invalid_grant")

        let off = try await self.rig(enabled: false)
        #expect(
            Fixtures.json(await exchange(off, [("audience", "https://api.example.com")]).body)["error"] as? String
                == "unsupported_grant_type")
    }

    @Test("an actor token adds a nested act claim")
    func actor() async throws {
        let rig = try await rig()
        let first = try #require(
            Fixtures.json(await exchange(rig, [("audience", "https://api.example.com")]).body)["access_token"]
                as? String)
        let body = Fixtures.json(
            await exchange(
                rig,
                [
                    ("audience", "https://api.example.com"), ("actor_token", first),
                    ("actor_token_type", TokenType.accessToken),
                ]
            ).body)
        let token = try #require(body["access_token"] as? String)
        let introspected = Fixtures.json(
            await rig.setup.provider.introspect(
                Fixtures.query([("token", token)]), authorization: Fixtures.basic(rig.gateway.id, rig.gateway.secret)
            ).body)
        let act = try #require(introspected["act"] as? [String: Any])
        #expect(act["sub"] as? String == "userid:2001")
        #expect(act["client_id"] as? String == rig.gateway.id)
        #expect(
            Fixtures.json(
                await exchange(
                    rig,
                    [
                        ("audience", "https://api.example.com"), ("actor_token", "bogus"),
                        ("actor_token_type", TokenType.accessToken),
                    ]
                ).body)["error"] as? String == "invalid_request")
    }

    @Test("an actor chain is bounded: the ninth nested delegation is refused")
    func actorChainDepth() async throws {
        let rig = try await rig()
        var actor = try #require(
            Fixtures.json(await exchange(rig, [("audience", "https://api.example.com")]).body)["access_token"]
                as? String)
        for _ in 0..<ActorClaim.maximumDepth {
            let body = Fixtures.json(
                await exchange(
                    rig,
                    [
                        ("audience", "https://api.example.com"), ("actor_token", actor),
                        ("actor_token_type", TokenType.accessToken),
                    ]
                ).body)
            actor = try #require(body["access_token"] as? String, "\(body)")
        }
        let refused = Fixtures.json(
            await exchange(
                rig,
                [
                    ("audience", "https://api.example.com"), ("actor_token", actor),
                    ("actor_token_type", TokenType.accessToken),
                ]
            ).body)
        #expect(refused["error"] as? String == "invalid_request")
    }
}

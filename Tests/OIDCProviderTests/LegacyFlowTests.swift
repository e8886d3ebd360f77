import Foundation
import OIDCProvider
import StateStore
import Testing

@Suite("Legacy flow (--allow-insecure-registration)")
struct LegacyFlowTests {
    static let rpNode: Int64 = 4242

    func provider(enabled: Bool) async throws -> Provider {
        let store = MemoryStateStore()
        var settings = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        settings.allowInsecureRegistration = enabled
        return Provider(
            configuration: settings, keys: try await KeyRing.load(from: StateWriter(store: store)),
            clients: try await ClientRegistry.load(from: StateWriter(store: store)))
    }

    func authorize(_ provider: Provider, node: Int64? = rpNode, clientID: String = "unused") async -> AuthorizeResult {
        await provider.authorize(
            Fixtures.query([
                ("client_id", clientID), ("redirect_uri", "https://pve.example.com:8006"), ("response_type", "code"),
                ("scope", "openid email"), ("state", "s"),
            ]), legacyNodeID: node
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() }
    }

    func redeem(_ provider: Provider, _ code: String, from node: Int64?) async -> TokenResponse {
        await provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", "https://pve.example.com:8006"),
                ("client_id", "unused"), ("client_secret", "anything"),
            ]), authorization: nil, callerNodeID: { node })
    }

    @Test("any client_id works, and only the relying party's node can redeem the code")
    func flow() async throws {
        let provider = try await provider(enabled: true)
        let code = try #require(Fixtures.redirectParameters(await authorize(provider))["code"])
        let stolen = await redeem(provider, code, from: 1001)
        #expect(stolen.status == 401)
        #expect(Fixtures.json(stolen.body)["error"] as? String == "invalid_client")
        let answer = await redeem(provider, code, from: Self.rpNode)
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        let access = try #require(body["access_token"] as? String)
        #expect(provider.userInfo(accessToken: access).status == 200)
        let refresh = try #require(body["refresh_token"] as? String)
        let refreshed = await provider.token(
            Fixtures.query([("grant_type", "refresh_token"), ("refresh_token", refresh)]), authorization: nil,
            callerNodeID: { Self.rpNode })
        #expect(refreshed.status == 200)
        let discovery = Fixtures.json(provider.discoveryDocument(includeRegistration: true, legacyNodeID: Self.rpNode))
        #expect(discovery["authorization_endpoint"] as? String == Fixtures.issuer + "/authorize/4242")
    }

    @Test("with the flag off, the legacy link and unregistered client IDs end on an explanation")
    func disabled() async throws {
        let provider = try await provider(enabled: false)
        guard case .errorPage(let legacy) = await authorize(provider) else {
            Issue.record("legacy link must not work without the flag")
            return
        }
        #expect(legacy.message.contains("legacy flow"))
        guard case .errorPage(let unknown) = await authorize(provider, node: nil) else {
            Issue.record("unknown client must be an error page")
            return
        }
        #expect(unknown.code == .invalidClient)
        let discovery = Fixtures.json(provider.discoveryDocument(includeRegistration: true, legacyNodeID: Self.rpNode))
        #expect(discovery["authorization_endpoint"] as? String == Fixtures.issuer + "/authorize")
    }
}

@Suite("Legacy flow boundaries")
struct LegacyBoundaryTests {
    @Test("a registered client's ID cannot be borrowed by the legacy flow")
    func registeredIDRefused() async throws {
        let store = MemoryStateStore()
        var settings = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp")
        settings.allowInsecureRegistration = true
        let provider = Provider(
            configuration: settings, keys: try await KeyRing.load(from: StateWriter(store: store)),
            clients: try await ClientRegistry.load(from: StateWriter(store: store)))
        let registered = try await provider.clients.register(.init(name: "Grafana", redirectURIs: [Fixtures.redirect]))
        let result = await provider.authorize(
            Fixtures.query([
                ("client_id", registered.client.clientID), ("redirect_uri", "https://evil.example.com/cb"),
                ("response_type", "code"),
            ]), legacyNodeID: 7
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() }
        guard case .errorPage = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
    }

    @Test("legacy grants end when the legacy flow is turned off")
    func turnedOff() async throws {
        let store = MemoryStateStore()
        let keys = try await KeyRing.load(from: StateWriter(store: store))
        let clients = try await ClientRegistry.load(from: StateWriter(store: store))
        var on = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp")
        on.allowInsecureRegistration = true
        let first = Provider(configuration: on, keys: keys, clients: clients, writer: StateWriter(store: store))
        let code = try #require(
            Fixtures.redirectParameters(
                await first.authorize(
                    Fixtures.query([
                        ("client_id", "unused"), ("redirect_uri", "https://pve.example.com"), ("response_type", "code"),
                        ("scope", "openid"),
                    ]),
                    legacyNodeID: 7
                ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() })["code"])
        let token = await first.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", "https://pve.example.com"),
            ]),
            authorization: nil, callerNodeID: { 7 })
        let access = try #require(Fixtures.json(token.body)["access_token"] as? String)
        let off = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp"), keys: keys, clients: clients,
            writer: StateWriter(store: store))
        try await off.restoreGrants()
        #expect(off.userInfo(accessToken: access).status == 401)
    }
}

import AnyJSON
import Foundation
import Logging
import OIDCProvider
import StateStore
import Synchronization

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let value = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { value.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

enum Fixtures {
    static let issuer = "https://idp.example-tailnet.ts.net"
    static let redirect = "https://app.example.com/callback"

    static func alice(rules: [JSONValue] = []) -> UserIdentity {
        UserIdentity(
            userID: 2001, loginName: "alice@example.com", displayName: "Alice Example",
            profilePicURL: "https://pics.example.com/alice.png", groups: ["group:eng"], nodeID: 1001,
            nodeStableID: "nA", nodeName: "alice-laptop.example-tailnet.ts.net.", nodeKey: "nodekey:aa",
            addresses: ["100.64.0.1/32"], capabilityValues: rules)
    }

    static let bob = UserIdentity(
        userID: 2002, loginName: "bob@example.com", displayName: "Bob Example", nodeID: 1002,
        nodeName: "bob-desktop.example-tailnet.ts.net.", addresses: ["100.64.0.2/32"])

    struct Setup {
        let provider: Provider
        let clock: TestClock
        let store: MemoryStateStore
        let client: Client
        let secret: String
    }

    static func provider(
        redirectURIs: [String] = [redirect], authMethod: String = "client_secret_basic", scope: String = "",
        logger: Logger = Logger(label: "tsidp.oidc")
    ) async throws -> Setup {
        let store = MemoryStateStore()
        let clock = TestClock()
        let keys = try await KeyRing.load(from: StateWriter(store: store))
        let clients = try await ClientRegistry.load(from: StateWriter(store: store))
        var registration = ClientRegistry.Registration(name: "Example App", redirectURIs: redirectURIs)
        registration.tokenEndpointAuthMethod = authMethod
        registration.scope = scope
        let created = try await clients.register(registration)
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: issuer, idpHost: "idp.example-tailnet.ts.net"), keys: keys,
            clients: clients, logger: logger, now: { clock.now })
        return Setup(
            provider: provider, clock: clock, store: store, client: created.client, secret: created.secret ?? "")
    }

    static func query(_ pairs: [(String, String)]) -> OAuthParameters {
        OAuthParameters(pairs)
    }

    /// Parameters of a redirect's query.
    static func redirectParameters(_ result: AuthorizeResult) -> [String: String] {
        guard case .redirect(let location) = result, let components = URLComponents(string: location) else {
            return [:]
        }
        var out: [String: String] = [:]
        for item in components.queryItems ?? [] { out[item.name] = item.value ?? "" }
        return out
    }

    static func basic(_ id: String, _ secret: String) -> String {
        "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
    }

    static func json(_ bytes: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }
}

extension Fixtures.Setup {
    /// The same clock, store and client, served by `provider` (a restarted one, say).
    func with(provider: Provider) -> Fixtures.Setup {
        Fixtures.Setup(provider: provider, clock: clock, store: store, client: client, secret: secret)
    }

    /// The same provider, acting as another registered client.
    func with(client: Client, secret: String) -> Fixtures.Setup {
        Fixtures.Setup(provider: provider, clock: clock, store: store, client: client, secret: secret)
    }

    /// Runs `/authorize` as `identity` and returns the code.
    func code(
        identity: UserIdentity = Fixtures.alice(), scope: String = "openid email profile",
        extra: [(String, String)] = []
    ) async throws -> String {
        let result = await provider.authorize(
            Fixtures.query(
                [
                    ("client_id", client.clientID), ("redirect_uri", client.redirectURIs[0]), ("response_type", "code"),
                    ("scope", scope), ("state", "s1"), ("nonce", "n1"),
                ] + extra)
        ) { () async throws(IdentityFailure) -> UserIdentity in identity }
        let parameters = Fixtures.redirectParameters(result)
        guard let code = parameters["code"] else {
            throw TestFailure("no code in \(result)")
        }
        return code
    }

    func redeem(_ code: String, extra: [(String, String)] = []) async -> TokenResponse {
        await provider.token(
            Fixtures.query(
                [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", client.redirectURIs[0])] + extra
            ),
            authorization: Fixtures.basic(client.clientID, secret))
    }

    func refresh(_ token: String) async -> TokenResponse {
        await provider.token(
            Fixtures.query([("grant_type", "refresh_token"), ("refresh_token", token)]),
            authorization: Fixtures.basic(client.clientID, secret))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

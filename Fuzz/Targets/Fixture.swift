import Foundation
import IDPServer
import OIDCProvider
import StateStore
import Synchronization
import Tailnet

/// The invented names, clients and people the targets share.
enum Fixture {
    static let issuer = "https://idp.example-tailnet.ts.net"
    static let idpHost = "idp.example-tailnet.ts.net"
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static let appRedirect = "https://app.example.com/callback"
    static let spaRedirect = "http://localhost:3000/callback"
    static let jwtRedirect = "https://notes.example.com/oidc/callback"
    /// The PKCE verifier of the public client's codes.
    static let verifier = "fuzz-verifier-alice-0123456789-abcdefghijklmnopqrstuv"

    /// Client files in the form tsidp stores them (plaintext secrets, as a Go tsidp file may hold).
    static let clientFiles: [String: Data] = [
        "tsidp-client-app.json": Data(
            """
            {"client_id": "app", "client_secret": "app-secret", "client_name": "Example App",
             "redirect_uris": ["\(appRedirect)"], "scope": "openid email profile notes.read",
             "created_at": "2026-01-02T03:04:05Z"}
            """.utf8),
        "tsidp-client-spa.json": Data(
            """
            {"client_id": "spa", "client_name": "Example SPA", "redirect_uris": ["\(spaRedirect)"],
             "token_endpoint_auth_method": "none", "created_at": "2026-01-02T03:04:05Z"}
            """.utf8),
        "tsidp-client-notes.json": Data(
            """
            {"client_id": "notes", "client_secret": "notes-secret", "client_name": "Example Notes",
             "redirect_uris": ["\(jwtRedirect)"], "id_token_signed_response_alg": "ES256",
             "access_token_format": "jwt", "dynamically_registered": true, "created_at": "2026-01-02T03:04:05Z"}
            """.utf8),
    ]

    /// WhoIs answers as tailscaled gives them.
    static let aliceWhoIs = Data(
        """
        {"Node": {"ID": 1001, "StableID": "nALICE1", "Name": "alice-laptop.example-tailnet.ts.net.", "User": 2001,
                  "Key": "nodekey:a1a1", "Addresses": ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"]},
         "UserProfile": {"ID": 2001, "LoginName": "alice@example.com", "DisplayName": "Alice Example",
                         "ProfilePicURL": "https://pics.example.com/alice.png", "Groups": ["group:eng"]},
         "CapMap": {"tailscale.com/cap/tsidp": [
            {"allow_admin_ui": true, "allow_dcr": true},
            {"users": ["alice@example.com"], "resources": ["https://api.example.com", "notes"],
             "extraClaims": {"department": "engineering", "roles": ["reader"]}, "includeInUserInfo": true}]}}
        """.utf8)
    static let bobWhoIs = Data(
        """
        {"Node": {"ID": 1002, "StableID": "nBOB1", "Name": "bob-desktop.example-tailnet.ts.net.", "User": 2002,
                  "Addresses": ["100.64.0.2/32"]},
         "UserProfile": {"ID": 2002, "LoginName": "bob@example.com", "DisplayName": "Bob Example"},
         "CapMap": {"tailscale.com/cap/tsidp": [{"users": ["*"], "resources": ["*"]}]}}
        """.utf8)

    /// Turns WhoIs answers into identities the way the server does.
    static let caller = CallerIdentity(
        localAPI: LocalAPIClient(socketPath: "/nonexistent/tailscaled.sock"),
        capabilityName: DevIdentities.tsidpCapability)

    static func identity(_ whois: Data) -> UserIdentity {
        guard let answer = try? JSONDecoder().decode(WhoIsResponse.self, from: whois) else {
            fatalError("a fixture WhoIs answer does not decode")
        }
        return caller.convert(answer)
    }

    static func basic(_ id: String, _ secret: String) -> String {
        "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
    }

    /// S256 code challenge of ``verifier``.
    static var challenge: String { PKCE.s256Challenge(of: verifier) }
}

/// A clock the targets move by hand.
final class FuzzClock: Sendable {
    private let value = Mutex(Fixture.start)
    var now: Date { value.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// What every input of a target can share because nothing changes it: the signing keys (made
/// once; generating RSA keys per input would dominate the run time), the registered clients and
/// the identities.
final class Shared: Sendable {
    let keys: KeyRing
    let clients: ClientRegistry
    let alice: UserIdentity
    let bob: UserIdentity
    /// An ID token for client `app` about alice, to use as `id_token_hint`.
    let idToken: String

    private init(keys: KeyRing, clients: ClientRegistry, idToken: String) {
        self.keys = keys
        self.clients = clients
        self.alice = Fixture.identity(Fixture.aliceWhoIs)
        self.bob = Fixture.identity(Fixture.bobWhoIs)
        self.idToken = idToken
    }

    static let instance: Shared = runBlocking {
        do {
            let keys = try await KeyRing.load(from: StateWriter(store: MemoryStateStore()))
            let clients = try await ClientRegistry.load(from: StateWriter(store: MemoryStateStore(Fixture.clientFiles)))
            let provisional = Shared(keys: keys, clients: clients, idToken: "")
            let provider = provisional.provider()
            let tokens = try await Tokens.issue(on: provider, shared: provisional)
            return Shared(keys: keys, clients: clients, idToken: tokens.idToken)
        } catch {
            fatalError("the fuzz fixtures cannot be set up: \(error)")
        }
    }

    /// A fresh provider over the shared keys and clients: each input starts from empty grant
    /// state, so a crash reproduces from its input alone.
    func provider(
        clock: FuzzClock = FuzzClock(), writer: StateWriter? = nil, clients: ClientRegistry? = nil,
        legacyFlow: Bool = true, journalEntries: Int? = nil,
        reidentify: (@Sendable (UserIdentity) async throws(IdentityFailure) -> UserIdentity)? = nil
    ) -> Provider {
        var configuration = ProviderConfiguration(issuer: Fixture.issuer, idpHost: Fixture.idpHost)
        configuration.enableTokenExchange = true
        configuration.allowInsecureRegistration = legacyFlow
        if let journalEntries { configuration.grantJournalMaximumEntries = journalEntries }
        return Provider(
            configuration: configuration, keys: keys, clients: clients ?? self.clients, writer: writer,
            reidentify: reidentify, now: { clock.now })
    }
}

import AnyJSON
import Foundation
import Logging
import StateStore

/// Settings of the OIDC provider that do not change while it runs.
public struct ProviderConfiguration: Sendable {
    /// The issuer URL, without trailing slash; every endpoint URL is derived from it.
    public var issuer: String
    /// The provider's own host name, used for "realish" email addresses.
    public var idpHost: String
    public var codeLifetime: TimeInterval = 300
    public var accessTokenLifetime: TimeInterval = 300
    public var idTokenLifetime: TimeInterval = 300
    public var refreshTokenLifetime: TimeInterval = 30 * 24 * 3600
    /// Whether RFC 8693 token exchange is offered (`--enable-sts`).
    public var enableTokenExchange = false
    /// The Go tsidp's legacy flow (`--allow-insecure-registration`): relying parties identified by
    /// their tailnet node instead of registered credentials.
    public var allowInsecureRegistration = false

    public init(issuer: String, idpHost: String) {
        var trimmed = issuer
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.issuer = trimmed
        self.idpHost = idpHost
    }
}

/// Why the caller of `/authorize` could not be identified.
public enum IdentityFailure: Error, Sendable, Equatable {
    /// The network layer does not know the caller (no tailnet peer behind the address).
    case unknownDevice(String)
    /// The identity service could not be asked (tailscaled down, timeout).
    case unavailable(String)
}

/// The OpenID Connect provider: authorization, token, userinfo and discovery logic, with no
/// knowledge of sockets, files or Tailscale.
public final class Provider: Sendable {
    public let configuration: ProviderConfiguration
    public let keys: KeyRing
    public let clients: ClientRegistry
    let grants = GrantStore()
    let sessions = SessionTracker()
    let malformedGrants = MalformedGrantLog()
    let now: @Sendable () -> Date
    let logger: Logger
    let discovery: Discovery
    let persistence: GrantPersistence?
    let store: (any StateStore)?
    /// Asks the tailnet again who a grant's device belongs to (on every refresh).
    let reidentify: (@Sendable (UserIdentity) async throws(IdentityFailure) -> UserIdentity)?

    /// - Parameters:
    ///   - grantStore: where refresh families and access tokens are kept across restarts; `nil`
    ///     keeps them in memory only.
    ///   - reidentify: called on every refresh with the grant's identity; returns the identity the
    ///     tailnet reports for that device now. `nil` reuses the identity captured at login.
    public init(
        configuration: ProviderConfiguration, keys: KeyRing, clients: ClientRegistry,
        grantStore: (any StateStore)? = nil,
        reidentify: (@Sendable (UserIdentity) async throws(IdentityFailure) -> UserIdentity)? = nil,
        logger: Logger = Logger(label: "tsidp.oidc"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.keys = keys
        self.clients = clients
        self.logger = logger
        self.now = now
        self.discovery = Discovery(issuer: configuration.issuer, tokenExchange: configuration.enableTokenExchange)
        self.store = grantStore
        self.reidentify = reidentify
        let grants = self.grants
        self.persistence = grantStore.map { GrantPersistence(store: $0, grants: grants) }
    }

    /// Loads the grant state written by an earlier run; expired entries are dropped.
    ///
    /// - Important: A damaged grant file stops start-up (it is left untouched); delete it to start
    ///   with no sessions.
    public func restoreGrants() async throws {
        guard let store else { return }
        var buckets: [Data] = []
        var logs: [Data] = []
        var logKeys: [String] = []
        for key in try await store.keys().sorted() {
            if GrantStore.isLogKey(key) {
                guard let data = try await store.read(key), !data.isEmpty else { continue }
                logs.append(data)
                logKeys.append(key)
            } else if GrantStore.isStateKey(key) {
                guard let data = try await store.read(key), !data.isEmpty else { continue }
                buckets.append(data)
            }
        }
        await persistence?.resume(journal: logKeys)
        do {
            try grants.restore(buckets, logs: logs, now: now())
            if !configuration.allowInsecureRegistration, grants.revokeNodeBoundFamilies() {
                try await persist()
            }
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw KeyFileError(
                "the grant state (tsidp-grants-*.json) in \(store.description) is damaged; remove those files to start without sessions"
            )
        }
    }

    /// Makes the in-memory grant state durable; concurrent callers share one write.
    func persist() async throws {
        guard let persistence else { return }
        do {
            try await persistence.commit()
        } catch {
            logger.error("cannot write grant state", metadata: ["error": "\(error)"])
            throw OAuthError(.temporarilyUnavailable, "the grant could not be stored; try again", status: 503)
        }
    }

    /// How many grant-state writes have been made (for tests of write batching).
    public var grantWrites: Int {
        get async { await persistence?.writes ?? 0 }
    }

    /// `/.well-known/openid-configuration` (and the RFC 8414 document), serialized once.
    ///
    /// With the legacy flow on, a caller on the tailnet gets an authorization endpoint naming its
    /// own node (`/authorize/<node ID>`), as the Go tsidp's legacy mode did.
    public func discoveryDocument(includeRegistration: Bool, legacyNodeID: Int64? = nil) -> [UInt8] {
        if configuration.allowInsecureRegistration, let legacyNodeID {
            return Discovery.build(
                issuer: configuration.issuer, registration: includeRegistration,
                tokenExchange: configuration.enableTokenExchange,
                authorizationEndpoint: configuration.issuer + "/authorize/\(legacyNodeID)")
        }
        return includeRegistration ? discovery.withRegistration : discovery.withoutRegistration
    }

    /// Forgets expired codes and tokens; call periodically.
    public func sweep() async {
        if grants.sweep(now: now()) { try? await persist() }
    }

    /// Deletes a client and everything issued to it.
    public func deleteClient(_ id: String) async throws -> Bool {
        let existed = try await clients.delete(id)
        if existed {
            grants.purge(clientID: id)
            try await persist()
        }
        return existed
    }

    /// Outstanding codes, access tokens and refresh families (for metrics and tests).
    public var grantCounts: (codes: Int, accessTokens: Int, families: Int) { grants.counts }
}

/// The discovery model: one value, two serializations (with and without the registration
/// endpoint, which Funnel callers must not see).
struct Discovery: Sendable {
    let withRegistration: [UInt8]
    let withoutRegistration: [UInt8]

    init(issuer: String, tokenExchange: Bool) {
        withRegistration = Self.build(issuer: issuer, registration: true, tokenExchange: tokenExchange)
        withoutRegistration = Self.build(issuer: issuer, registration: false, tokenExchange: tokenExchange)
    }

    static func build(issuer: String, registration: Bool, tokenExchange: Bool, authorizationEndpoint: String? = nil)
        -> [UInt8]
    {
        var members: [(String, JSONValue)] = [
            ("issuer", .string(issuer)),
            ("authorization_endpoint", .string(authorizationEndpoint ?? issuer + "/authorize")),
            ("token_endpoint", .string(issuer + "/token")),
            ("userinfo_endpoint", .string(issuer + "/userinfo")),
            ("jwks_uri", .string(issuer + "/.well-known/jwks.json")),
            ("revocation_endpoint", .string(issuer + "/revoke")),
            ("introspection_endpoint", .string(issuer + "/introspect")),
        ]
        if registration { members.append(("registration_endpoint", .string(issuer + "/register"))) }
        let strings: ([String]) -> JSONValue = { .array($0.map(JSONValue.string)) }
        members += [
            ("scopes_supported", strings(Scope.standard)),
            ("response_types_supported", strings(["code"])),
            ("response_modes_supported", strings(["query", "form_post"])),
            (
                "grant_types_supported",
                strings(["authorization_code", "refresh_token"] + (tokenExchange ? [TokenType.grantType] : []))
            ),
            ("subject_types_supported", strings(["public"])),
            ("id_token_signing_alg_values_supported", strings(SigningAlgorithm.allCases.map(\.rawValue))),
            ("token_endpoint_auth_methods_supported", strings(["client_secret_basic", "client_secret_post", "none"])),
            (
                "revocation_endpoint_auth_methods_supported",
                strings(["client_secret_basic", "client_secret_post", "none"])
            ),
            ("introspection_endpoint_auth_methods_supported", strings(["client_secret_basic", "client_secret_post"])),
            ("code_challenge_methods_supported", strings(["S256", "plain"])),
            ("claims_supported", strings(IDToken.supportedClaims)),
            ("claims_parameter_supported", .bool(false)),
            ("request_parameter_supported", .bool(false)),
            ("request_uri_parameter_supported", .bool(false)),
            ("authorization_response_iss_parameter_supported", .bool(true)),
        ]
        return Array(JSONText.object(members).utf8)
    }
}

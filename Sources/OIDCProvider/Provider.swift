import AnyJSON
import Foundation
import Logging

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
    let now: @Sendable () -> Date
    let logger: Logger
    let discovery: Discovery

    public init(
        configuration: ProviderConfiguration, keys: KeyRing, clients: ClientRegistry,
        logger: Logger = Logger(label: "tsidp.oidc"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.keys = keys
        self.clients = clients
        self.logger = logger
        self.now = now
        self.discovery = Discovery(issuer: configuration.issuer)
    }

    /// `/.well-known/openid-configuration` (and the RFC 8414 document), serialized once.
    public func discoveryDocument(includeRegistration: Bool) -> [UInt8] {
        includeRegistration ? discovery.withRegistration : discovery.withoutRegistration
    }

    /// Forgets expired codes and tokens; call periodically.
    public func sweep() {
        grants.sweep(now: now())
    }

    /// Deletes a client and everything issued to it.
    public func deleteClient(_ id: String) async throws -> Bool {
        let existed = try await clients.delete(id)
        if existed { grants.purge(clientID: id) }
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

    init(issuer: String) {
        func build(_ registration: Bool) -> [UInt8] {
            var members: [(String, JSONValue)] = [
                ("issuer", .string(issuer)),
                ("authorization_endpoint", .string(issuer + "/authorize")),
                ("token_endpoint", .string(issuer + "/token")),
                ("userinfo_endpoint", .string(issuer + "/userinfo")),
                ("jwks_uri", .string(issuer + "/.well-known/jwks.json")),
            ]
            if registration { members.append(("registration_endpoint", .string(issuer + "/register"))) }
            let strings: ([String]) -> JSONValue = { .array($0.map(JSONValue.string)) }
            members += [
                ("scopes_supported", strings(Scope.standard)),
                ("response_types_supported", strings(["code"])),
                ("response_modes_supported", strings(["query", "form_post"])),
                ("grant_types_supported", strings(["authorization_code", "refresh_token"])),
                ("subject_types_supported", strings(["public"])),
                ("id_token_signing_alg_values_supported", strings(["RS256"])),
                ("token_endpoint_auth_methods_supported", strings(["client_secret_basic", "client_secret_post", "none"])),
                ("code_challenge_methods_supported", strings(["S256", "plain"])),
                ("claims_supported", strings(IDToken.supportedClaims)),
                ("claims_parameter_supported", .bool(false)),
                ("request_parameter_supported", .bool(false)),
                ("request_uri_parameter_supported", .bool(false)),
                ("authorization_response_iss_parameter_supported", .bool(true)),
            ]
            return Array(JSONText.object(members).utf8)
        }
        withRegistration = build(true)
        withoutRegistration = build(false)
    }
}

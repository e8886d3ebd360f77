import AnyJSON
import Foundation
import Logging
import StateStore
import Synchronization
import Telemetry

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
    /// When the grant journal is folded into its bucket files.
    var grantCompaction = GrantLedger.CompactionPolicy()

    /// The most grant journal entries before they are folded into the bucket files (default
    /// 16,384); the journal is folded earlier when it reaches half the size of the buckets.
    public var grantJournalMaximumEntries: Int {
        get { grantCompaction.maximumJournalEntries }
        set { grantCompaction.maximumJournalEntries = max(1, newValue) }
    }
    /// The most bytes of grant journal, whatever the size of the buckets (nil: no cap beyond the
    /// default rule). Set for stores with a size limit of their own, such as a Kubernetes Secret.
    public var grantJournalMaximumBytes: Int? {
        get { grantCompaction.maximumJournalBytes == .max ? nil : grantCompaction.maximumJournalBytes }
        set {
            grantCompaction.maximumJournalBytes = newValue.map { max(1, $0) } ?? .max
            if let newValue { grantCompaction.minimumJournalBytes = min(grantCompaction.minimumJournalBytes, newValue) }
        }
    }
    /// Opens (true) and closes (false) the store's reserve around the removal of expired grants
    /// from a full store (a Kubernetes Secret keeps room free that this may use); nil for stores
    /// without one.
    public var storeReserve: (@Sendable (Bool) async -> Void)?
    /// Records a sweep removes per journal entry.
    var sweepBatch = 2_000

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
    let ledger: GrantLedger
    let sessions = SessionTracker()
    let consentRequests = ConsentRequests()
    let malformedGrants = MalformedGrantLog()
    let assertionReplays = AssertionReplayCache()
    let clientKeySets = ClientKeySetCache()
    let now: @Sendable () -> Date
    let logger: Logger
    let discovery: Discovery
    let writer: StateWriter?
    /// Asks the tailnet again who a grant's device belongs to (on every refresh).
    let reidentify: (@Sendable (UserIdentity) async throws(IdentityFailure) -> UserIdentity)?
    /// Where sign-ins and token answers are counted.
    public let metrics: TsidpMetrics

    /// - Parameters:
    ///   - writer: the write path to where refresh families and access tokens are kept across
    ///     restarts; `nil` keeps them in memory only.
    ///   - reidentify: called on every refresh with the grant's identity; returns the identity the
    ///     tailnet reports for that device now. `nil` reuses the identity captured at login.
    public init(
        configuration: ProviderConfiguration, keys: KeyRing, clients: ClientRegistry,
        writer: StateWriter? = nil,
        reidentify: (@Sendable (UserIdentity) async throws(IdentityFailure) -> UserIdentity)? = nil,
        logger: Logger = Logger(label: "tsidp.oidc"), now: @escaping @Sendable () -> Date = { Date() },
        metrics: TsidpMetrics = TsidpMetrics()
    ) {
        self.metrics = metrics
        self.configuration = configuration
        self.keys = keys
        self.clients = clients
        self.logger = logger
        self.now = now
        self.discovery = Discovery(issuer: configuration.issuer, tokenExchange: configuration.enableTokenExchange)
        self.writer = writer
        self.reidentify = reidentify
        self.ledger = GrantLedger(writer: writer, policy: configuration.grantCompaction, logger: logger)
        // A full store first loses what has expired; until that frees room, new grants are
        // refused (503) and the store records why (a Kubernetes Event).
        ledger.whenFull { [weak self] in
            guard let self,
                self.pruning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            else { return }
            Task {
                defer { self.pruning.store(false, ordering: .releasing) }
                self.logger.warning("the state store is full; removing expired grants now")
                await self.pruneFullStore()
            }
        }
    }

    /// Removes expired grants from a full store and compacts right after, so the store shrinks;
    /// the store's reserve is open meanwhile, because recording the removals is a small write.
    func pruneFullStore() async {
        let reserve = configuration.storeReserve
        await reserve?(true)
        do {
            try await sweep()
            await ledger.compactNow()
        } catch {
            logger.warning("removing expired grants failed", metadata: ["error": "\(error)"])
        }
        await reserve?(false)
    }

    /// Set while a sweep started by a full store runs.
    private let pruning = Atomic<Bool>(false)

    /// Loads the grant state written by an earlier run; expired entries are dropped.
    ///
    /// - Important: A damaged or unreadable grant file stops start-up (it is left untouched) with
    ///   a message naming it; so does a file written by a newer tsidp.
    public func restoreGrants() async throws {
        guard let writer else { return }
        let report = try await ledger.load(from: writer.store, now: now())
        logger.info(
            "grant state loaded",
            metadata: [
                "logins": "\(report.families)", "access_tokens": "\(report.accessTokens)",
                "journal_entries": "\(report.journalEntries)", "superseded_entries": "\(report.obsoleteEntries)",
                "expired_dropped": "\(report.expiredDropped)",
            ])
        if !configuration.allowInsecureRegistration {
            // Legacy-flow logins end when tsidp runs without the legacy flow.
            try await ledger.transact { tables in
                for (id, family) in tables.families where family.grant.boundNodeID != nil { tables.revokeFamily(id) }
            }
        }
        await ledger.flush()
    }

    /// How many grant-state writes have been made (for tests of write batching).
    public var grantWrites: Int { ledger.writes }

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

    /// Forgets expired codes and tokens; call periodically. The expired records are found in one
    /// pass over the tables, then removed in journal entries of at most 2,000 records each (each
    /// record checked again when it is removed), so a sweep never writes the whole state at once,
    /// writes nothing but the removals, and reads the tables once however much has expired.
    public func sweep() async throws {
        let current = now()
        ledger.changeCodes { $0.sweepCodes(now: current) }
        consentRequests.sweep(now: current)
        let (families, access) = ledger.read { tables in
            (
                tables.families.compactMap { $0.value.expiresAt <= current ? $0.key : nil },
                tables.access.compactMap { $0.value.expiresAt <= current ? $0.key : nil }
            )
        }
        var nextFamily = 0
        var nextAccess = 0
        let batch = configuration.sweepBatch
        while nextFamily < families.count || nextAccess < access.count {
            try await ledger.transact { tables in
                var removed = 0
                while nextFamily < families.count, removed < batch {
                    let id = families[nextFamily]
                    nextFamily += 1
                    if let family = tables.families[id], family.expiresAt <= current {
                        tables.revokeFamily(id)
                        removed += 1
                    }
                }
                while nextAccess < access.count, removed < batch {
                    let key = access[nextAccess]
                    nextAccess += 1
                    if let record = tables.access[key], record.expiresAt <= current {
                        tables.setAccess(key, nil)
                        removed += 1
                    }
                }
            }
        }
    }

    /// Deletes a client and everything issued to it.
    public func deleteClient(_ id: String) async throws -> Bool {
        guard await clients.client(id) != nil else { return false }
        // Tokens first: if the client's deletion then fails, the client remains with nothing
        // issued, never the other way round.
        ledger.changeCodes { $0.removeCodes(clientID: id) }
        try await ledger.transact { tables in
            for (key, record) in tables.access where record.grant.clientID == id { tables.setAccess(key, nil) }
            for (familyID, family) in tables.families where family.grant.clientID == id {
                tables.revokeFamily(familyID)
            }
            for (key, consent) in tables.consents where consent.clientID == id { tables.setConsent(key, nil) }
        }
        return try await clients.delete(id)
    }

    /// Outstanding codes, access tokens and refresh families (for metrics and tests).
    public var grantCounts: (codes: Int, accessTokens: Int, families: Int) {
        ledger.read { ($0.codes.count, $0.access.count, $0.families.count) }
    }
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
            ("end_session_endpoint", .string(issuer + "/logout")),
        ]
        if registration { members.append(("registration_endpoint", .string(issuer + "/register"))) }
        let strings: ([String]) -> JSONValue = { .array($0.map(JSONValue.string)) }
        let authMethods = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"]
        let assertionAlgorithms = ClientAssertion.signatureAlgorithms + ClientAssertion.macAlgorithms
        members += [
            ("scopes_supported", strings(Scope.standard)),
            ("response_types_supported", strings(["code"])),
            ("response_modes_supported", strings(["query", "form_post"])),
            (
                "grant_types_supported",
                strings(["authorization_code", "refresh_token"] + (tokenExchange ? [TokenType.grantType] : []))
            ),
            ("subject_types_supported", strings(["public", "pairwise"])),
            ("id_token_signing_alg_values_supported", strings(SigningAlgorithm.allCases.map(\.rawValue))),
            ("userinfo_signing_alg_values_supported", strings(SigningAlgorithm.allCases.map(\.rawValue))),
            ("token_endpoint_auth_methods_supported", strings(authMethods + ["none"])),
            ("token_endpoint_auth_signing_alg_values_supported", strings(assertionAlgorithms)),
            ("revocation_endpoint_auth_methods_supported", strings(authMethods + ["none"])),
            ("revocation_endpoint_auth_signing_alg_values_supported", strings(assertionAlgorithms)),
            ("introspection_endpoint_auth_methods_supported", strings(authMethods)),
            ("introspection_endpoint_auth_signing_alg_values_supported", strings(assertionAlgorithms)),
            ("code_challenge_methods_supported", strings(["S256", "plain"])),
            ("claims_supported", strings(IDToken.supportedClaims)),
            ("acr_values_supported", strings([IDToken.authenticationContextClass])),
            ("claims_parameter_supported", .bool(true)),
            ("request_parameter_supported", .bool(false)),
            ("request_uri_parameter_supported", .bool(false)),
            ("authorization_response_iss_parameter_supported", .bool(true)),
        ]
        return JSONText.objectBytes(members)
    }
}

extension Provider {
    /// The sizes `/metrics` reports: live refresh families and access tokens (those past their
    /// expiry are not counted, though the next sweep has yet to remove them) and registered
    /// clients.
    public func metricSizes() async -> TsidpMetrics.Sizes {
        let instant = now()
        let (families, tokens) = ledger.read { tables in
            (
                tables.families.values.reduce(0) { $0 + ($1.expiresAt > instant ? 1 : 0) },
                tables.access.values.reduce(0) { $0 + ($1.expiresAt > instant ? 1 : 0) }
            )
        }
        return TsidpMetrics.Sizes(refreshFamilies: families, accessTokens: tokens, clients: await clients.all().count)
    }
}

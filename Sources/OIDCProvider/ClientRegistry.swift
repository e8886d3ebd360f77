import AnyJSON
import Foundation
import StateStore

/// The registered clients, one state file each (`tsidp-client-<id>.json`, in the Go tsidp's client
/// shape); a Go tsidp `oidc-funnel-clients.json` is imported.
///
/// Every change is written to the store before the call returns, so an HTTP answer that reports
/// a new client or secret never precedes its durability.
/// Fetches the document at a URL that client metadata names, with the limits of the caller's
/// choosing; throws when it cannot.
public typealias DocumentFetcher = @Sendable (_ url: String) async throws -> [UInt8]

public actor ClientRegistry: StateWriteSource {
    /// The state key the Go tsidp uses for its client file.
    public static let stateKey = "oidc-funnel-clients.json"
    /// The Go tsidp strict mode's client file, read when the main one is absent.
    public static let legacyStrictKey = "oauth-clients.json"

    public nonisolated let name = "clients"
    private let writer: StateWriter
    private var clients: [String: Client] = [:]
    private var changes = ChangeQueue<[String: Client]>()
    /// How many dynamically registered clients may exist at once.
    static let dynamicRegistrationLimit = 1000

    init(writer: StateWriter, clients: [String: Client]) {
        self.writer = writer
        self.clients = clients
    }

    /// Each client is stored in a file of its own, so a change writes only that client.
    public static let filePrefix = "tsidp-client-"

    /// The state key of client `id`: its ID when that is a valid key, a digest of it otherwise.
    public static func fileKey(_ id: String) -> String {
        let plain = filePrefix + id + ".json"
        if StateKey.isValid(plain) { return plain }
        return filePrefix + "h" + Client.hashSecret(id).dropFirst("sha256:".count) + ".json"
    }

    /// Loads the registry from the writer's store: one file per client, and a Go tsidp client file
    /// (`oidc-funnel-clients.json`, or the strict mode's `oauth-clients.json`) when there is one,
    /// whose clients are moved into files of their own (secrets as digests) before tsidp serves.
    ///
    /// - Important: An unreadable or damaged client file stops start-up with a message naming
    ///   it; it is never taken for an empty registry.
    public static func load(from writer: StateWriter) async throws -> ClientRegistry {
        let store = writer.store
        func read(_ key: String) async throws -> Data? {
            do {
                return try await store.read(key)
            } catch {
                throw StateStoreError(.io, "cannot read the client file \(key) in \(store.description): \(error)")
            }
        }
        let keys: [String]
        do {
            keys = try await store.keys()
        } catch {
            throw StateStoreError(.io, "cannot list the clients in \(store.description): \(error)")
        }
        var clients: [String: Client] = [:]
        for key in keys where key.hasPrefix(filePrefix) && key.hasSuffix(".json") {
            guard let data = try await read(key) else { continue }
            do {
                let client = try JSONDecoder().decode(Client.self, from: data)
                guard !client.clientID.isEmpty else { throw StateStoreError(.io, "no client_id") }
                clients[client.clientID] = client
            } catch {
                throw StateStoreError(
                    .io, "\(key) in \(store.description) is not a valid client file; fix or remove it")
            }
        }
        // A Go tsidp file: import what is not already here, then remove it (it may hold
        // plaintext secrets, and a second import would bring deleted clients back).
        var goFiles: [String] = []
        var imported: [String: Client] = [:]
        for key in [stateKey, legacyStrictKey] {
            guard let data = try await read(key) else { continue }
            goFiles.append(key)
            guard imported.isEmpty, !data.isEmpty else { continue }
            let decoded: [String: Client]
            do {
                decoded = try JSONDecoder().decode([String: Client].self, from: data)
            } catch {
                throw StateStoreError(
                    .io, "\(key) in \(store.description) is not a valid client file; fix or remove it")
            }
            for (id, var client) in decoded {
                if client.clientID.isEmpty { client.clientID = id }
                if clients[client.clientID] == nil { imported[client.clientID] = client }
            }
        }
        let registry = ClientRegistry(writer: writer, clients: clients)
        if !goFiles.isEmpty {
            let additions = imported
            do {
                try await registry.apply(removing: goFiles) { clients in
                    clients.merge(additions) { existing, _ in existing }
                }
            } catch {
                throw StateStoreError(
                    .io,
                    "cannot move the clients of \(goFiles.joined(separator: " and ")) into files of their own in \(store.description): \(error)"
                )
            }
        }
        return registry
    }

    /// The client with `id`, if registered.
    public func client(_ id: String) -> Client? {
        clients[id]
    }

    /// Every client, sorted by name then ID (the admin UI's order).
    public func all() -> [Client] {
        clients.values.sorted { ($0.name.lowercased(), $0.clientID) < ($1.name.lowercased(), $1.clientID) }
    }

    /// What a client registration asks for.
    public struct Registration: Sendable {
        public var name: String
        public var redirectURIs: [String]
        public var tokenEndpointAuthMethod: String = "client_secret_basic"
        public var grantTypes: [String] = ["authorization_code", "refresh_token"]
        public var responseTypes: [String] = ["code"]
        public var scope: String = ""
        public var clientURI: String = ""
        public var logoURI: String = ""
        public var contacts: [String] = []
        public var applicationType: String = "web"
        public var dynamicallyRegistered = false
        public var idTokenSignedResponseAlg = "RS256"
        /// `jwt`, `opaque`, or empty for the default (a JWT when a resource is requested).
        public var accessTokenFormat = ""
        /// Resource URIs the client serves (see ``Client/resources``).
        public var resources: [String] = []
        /// Ask users to confirm before their first sign-in (always so for dynamic registration).
        public var consentRequired = false
        /// Where RP-initiated logout may return to; checked as redirect URIs are.
        public var postLogoutRedirectURIs: [String] = []
        /// `userinfo_signed_response_alg`; `nil` for plain JSON answers.
        public var userInfoSignedResponseAlg: String? = nil
        /// `public` or `pairwise` (see ``Client/subjectType``).
        public var subjectType = "public"
        /// `sector_identifier_uri`: a JSON array of redirect URIs, fetched when the client is
        /// registered, whose host becomes the client's sector.
        public var sectorIdentifierURI = ""
        /// `jwks`: the client's public keys, for `private_key_jwt`.
        public var jwks: JSONValue? = nil
        /// `jwks_uri`: where the client publishes its public keys, for `private_key_jwt`.
        public var jwksURI = ""
        /// `token_endpoint_auth_signing_alg`.
        public var tokenEndpointAuthSigningAlg: String? = nil

        public init(name: String, redirectURIs: [String]) {
            self.name = name
            self.redirectURIs = redirectURIs
        }
    }

    /// Fetches documents client metadata points at (`sector_identifier_uri`); `nil`: such
    /// metadata is refused.
    public private(set) var fetchDocument: DocumentFetcher?

    /// Sets how documents named in client metadata are fetched.
    public func setDocumentFetcher(_ fetcher: DocumentFetcher?) {
        fetchDocument = fetcher
    }

    /// The sector pairwise subjects of `registration` are derived for (OIDC Core §8.1): the host
    /// of its `sector_identifier_uri`, whose document must list every redirect URI (OIDC
    /// Registration §5), or else the one host of its redirect URIs. Empty for public subjects.
    func sector(for registration: Registration) async throws -> String {
        guard ["public", "pairwise"].contains(registration.subjectType) else {
            throw OAuthError(.invalidClientMetadata, "subject_type must be public or pairwise")
        }
        if registration.sectorIdentifierURI.isEmpty {
            guard registration.subjectType == "pairwise" else { return "" }
            let hosts = Set(registration.redirectURIs.compactMap { URLComponents(string: $0)?.host?.lowercased() })
            guard hosts.count == 1, let host = hosts.first, !host.isEmpty else {
                throw OAuthError(
                    .invalidClientMetadata,
                    "the redirect_uris of a pairwise client are on several hosts; register a sector_identifier_uri")
            }
            return host
        }
        let uri = registration.sectorIdentifierURI
        do {
            try RedirectURI.validate(uri, plainHTTP: plainHTTPRedirects)
        } catch let error as OAuthError {
            throw OAuthError(.invalidClientMetadata, "sector_identifier_uri: \(error.message)")
        }
        guard let host = URLComponents(string: uri)?.host?.lowercased(), !host.isEmpty else {
            throw OAuthError(.invalidClientMetadata, "sector_identifier_uri has no host")
        }
        guard let fetchDocument else {
            throw OAuthError(.invalidClientMetadata, "sector_identifier_uri cannot be fetched by this tsidp")
        }
        let listed: [String]
        do {
            let bytes = try await fetchDocument(uri)
            listed = try JSONDecoder().decode([String].self, from: Data(bytes))
        } catch {
            throw OAuthError(
                .invalidClientMetadata, "sector_identifier_uri could not be read as a JSON array of redirect URIs")
        }
        if let missing = registration.redirectURIs.first(where: { !listed.contains($0) }) {
            throw OAuthError(
                .invalidClientMetadata,
                "the document at sector_identifier_uri does not list the redirect URI \(missing)")
        }
        return host
    }

    /// Where plain `http` redirect URIs may point, for every registration and change.
    public private(set) var plainHTTPRedirects: RedirectURI.PlainHTTP = .privateHosts

    /// Sets where plain `http` redirect URIs may point (`--dev` allows any host).
    public func setPlainHTTPRedirects(_ rule: RedirectURI.PlainHTTP) {
        plainHTTPRedirects = rule
    }

    /// Registers a client and returns it with its secret (`nil` for public clients). The secret
    /// is shown once; only its digest is stored.
    public func register(_ registration: Registration) async throws -> (client: Client, secret: String?) {
        let created = try await create(registration, registrationToken: nil)
        return (created.client, created.secret)
    }

    /// Registers a client through RFC 7591 and returns it with its secret and its RFC 7592
    /// registration access token, both shown once; only their digests are stored.
    public func registerDynamically(_ registration: Registration) async throws -> (
        client: Client, secret: String?, registrationAccessToken: String
    ) {
        let token = RandomToken.hex(bytes: 32)
        let created = try await create(registration, registrationToken: token)
        return (created.client, created.secret, token)
    }

    /// Checks `registration` against every rule a client's metadata must satisfy, whichever path
    /// it comes by, and returns its ID token algorithm.
    func validate(_ registration: Registration) throws -> SigningAlgorithm {
        guard !registration.redirectURIs.isEmpty else {
            throw OAuthError(.invalidClientMetadata, "redirect_uris is required")
        }
        try ClientMetadataLimits.check(registration)
        for uri in registration.redirectURIs { try RedirectURI.validate(uri, plainHTTP: plainHTTPRedirects) }
        for uri in registration.postLogoutRedirectURIs {
            do {
                try RedirectURI.validate(uri, plainHTTP: plainHTTPRedirects)
            } catch let error as OAuthError {
                throw OAuthError(.invalidClientMetadata, "post_logout_redirect_uris: \(error.message)")
            }
        }
        let allowedMethods = [
            "client_secret_basic", "client_secret_post", "none", "private_key_jwt", "client_secret_jwt",
        ]
        guard allowedMethods.contains(registration.tokenEndpointAuthMethod) else {
            throw OAuthError(
                .invalidClientMetadata,
                "token_endpoint_auth_method must be one of \(allowedMethods.joined(separator: ", "))")
        }
        try validateKeys(registration)
        let grantTypes = ["authorization_code", "refresh_token"]
        if let bad = registration.grantTypes.first(where: { !grantTypes.contains($0) }) {
            throw OAuthError(.invalidClientMetadata, "grant type \(bad) is not supported")
        }
        // OIDC Registration §2: response type code goes with the authorization_code grant.
        if registration.responseTypes.contains("code"), !registration.grantTypes.contains("authorization_code") {
            throw OAuthError(
                .invalidClientMetadata, "grant_types must include authorization_code for response type code")
        }
        guard let algorithm = SigningAlgorithm(rawValue: registration.idTokenSignedResponseAlg) else {
            throw OAuthError(.invalidClientMetadata, "id_token_signed_response_alg must be RS256, ES256 or EdDSA")
        }
        if let alg = registration.userInfoSignedResponseAlg, SigningAlgorithm(rawValue: alg) == nil {
            throw OAuthError(.invalidClientMetadata, "userinfo_signed_response_alg must be RS256, ES256 or EdDSA")
        }
        guard ["", "opaque", "jwt"].contains(registration.accessTokenFormat) else {
            throw OAuthError(.invalidClientMetadata, "access_token_format must be opaque or jwt")
        }
        for resource in registration.resources { try ResourceURI.validate(resource, plainHTTP: plainHTTPRedirects) }
        for scope in Scope.parse(registration.scope) where !Scope.isValidToken(scope) {
            throw OAuthError(.invalidClientMetadata, "scope \(scope) is not a valid scope token")
        }
        return algorithm
    }

    /// The rules of `jwks`, `jwks_uri` and `token_endpoint_auth_signing_alg` (RFC 7591 §2, RFC 7523).
    func validateKeys(_ registration: Registration) throws {
        if registration.jwks != nil, !registration.jwksURI.isEmpty {
            throw OAuthError(.invalidClientMetadata, "register jwks or jwks_uri, not both")
        }
        if let jwks = registration.jwks {
            guard let encoded = try? JSONEncoder().encode(jwks), encoded.count <= 16_384 else {
                throw OAuthError(.invalidClientMetadata, "jwks is larger than 16 KiB")
            }
            let keys = try ClientPublicKey.keys(fromJWKS: jwks)
            guard keys.count <= 20 else { throw OAuthError(.invalidClientMetadata, "jwks holds more than 20 keys") }
            if registration.tokenEndpointAuthMethod == "private_key_jwt", keys.isEmpty {
                throw OAuthError(
                    .invalidClientMetadata, "jwks holds no signing key tsidp can use (RSA, P-256 or Ed25519)")
            }
        }
        if !registration.jwksURI.isEmpty {
            guard registration.jwksURI.utf8.count <= ClientMetadataLimits.uriLength else {
                throw OAuthError(.invalidClientMetadata, "jwks_uri is too long")
            }
            do {
                try RedirectURI.validate(registration.jwksURI, plainHTTP: plainHTTPRedirects)
            } catch let error as OAuthError {
                throw OAuthError(.invalidClientMetadata, "jwks_uri: \(error.message)")
            }
        }
        if registration.tokenEndpointAuthMethod == "private_key_jwt", registration.jwks == nil,
            registration.jwksURI.isEmpty
        {
            throw OAuthError(.invalidClientMetadata, "private_key_jwt needs the client's public keys: jwks or jwks_uri")
        }
        if let alg = registration.tokenEndpointAuthSigningAlg {
            let allowed: [String]
            switch registration.tokenEndpointAuthMethod {
            case "private_key_jwt": allowed = ClientAssertion.signatureAlgorithms
            case "client_secret_jwt": allowed = ClientAssertion.macAlgorithms
            default: allowed = ClientAssertion.signatureAlgorithms + ClientAssertion.macAlgorithms
            }
            guard allowed.contains(alg) else {
                throw OAuthError(
                    .invalidClientMetadata,
                    "token_endpoint_auth_signing_alg must be one of \(allowed.joined(separator: ", ")) for \(registration.tokenEndpointAuthMethod)"
                )
            }
        }
    }

    /// Whether clients registered with `method` get a secret.
    static func issuesSecret(_ method: String) -> Bool {
        method != "none" && method != "private_key_jwt"
    }

    private func create(_ registration: Registration, registrationToken: String?) async throws -> (
        client: Client, secret: String?
    ) {
        let algorithm = try validate(registration)
        let sector = try await sector(for: registration)
        try Self.checkRegistrationLimit(registration, in: clients)
        let id = RandomToken.hex(bytes: 16)
        let secret = Self.issuesSecret(registration.tokenEndpointAuthMethod) ? RandomToken.hex(bytes: 32) : nil
        var client = Client(
            clientID: id, secretHash: secret.map(Client.hashSecret), name: registration.name,
            redirectURIs: registration.redirectURIs, tokenEndpointAuthMethod: registration.tokenEndpointAuthMethod,
            grantTypes: registration.grantTypes, responseTypes: registration.responseTypes, scope: registration.scope,
            clientURI: registration.clientURI, logoURI: registration.logoURI, contacts: registration.contacts,
            applicationType: registration.applicationType, dynamicallyRegistered: registration.dynamicallyRegistered,
            createdAt: Date())
        Self.applyMetadata(registration, to: &client, algorithm: algorithm, sector: sector)
        client.consentRequired = registration.consentRequired
        client.registrationTokenHash = registrationToken.map(Client.hashSecret)
        if registration.tokenEndpointAuthMethod == "client_secret_jwt" { client.macSecret = secret }
        let created = client
        try await apply { clients in
            try Self.checkRegistrationLimit(registration, in: clients)
            guard clients[id] == nil else { throw OAuthError(.serverError, "client ID collision; try again") }
            clients[id] = created
        }
        return (client, secret)
    }

    /// The client `id` when `token` is its RFC 7592 registration access token; `nil` when there is
    /// no such client, it has no token, or the token is another.
    ///
    /// - Important: The three cases are not told apart, so a caller learns nothing about clients
    ///   it holds no token for; the comparison is constant-time.
    public func client(_ id: String, registrationAccessToken token: String) -> Client? {
        guard let client = clients[id] else {
            _ = Client(clientID: "", secretHash: nil, name: "", redirectURIs: []).registrationTokenMatches(token)
            return nil
        }
        return client.registrationTokenMatches(token) ? client : nil
    }

    /// RFC 7592 §2.2: replaces the metadata of client `id` with `registration`, checked exactly
    /// as a new registration is. The client ID, creation time, registration access token and
    /// consent rule stay; the secret stays unless the client becomes public (removed) or stops
    /// being public (a new one, returned once).
    ///
    /// - Parameter presentedSecret: the body's `client_secret`, which must be the current one.
    public func replaceMetadata(_ id: String, with registration: Registration, presentedSecret: String?) async throws
        -> (client: Client, secret: String?)
    {
        guard let existing = clients[id] else { throw OAuthError(.notFound, "client not found") }
        if let presentedSecret, !existing.secretMatches(presentedSecret) {
            throw OAuthError(.invalidRequest, "client_secret does not match the client's current secret")
        }
        let algorithm = try validate(registration)
        var sector = try await sector(for: registration)
        if registration.subjectType == "pairwise", existing.usesPairwiseSubjects,
            registration.sectorIdentifierURI == existing.sectorIdentifierURI
        {
            // The sector stays as first registered: a client that moves its redirect URIs keeps
            // its users' subjects.
            sector = existing.sector
        }
        let keptSector = sector
        var newSecret: String?
        var secretHash = existing.secretHash
        var macSecret = existing.macSecret
        let method = registration.tokenEndpointAuthMethod
        if !Self.issuesSecret(method) {
            secretHash = nil
            macSecret = nil
        } else if secretHash == nil || (method == "client_secret_jwt" && macSecret == nil) {
            // A client that starts MACing with its secret needs one tsidp knows, not a digest.
            let secret = RandomToken.hex(bytes: 32)
            newSecret = secret
            secretHash = Client.hashSecret(secret)
            macSecret = method == "client_secret_jwt" ? secret : nil
        } else if method != "client_secret_jwt" {
            macSecret = nil
        }
        let replacementHash = secretHash
        let replacementMAC = macSecret
        let tokenHash = existing.registrationTokenHash
        try await apply { clients in
            guard var client = clients[id], client.registrationTokenHash == tokenHash else {
                throw OAuthError(.notFound, "client not found")
            }
            client.secretHash = replacementHash
            client.macSecret = replacementMAC
            client.name = registration.name
            client.redirectURIs = registration.redirectURIs
            client.tokenEndpointAuthMethod = registration.tokenEndpointAuthMethod
            client.grantTypes = registration.grantTypes
            client.responseTypes = registration.responseTypes
            client.scope = registration.scope
            client.clientURI = registration.clientURI
            client.logoURI = registration.logoURI
            client.contacts = registration.contacts
            client.applicationType = registration.applicationType
            Self.applyMetadata(registration, to: &client, algorithm: algorithm, sector: keptSector)
            clients[id] = client
        }
        guard let updated = clients[id] else { throw OAuthError(.notFound, "client not found") }
        return (updated, newSecret)
    }

    /// Sets the metadata a registration and an RFC 7592 replacement both carry, beyond what
    /// ``Client/init`` takes.
    private static func applyMetadata(
        _ registration: Registration, to client: inout Client, algorithm: SigningAlgorithm, sector: String
    ) {
        client.idTokenSignedResponseAlg = algorithm
        client.accessTokenFormat = registration.accessTokenFormat
        client.resources = registration.resources
        client.postLogoutRedirectURIs = registration.postLogoutRedirectURIs
        client.userInfoSignedResponseAlg = registration.userInfoSignedResponseAlg.flatMap(SigningAlgorithm.init)
        client.subjectType = registration.subjectType
        client.sectorIdentifierURI = registration.sectorIdentifierURI
        client.sector = sector
        client.jwks = registration.jwks
        client.jwksURI = registration.jwksURI
        client.tokenEndpointAuthSigningAlg = registration.tokenEndpointAuthSigningAlg
    }

    private static func checkRegistrationLimit(_ registration: Registration, in clients: [String: Client]) throws {
        if registration.dynamicallyRegistered,
            clients.values.lazy.filter(\.dynamicallyRegistered).count >= Self.dynamicRegistrationLimit
        {
            throw OAuthError(
                .invalidClientMetadata,
                "tsidp holds \(Self.dynamicRegistrationLimit) dynamically registered clients already; delete unused ones first"
            )
        }
    }

    /// Changes a client's name and redirect URIs and, unless `resources` is `nil`, the resource
    /// URIs it serves.
    public func update(_ id: String, name: String, redirectURIs: [String], resources: [String]? = nil) async throws
        -> Client
    {
        guard let existing = clients[id] else { throw OAuthError(.notFound, "client not found") }
        guard !redirectURIs.isEmpty else { throw OAuthError(.invalidRequest, "at least one redirect URI is required") }
        var checked = Registration(name: name, redirectURIs: redirectURIs)
        checked.resources = resources ?? existing.resources
        try ClientMetadataLimits.check(checked)
        for uri in redirectURIs { try RedirectURI.validate(uri, plainHTTP: plainHTTPRedirects) }
        for resource in resources ?? [] { try ResourceURI.validate(resource, plainHTTP: plainHTTPRedirects) }
        try await apply { clients in
            guard var client = clients[id] else { throw OAuthError(.notFound, "client not found") }
            client.name = name
            client.redirectURIs = redirectURIs
            if let resources { client.resources = resources }
            clients[id] = client
        }
        guard let updated = clients[id] else { throw OAuthError(.notFound, "client not found") }
        return updated
    }

    /// Replaces a client's secret and returns the new one.
    public func regenerateSecret(_ id: String) async throws -> (client: Client, secret: String) {
        guard clients[id] != nil else { throw OAuthError(.notFound, "client not found") }
        let secret = RandomToken.hex(bytes: 32)
        let hash = Client.hashSecret(secret)
        try await apply { clients in
            guard var client = clients[id] else { throw OAuthError(.notFound, "client not found") }
            client.secretHash = hash
            if client.isPublic || client.tokenEndpointAuthMethod == "private_key_jwt" {
                client.tokenEndpointAuthMethod = "client_secret_basic"
            }
            client.macSecret = client.tokenEndpointAuthMethod == "client_secret_jwt" ? secret : nil
            clients[id] = client
        }
        guard let updated = clients[id] else { throw OAuthError(.notFound, "client not found") }
        return (updated, secret)
    }

    /// Removes a client; returns whether it existed.
    @discardableResult
    public func delete(_ id: String) async throws -> Bool {
        guard clients[id] != nil else { return false }
        try await apply { clients in clients[id] = nil }
        return true
    }

    /// Queues `change` for the write path and returns once it is stored and published; the
    /// registry in memory changes only then.
    ///
    /// - Throws: the change's own error, or `temporarily_unavailable` (HTTP 503) when the store
    ///   could not be written, with nothing changed.
    private func apply(removing keys: [String] = [], _ change: @escaping ChangeQueue<[String: Client]>.Change)
        async throws
    {
        if !keys.isEmpty { obsoleteKeys.formUnion(keys) }
        let ticket = changes.enqueue(change)
        await writer.flush(self)
        do {
            try await ticket.wait()
        } catch let error as OAuthError {
            throw error
        } catch {
            throw OAuthError.storageUnavailable("the client registry")
        }
    }

    // MARK: StateWriteSource

    /// Go tsidp client files to delete with the next batch (after their import).
    private var obsoleteKeys = Set<String>()

    public func nextBatch() async -> StateBatch? {
        guard let next = changes.begin(from: clients) else { return nil }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            var entries: [String: Data?] = [:]
            for (id, client) in next where clients[id] != client {
                entries[Self.fileKey(id)] = .some(try encoder.encode(client))
            }
            for id in clients.keys where next[id] == nil {
                entries.updateValue(nil, forKey: Self.fileKey(id))
            }
            for key in obsoleteKeys { entries.updateValue(nil, forKey: key) }
            return StateBatch(entries: entries)
        } catch {
            for ticket in changes.finish(error: error).tickets { ticket.resolve(error) }
            return nil
        }
    }

    public func finish(_ batch: StateBatch, error: (any Error)?) async {
        let (published, tickets) = changes.finish(error: error)
        if let published {
            clients = published
            obsoleteKeys.subtract(batch.entries.keys)
        }
        for ticket in tickets { ticket.resolve(error) }
    }

    public func abandon(_ error: any Error) async {
        changes.abandon(error)
    }
}

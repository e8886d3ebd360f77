import Foundation
import StateStore

/// The registered clients, persisted in the state store as `oidc-funnel-clients.json`.
///
/// Every change is written to the store before the call returns, so an HTTP answer that reports
/// a new client or secret never precedes its durability.
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

    /// Loads the registry from the writer's store, importing a Go tsidp file in any of its
    /// shapes.
    ///
    /// - Important: An unreadable or damaged client file stops start-up with a message naming
    ///   it; it is never taken for an empty registry.
    public static func load(from writer: StateWriter) async throws -> ClientRegistry {
        let store = writer.store
        var data: Data?
        var imported = false
        do {
            data = try await store.read(stateKey)
            if data == nil, let legacy = try await store.read(legacyStrictKey) {
                data = legacy
                imported = true
            }
        } catch {
            throw StateStoreError(.io, "cannot read the client file \(stateKey) in \(store.description): \(error)")
        }
        var clients: [String: Client] = [:]
        var needsRewrite = imported
        if let data, !data.isEmpty {
            let decoded: [String: Client]
            do {
                decoded = try JSONDecoder().decode([String: Client].self, from: data)
            } catch {
                throw StateStoreError(
                    .io, "\(stateKey) in \(store.description) is not a valid client file; fix or remove it")
            }
            for (key, var client) in decoded {
                if client.clientID.isEmpty { client.clientID = key }
                clients[client.clientID] = client
            }
            // A Go tsidp file holds plaintext secrets; rewrite it with digests only.
            if let text = String(data: data, encoding: .utf8),
                text.contains("\"client_secret\" : \"")
                    || text.range(of: #""client_secret":\s*"[^"]+""#, options: .regularExpression) != nil
            {
                needsRewrite = true
            }
        }
        let registry = ClientRegistry(writer: writer, clients: clients)
        if needsRewrite { try await registry.apply { _ in } }
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
        public var accessTokenFormat = "opaque"

        public init(name: String, redirectURIs: [String]) {
            self.name = name
            self.redirectURIs = redirectURIs
        }
    }

    /// Registers a client and returns it with its secret (`nil` for public clients). The secret
    /// is shown once; only its digest is stored.
    public func register(_ registration: Registration) async throws -> (client: Client, secret: String?) {
        guard !registration.redirectURIs.isEmpty else {
            throw OAuthError(.invalidClientMetadata, "redirect_uris is required")
        }
        for uri in registration.redirectURIs { try RedirectURI.validate(uri) }
        let allowedMethods = ["client_secret_basic", "client_secret_post", "none"]
        guard allowedMethods.contains(registration.tokenEndpointAuthMethod) else {
            throw OAuthError(
                .invalidClientMetadata,
                "token_endpoint_auth_method must be one of \(allowedMethods.joined(separator: ", "))")
        }
        guard let algorithm = SigningAlgorithm(rawValue: registration.idTokenSignedResponseAlg) else {
            throw OAuthError(.invalidClientMetadata, "id_token_signed_response_alg must be RS256, ES256 or EdDSA")
        }
        guard registration.accessTokenFormat == "opaque" || registration.accessTokenFormat == "jwt" else {
            throw OAuthError(.invalidClientMetadata, "access_token_format must be opaque or jwt")
        }
        for scope in Scope.parse(registration.scope) where !Scope.isValidToken(scope) {
            throw OAuthError(.invalidClientMetadata, "scope \(scope) is not a valid scope token")
        }
        try Self.checkRegistrationLimit(registration, in: clients)
        let id = RandomToken.hex(bytes: 16)
        let secret = registration.tokenEndpointAuthMethod == "none" ? nil : RandomToken.hex(bytes: 32)
        var client = Client(
            clientID: id, secretHash: secret.map(Client.hashSecret), name: registration.name,
            redirectURIs: registration.redirectURIs, tokenEndpointAuthMethod: registration.tokenEndpointAuthMethod,
            grantTypes: registration.grantTypes, responseTypes: registration.responseTypes, scope: registration.scope,
            clientURI: registration.clientURI, logoURI: registration.logoURI, contacts: registration.contacts,
            applicationType: registration.applicationType, dynamicallyRegistered: registration.dynamicallyRegistered,
            createdAt: Date())
        client.idTokenSignedResponseAlg = algorithm
        client.accessTokenFormat = registration.accessTokenFormat
        let created = client
        try await apply { clients in
            try Self.checkRegistrationLimit(registration, in: clients)
            guard clients[id] == nil else { throw OAuthError(.serverError, "client ID collision; try again") }
            clients[id] = created
        }
        return (client, secret)
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

    /// Changes a client's name and redirect URIs.
    public func update(_ id: String, name: String, redirectURIs: [String]) async throws -> Client {
        guard clients[id] != nil else { throw OAuthError(.notFound, "client not found") }
        guard !redirectURIs.isEmpty else { throw OAuthError(.invalidRequest, "at least one redirect URI is required") }
        for uri in redirectURIs { try RedirectURI.validate(uri) }
        try await apply { clients in
            guard var client = clients[id] else { throw OAuthError(.notFound, "client not found") }
            client.name = name
            client.redirectURIs = redirectURIs
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
            if client.isPublic { client.tokenEndpointAuthMethod = "client_secret_basic" }
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
    private func apply(_ change: @escaping ChangeQueue<[String: Client]>.Change) async throws {
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

    public func nextBatch() async -> StateBatch? {
        guard let next = changes.begin(from: clients) else { return nil }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return StateBatch(entries: [Self.stateKey: .some(try encoder.encode(next))])
        } catch {
            _ = changes.finish(error: error)
            return nil
        }
    }

    public func finish(_ batch: StateBatch, error: (any Error)?) async {
        if let published = changes.finish(error: error) { clients = published }
    }

    public func abandon(_ error: any Error) async {
        changes.abandon(error)
    }
}

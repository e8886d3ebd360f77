import Foundation
import OIDCProvider

/// A client as `tsidp clients` prints it, whichever way it was reached.
struct ClientRecord: Codable, Sendable, Equatable {
    var clientID: String
    var clientName: String
    var redirectURIs: [String]
    var tokenEndpointAuthMethod: String
    var createdAt: String
    var dynamicallyRegistered: Bool
    var hasSecret: Bool
    /// Resource URIs the client serves as a resource server.
    var resources: [String] = []
    /// `public` or `pairwise`.
    var subjectType = "public"
    /// Only right after `add` or `regenerate-secret`.
    var clientSecret: String?

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", clientName = "client_name", redirectURIs = "redirect_uris"
        case tokenEndpointAuthMethod = "token_endpoint_auth_method", createdAt = "created_at"
        case dynamicallyRegistered = "dynamically_registered", hasSecret = "has_secret"
        case clientSecret = "client_secret", resources, subjectType = "subject_type"
    }

    init(_ client: Client, secret: String? = nil) {
        clientID = client.clientID
        clientName = client.name
        redirectURIs = client.redirectURIs
        tokenEndpointAuthMethod = client.tokenEndpointAuthMethod
        createdAt = RFC3339.format(client.createdAt)
        dynamicallyRegistered = client.dynamicallyRegistered
        hasSecret = client.secretHash != nil
        resources = client.resources
        subjectType = client.subjectType
        clientSecret = secret
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clientID = try c.decode(String.self, forKey: .clientID)
        clientName = try c.decodeIfPresent(String.self, forKey: .clientName) ?? ""
        redirectURIs = try c.decodeIfPresent([String].self, forKey: .redirectURIs) ?? []
        tokenEndpointAuthMethod =
            try c.decodeIfPresent(String.self, forKey: .tokenEndpointAuthMethod) ?? "client_secret_basic"
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt) ?? ""
        dynamicallyRegistered = try c.decodeIfPresent(Bool.self, forKey: .dynamicallyRegistered) ?? false
        hasSecret = try c.decodeIfPresent(Bool.self, forKey: .hasSecret) ?? false
        resources = try c.decodeIfPresent([String].self, forKey: .resources) ?? []
        subjectType = try c.decodeIfPresent(String.self, forKey: .subjectType) ?? "public"
        clientSecret = try c.decodeIfPresent(String.self, forKey: .clientSecret).flatMap { $0.isEmpty ? nil : $0 }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(clientID, forKey: .clientID)
        try c.encode(clientName, forKey: .clientName)
        try c.encode(redirectURIs, forKey: .redirectURIs)
        try c.encode(tokenEndpointAuthMethod, forKey: .tokenEndpointAuthMethod)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(dynamicallyRegistered, forKey: .dynamicallyRegistered)
        try c.encode(hasSecret, forKey: .hasSecret)
        if !resources.isEmpty { try c.encode(resources, forKey: .resources) }
        if subjectType != "public" { try c.encode(subjectType, forKey: .subjectType) }
        try c.encodeIfPresent(clientSecret, forKey: .clientSecret)
    }
}

/// A failed operation: printed as one line, exit status 1.
struct ClientsFailure: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Where `tsidp clients` finds the clients: a running server or a stopped state directory.
protocol ClientsBackend: Sendable {
    func list() async throws -> [ClientRecord]
    func add(name: String, redirectURIs: [String], resources: [String], isPublic: Bool, pairwise: Bool) async throws
        -> ClientRecord
    func show(_ id: String) async throws -> ClientRecord
    /// `nil` leaves that field as it is.
    func update(_ id: String, name: String?, redirectURIs: [String]?, resources: [String]?) async throws
        -> ClientRecord
    func regenerateSecret(_ id: String) async throws -> ClientRecord
    func delete(_ id: String) async throws
    /// Releases connections or locks.
    func close() async
}

import Foundation

/// A live access token, kept under the SHA-256 of its value.
struct AccessTokenRecord: Sendable, Codable, Equatable {
    var grant: AuthorizationGrant
    var audience: [String]
    var expiresAt: Date
    var issuedAt: Date
    /// The login (refresh family) the token belongs to; it dies with it.
    var familyID: String?
    var jti: String
    /// RFC 8693 actor chain, for exchanged tokens.
    var actor: ActorClaim?

    enum CodingKeys: String, CodingKey {
        case grant = "g", audience = "a", expiresAt = "e", issuedAt = "i", familyID = "f", jti = "j", actor = "act"
    }
}

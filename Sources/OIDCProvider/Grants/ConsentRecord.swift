import Foundation

/// A user's consent to a client the operator did not vet: given once on the consent page,
/// remembered with the grant state, and ended by the user (or with the client).
struct ConsentRecord: Sendable, Codable, Equatable {
    var userID: Int64
    var clientID: String
    var grantedAt: Date
    /// The scopes the user saw on the consent page.
    var scopes: [String]

    enum CodingKeys: String, CodingKey {
        case userID = "u", clientID = "c", grantedAt = "t", scopes = "s"
    }

    /// The key of the consent of `userID` to `clientID`.
    static func key(userID: Int64, clientID: String) -> String { "\(userID)|\(clientID)" }
}

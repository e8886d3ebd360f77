import Foundation

/// One login's chain of refresh tokens: it starts at a code redemption, and every refresh retires
/// the presented token and makes a new one current. Presenting a retired token is reuse, and
/// ends the family.
struct RefreshFamily: Sendable, Codable, Equatable {
    var grant: AuthorizationGrant
    /// SHA-256 of the current refresh token.
    var currentTokenHash: String
    var expiresAt: Date
    /// The most recent retired token hashes, newest last; presenting one revokes the family.
    var retiredTokenHashes: [String]

    enum CodingKeys: String, CodingKey {
        case grant = "g", currentTokenHash = "t", expiresAt = "e", retiredTokenHashes = "r"
    }

    /// How many retired refresh tokens are remembered for reuse detection. An older one is merely
    /// unknown (`invalid_grant`) rather than a trigger for revocation.
    static let retiredTokensKept = 8

    init(grant: AuthorizationGrant, currentTokenHash: String, expiresAt: Date) {
        self.grant = grant
        self.currentTokenHash = currentTokenHash
        self.expiresAt = expiresAt
        self.retiredTokenHashes = []
    }

    /// What presenting a refresh token to this family means.
    enum Presentation: Equatable {
        /// The current token, in time: it may be rotated.
        case current
        /// A retired token: reuse, the family must end.
        case reused
        /// The current token, too late: the family has ended.
        case expired
        /// Issued to another client: treated as unknown.
        case otherClient
    }

    func present(_ tokenHash: String, clientID: String, now: Date) -> Presentation {
        guard grant.clientID == clientID else { return .otherClient }
        guard currentTokenHash == tokenHash else { return .reused }
        guard expiresAt > now else { return .expired }
        return .current
    }

    /// Retires the current token and makes `nextHash` current, with a fresh identity in `grant`.
    /// Returns the retired hash that is no longer remembered, if any.
    @discardableResult
    mutating func rotate(to nextHash: String, grant: AuthorizationGrant, expiresAt: Date) -> String? {
        retiredTokenHashes.append(currentTokenHash)
        var forgotten: String?
        if retiredTokenHashes.count > Self.retiredTokensKept { forgotten = retiredTokenHashes.removeFirst() }
        currentTokenHash = nextHash
        self.expiresAt = expiresAt
        self.grant = grant
        return forgotten
    }

    /// Every token hash that leads to this family (current and remembered retired ones).
    var tokenHashes: [String] { [currentTokenHash] + retiredTokenHashes }
}

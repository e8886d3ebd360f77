import Foundation

/// What the user authorized at `/authorize`: carried by a code, then by the tokens it mints.
public struct AuthorizationGrant: Sendable, Equatable, Codable {
    public var clientID: String
    public var redirectURI: String
    public var scopes: [String]
    public var nonce: String?
    public var codeChallenge: String?
    public var codeChallengeMethod: PKCE.Method?
    public var resources: [String]
    public var identity: UserIdentity
    public var authTime: Date
    /// Legacy flow: the relying party's node, which alone may redeem the code and refresh.
    public var boundNodeID: Int64? = nil
    /// The claims the `claims` request parameter asked for; absent in grants of older state.
    public var claims: ClaimsRequest? = nil
    /// The pairwise `sub` of this grant's user for its client's sector (OIDC Core §8.1), for
    /// clients registered with `subject_type` `pairwise`; `nil`: the public `userid:<n>`.
    public var pairwiseSubject: String? = nil

    /// The `sub` every token and answer of this grant carries.
    public var subject: String { pairwiseSubject ?? IDToken.subject(identity) }

    enum CodingKeys: String, CodingKey {
        case clientID = "c", redirectURI = "r", scopes = "s", nonce = "n", codeChallenge = "cc"
        case codeChallengeMethod = "cm", resources = "res", identity = "id", authTime = "at", boundNodeID = "node"
        case claims = "cl", pairwiseSubject = "ps"
    }
}

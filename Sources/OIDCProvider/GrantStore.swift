import Crypto
import Foundation
import Synchronization

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
}

/// Authorization codes, access tokens and refresh-token families.
///
/// Tokens are looked up by the SHA-256 of their value; the values themselves are never kept.
/// A refresh token belongs to a family that starts at one code redemption; rotating hands out the
/// family's next token, and presenting an earlier one revokes the family and its access tokens.
final class GrantStore: Sendable {
    struct CodeEntry: Sendable {
        var grant: AuthorizationGrant
        var expiresAt: Date
        /// Set once redeemed; a second redemption revokes what the first one minted.
        var redeemed = false
        var mintedFamily: String?
        var mintedAccessToken: String?
    }

    struct AccessEntry: Sendable {
        var grant: AuthorizationGrant
        var audience: [String]
        var expiresAt: Date
        var issuedAt: Date
        var familyID: String?
        var jti: String
    }

    struct Family: Sendable {
        var grant: AuthorizationGrant
        var currentTokenHash: String
        var expiresAt: Date
        var accessTokens: Set<String>
        var retiredTokenHashes: Set<String>
    }

    struct State: Sendable {
        var codes: [String: CodeEntry] = [:]
        var access: [String: AccessEntry] = [:]
        var families: [String: Family] = [:]
        /// refresh token hash → family ID, for current and retired tokens.
        var refreshIndex: [String: String] = [:]
    }

    let state = Mutex(State())

    static func hash(_ token: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data(token.utf8)))
    }

    func storeCode(_ code: String, grant: AuthorizationGrant, expiresAt: Date) {
        state.withLock { $0.codes[Self.hash(code)] = CodeEntry(grant: grant, expiresAt: expiresAt) }
    }

    enum CodeLookup {
        case valid(AuthorizationGrant)
        case unknown
        case expired
        case replayed
    }

    /// Redeems a code once. A replay revokes the family and access token the first redemption
    /// produced (OAuth 2.0 Security BCP §4.5).
    func redeemCode(_ code: String, now: Date) -> CodeLookup {
        let key = Self.hash(code)
        return state.withLock { state in
            guard var entry = state.codes[key] else { return .unknown }
            if entry.redeemed {
                if let family = entry.mintedFamily { Self.revokeFamily(family, in: &state) }
                if let access = entry.mintedAccessToken { state.access[access] = nil }
                entry.mintedFamily = nil
                entry.mintedAccessToken = nil
                state.codes[key] = entry
                return .replayed
            }
            guard entry.expiresAt > now else {
                state.codes[key] = nil
                return .expired
            }
            entry.redeemed = true
            state.codes[key] = entry
            return .valid(entry.grant)
        }
    }

    /// Records what a code minted, so that a replay of it can revoke them.
    func recordMinted(code: String, familyID: String?, accessTokenHash: String) {
        state.withLock { state in
            let key = Self.hash(code)
            state.codes[key]?.mintedFamily = familyID
            state.codes[key]?.mintedAccessToken = accessTokenHash
        }
    }

    func storeAccessToken(_ token: String, entry: AccessEntry) -> String {
        let key = Self.hash(token)
        state.withLock { state in
            state.access[key] = entry
            if let family = entry.familyID { state.families[family]?.accessTokens.insert(key) }
        }
        return key
    }

    func accessToken(_ token: String) -> AccessEntry? {
        state.withLock { $0.access[Self.hash(token)] }
    }

    func removeAccessToken(_ token: String) {
        _ = state.withLock { $0.access.removeValue(forKey: Self.hash(token)) }
    }

    func startFamily(grant: AuthorizationGrant, refreshToken: String, expiresAt: Date) -> String {
        let id = RandomToken.make(bytes: 16)
        let key = Self.hash(refreshToken)
        state.withLock { state in
            state.families[id] = Family(
                grant: grant, currentTokenHash: key, expiresAt: expiresAt, accessTokens: [], retiredTokenHashes: [])
            state.refreshIndex[key] = id
        }
        return id
    }

    enum RefreshLookup {
        case valid(familyID: String, grant: AuthorizationGrant)
        case unknown
        case expired
        case reused
        case rejected(OAuthError)
    }

    /// Rotates a refresh token: the presented one is retired and `next` becomes current.
    /// Presenting a retired token revokes the whole family.
    /// `check` sees the grant before anything changes; an error from it leaves the token usable.
    func rotate(
        _ presented: String, next: String, expiresAt: Date, now: Date, clientID: String,
        check: (AuthorizationGrant) -> OAuthError?
    ) -> RefreshLookup {
        let key = Self.hash(presented)
        return state.withLock { state in
            guard let familyID = state.refreshIndex[key], var family = state.families[familyID] else {
                return .unknown
            }
            guard family.grant.clientID == clientID else { return .unknown }
            guard family.currentTokenHash == key else {
                Self.revokeFamily(familyID, in: &state)
                return .reused
            }
            guard family.expiresAt > now else {
                Self.revokeFamily(familyID, in: &state)
                return .expired
            }
            if let error = check(family.grant) { return .rejected(error) }
            let nextKey = Self.hash(next)
            family.retiredTokenHashes.insert(key)
            family.currentTokenHash = nextKey
            family.expiresAt = expiresAt
            state.families[familyID] = family
            state.refreshIndex[nextKey] = familyID
            return .valid(familyID: familyID, grant: family.grant)
        }
    }

    private static func revokeFamily(_ id: String, in state: inout State) {
        guard let family = state.families.removeValue(forKey: id) else { return }
        for key in family.accessTokens { state.access[key] = nil }
        state.refreshIndex[family.currentTokenHash] = nil
        for key in family.retiredTokenHashes { state.refreshIndex[key] = nil }
    }

    /// Drops expired codes, access tokens and families.
    func sweep(now: Date) {
        state.withLock { state in
            state.codes = state.codes.filter { $0.value.expiresAt > now }
            state.access = state.access.filter { $0.value.expiresAt > now }
            for (id, family) in state.families where family.expiresAt <= now {
                Self.revokeFamily(id, in: &state)
            }
        }
    }

    /// Forgets everything issued to `clientID` (when the client is deleted).
    func purge(clientID: String) {
        state.withLock { state in
            state.codes = state.codes.filter { $0.value.grant.clientID != clientID }
            state.access = state.access.filter { $0.value.grant.clientID != clientID }
            for (id, family) in state.families where family.grant.clientID == clientID {
                Self.revokeFamily(id, in: &state)
            }
        }
    }

    /// Counts for metrics and tests.
    var counts: (codes: Int, accessTokens: Int, families: Int) {
        state.withLock { ($0.codes.count, $0.access.count, $0.families.count) }
    }
}

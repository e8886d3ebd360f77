import Foundation

/// Makes the grants held in memory share their text: every login of the same person on the same
/// device, and every login to the same client, points at one copy of the identity's strings and
/// lists and of the client's ID, redirect URI, scopes and resources, instead of the copy each
/// WhoIs answer and request decoded afresh.
///
/// An equal value already seen is returned in place of the one given (a Swift copy of a string
/// or array shares its storage), so nothing changes but memory. Each table is emptied when it
/// passes ``limit`` entries; records made before keep sharing what they share.
struct GrantInterner: Sendable {
    /// Entries per table before it is emptied.
    static let limit = 20_000

    private var identities: [IdentityKey: UserIdentity] = [:]
    private var strings: [String: String] = [:]
    private var lists: [[String]: [String]] = [:]

    private struct IdentityKey: Hashable {
        var userID: Int64
        var nodeID: Int64
    }

    /// `grant`, its parts replaced by equal ones already held.
    mutating func intern(_ grant: AuthorizationGrant) -> AuthorizationGrant {
        var grant = grant
        grant.identity = intern(grant.identity)
        grant.clientID = intern(grant.clientID)
        grant.redirectURI = intern(grant.redirectURI)
        grant.scopes = intern(grant.scopes)
        grant.resources = intern(grant.resources)
        return grant
    }

    private mutating func intern(_ identity: UserIdentity) -> UserIdentity {
        let key = IdentityKey(userID: identity.userID, nodeID: identity.nodeID)
        if let held = identities[key], held == identity { return held }
        if identities.count >= Self.limit { identities.removeAll() }
        identities[key] = identity
        return identity
    }

    private mutating func intern(_ string: String) -> String {
        if let held = strings[string] { return held }
        if strings.count >= Self.limit { strings.removeAll() }
        strings[string] = string
        return string
    }

    private mutating func intern(_ list: [String]) -> [String] {
        guard !list.isEmpty else { return list }
        if let held = lists[list] { return held }
        if lists.count >= Self.limit { lists.removeAll() }
        lists[list] = list
        return list
    }
}

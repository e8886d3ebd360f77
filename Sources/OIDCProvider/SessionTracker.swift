import Foundation
import Synchronization

/// When each user last authenticated on each device, for `auth_time`.
///
/// tsidp has no login page: the first authorization of a user on a device is their
/// authentication. Later authorizations reuse that time (so `prompt=none` and `id_token_hint`
/// requests keep `auth_time`, as OIDC Core §2 requires), while `prompt=login` and an exceeded
/// `max_age` count as a new authentication with a new time.
final class SessionTracker: Sendable {
    struct Key: Hashable { var nodeID: Int64; var userID: Int64 }

    /// Sessions unused for this long are forgotten.
    static let idleLimit: TimeInterval = 30 * 24 * 3600
    private let sessions = Mutex<[Key: (authTime: Date, lastUsed: Date)]>([:])

    /// The `auth_time` for an authorization of `identity` at `now`.
    func authenticate(_ identity: UserIdentity, at now: Date, forceNew: Bool, maxAge: Int?) -> Date {
        let key = Key(nodeID: identity.nodeID, userID: identity.userID)
        return sessions.withLock { sessions in
            var authTime = now
            if !forceNew, let existing = sessions[key], now.timeIntervalSince(existing.lastUsed) < Self.idleLimit {
                if let maxAge, now.timeIntervalSince(existing.authTime) > Double(maxAge) {
                    authTime = now
                } else {
                    authTime = existing.authTime
                }
            }
            sessions[key] = (authTime, now)
            if sessions.count > 10_000 {
                sessions = sessions.filter { now.timeIntervalSince($0.value.lastUsed) < Self.idleLimit }
            }
            return authTime
        }
    }
}

import Foundation
import Synchronization

/// Authorization requests parked while the person looks at the consent page: memory only,
/// short-lived, bounded per user and in all, each answerable once.
final class ConsentRequests: Sendable {
    /// A validated authorization request, waiting for the person's decision.
    struct Parked: Sendable {
        var csrfToken: String
        var grant: AuthorizationGrant
        var forceNewAuthentication: Bool
        var maxAge: Int?
        var responseMode: String
        var state: String?
        var expiresAt: Date
    }

    /// How long a consent page stays answerable.
    static let lifetime: TimeInterval = 600
    static let perUser = 16
    static let inAll = 10_000

    private let parked = Mutex<[String: Parked]>([:])

    /// Parks `request` and returns its ID, or `nil` when the user or everyone has too many open.
    func park(_ request: Parked, now: Date) -> String? {
        parked.withLock { parked in
            if parked.count >= Self.inAll { parked = parked.filter { $0.value.expiresAt > now } }
            let mine = parked.values.lazy.filter {
                $0.grant.identity.userID == request.grant.identity.userID && $0.expiresAt > now
            }.count
            guard parked.count < Self.inAll, mine < Self.perUser else { return nil }
            let id = RandomToken.make(bytes: 24)
            parked[id] = request
            return id
        }
    }

    /// Takes the request `id` out (each is answered once); `nil` when unknown or expired.
    func take(_ id: String, now: Date) -> Parked? {
        parked.withLock { parked in
            guard let request = parked.removeValue(forKey: id), request.expiresAt > now else { return nil }
            return request
        }
    }

    /// Forgets expired requests.
    func sweep(now: Date) {
        parked.withLock { $0 = $0.filter { $0.value.expiresAt > now } }
    }
}

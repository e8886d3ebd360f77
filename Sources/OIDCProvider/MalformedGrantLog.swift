import Logging
import Synchronization

/// Remembers which nodes' malformed tsidp grants have already been logged, so that a grant that
/// does not parse is logged once per node (and again only when the problem changes), not on
/// every request the node makes.
final class MalformedGrantLog: Sendable {
    /// Beyond this many remembered problems the memory starts over (a problem is then logged again).
    static let capacity = 4096

    private let logged = Mutex<Set<String>>([])

    /// Logs `problem` for the node of `identity`, unless that node's same problem was logged before.
    ///
    /// - Returns: whether a line was logged.
    @discardableResult
    func report(_ problem: CapabilityError, for identity: UserIdentity, logger: Logger) -> Bool {
        report(
            problem, for: identity, logger: logger,
            message: "the tsidp grant of a caller does not parse; the caller is granted nothing until it is fixed")
    }

    /// Logs `problem`, a rule that is ignored while the rest of the grant applies, once per node.
    @discardableResult
    func reportIgnored(_ problem: CapabilityError, for identity: UserIdentity, logger: Logger) -> Bool {
        report(
            problem, for: identity, logger: logger,
            message: "a rule of a caller's tsidp grant is ignored; the sign-in goes on without it")
    }

    private func report(
        _ problem: CapabilityError, for identity: UserIdentity, logger: Logger, message: Logger.Message
    ) -> Bool {
        let node = identity.nodeStableID.isEmpty ? "\(identity.nodeID)" : identity.nodeStableID
        let first = logged.withLock { logged in
            if logged.count >= Self.capacity { logged.removeAll() }
            return logged.insert(node + "\n" + problem.message).inserted
        }
        guard first else { return false }
        logger.warning(
            message,
            metadata: [
                "node": "\(identity.nodeName.isEmpty ? node : identity.nodeName)",
                "user": "\(identity.loginName)", "problem": "\(problem.message)",
            ])
        return true
    }
}

import Synchronization

/// Runs an action once, when each of a number of listeners has reported that it is running, so
/// that "tsidp is serving" is never said before a listener that then fails to open its socket.
final class AllRunning: Sendable {
    private let remaining: Mutex<Int>
    private let action: @Sendable () -> Void

    /// - Parameters:
    ///   - count: how many listeners must report; with 0 the action never runs.
    ///   - action: what to do when the last one reports.
    init(count: Int, action: @escaping @Sendable () -> Void) {
        self.remaining = Mutex(count)
        self.action = action
    }

    /// One listener is running.
    func arrive() {
        let last = remaining.withLock { count in
            count -= 1
            return count == 0
        }
        if last { action() }
    }
}

import Tailnet

/// What the rest of tsidp knows about its own node: whether it runs, and its status when it last
/// came up. The supervisor is the only writer.
actor EmbeddedNode {
    private(set) var status: Status?
    private(set) var isRunning = false
    private var waiters: [Int: CheckedContinuation<Status?, Never>] = [:]
    private var nextWaiter = 0

    /// The node reached Running with `status`.
    func up(_ status: Status) {
        self.status = status
        isRunning = true
        let waiting = waiters
        waiters = [:]
        for waiter in waiting.values { waiter.resume(returning: status) }
    }

    /// tailscaled went away; it is being restarted.
    func down() {
        isRunning = false
    }

    /// Returns the status of the first time the node runs (at once if it already has), or nil
    /// when the waiting task is cancelled first.
    func firstRunning() async -> Status? {
        if let status { return status }
        let id = nextWaiter
        nextWaiter += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(returning: nil)
                } else {
                    waiters[id] = continuation
                }
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    private func cancel(_ id: Int) {
        waiters.removeValue(forKey: id)?.resume(returning: nil)
    }
}

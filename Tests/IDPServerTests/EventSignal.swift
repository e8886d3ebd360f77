import NIOConcurrencyHelpers

/// Wakes waiters whenever something they watch changes, so that tests await events (with a
/// bound) instead of sleeping and polling.
final class EventSignal: Sendable {
    private struct State {
        /// Bumped on every event, so that a waiter never misses one.
        var version = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = NIOLockedValueBox(State())

    /// Records an event and wakes every waiter.
    func notify() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.version += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until `condition` holds, re-checking it after every event, or until `limit` passed.
    ///
    /// - Returns: whether the condition holds.
    func wait(within limit: Duration = .seconds(10), until condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while true {
            let version = state.withLockedValue { $0.version }
            if condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            await nextEvent(after: version, before: deadline)
        }
    }

    /// Returns after the first event following `version`, or at `deadline`.
    private func nextEvent(after version: Int, before deadline: ContinuousClock.Instant) async {
        let id = state.withLockedValue { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timer = Task {
            try? await Task.sleep(until: deadline)
            let waiter = self.state.withLockedValue { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLockedValue { state -> Bool in
                if state.version != version || ContinuousClock.now >= deadline { return true }
                state.waiters[id] = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        timer.cancel()
    }
}

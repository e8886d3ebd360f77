/// A one-shot signal: tasks wait until it fires (a listener waits for the simulated tailnet).
public actor ReadySignal {
    private var fired = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public init() {}

    /// Releases every waiter, now and later.
    public func fire() {
        fired = true
        for waiter in waiters { waiter.resume() }
        waiters.removeAll()
    }

    /// Returns once the signal has fired.
    public func wait() async {
        if fired { return }
        await withCheckedContinuation { waiters.append($0) }
    }
}

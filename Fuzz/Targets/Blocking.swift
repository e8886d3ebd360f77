import Dispatch
import Synchronization

/// Runs `body` as a detached task and blocks the calling thread until it has finished.
///
/// libFuzzer calls its entry points on the process's main thread, which is not one of the Swift
/// concurrency pool's threads, so blocking it cannot starve the task it waits for. The task must
/// not need the main actor (nothing in tsidp's libraries does).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let outcome = Outcome<T>()
    let finished = DispatchSemaphore(value: 0)
    Task.detached {
        let value = await body()
        outcome.value.withLock { $0 = value }
        finished.signal()
    }
    finished.wait()
    guard let value = outcome.value.withLock({ $0.take() }) else {
        fatalError("the fuzz task finished without a result")
    }
    return value
}

/// Where the detached task leaves its result for the waiting thread.
private final class Outcome<T: Sendable>: Sendable {
    let value = Mutex<T?>(nil)
}

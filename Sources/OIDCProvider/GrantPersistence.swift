import Foundation
import StateStore

/// Writes grant state to the store, batching concurrent requests into one write (group commit).
///
/// A caller mutates the in-memory state, then awaits ``commit()``; it returns once a write that
/// started after the call (and so includes the change) has reached the store. While one write is
/// in flight, every caller that arrives waits for the next one, which covers them all.
actor GrantPersistence {
    /// The state key of the grant file.
    static let stateKey = "tsidp-grants.json"

    private let store: any StateStore
    private let snapshot: @Sendable () throws -> Data
    private var requested = 0
    private var completed = 0
    private var writing = false
    private var waiters: [(generation: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    /// How many store writes were made (tests observe batching through it).
    private(set) var writes = 0

    init(store: any StateStore, snapshot: @escaping @Sendable () throws -> Data) {
        self.store = store
        self.snapshot = snapshot
    }

    /// Returns once the current in-memory state is durable.
    func commit() async throws {
        requested += 1
        let generation = requested
        if !writing {
            writing = true
            Task { await self.writeLoop() }
        }
        try await withCheckedThrowingContinuation { continuation in
            waiters.append((generation, continuation))
        }
    }

    private func writeLoop() async {
        while completed < requested {
            let target = requested
            var failure: (any Error)?
            do {
                let data = try snapshot()
                try await store.write(Self.stateKey, data)
                writes += 1
            } catch {
                failure = error
            }
            completed = target
            let ready = waiters.filter { $0.generation <= target }
            waiters.removeAll { $0.generation <= target }
            for waiter in ready {
                if let failure {
                    waiter.continuation.resume(throwing: failure)
                } else {
                    waiter.continuation.resume()
                }
            }
        }
        writing = false
    }
}

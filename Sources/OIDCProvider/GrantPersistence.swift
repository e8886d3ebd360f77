import Foundation
import StateStore

/// Writes grant state to the store, batching concurrent requests into one write (group commit).
///
/// A caller mutates the in-memory state, then awaits ``commit()``; it returns once a write that
/// started after the call (and so includes the change) has reached the store. While one write is
/// in flight, every caller that arrives waits for the next one, which covers them all.
actor GrantPersistence {
    private let store: any StateStore
    private let grants: GrantStore
    private var requested = 0
    private var completed = 0
    private var writing = false
    private var waiters: [(generation: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    /// How many store writes were made (tests observe batching through it).
    private(set) var writes = 0

    init(store: any StateStore, grants: GrantStore) {
        self.store = store
        self.grants = grants
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
            var buckets = Set<Int>()
            do {
                let dirty = try grants.dirtySnapshot()
                buckets = dirty.buckets
                if !dirty.entries.isEmpty {
                    try await store.write(dirty.entries)
                    writes += 1
                }
            } catch {
                grants.markDirty(buckets)
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

import Foundation
import StateStore

/// Writes grant state to the store, batching concurrent requests into one write (group commit).
///
/// Each write appends a small journal entry holding only what changed
/// (`tsidp-grants-log-<n>.json`); every ``compactionInterval`` entries the changed buckets are
/// rewritten and the journal is deleted. A write therefore costs what it changed, not what the
/// store holds.
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
    /// Journal entries written since the last compaction, oldest first.
    private var journal: [String] = []
    private var nextSequence = 1
    /// Journal entries allowed before the buckets are rewritten.
    static let compactionInterval = 64

    /// Continues the journal an earlier run left (its entries were applied at restore).
    func resume(journal keys: [String]) {
        journal = keys.sorted()
        if let last = journal.last,
            let number = Int(last.dropFirst("tsidp-grants-log-".count).dropLast(".json".count))
        {
            nextSequence = number + 1
        }
    }

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
            do {
                try await writeOnce()
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

    private func writeOnce() async throws {
        let delta = try grants.delta()
        guard let text = delta.text else { return }
        if journal.count < Self.compactionInterval {
            let key = GrantStore.logKey(nextSequence)
            do {
                try await store.write(key, text)
            } catch {
                grants.requeue(families: delta.families, access: delta.access)
                throw error
            }
            nextSequence += 1
            journal.append(key)
            writes += 1
            return
        }
        // Compaction: rewrite the buckets changed since the last one (they include this delta),
        // and only then delete the journal they make redundant.
        let snapshot: (entries: [String: Data?], buckets: Set<Int>)
        do {
            snapshot = try grants.dirtySnapshot()
            if !snapshot.entries.isEmpty { try await store.write(snapshot.entries) }
        } catch {
            grants.requeue(families: delta.families, access: delta.access)
            throw error
        }
        writes += 1
        var deletions: [String: Data?] = [:]
        for key in journal { deletions.updateValue(nil, forKey: key) }
        journal.removeAll()
        try? await store.write(deletions)
    }
}

import Foundation
import StateStore
import Synchronization

/// A ``StateStore`` wrapper that fails on demand, for tests of what tsidp does when storage
/// breaks: a full disk, a flaky volume, a Kubernetes API error in the middle of a batch.
///
/// Faults are planned ahead with ``failWrite(_:)`` and friends or switched on and off with
/// ``failAllWrites``; every operation is counted, so a test can step through each write of a
/// sequence (for example every step of a compaction) deterministically.
public final class FaultInjectingStateStore: StateStore, Sendable {
    /// What happens to one planned write.
    public enum WriteFault: Sendable, Equatable {
        /// Nothing of the batch is written.
        case fail
        /// The first `count` entries of the batch (in key order, deletions included) are applied,
        /// then the write fails: a torn batch.
        case partial(count: Int)
    }

    struct Plan {
        var writeNumber = 0
        var planned: [Int: WriteFault] = [:]
        var failAllWrites = false
        var failDeletes = false
        var failReads: Set<String> = []
        var failListing = false
        var log: [[String: Data?]] = []
    }

    /// The store that receives what is not failed.
    public let inner: any StateStore
    private let plan = Mutex(Plan())

    public init(wrapping inner: any StateStore) {
        self.inner = inner
    }

    public var description: String { "faulty(\(inner.description))" }

    /// Makes write number `number` (1-based, counting every ``write(_:)`` call) fail as `fault`.
    public func failWrite(_ number: Int, _ fault: WriteFault = .fail) {
        plan.withLock { $0.planned[number] = fault }
    }

    /// Makes the next write fail as `fault`.
    public func failNextWrite(_ fault: WriteFault = .fail) {
        plan.withLock { $0.planned[$0.writeNumber + 1] = fault }
    }

    /// While true, every write fails (a full disk).
    public var failAllWrites: Bool {
        get { plan.withLock { $0.failAllWrites } }
        set { plan.withLock { $0.failAllWrites = newValue } }
    }

    /// While true, a batch that deletes anything fails before it changes anything.
    public var failDeletes: Bool {
        get { plan.withLock { $0.failDeletes } }
        set { plan.withLock { $0.failDeletes = newValue } }
    }

    /// Keys whose reads fail with an I/O error.
    public var failReads: Set<String> {
        get { plan.withLock { $0.failReads } }
        set { plan.withLock { $0.failReads = newValue } }
    }

    /// While true, listing the keys fails.
    public var failListing: Bool {
        get { plan.withLock { $0.failListing } }
        set { plan.withLock { $0.failListing = newValue } }
    }

    /// How many writes have been attempted.
    public var writeCount: Int { plan.withLock { $0.writeNumber } }

    /// Every batch attempted, in order, failed or not.
    public var attemptedBatches: [[String: Data?]] { plan.withLock { $0.log } }

    public func read(_ key: String) async throws -> Data? {
        if plan.withLock({ $0.failReads.contains(key) }) {
            throw StateStoreError(.io, "injected read error on \(key)")
        }
        return try await inner.read(key)
    }

    public func keys() async throws -> [String] {
        if plan.withLock({ $0.failListing }) { throw StateStoreError(.io, "injected listing error") }
        return try await inner.keys()
    }

    public func write(_ entries: [String: Data?]) async throws {
        let fault: WriteFault? = plan.withLock { plan in
            plan.writeNumber += 1
            plan.log.append(entries)
            if plan.failAllWrites { return .fail }
            if plan.failDeletes, entries.values.contains(where: { $0 == nil }) { return .fail }
            return plan.planned.removeValue(forKey: plan.writeNumber)
        }
        switch fault {
        case nil:
            try await inner.write(entries)
        case .fail:
            throw StateStoreError(.io, "injected write error")
        case .partial(let count):
            for (key, value) in entries.sorted(by: { $0.key < $1.key }).prefix(count) {
                try await inner.write([key: value])
            }
            throw StateStoreError(.io, "injected write error after \(count) of \(entries.count) entries")
        }
    }
}

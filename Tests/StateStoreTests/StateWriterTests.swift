import Foundation
import ServiceLifecycle
import StateStore
import StateStoreTesting
import Synchronization
import Testing

/// A source that collects values and writes all collected so far as one batch.
final class CountingSource: StateWriteSource, Sendable {
    struct State {
        var queued: [(Int, WriteTicket)] = []
        var inFlight: [(Int, WriteTicket)] = []
        var stored: [Int] = []
        var batches: [[Int]] = []
    }

    let name = "test"
    let state = Mutex(State())

    /// Queues `value` and returns once it is stored.
    func add(_ value: Int, through writer: StateWriter) async throws {
        let ticket = WriteTicket()
        state.withLock { $0.queued.append((value, ticket)) }
        await writer.flush(self)
        try await ticket.wait()
    }

    func nextBatch() async -> StateBatch? {
        state.withLock { state in
            guard !state.queued.isEmpty else { return nil }
            state.inFlight = state.queued
            state.queued.removeAll()
            let values = state.inFlight.map(\.0)
            state.batches.append(values)
            return StateBatch(entries: ["values-\(state.batches.count)": Data("\(values)".utf8)])
        }
    }

    func finish(_ batch: StateBatch, error: (any Error)?) async {
        let tickets = state.withLock { state in
            if error == nil { state.stored += state.inFlight.map(\.0) }
            defer { state.inFlight.removeAll() }
            return state.inFlight.map(\.1)
        }
        for ticket in tickets { ticket.resolve(error) }
    }

    func abandon(_ error: any Error) async {
        let tickets = state.withLock { state in
            defer { state.queued.removeAll() }
            return state.queued.map(\.1)
        }
        for ticket in tickets { ticket.resolve(error) }
    }
}

/// A store whose writes wait until the test lets them go.
final class GatedStore: StateStore {
    let inner = MemoryStateStore()
    let gate = Mutex<[CheckedContinuation<Void, Never>]>([])
    let (arrivals, arrived) = AsyncStream.makeStream(of: Void.self)

    func read(_ key: String) async throws -> Data? { try await inner.read(key) }
    func keys() async throws -> [String] { try await inner.keys() }
    var description: String { "gated" }

    func write(_ entries: [String: Data?]) async throws {
        await withCheckedContinuation { continuation in
            gate.withLock { $0.append(continuation) }
            arrived.yield()
        }
        try await inner.write(entries)
    }

    /// Lets every waiting write go.
    func open() {
        let waiting = gate.withLock { gate in
            defer { gate.removeAll() }
            return gate
        }
        for continuation in waiting { continuation.resume() }
    }
}

@Suite("State writer")
struct StateWriterTests {
    @Test("concurrent changes share store writes, in order, and every one is stored")
    func groupCommit() async throws {
        let store = GatedStore()
        let writer = StateWriter(store: store)
        let source = CountingSource()
        var arrivals = store.arrivals.makeAsyncIterator()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await source.add(0, through: writer) }
            // The first write is in progress; everything that arrives now waits for the next one.
            _ = await arrivals.next()
            for value in 1...20 { group.addTask { try await source.add(value, through: writer) } }
            while source.state.withLock({ $0.queued.count }) < 20 { await Task.yield() }
            store.open()
            _ = await arrivals.next()
            store.open()
            try await group.waitForAll()
        }
        let state = source.state.withLock { $0 }
        #expect(state.batches.count == 2)
        #expect(state.batches[0] == [0])
        #expect(Set(state.batches[1]) == Set(1...20))
        #expect(Set(state.stored) == Set(0...20))
        #expect(await writer.writes == 2)
    }

    @Test("a failed write fails exactly the changes of that batch; later ones go ahead")
    func failure() async throws {
        let store = FaultInjectingStateStore(wrapping: MemoryStateStore())
        let writer = StateWriter(store: store)
        let source = CountingSource()
        store.failNextWrite()
        await #expect(throws: StateStoreError.self) { try await source.add(1, through: writer) }
        try await source.add(2, through: writer)
        #expect(source.state.withLock { $0.stored } == [2])
        #expect(await writer.failures == 1)
    }

    @Test("graceful shutdown lets the write in progress finish, then refuses new writes")
    func drain() async throws {
        let store = GatedStore()
        let writer = StateWriter(store: store)
        let source = CountingSource()
        var arrivals = store.arrivals.makeAsyncIterator()
        let group = ServiceGroup(services: [writer], logger: .init(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask { try await source.add(1, through: writer) }
            _ = await arrivals.next()
            // Shutdown starts while the write is in progress; the group can only finish once the
            // writer has drained, which needs the write to complete.
            await group.triggerGracefulShutdown()
            store.open()
            try await tasks.waitForAll()
        }
        #expect(source.state.withLock { $0.stored } == [1])
        await #expect(throws: StateStoreError.self) { try await source.add(2, through: writer) }
        #expect(source.state.withLock { $0.stored } == [1])
    }

    @Test("a ticket resolved before anyone waits keeps its outcome")
    func earlyResolution() async throws {
        let ok = WriteTicket()
        ok.resolve(nil)
        try await ok.wait()
        let failed = WriteTicket()
        failed.resolve(StateStoreError(.io, "disk full"))
        failed.resolve(nil)
        await #expect(throws: StateStoreError.self) { try await failed.wait() }
    }
}

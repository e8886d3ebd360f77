import Foundation
import StateStore
import Testing

@testable import OIDCProvider

/// A store whose writes can be held at a gate, recording the keys of every batch in the order
/// the writer sent them.
actor GatedStore: StateStore {
    let memory = MemoryStateStore()
    private var closed = false
    private var held: [CheckedContinuation<Void, Never>] = []
    private var arrivals: [CheckedContinuation<Void, Never>] = []
    /// Every batch written, in order.
    private(set) var log: [[String: Data?]] = []

    nonisolated var description: String { "gated" }

    func read(_ key: String) async throws -> Data? { try await memory.read(key) }
    func keys() async throws -> [String] { try await memory.keys() }

    func write(_ entries: [String: Data?]) async throws {
        log.append(entries)
        if closed {
            let waiting = arrivals
            arrivals.removeAll()
            for arrival in waiting { arrival.resume() }
            await withCheckedContinuation { held.append($0) }
        }
        try await memory.write(entries)
    }

    /// Holds every later write until ``open()``.
    func close() { closed = true }

    /// Lets held and later writes through.
    func open() {
        closed = false
        let waiting = held
        held.removeAll()
        for writer in waiting { writer.resume() }
    }

    /// Returns once a write is held at the gate.
    func heldWrite() async {
        guard held.isEmpty else { return }
        await withCheckedContinuation { arrivals.append($0) }
    }
}

@Suite("Grant compaction in steps")
struct GrantCompactionStepTests {
    /// How many writes the fault script makes with one bucket per step, without faults (50).
    static let scriptWrites = 52

    /// A batch that writes one journal entry (not one that deletes superseded entries).
    static func isJournal(_ batch: [String: Data?]) -> Bool {
        batch.count == 1 && batch.allSatisfy { GrantFileCodec.journalSequence($0.key) != nil && $0.value != nil }
    }

    /// A compaction step: bucket files only.
    static func isBuckets(_ batch: [String: Data?]) -> Bool {
        !batch.isEmpty && batch.keys.allSatisfy { GrantFileCodec.bucketIndex($0) != nil }
    }

    @Test(
        "with one bucket per step, every failed write at any step loses nothing and revives nothing",
        arguments: 1...scriptWrites)
    func stepwiseFailedWrite(_ number: Int) async throws {
        let rig = try await FaultRig.make(compaction: .stepwise(every: 3))
        rig.faulty.failWrite(number)
        try await rig.script()
        try await rig.checkAfterRestart("stepwise, write \(number) failed")
    }

    @Test(
        "with one bucket per step, a torn write at any step loses nothing and revives nothing",
        arguments: 1...scriptWrites)
    func stepwiseTornWrite(_ number: Int) async throws {
        let rig = try await FaultRig.make(compaction: .stepwise(every: 3))
        rig.faulty.failWrite(number, .partial(count: 1))
        try await rig.script()
        try await rig.checkAfterRestart("stepwise, write \(number) torn")
    }

    @Test("stepwise compaction writes one bucket at a time, oldest entries first, and still empties the journal")
    func oneBucketPerStep() async throws {
        let rig = try await FaultRig.make(compaction: .stepwise(every: 3))
        try await rig.script()
        #expect(rig.faulty.writeCount > 40, "the script must span many steps: \(rig.faulty.writeCount)")
        // No failure: every bucket batch is a single file.
        let bucketBatches = rig.faulty.attemptedBatches.filter(Self.isBuckets).map { $0.keys.sorted() }
        #expect(bucketBatches.count > 10)
        #expect(bucketBatches.allSatisfy { $0.count == 1 }, "\(bucketBatches.filter { $0.count != 1 })")
        let journal = rig.setup.provider.ledger.journalState
        #expect(journal.live.count < 3, "steps must have kept the journal short: \(journal.live.count)")
        // Every entry the ledger still calls live lacks a bucket that is dirty.
        for entry in journal.live {
            #expect(entry.buckets != 0)
            for index in 0..<GrantFileCodec.bucketCount where entry.buckets & (1 << UInt32(index)) != 0 {
                #expect(journal.dirty.contains(index))
            }
        }
        // Superseded entries are gone from the store.
        let stored = try await rig.memory.keys().compactMap(GrantFileCodec.journalSequence)
        #expect(Set(stored) == Set(journal.live.map(\.sequence)), "\(stored) vs \(journal.live.map(\.sequence))")
        try await rig.checkAfterRestart("stepwise, clean")
    }

    @Test("a request's change is written right after the compaction step in flight, never after two steps")
    func changesGoBetweenSteps() async throws {
        let base = try await Fixtures.provider()
        let gate = GatedStore()
        var configuration = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        configuration.grantCompaction = .stepwise(every: 2)
        let provider = Provider(
            configuration: configuration, keys: base.provider.keys, clients: base.provider.clients,
            writer: StateWriter(store: gate), now: { base.clock.now })
        try await provider.restoreGrants()
        let setup = base.with(provider: provider)

        // Two logins: the journal reaches the threshold and the writer compacts it, step by step.
        var tokens: [String] = []
        for _ in 0..<3 {
            let answer = await setup.redeem(try await setup.code())
            #expect(answer.status == 200)
            tokens.append(try #require(Fixtures.json(answer.body)["refresh_token"] as? String))
            await provider.ledger.idle()
        }
        // The next login's journal entry makes a compaction due; hold the first step at the gate.
        await gate.close()
        let login = Task { await setup.redeem(try await setup.code()).status }
        await gate.heldWrite()  // the login's journal entry
        var held = await gate.log.last ?? [:]
        #expect(Self.isJournal(held), "\(held.keys)")
        await gate.open()
        #expect(try await login.value == 200)
        // Now the writer is between the entry and its compaction steps, or in them. Hold the next
        // step, then make two refreshes wait behind it.
        await gate.close()
        let pendingBefore = await gate.log.count
        let stepTask = Task { await setup.redeem(try await setup.code()).status }
        await gate.heldWrite()
        held = await gate.log.last ?? [:]
        let refreshes = [tokens[0], tokens[1]].map { token in Task { await setup.refresh(token).status } }
        // Behind the login's own entry only the refreshes wait; behind a held step or deletion the
        // login waits with them.
        let waiting = Self.isJournal(held) ? 2 : 3
        for _ in 0..<100_000 where provider.ledger.journalState.pending.count < waiting { await Task.yield() }
        #expect(provider.ledger.journalState.pending.count == waiting, "the refreshes must wait behind the held write")
        await gate.open()
        #expect(try await stepTask.value == 200)
        for refresh in refreshes { #expect(await refresh.value == 200) }
        await provider.ledger.idle()
        let order = Array(await gate.log.dropFirst(pendingBefore))
        // Whatever the held write was, the first write after it that is not a compaction step
        // carries both refreshes, and no second step comes between.
        let afterHeld = Array(order.dropFirst())
        let firstJournal = try #require(afterHeld.firstIndex(where: Self.isJournal), "\(order.map(\.keys))")
        if Self.isBuckets(held) {
            #expect(firstJournal == 0, "a step was held; the refreshes' entry must come next: \(order.map(\.keys))")
        } else {
            #expect(
                firstJournal <= 1, "at most one step may come before the refreshes' entry: \(order.map(\.keys))")
        }
        // Both refreshes are in that one entry (group commit), and nothing else is lost.
        let entry = try #require(afterHeld[firstJournal].values.first ?? nil)
        let object = try #require(try JSONSerialization.jsonObject(with: entry) as? [String: Any])
        let families = try #require(object["families"] as? [String: Any])
        #expect(families.count == waiting, "\(families.keys)")
    }
}

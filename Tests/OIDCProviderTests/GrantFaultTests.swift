import Foundation
import StateStore
import StateStoreTesting
import Testing

@testable import OIDCProvider

/// What a relying party knows about its logins, kept beside a provider whose store fails on
/// purpose: the current (confirmed) refresh token of each login, the tokens it has used, and the
/// logins it revoked. After a restart the store must agree with it exactly.
final class LoginBook: @unchecked Sendable {
    struct Login {
        var current: String
        var used: [String] = []
        var revoked = false
    }

    var logins: [Login] = []
}

/// A provider over a fault-injecting store, compacting every few journal entries so that a short
/// script passes through several compactions.
struct FaultRig {
    let base: Fixtures.Setup
    let faulty: FaultInjectingStateStore
    let memory: MemoryStateStore
    let setup: Fixtures.Setup
    let book = LoginBook()
    let compaction: GrantLedger.CompactionPolicy

    /// - Parameter compaction: every 3 journal entries, all buckets at once by default;
    ///   ``GrantLedger/CompactionPolicy/stepwise(every:)`` makes every bucket a write of its own.
    static func make(compaction: GrantLedger.CompactionPolicy = .every(3)) async throws -> FaultRig {
        let base = try await Fixtures.provider()
        let memory = MemoryStateStore()
        let faulty = FaultInjectingStateStore(wrapping: memory)
        let provider = try await Self.provider(base, store: faulty, compaction: compaction)
        return FaultRig(
            base: base, faulty: faulty, memory: memory, setup: base.with(provider: provider), compaction: compaction)
    }

    static func provider(
        _ base: Fixtures.Setup, store: any StateStore, compaction: GrantLedger.CompactionPolicy
    ) async throws -> Provider {
        var configuration = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        configuration.grantCompaction = compaction
        configuration.sweepBatch = 3
        let provider = Provider(
            configuration: configuration, keys: base.provider.keys, clients: base.provider.clients,
            writer: StateWriter(store: store), now: { base.clock.now })
        try await provider.restoreGrants()
        return provider
    }

    /// A restarted provider over a copy of what the store holds now (each check may change it).
    func restartedCopy() async throws -> Fixtures.Setup {
        // What the store holds once the writer has finished: housekeeping after the last
        // request's write (a compaction step, deletions) may still be under way.
        await setup.provider.ledger.idle()
        var files: [String: Data] = [:]
        for key in try await memory.keys() { files[key] = try await memory.read(key) }
        return base.with(
            provider: try await Self.provider(base, store: MemoryStateStore(files), compaction: compaction))
    }

    /// Runs `request` until it is not a 503; a write fault is one-shot, so the retry succeeds.
    /// After each attempt it waits for the writer to finish what the request left to it, so that
    /// the store's writes, and so the fault numbers, come in the same order every run.
    func retrying(_ request: () async -> TokenResponse) async -> (TokenResponse, failures: Int) {
        var failures = 0
        while true {
            let answer = await request()
            await setup.provider.ledger.idle()
            guard answer.status == 503, failures < 5 else { return (answer, failures) }
            failures += 1
        }
    }

    func login() async throws {
        let code = try await setup.code()
        let (answer, _) = await retrying { await setup.redeem(code) }
        guard answer.status == 200, let token = Fixtures.json(answer.body)["refresh_token"] as? String else {
            throw TestFailure("login failed: \(String(decoding: answer.body, as: UTF8.self))")
        }
        book.logins.append(.init(current: token))
    }

    func refresh(_ index: Int) async throws {
        let old = book.logins[index].current
        let (answer, _) = await retrying { await setup.refresh(old) }
        guard answer.status == 200, let token = Fixtures.json(answer.body)["refresh_token"] as? String else {
            throw TestFailure("refresh of login \(index) failed: \(String(decoding: answer.body, as: UTF8.self))")
        }
        book.logins[index].used.append(old)
        book.logins[index].current = token
    }

    func revoke(_ index: Int) async throws {
        let token = book.logins[index].current
        let (answer, _) = await retrying {
            await setup.provider.revoke(
                Fixtures.query([("token", token), ("token_type_hint", "refresh_token")]),
                authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        }
        guard answer.status == 200 else { throw TestFailure("revocation of login \(index) failed") }
        book.logins[index].revoked = true
    }

    /// A fixed mix of logins, refreshes and a revocation: with compaction every 3 entries it
    /// writes about 25 times (journal entries, compactions, deletions).
    func script() async throws {
        for _ in 0..<3 { try await login() }
        try await refresh(0)
        try await revoke(1)
        try await refresh(2)
        try await refresh(0)
        try await login()
        try await refresh(3)
        try await refresh(0)
        try await refresh(2)
        try await login()
        try await refresh(4)
        try await refresh(3)
        try await refresh(0)
    }

    /// The three properties, each on its own restarted copy: every confirmed refresh token works
    /// exactly once more; no used or revoked token works; no confirmed login is lost.
    func checkAfterRestart(_ label: String) async throws {
        // The journal's running size matches its entries.
        let journal = setup.provider.ledger.journalState
        #expect(journal.liveBytes == journal.live.reduce(0) { $0 + $1.bytes }, "\(label)")
        // The bucket index lists exactly the records in memory, after every change and undo.
        setup.provider.ledger.read { tables in
            for index in 0..<GrantFileCodec.bucketCount {
                let keys = tables.buckets[index]
                #expect(keys.families == Set(tables.families.keys.filter { GrantFileCodec.bucket(of: $0) == index }))
                #expect(keys.access == Set(tables.access.keys.filter { GrantFileCodec.bucket(of: $0) == index }))
                #expect(keys.consents == Set(tables.consents.keys.filter { GrantFileCodec.bucket(of: $0) == index }))
            }
        }
        let confirmed = try await restartedCopy()
        for (index, login) in book.logins.enumerated() where !login.revoked {
            let first = await confirmed.refresh(login.current)
            #expect(
                first.status == 200, "\(label): login \(index) lost: \(String(decoding: first.body, as: UTF8.self))")
            let second = await confirmed.refresh(login.current)
            #expect(second.status == 400, "\(label): login \(index)'s token worked twice")
        }
        for (index, login) in book.logins.enumerated() {
            for used in login.used {
                let copy = try await restartedCopy()
                let answer = await copy.refresh(used)
                #expect(answer.status == 400, "\(label): a used token of login \(index) works again")
            }
            if login.revoked {
                let copy = try await restartedCopy()
                let answer = await copy.refresh(login.current)
                #expect(answer.status == 400, "\(label): revoked login \(index) works again")
            }
        }
        // Every state file parses.
        for key in try await memory.keys() where key.hasPrefix("tsidp-grants-") {
            let data = try #require(try await memory.read(key))
            #expect((try? JSONSerialization.jsonObject(with: data)) != nil, "\(label): \(key) does not parse")
        }
    }
}

@Suite("Grant state under storage faults")
struct GrantFaultTests {
    /// How many writes the script makes without faults (each case below fails one of them).
    static let scriptWrites: Int = 40

    @Test("without faults the script keeps every property across a restart")
    func clean() async throws {
        let rig = try await FaultRig.make()
        try await rig.script()
        #expect(rig.faulty.writeCount > 15, "the script must pass through compactions: \(rig.faulty.writeCount)")
        try await rig.checkAfterRestart("clean")
    }

    @Test("any single failed write, at any step of journal, compaction or cleanup", arguments: 1...scriptWrites)
    func failedWrite(_ number: Int) async throws {
        let rig = try await FaultRig.make()
        rig.faulty.failWrite(number)
        try await rig.script()
        try await rig.checkAfterRestart("write \(number) failed")
    }

    @Test("any single torn write (some files of the batch written, then an error)", arguments: 1...scriptWrites)
    func tornWrite(_ number: Int) async throws {
        let rig = try await FaultRig.make()
        rig.faulty.failWrite(number, .partial(count: 1))
        try await rig.script()
        try await rig.checkAfterRestart("write \(number) torn")
    }

    @Test("a compaction that fails and then succeeds loses nothing and revives nothing")
    func compactionFailsThenSucceeds() async throws {
        let rig = try await FaultRig.make()
        for _ in 0..<3 { try await rig.login() }
        try await rig.refresh(0)
        try await rig.revoke(1)
        // The journal is due for compaction: fail every compaction attempt for a while, and the
        // journal entries around it, then let the disk recover.
        let compactions = rig.faulty.attemptedBatches.count
        rig.faulty.failAllWrites = true
        let blocked = await rig.setup.refresh(rig.book.logins[2].current)
        await rig.setup.provider.ledger.idle()
        #expect(blocked.status == 503)
        #expect(rig.faulty.attemptedBatches.count > compactions)
        rig.faulty.failAllWrites = false
        try await rig.refresh(2)
        try await rig.refresh(0)
        try await rig.login()
        try await rig.refresh(3)
        let journal = rig.setup.provider.ledger.journalState
        #expect(journal.live.count < 3, "a compaction must have succeeded after the failure: \(journal.live.count)")
        try await rig.checkAfterRestart("compaction failed then succeeded")
    }

    @Test("deletions of superseded journal entries that fail are retried, and never replayed")
    func failedDeletions() async throws {
        let rig = try await FaultRig.make()
        rig.faulty.failDeletes = true
        try await rig.script()
        let stale = try await rig.memory.keys().filter { $0.hasPrefix("tsidp-grants-log-") }
        #expect(stale.count > 3, "superseded entries must still be there: \(stale)")
        try await rig.checkAfterRestart("deletions failing")
        // Once deletions work again, the next writes clean up.
        rig.faulty.failDeletes = false
        try await rig.refresh(0)
        try await rig.refresh(2)
        let left = try await rig.memory.keys().filter { $0.hasPrefix("tsidp-grants-log-") }
        #expect(left.count < stale.count)
        try await rig.checkAfterRestart("deletions recovered")
    }

    @Test("a superseded journal entry left behind (a deletion that never happened) is not replayed")
    func staleEntryIgnored() async throws {
        let rig = try await FaultRig.make()
        try await rig.script()
        // Put back the first journal entries the script wrote, as if their deletion had failed
        // while later ones succeeded; the buckets already contain them, and the newer state in
        // the buckets must win over them.
        var restored = 0
        for batch in rig.faulty.attemptedBatches {
            for case (let key, let data?) in batch {
                guard let sequence = GrantFileCodec.journalSequence(key), sequence <= 5 else { continue }
                if try await rig.memory.read(key) == nil {
                    try await rig.memory.write(key, data)
                    restored += 1
                }
            }
        }
        #expect(restored > 3)
        try await rig.checkAfterRestart("superseded entries put back")
    }

    @Test("a journal entry whose write failed after landing is removed, not replayed")
    func landedButFailed() async throws {
        let rig = try await FaultRig.make()
        try await rig.login()
        let token = rig.book.logins[0].current
        rig.faulty.failNextWrite(.partial(count: 1))
        // The rotation's entry reaches the store but the write reports an error: the client is
        // told 503 and keeps its token.
        #expect(await rig.setup.refresh(token).status == 503)
        try await rig.checkAfterRestart("landed but failed")
    }

    @Test("the sweep writes only what expired, a few records per journal entry")
    func sweep() async throws {
        let rig = try await FaultRig.make()
        for _ in 0..<5 { try await rig.login() }
        try await rig.refresh(0)
        let before = rig.faulty.attemptedBatches.count
        // Access tokens live 5 minutes, logins 30 days.
        rig.base.clock.advance(301)
        try await rig.setup.provider.sweep()
        let batches = rig.faulty.attemptedBatches.dropFirst(before)
        var removed = 0
        for batch in batches {
            for case (let key, let data?) in batch where GrantFileCodec.journalSequence(key) != nil {
                let file = try GrantFileCodec.decode(data, key: key, source: "t")
                #expect(file.families.isEmpty, "a sweep entry must not rewrite logins")
                #expect(file.access.count <= 3)
                #expect(file.access.values.allSatisfy { $0 == nil })
                removed += file.access.count
            }
        }
        #expect(removed == 6)
        #expect(rig.setup.provider.grantCounts.accessTokens == 0)
        #expect(rig.setup.provider.grantCounts.families == 5)
        try await rig.checkAfterRestart("after a sweep")
    }

    @Test("a sweep whose write fails removes nothing of that entry and the next sweep finishes the job")
    func sweepWriteFails() async throws {
        let rig = try await FaultRig.make()
        for _ in 0..<5 { try await rig.login() }
        rig.base.clock.advance(301)
        // The writer is idle (the rig waits for it), so the next write is the sweep's first entry.
        rig.faulty.failNextWrite()
        await #expect(throws: (any Error).self) { try await rig.setup.provider.sweep() }
        #expect(rig.setup.provider.grantCounts.accessTokens == 5, "the failed entry's removals are undone")
        try await rig.setup.provider.sweep()
        #expect(rig.setup.provider.grantCounts.accessTokens == 0)
        #expect(rig.setup.provider.grantCounts.families == 5)
        try await rig.checkAfterRestart("after a failed and a repeated sweep")

        // Thirty days on, the logins themselves expire and go, in entries of at most 3 records.
        rig.base.clock.advance(31 * 24 * 3600)
        let before = rig.faulty.attemptedBatches.count
        try await rig.setup.provider.sweep()
        #expect(rig.setup.provider.grantCounts.families == 0)
        let entries = rig.faulty.attemptedBatches.dropFirst(before).filter {
            $0.contains { GrantFileCodec.journalSequence($0.key) != nil && $0.value != nil }
        }
        #expect(entries.count == 2, "5 logins in entries of at most 3: \(entries.count)")
        let restarted = try await rig.restartedCopy()
        #expect(restarted.provider.grantCounts.families == 0)
    }

    @Test("an emptied bucket is rewritten empty with its sequence, never deleted")
    func emptiedBucket() async throws {
        let rig = try await FaultRig.make()
        try await rig.login()
        try await rig.revoke(0)
        try await rig.login()
        try await rig.refresh(1)
        let buckets = try await rig.memory.keys().filter { GrantFileCodec.bucketIndex($0) != nil }
        #expect(!buckets.isEmpty)
        for key in buckets {
            let data = try #require(try await rig.memory.read(key))
            let file = try GrantFileCodec.decode(data, key: key, source: "t")
            #expect(file.version == GrantFileCodec.formatVersion)
            #expect((file.sequence ?? 0) > 0)
        }
        try await rig.checkAfterRestart("emptied bucket")
    }

    @Test("a failed write of the client registry answers 503 and changes nothing")
    func clientRegistryFault() async throws {
        let memory = MemoryStateStore()
        let faulty = FaultInjectingStateStore(wrapping: memory)
        let registry = try await ClientRegistry.load(from: StateWriter(store: faulty))
        faulty.failNextWrite()
        await #expect(throws: OAuthError.self) {
            try await registry.register(.init(name: "Grafana", redirectURIs: ["https://grafana.example.com/cb"]))
        }
        #expect(await registry.all().isEmpty)
        #expect(try await memory.read(ClientRegistry.stateKey) == nil)
        let created = try await registry.register(
            .init(name: "Grafana", redirectURIs: ["https://grafana.example.com/cb"]))
        faulty.failNextWrite()
        do {
            _ = try await registry.update(
                created.client.clientID, name: "Renamed", redirectURIs: ["https://g.example.com/cb"])
            Issue.record("the update must fail")
        } catch let error as OAuthError {
            #expect(error.status == 503)
            #expect(error.code == .temporarilyUnavailable)
        }
        #expect(await registry.client(created.client.clientID)?.name == "Grafana")
        let reloaded = try await ClientRegistry.load(from: StateWriter(store: memory))
        #expect(await reloaded.client(created.client.clientID)?.name == "Grafana")
    }

    @Test("a failed write of the key ring answers 503 and keeps the published keys")
    func keyRingFault() async throws {
        let memory = MemoryStateStore()
        let faulty = FaultInjectingStateStore(wrapping: memory)
        let ring = try await KeyRing.load(from: StateWriter(store: faulty))
        let before = ring.signingKey.kid
        let published = ring.jwksDocument
        faulty.failNextWrite(.partial(count: 1))
        do {
            try await ring.rotate()
            Issue.record("the rotation must fail")
        } catch let error as OAuthError {
            #expect(error.status == 503)
        }
        #expect(ring.signingKey.kid == before)
        #expect(ring.jwksDocument == published)
        let reloaded = try await KeyRing.load(from: StateWriter(store: memory))
        #expect(reloaded.signingKey.kid == before)
    }

    @Test("a listing or read error stops start-up naming the file; it never looks like empty state")
    func readErrors() async throws {
        let rig = try await FaultRig.make()
        try await rig.login()
        try await rig.refresh(0)
        let keys = try await rig.memory.keys().filter { $0.hasPrefix("tsidp-grants-") }
        let victim = try #require(keys.first)
        rig.faulty.failReads = [victim]
        do {
            _ = try await FaultRig.provider(rig.base, store: rig.faulty, compaction: rig.compaction)
            Issue.record("start-up must fail")
        } catch let error as KeyFileError {
            #expect(error.message.contains(victim))
        }
        rig.faulty.failReads = []
        rig.faulty.failListing = true
        await #expect(throws: KeyFileError.self) {
            _ = try await FaultRig.provider(rig.base, store: rig.faulty, compaction: rig.compaction)
        }
    }

    @Test("grant state written by a newer tsidp is refused with a clear message")
    func newerFormat() async throws {
        let store = MemoryStateStore([
            GrantFileCodec.bucketKey(3): Data(#"{"version":9,"sequence":4,"families":{},"access":{}}"#.utf8)
        ])
        let base = try await Fixtures.provider()
        do {
            _ = try await FaultRig.provider(base, store: store, compaction: .every(3))
            Issue.record("start-up must fail")
        } catch let error as KeyFileError {
            #expect(error.message.contains("newer tsidp"))
            #expect(error.message.contains("tsidp-grants-03.json"))
        }
    }

    @Test("format-1 state from an earlier version loads and is rewritten in the current format")
    func formatOne() async throws {
        // An earlier version wrote buckets without sequences and journal entries without a
        // version; the access token is stored by reference to its family.
        let rig = try await FaultRig.make()
        try await rig.login()
        // Rewrite what the rig stored as format 1: drop versions and sequences.
        for key in try await rig.memory.keys() where key.hasPrefix("tsidp-grants-") {
            let data = try #require(try await rig.memory.read(key))
            var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            object["sequence"] = nil
            if GrantFileCodec.journalSequence(key) != nil { object["version"] = nil } else { object["version"] = 1 }
            try await rig.memory.write(key, try JSONSerialization.data(withJSONObject: object))
        }
        try await rig.checkAfterRestart("format 1")
    }
}

@Suite("Grant state capacity")
struct GrantCapacityTests {
    @Test("50 logins with their live access tokens fit in 40,000 bytes of bucket files")
    func fifty() async throws {
        let rig = try await FaultRig.make()
        for _ in 0..<50 { try await rig.login() }
        var buckets = 0
        var journal = 0
        for key in try await rig.memory.keys() {
            let size = try await rig.memory.read(key)?.count ?? 0
            if GrantFileCodec.bucketIndex(key) != nil { buckets += size }
            if GrantFileCodec.journalSequence(key) != nil { journal += size }
        }
        print("grant state of 50 logins: \(buckets) bytes in buckets, \(journal) in the journal")
        #expect(buckets + journal < 40_000)
    }

    @Test("with a journal byte cap (a Secret's store), the journal never holds much more than the cap")
    func journalCap() async throws {
        let base = try await Fixtures.provider()
        let memory = MemoryStateStore()
        var configuration = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        configuration.grantJournalMaximumBytes = 8 * 1024
        let provider = Provider(
            configuration: configuration, keys: base.provider.keys, clients: base.provider.clients,
            writer: StateWriter(store: memory), now: { base.clock.now })
        try await provider.restoreGrants()
        let setup = base.with(provider: provider)
        var largest = 0
        var buckets = 0
        for _ in 0..<120 {
            #expect(await setup.redeem(try await setup.code()).status == 200)
            await provider.ledger.idle()
            var journal = 0
            buckets = 0
            for key in try await memory.keys() {
                let size = try await memory.read(key)?.count ?? 0
                if GrantFileCodec.journalSequence(key) != nil { journal += size }
                if GrantFileCodec.bucketIndex(key) != nil { buckets += size }
            }
            largest = max(largest, journal)
        }
        // One entry (a login, about 1 KiB) may pass the cap before the compaction it triggers.
        #expect(largest <= 8 * 1024 + 2048, "journal reached \(largest) bytes")
        // Without the cap the journal could have grown to 256 KiB or half the buckets.
        #expect(buckets > 4 * 8 * 1024, "the buckets are large enough for the default rule to allow more")
    }
}

/// A store with a size limit, like a Kubernetes Secret: growth past `limit` is refused as
/// `.full`, unless the reserve is open, which allows up to `reserveLimit`.
actor LimitedStore: StateStore {
    let memory = MemoryStateStore()
    let limit: Int
    let reserveLimit: Int
    private var reserveOpen = false
    private(set) var refusals = 0

    init(limit: Int, reserveLimit: Int) {
        self.limit = limit
        self.reserveLimit = reserveLimit
    }

    func setReserve(_ open: Bool) { reserveOpen = open }

    var size: Int {
        get async throws {
            var total = 0
            for key in try await memory.keys() { total += key.utf8.count + (try await memory.read(key)?.count ?? 0) }
            return total
        }
    }

    func read(_ key: String) async throws -> Data? { try await memory.read(key) }
    func keys() async throws -> [String] { try await memory.keys() }

    func write(_ entries: [String: Data?]) async throws {
        let before = try await size
        var after = before
        for (key, value) in entries {
            let old = try await memory.read(key)
            after -= old.map { $0.count + key.utf8.count } ?? 0
            after += value.map { $0.count + key.utf8.count } ?? 0
        }
        if after > before, after > (reserveOpen ? reserveLimit : limit) {
            refusals += 1
            throw StateStoreError(.full, "the store is full")
        }
        try await memory.write(entries)
    }

    nonisolated var description: String { "limited" }
}

@Suite("A full store")
struct FullStoreTests {
    @Test("refuses new grants with the reason, removes expired grants through the reserve, then admits again")
    func drains() async throws {
        let base = try await Fixtures.provider()
        let store = LimitedStore(limit: 24 * 1024, reserveLimit: 28 * 1024)
        var configuration = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        configuration.grantJournalMaximumBytes = 4 * 1024
        configuration.storeReserve = { open in await store.setReserve(open) }
        let provider = Provider(
            configuration: configuration, keys: base.provider.keys, clients: base.provider.clients,
            writer: StateWriter(store: store), now: { base.clock.now })
        try await provider.restoreGrants()
        let setup = base.with(provider: provider)

        // Fill it: logins succeed until one is refused as full.
        var admitted = 0
        var refusal: TokenResponse?
        for _ in 0..<200 {
            let answer = await setup.redeem(try await setup.code())
            if answer.status == 200 {
                admitted += 1
                continue
            }
            refusal = answer
            break
        }
        let refused = try #require(refusal, "the store never filled")
        #expect(admitted > 5)
        #expect(refused.status == 503)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("state store is full"))

        // While every grant is live nothing can be removed: still refused.
        try await Task.sleep(for: .milliseconds(200))
        #expect(await setup.redeem(try await setup.code()).status == 503)

        // Once they have expired, the refusal starts a removal that uses the reserve, and the
        // store drains: a later login is admitted without anyone's help.
        base.clock.advance(31 * 24 * 3600)
        let full = try await store.size
        _ = await setup.redeem(try await setup.code())
        var admittedAgain = false
        for _ in 0..<100 {
            if await setup.redeem(try await setup.code()).status == 200 {
                admittedAgain = true
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(admittedAgain, "the store did not drain")
        #expect(try await store.size < full / 2)
    }
}

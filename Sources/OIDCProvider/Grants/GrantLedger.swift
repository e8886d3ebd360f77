import Crypto
import Foundation
import Logging
import StateStore
import Synchronization

/// The one owner of grant state: authorization codes, refresh families and access tokens in
/// memory, and their journal and bucket files in the store.
///
/// A request changes grant state in one critical section (``transact(_:)``); when the change
/// touched stored state, the call returns only after the change is durable. Concurrent changes
/// are written together as one journal entry (group commit, through the ``StateWriter``). Once
/// the journal has grown enough, the buckets it touched are rewritten (compaction), recording
/// the newest journal sequence they contain, and the journal entries they make redundant are
/// deleted. A compaction goes a few buckets at a time (about ``CompactionPolicy/stepBytes`` per
/// write, the buckets holding the oldest journal entries first), and a step is never followed by
/// another while changes wait, so a request waits at most one step's write, however much state
/// is stored.
///
/// - Important: A failed write undoes, in memory, every change not yet durable (the failed
///   batch and anything made after it) and fails the requests that made them; memory then again
///   matches the store. Start-up applies a journal entry to a bucket only if the bucket file does
///   not already contain it, so a failed or half-done compaction or deletion can never replay
///   stale changes.
final class GrantLedger: StateWriteSource, Sendable {
    /// When the journal is folded into the buckets.
    struct CompactionPolicy: Sendable {
        /// At most this many journal entries exist before a compaction.
        var maximumJournalEntries = 16_384
        /// The journal may grow to this many bytes, or to half the size of the buckets if that
        /// is more, before a compaction; so a compaction's cost, which is the size of what it
        /// rewrites, is spread over writes in proportion to it.
        var minimumJournalBytes = 256 * 1024
        /// Whatever the buckets' size, the journal never grows past this many bytes: a store
        /// with a size limit of its own (a Kubernetes Secret holds 1 MiB) must not spend it on
        /// journal entries that duplicate the buckets.
        var maximumJournalBytes = Int.max
        /// A compaction step writes buckets until their size (as last written) passes this; at
        /// least one bucket, so a bucket larger than this is a step of its own.
        var stepBytes = 1024 * 1024

        init() {}

        /// Compacts after every `entries` journal entries, whatever their size, all buckets in
        /// one step (for tests).
        static func every(_ entries: Int) -> CompactionPolicy {
            var policy = CompactionPolicy()
            policy.maximumJournalEntries = entries
            policy.minimumJournalBytes = .max
            policy.stepBytes = .max
            return policy
        }

        /// Compacts after every `entries` journal entries, one bucket per step (for tests).
        static func stepwise(every entries: Int) -> CompactionPolicy {
            var policy = every(entries)
            policy.stepBytes = 0
            return policy
        }
    }

    /// Changes not yet durable, one per transaction, oldest first.
    struct Pending: Sendable {
        var undo: [GrantTables.Undo]
        var ticket: WriteTicket
    }

    /// The batch being written.
    enum InFlight: Sendable {
        case journal(sequence: UInt64, key: String, bytes: Int, buckets: Set<Int>, changes: [Pending])
        case compaction(sequence: UInt64, sizes: [Int: Int])
        case deletion(keys: [String], housekeeping: Bool)
    }

    /// A durable journal entry that some bucket file does not contain yet.
    struct LiveEntry: Sendable {
        var sequence: UInt64
        var key: String
        var bytes: Int
        /// The buckets (bit `i` for bucket `i`) whose files lack this entry's changes.
        var buckets: UInt32
    }

    /// Journal and bucket bookkeeping.
    struct Journal: Sendable {
        var pending: [Pending] = []
        var inFlight: InFlight?
        /// The newest durable journal sequence.
        var lastDurable: UInt64 = 0
        /// Per bucket, the newest journal sequence its file contains.
        var bucketSequence = [UInt64](repeating: 0, count: GrantFileCodec.bucketCount)
        /// Per bucket, the size of its file when last written or read.
        var bucketBytes = [Int](repeating: 0, count: GrantFileCodec.bucketCount)
        /// Buckets whose file lacks durable changes (they are in the journal).
        var dirty = Set<Int>()
        /// Journal entries some bucket does not contain yet, oldest first; changed only through
        /// ``addLive(_:)`` and ``supersede(written:)``, which keep ``liveBytes``.
        private(set) var live: [LiveEntry] = []
        /// The size of the ``live`` entries, kept as they come and go (the compaction rule reads
        /// it for every batch, and the journal may hold thousands of entries).
        private(set) var liveBytes = 0
        /// Journal entries every bucket contains, to delete.
        var obsolete: [String] = []
        /// A journal entry whose write failed: it may exist anyway, so it is deleted (or
        /// overwritten by the next entry, which reuses its sequence).
        var voided: String?
        /// Set after a failed compaction or deletion: not retried before the next journal entry
        /// is durable, so that a broken disk is not hammered.
        var compactionBlocked = false
        var deletionBlocked = false
        /// Set by ``GrantLedger/compactNow()``: compact every dirty bucket, whatever the
        /// journal's size.
        var compactionRequested = false
        /// Whether the last batch was a compaction step: then changes waiting go first.
        var lastWasCompaction = false

        mutating func addLive(_ entry: LiveEntry) {
            live.append(entry)
            liveBytes += entry.bytes
        }

        /// Marks the buckets in `written` as containing every live entry, and moves the entries
        /// every bucket now contains to ``obsolete``.
        mutating func supersede(written: UInt32) {
            for index in live.indices { live[index].buckets &= ~written }
            for entry in live where entry.buckets == 0 {
                obsolete.append(entry.key)
                liveBytes -= entry.bytes
            }
            live.removeAll { $0.buckets == 0 }
        }
    }

    struct Inner: Sendable {
        var tables = GrantTables()
        var journal = Journal()
        /// Successful store writes of grant state (tests observe group commit through it).
        var writes = 0
    }

    let name = "grants"
    /// Everything the ledger owns, behind one lock; only this type and its loader touch it.
    let inner = Mutex(Inner())
    private let writer: StateWriter?
    private let policy: CompactionPolicy
    private let logger: Logger

    /// - Parameter writer: the write path to the store; `nil` keeps grant state in memory only.
    /// Called when a write was refused because the store is full (a Kubernetes Secret at its
    /// size limit): the provider removes expired grants then.
    private let fullHandler = Mutex<(@Sendable () -> Void)?>(nil)

    init(writer: StateWriter?, policy: CompactionPolicy = CompactionPolicy(), logger: Logger) {
        self.writer = writer
        self.policy = policy
        self.logger = logger
    }

    /// Folds the journal into the buckets now and deletes the entries they contain, so that
    /// removals recorded in the journal shrink the store at once (a full Kubernetes Secret).
    func compactNow() async {
        guard let writer else { return }
        inner.withLock { $0.journal.compactionRequested = true }
        await writer.flush(self)
        await writer.idle()
    }

    /// Sets what happens when the store reports it is full.
    func whenFull(_ handler: @escaping @Sendable () -> Void) {
        fullHandler.withLock { $0 = handler }
    }

    static func hash(_ token: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data(token.utf8)))
    }

    // MARK: Reading and changing

    /// Reads the tables.
    func read<T: Sendable>(_ body: (GrantTables) throws -> T) rethrows -> T {
        try inner.withLock { try body($0.tables) }
    }

    /// Changes the tables outside any transaction, for memory-only state (codes) that no failed
    /// write may take back.
    func changeCodes<T: Sendable>(_ body: (inout GrantTables) -> T) -> T {
        inner.withLock { body(&$0.tables) }
    }

    /// Runs `body` as one critical section. If it throws, its changes are undone. If it changed
    /// stored state, returns once that change is durable, or throws `temporarily_unavailable`
    /// (HTTP 503) with the change undone.
    func transact<T: Sendable>(_ body: (inout GrantTables) throws -> T) async throws -> T {
        let hasWriter = writer != nil
        let (value, ticket): (T, WriteTicket?) = try inner.withLock { inner in
            inner.tables.begin()
            let value: T
            do {
                value = try body(&inner.tables)
            } catch {
                inner.tables.undo(inner.tables.end())
                throw error
            }
            let records = inner.tables.end()
            guard hasWriter, records.contains(where: \.isDurable) else { return (value, nil) }
            let ticket = WriteTicket()
            inner.journal.pending.append(Pending(undo: records, ticket: ticket))
            return (value, ticket)
        }
        if let ticket, let writer {
            await writer.flush(self)
            do {
                try await ticket.wait()
            } catch let error as StateStoreError where error.kind == .full {
                fullHandler.withLock { $0 }?()
                throw OAuthError(
                    .temporarilyUnavailable,
                    "tsidp's state store is full; expired sign-ins are being removed, try again later", status: 503)
            } catch {
                throw OAuthError(.temporarilyUnavailable, "the grant could not be stored; try again", status: 503)
            }
        }
        return value
    }

    /// Successful store writes of grant state.
    var writes: Int { inner.withLock { $0.writes } }

    /// Journal bookkeeping, for tests.
    var journalState: Journal { inner.withLock { $0.journal } }

    // MARK: StateWriteSource

    func nextBatch() async -> StateBatch? {
        enum Next {
            case ready(StateBatch?, resolved: [WriteTicket])
            case compaction(sequence: UInt64, files: [Int: GrantFileCodec.File])
        }
        let next: Next = inner.withLock { inner in
            precondition(inner.journal.inFlight == nil, "one grant batch at a time")
            var resolved: [WriteTicket] = []
            // A compaction step, unless the last batch was one and changes are waiting: they
            // are written first, so no request waits for two steps in a row.
            if !(inner.journal.lastWasCompaction && !inner.journal.pending.isEmpty),
                let (sequence, files) = compactionStep(&inner)
            {
                inner.journal.lastWasCompaction = true
                return .compaction(sequence: sequence, files: files)
            }
            inner.journal.lastWasCompaction = false
            if !inner.journal.pending.isEmpty {
                do {
                    if let batch = try journalBatch(&inner) { return .ready(batch, resolved: []) }
                } catch {
                    // Encoding our own records cannot fail in practice; if it does, nothing is
                    // written and the changes are refused like a failed write.
                    logger.error("grant state could not be encoded", metadata: ["error": "\(error)"])
                    let failed = inner.journal.pending
                    inner.journal.pending.removeAll()
                    for change in failed.reversed() { inner.tables.undo(change.undo) }
                    for change in failed { change.ticket.resolve(error) }
                    return .ready(nil, resolved: [])
                }
                // Nothing stored changed after all (a change undone by a later one).
                resolved = inner.journal.pending.map(\.ticket)
                inner.journal.pending.removeAll()
            }
            return .ready(deletionBatch(&inner), resolved: resolved)
        }
        switch next {
        case .ready(let batch, let resolved):
            for ticket in resolved { ticket.resolve(nil) }
            return batch
        case .compaction(let sequence, let files):
            // Encoded outside the lock: requests go on while the buckets are serialized.
            var entries: [String: Data?] = [:]
            var sizes: [Int: Int] = [:]
            do {
                for (index, file) in files {
                    let data = try GrantFileCodec.encode(file)
                    entries[GrantFileCodec.bucketKey(index)] = .some(data)
                    sizes[index] = data.count
                }
            } catch {
                logger.error("grant state could not be encoded for compaction", metadata: ["error": "\(error)"])
                inner.withLock { inner in
                    inner.journal.inFlight = nil
                    inner.journal.compactionBlocked = true
                }
                return await nextBatch()
            }
            inner.withLock { $0.journal.inFlight = .compaction(sequence: sequence, sizes: sizes) }
            return StateBatch(entries: entries)
        }
    }

    func finish(_ batch: StateBatch, error: (any Error)?) async {
        let outcome: (tickets: [WriteTicket], error: (any Error)?) = inner.withLock { inner in
            guard let flight = inner.journal.inFlight else { return ([], nil) }
            inner.journal.inFlight = nil
            switch flight {
            case .journal(let sequence, let key, let bytes, let buckets, let changes):
                if let error {
                    // Memory goes back to what the store holds: undo this batch and every change
                    // made after it, newest first, and fail them all.
                    let failed = changes + inner.journal.pending
                    inner.journal.pending.removeAll()
                    for change in failed.reversed() { inner.tables.undo(change.undo) }
                    inner.journal.voided = key
                    return (failed.map(\.ticket), error)
                }
                inner.writes += 1
                inner.journal.lastDurable = sequence
                inner.journal.addLive(
                    LiveEntry(sequence: sequence, key: key, bytes: bytes, buckets: Self.mask(buckets)))
                inner.journal.dirty.formUnion(buckets)
                inner.journal.compactionBlocked = false
                inner.journal.deletionBlocked = false
                if inner.journal.voided == key { inner.journal.voided = nil }
                return (changes.map(\.ticket), nil)
            case .compaction(let sequence, let sizes):
                guard error == nil else {
                    // Some buckets may have been written; they are correct. The rest stays
                    // dirty, and the journal stays until a compaction succeeds.
                    inner.journal.compactionBlocked = true
                    inner.journal.compactionRequested = false
                    return ([], nil)
                }
                inner.writes += 1
                for (index, size) in sizes {
                    inner.journal.bucketSequence[index] = sequence
                    inner.journal.bucketBytes[index] = size
                }
                inner.journal.dirty.subtract(sizes.keys)
                if inner.journal.dirty.isEmpty { inner.journal.compactionRequested = false }
                // The step wrote its buckets as of the newest durable entry, so every live entry
                // is now in those files; an entry every bucket contains is superseded.
                inner.journal.supersede(written: Self.mask(sizes.keys))
                return ([], nil)
            case .deletion(let keys, let housekeeping):
                guard error == nil else {
                    inner.journal.deletionBlocked = true
                    return ([], nil)
                }
                if housekeeping {
                    inner.journal.obsolete.removeAll { keys.contains($0) }
                } else if inner.journal.voided.map(keys.contains) == true {
                    inner.journal.voided = nil
                }
                return ([], nil)
            }
        }
        for ticket in outcome.tickets { ticket.resolve(outcome.error) }
    }

    func abandon(_ error: any Error) async {
        let failed: [Pending] = inner.withLock { inner in
            let failed = inner.journal.pending
            inner.journal.pending.removeAll()
            for change in failed.reversed() { inner.tables.undo(change.undo) }
            return failed
        }
        for change in failed { change.ticket.resolve(error) }
    }

    /// Whether the journal has grown enough to fold it into the buckets.
    private func compactionDue(_ journal: Journal) -> Bool {
        guard !journal.dirty.isEmpty, !journal.compactionBlocked else { return false }
        if journal.compactionRequested { return true }
        if journal.live.count >= policy.maximumJournalEntries { return true }
        let stateBytes = journal.bucketBytes.reduce(0, +)
        return journal.liveBytes >= min(policy.maximumJournalBytes, max(policy.minimumJournalBytes, stateBytes / 2))
    }

    /// The bit set of `buckets`.
    static func mask(_ buckets: some Sequence<Int>) -> UInt32 {
        buckets.reduce(0) { $0 | (1 << UInt32($1)) }
    }

    /// The next compaction step, when one is due: the dirty buckets holding the oldest journal
    /// entries, up to ``CompactionPolicy/stepBytes``, as of the newest durable journal entry.
    /// Changes made since (pending, not durable yet) are left out: for those records the value
    /// before them is written.
    private func compactionStep(_ inner: inout Inner) -> (UInt64, [Int: GrantFileCodec.File])? {
        guard compactionDue(inner.journal) else { return nil }
        // A bucket's age is the sequence of the oldest entry it lacks; buckets dirty for another
        // reason (records dropped at start-up) count as oldest.
        var age = [UInt64](repeating: 0, count: GrantFileCodec.bucketCount)
        var aged: UInt32 = 0
        for entry in inner.journal.live where entry.buckets & ~aged != 0 {
            for index in 0..<GrantFileCodec.bucketCount where entry.buckets & ~aged & (1 << UInt32(index)) != 0 {
                age[index] = entry.sequence
            }
            aged |= entry.buckets
        }
        let candidates = inner.journal.dirty.sorted { (age[$0], $0) < (age[$1], $1) }
        var dirty = Set<Int>()
        var bytes = 0
        for index in candidates {
            if !dirty.isEmpty, inner.journal.bucketBytes[index] >= policy.stepBytes - bytes { break }
            dirty.insert(index)
            bytes += inner.journal.bucketBytes[index]
        }
        var durableFamilies: [String: RefreshFamily?] = [:]
        var durableAccess: [String: AccessTokenRecord?] = [:]
        var durableConsents: [String: ConsentRecord?] = [:]
        for change in inner.journal.pending {
            for record in change.undo {
                switch record {
                case .family(let id, let old) where durableFamilies[id] == nil: durableFamilies[id] = .some(old)
                case .access(let key, let old) where durableAccess[key] == nil: durableAccess[key] = .some(old)
                case .consent(let key, let old) where durableConsents[key] == nil: durableConsents[key] = .some(old)
                default: break
                }
            }
        }
        let sequence = inner.journal.lastDurable
        var files: [Int: GrantFileCodec.File] = [:]
        for index in dirty { files[index] = GrantFileCodec.File(sequence: sequence) }
        let tables = inner.tables
        func family(_ id: String) -> RefreshFamily? {
            if let durable = durableFamilies[id] { return durable }
            return tables.families[id]
        }
        for index in dirty {
            for id in tables.buckets[index].families where durableFamilies[id] == nil {
                files[index]!.families[id] = .some(tables.families[id]!)
            }
        }
        for (id, value) in durableFamilies {
            let index = GrantFileCodec.bucket(of: id)
            if files[index] != nil, let value { files[index]!.families[id] = .some(value) }
        }
        for index in dirty {
            for key in tables.buckets[index].access where durableAccess[key] == nil {
                let value = tables.access[key]!
                GrantFileCodec.put(key, value, family: family(value.familyID ?? ""), into: &files[index]!)
            }
        }
        for (key, value) in durableAccess {
            let index = GrantFileCodec.bucket(of: key)
            if files[index] != nil, let value {
                GrantFileCodec.put(key, value, family: family(value.familyID ?? ""), into: &files[index]!)
            }
        }
        for index in dirty {
            for key in tables.buckets[index].consents where durableConsents[key] == nil {
                files[index]!.consents![key] = .some(tables.consents[key]!)
            }
        }
        for (key, value) in durableConsents {
            let index = GrantFileCodec.bucket(of: key)
            if files[index] != nil, let value { files[index]!.consents![key] = .some(value) }
        }
        inner.journal.inFlight = .compaction(sequence: sequence, sizes: [:])
        return (sequence, files)
    }

    /// Every pending change as one journal entry, with the records' values as they are now.
    private func journalBatch(_ inner: inout Inner) throws -> StateBatch? {
        var familyIDs = Set<String>()
        var accessKeys = Set<String>()
        var consentKeys = Set<String>()
        for change in inner.journal.pending {
            for record in change.undo {
                switch record {
                case .family(let id, _): familyIDs.insert(id)
                case .access(let key, _): accessKeys.insert(key)
                case .consent(let key, _): consentKeys.insert(key)
                case .code: break
                }
            }
        }
        guard !familyIDs.isEmpty || !accessKeys.isEmpty || !consentKeys.isEmpty else { return nil }
        let sequence = inner.journal.lastDurable + 1
        var file = GrantFileCodec.File(sequence: sequence)
        var buckets = Set<Int>()
        let tables = inner.tables
        for id in familyIDs {
            file.families[id] = .some(tables.families[id])
            buckets.insert(GrantFileCodec.bucket(of: id))
        }
        for key in accessKeys {
            let record = tables.access[key]
            GrantFileCodec.put(key, record, family: record?.familyID.flatMap { tables.families[$0] }, into: &file)
            buckets.insert(GrantFileCodec.bucket(of: key))
        }
        for key in consentKeys {
            file.consents![key] = .some(tables.consents[key])
            buckets.insert(GrantFileCodec.bucket(of: key))
        }
        let data = try GrantFileCodec.encode(file)
        let key = GrantFileCodec.journalKey(sequence)
        let changes = inner.journal.pending
        inner.journal.pending.removeAll()
        inner.journal.inFlight = .journal(
            sequence: sequence, key: key, bytes: data.count, buckets: buckets, changes: changes)
        return StateBatch(entries: [key: .some(data)])
    }

    /// Deletes a journal entry whose write failed, or entries every bucket already contains.
    private func deletionBatch(_ inner: inout Inner) -> StateBatch? {
        guard !inner.journal.deletionBlocked else { return nil }
        if let voided = inner.journal.voided {
            inner.journal.inFlight = .deletion(keys: [voided], housekeeping: false)
            return StateBatch(entries: [voided: .none], isHousekeeping: true)
        }
        guard !inner.journal.obsolete.isEmpty else { return nil }
        let keys = Array(inner.journal.obsolete.prefix(512))
        inner.journal.inFlight = .deletion(keys: keys, housekeeping: true)
        var entries: [String: Data?] = [:]
        for key in keys { entries.updateValue(nil, forKey: key) }
        return StateBatch(entries: entries, isHousekeeping: true)
    }

    /// Returns when the writer has nothing left to write (tests look at the store then).
    func idle() async {
        await writer?.idle()
    }

    /// Writes what is waiting (housekeeping after start-up, for instance) and returns when the
    /// writer is idle.
    func flush() async {
        guard let writer else { return }
        await writer.flush(self)
        await writer.idle()
    }
}

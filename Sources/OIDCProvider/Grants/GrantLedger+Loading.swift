import Foundation
import StateStore

extension GrantLedger {
    /// What start-up found, for the log.
    struct LoadReport: Sendable {
        var families = 0
        var accessTokens = 0
        var journalEntries = 0
        var obsoleteEntries = 0
        var expiredDropped = 0
    }

    /// Loads the grant state an earlier run left in `store`, replacing what is in memory.
    ///
    /// Bucket files are read first; then each journal entry, oldest first, is applied to the
    /// records of every bucket whose file does not contain it yet (its sequence is newer than the
    /// bucket's). Entries that every bucket contains are deleted later; expired records are
    /// dropped (and their buckets rewritten at the next compaction).
    ///
    /// - Important: A listing or read error, a damaged file, or a file of a newer format stops
    ///   start-up with a message naming the file; nothing is ever taken for "no state".
    @discardableResult
    func load(from store: any StateStore, now: Date) async throws -> LoadReport {
        let keys: [String]
        do {
            keys = try await store.keys()
        } catch {
            throw KeyFileError("cannot list the grant state in \(store.description): \(error)")
        }
        func read(_ key: String) async throws -> Data {
            do {
                guard let data = try await store.read(key) else {
                    throw KeyFileError("\(key) in \(store.description) vanished while tsidp was reading it")
                }
                return data
            } catch let error as KeyFileError {
                throw error
            } catch {
                throw KeyFileError("cannot read \(key) in \(store.description): \(error)")
            }
        }
        var journal = Journal()
        var families: [String: RefreshFamily] = [:]
        var own: [String: AccessTokenRecord] = [:]
        var referenced: [String: GrantFileCodec.FamilyAccessRecord] = [:]
        var consents: [String: ConsentRecord] = [:]
        var formatOne = false
        for key in keys {
            guard let index = GrantFileCodec.bucketIndex(key) else { continue }
            let data = try await read(key)
            let file = try GrantFileCodec.decode(data, key: key, source: store.description)
            formatOne = formatOne || file.version == 1
            journal.bucketSequence[index] = file.sequence ?? 0
            journal.bucketBytes[index] = data.count
            for case (let id, let family?) in file.families { families[id] = family }
            for case (let key, let record?) in file.access { own[key] = record }
            for case (let key, let record?) in file.familyAccess ?? [:] { referenced[key] = record }
            for case (let key, let record?) in file.consents ?? [:] { consents[key] = record }
        }
        var entries: [(sequence: UInt64, key: String)] = []
        for key in keys {
            if let sequence = GrantFileCodec.journalSequence(key) {
                entries.append((sequence, key))
            } else if GrantFileCodec.isGrantKey(key), GrantFileCodec.bucketIndex(key) == nil {
                throw KeyFileError(
                    "\(key) in \(store.description) is not a grant-state file this tsidp knows; it may have been written by a newer tsidp"
                )
            }
        }
        entries.sort { $0.sequence < $1.sequence }
        var report = LoadReport()
        var lastDurable = journal.bucketSequence.max() ?? 0
        for (sequence, key) in entries {
            let data = try await read(key)
            let file = try GrantFileCodec.decode(data, key: key, source: store.description)
            guard file.sequence == sequence else {
                throw KeyFileError(
                    "\(key) in \(store.description) holds sequence \(file.sequence ?? 0); the file is damaged")
            }
            formatOne = formatOne || file.version == 1
            lastDurable = max(lastDurable, sequence)
            var applied: UInt32 = 0
            func newer(_ recordKey: String) -> Bool {
                let index = GrantFileCodec.bucket(of: recordKey)
                guard sequence > journal.bucketSequence[index] || file.version == 1 else { return false }
                applied |= 1 << UInt32(index)
                journal.dirty.insert(index)
                return true
            }
            for (id, family) in file.families where newer(id) { families[id] = family }
            for (key, record) in file.access where newer(key) {
                own[key] = record
                if record == nil { referenced[key] = nil }
            }
            for (key, record) in file.familyAccess ?? [:] where newer(key) {
                referenced[key] = record
                if record == nil { own[key] = nil }
            }
            for (key, record) in file.consents ?? [:] where newer(key) { consents[key] = record }
            if applied != 0 {
                journal.addLive(LiveEntry(sequence: sequence, key: key, bytes: data.count, buckets: applied))
                report.journalEntries += 1
            } else {
                journal.obsolete.append(key)
                report.obsoleteEntries += 1
            }
        }
        journal.lastDurable = lastDurable
        if formatOne {
            // Rewrite everything in the current format at the first compaction.
            journal.dirty = Set(0..<GrantFileCodec.bucketCount)
        }

        var tables = GrantTables()
        for (id, family) in families {
            guard family.expiresAt > now else {
                report.expiredDropped += 1
                journal.dirty.insert(GrantFileCodec.bucket(of: id))
                continue
            }
            tables.setFamily(id, family)
        }
        for (key, record) in own {
            guard record.expiresAt > now, record.familyID.map({ tables.families[$0] != nil }) ?? true else {
                report.expiredDropped += 1
                journal.dirty.insert(GrantFileCodec.bucket(of: key))
                continue
            }
            tables.setAccess(key, record)
        }
        for (key, item) in referenced {
            guard item.expiresAt > now, let family = tables.families[item.familyID] else {
                report.expiredDropped += 1
                journal.dirty.insert(GrantFileCodec.bucket(of: key))
                continue
            }
            tables.setAccess(key, GrantFileCodec.resolve(item, family: family))
        }
        for (key, record) in consents { tables.setConsent(key, record) }
        report.families = tables.families.count
        report.accessTokens = tables.access.count
        let loaded = tables
        let prepared = journal
        inner.withLock { inner in
            precondition(inner.journal.inFlight == nil && inner.journal.pending.isEmpty, "load before serving")
            inner.tables = loaded
            inner.journal = prepared
        }
        return report
    }
}

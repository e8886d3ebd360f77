import Foundation

/// Grant state in memory: codes, refresh families and access tokens, with the indexes derived
/// from them. Every change goes through a setter, which keeps the indexes in step and, inside a
/// transaction, records the value it replaced so that the transaction can be undone as a whole.
///
/// Only ``GrantLedger`` holds one; it decides when changes are undone (a failed store write).
struct GrantTables: Sendable {
    /// A value replaced by a change, to put back if the change cannot be stored.
    enum Undo: Sendable {
        case family(String, RefreshFamily?)
        case access(String, AccessTokenRecord?)
        case code(String, CodeBook.Entry?)
        case consent(String, ConsentRecord?)

        /// Whether the change touched stored state (codes live in memory only).
        var isDurable: Bool {
            if case .code = self { return false }
            return true
        }
    }

    private(set) var codes = CodeBook()
    private(set) var families: [String: RefreshFamily] = [:]
    private(set) var access: [String: AccessTokenRecord] = [:]
    /// Refresh-token hash → family ID, for current and remembered retired tokens.
    private(set) var refreshIndex: [String: String] = [:]
    /// Family ID → hashes of its live access tokens.
    private(set) var accessByFamily: [String: Set<String>] = [:]
    /// Consents to clients that ask for one, by ``ConsentRecord/key(userID:clientID:)``.
    private(set) var consents: [String: ConsentRecord] = [:]
    /// The stored records' keys by bucket file (``GrantFileCodec/bucket(of:)``), so that a
    /// compaction step reads only the records of the buckets it rewrites.
    private(set) var buckets = [BucketKeys](repeating: BucketKeys(), count: GrantFileCodec.bucketCount)

    /// The keys of one bucket file's records.
    struct BucketKeys: Sendable {
        var families = Set<String>()
        var access = Set<String>()
        var consents = Set<String>()
    }
    private var recording: [Undo]?
    /// Shares the text of equal grants between records (``GrantInterner``).
    private var interner = GrantInterner()

    // MARK: Transactions

    /// Starts recording what changes replace.
    mutating func begin() {
        precondition(recording == nil, "grant transactions do not nest")
        recording = []
    }

    /// Stops recording and returns the record, oldest change first.
    mutating func end() -> [Undo] {
        defer { recording = nil }
        return recording ?? []
    }

    /// Puts back what `records` replaced, newest first.
    mutating func undo(_ records: [Undo]) {
        for record in records.reversed() {
            switch record {
            case .family(let id, let old): applyFamily(id, old)
            case .access(let key, let old): applyAccess(key, old)
            case .code(let hash, let old): codes.set(hash, old)
            case .consent(let key, let old): applyConsent(key, old)
            }
        }
    }

    // MARK: Setters

    mutating func setFamily(_ id: String, _ value: RefreshFamily?) {
        recording?.append(.family(id, families[id]))
        var value = value
        if let grant = value?.grant { value?.grant = interner.intern(grant) }
        applyFamily(id, value)
    }

    mutating func setAccess(_ key: String, _ value: AccessTokenRecord?) {
        recording?.append(.access(key, access[key]))
        var value = value
        if let grant = value?.grant { value?.grant = interner.intern(grant) }
        applyAccess(key, value)
    }

    mutating func setConsent(_ key: String, _ value: ConsentRecord?) {
        recording?.append(.consent(key, consents[key]))
        applyConsent(key, value)
    }

    mutating func setCode(_ hash: String, _ value: CodeBook.Entry?) {
        recording?.append(.code(hash, codes[hash]))
        codes.set(hash, value)
    }

    /// Stores a new code outside any transaction: issuing a code is never undone by another
    /// request's failed write.
    mutating func issueCode(_ hash: String, grant: AuthorizationGrant, expiresAt: Date, now: Date) -> Bool {
        codes.issue(hash, grant: interner.intern(grant), expiresAt: expiresAt, now: now)
    }

    /// Forgets expired codes (memory only, never undone).
    mutating func sweepCodes(now: Date) { codes.sweep(now: now) }

    /// Forgets the codes of a deleted client (memory only, never undone).
    mutating func removeCodes(clientID: String) { codes.remove(clientID: clientID) }

    /// Ends a family and every access token of it; returns whether it existed.
    @discardableResult
    mutating func revokeFamily(_ id: String) -> Bool {
        guard families[id] != nil else { return false }
        for key in accessByFamily[id] ?? [] { setAccess(key, nil) }
        setFamily(id, nil)
        return true
    }

    // MARK: Indexes

    private mutating func applyFamily(_ id: String, _ value: RefreshFamily?) {
        if let old = families[id] {
            for hash in old.tokenHashes where refreshIndex[hash] == id { refreshIndex[hash] = nil }
        }
        let index = GrantFileCodec.bucket(of: id)
        if let value {
            if families.updateValue(value, forKey: id) == nil { buckets[index].families.insert(id) }
            for hash in value.tokenHashes { refreshIndex[hash] = id }
        } else if families.removeValue(forKey: id) != nil {
            buckets[index].families.remove(id)
        }
    }

    private mutating func applyConsent(_ key: String, _ value: ConsentRecord?) {
        let index = GrantFileCodec.bucket(of: key)
        if let value {
            if consents.updateValue(value, forKey: key) == nil { buckets[index].consents.insert(key) }
        } else if consents.removeValue(forKey: key) != nil {
            buckets[index].consents.remove(key)
        }
    }

    private mutating func applyAccess(_ key: String, _ value: AccessTokenRecord?) {
        if let family = access[key]?.familyID {
            accessByFamily[family]?.remove(key)
            if accessByFamily[family]?.isEmpty == true { accessByFamily[family] = nil }
        }
        let index = GrantFileCodec.bucket(of: key)
        if let value {
            if access.updateValue(value, forKey: key) == nil { buckets[index].access.insert(key) }
        } else if access.removeValue(forKey: key) != nil {
            buckets[index].access.remove(key)
        }
        if let family = value?.familyID { accessByFamily[family, default: []].insert(key) }
    }

    /// The family a refresh-token hash leads to.
    func family(forTokenHash hash: String) -> (id: String, family: RefreshFamily)? {
        guard let id = refreshIndex[hash], let family = families[id] else { return nil }
        return (id, family)
    }
}

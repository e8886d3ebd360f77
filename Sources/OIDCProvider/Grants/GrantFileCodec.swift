import Foundation

/// The stored form of grant state, one codec for writing and reading.
///
/// Grant state is spread over ``bucketCount`` bucket files (`tsidp-grants-NN.json`) and a journal
/// of small entries (`tsidp-grants-log-<sequence>.json`). Both have the same shape:
///
/// ```json
/// {"version": 2, "sequence": 41, "families": {"<id>": {…}}, "access": {"<token hash>": {…}},
///  "family_access": {"<token hash>": {…}}, "consents": {"<user>|<client>": {…}}}
/// ```
///
/// A journal entry lists what one write changed (`null` removes a record); a bucket file holds
/// every record whose key falls in that bucket, and `sequence` is the newest journal entry it
/// already contains. Access tokens of a login are stored by reference to their family's grant
/// (`family_access`); others (exchanged tokens) carry their own grant (`access`).
///
/// Format 1, written by earlier versions, is read too: its buckets have no sequence and its
/// journal entries take theirs from the file name.
enum GrantFileCodec {
    /// The format written, and the newest one read.
    static let formatVersion = 2

    /// How many bucket files the state is spread over; a compaction rewrites only the buckets
    /// whose records changed.
    static let bucketCount = 32

    /// One file's content.
    struct File: Codable, Equatable {
        var version: Int?
        var sequence: UInt64?
        var families: [String: RefreshFamily?]
        var access: [String: AccessTokenRecord?]
        var familyAccess: [String: FamilyAccessRecord?]?
        var consents: [String: ConsentRecord?]?

        enum CodingKeys: String, CodingKey {
            case version, sequence, families, access, familyAccess = "family_access", consents
        }

        init(sequence: UInt64) {
            self.version = GrantFileCodec.formatVersion
            self.sequence = sequence
            self.families = [:]
            self.access = [:]
            self.familyAccess = [:]
            self.consents = [:]
        }
    }

    /// An access token stored by reference to its family's grant.
    struct FamilyAccessRecord: Codable, Equatable {
        var familyID: String
        var scopes: [String]
        var resources: [String]
        var audience: [String]
        var expiresAt: Date
        var issuedAt: Date
        var jti: String

        enum CodingKeys: String, CodingKey {
            case familyID = "f", scopes = "s", resources = "r", audience = "a", expiresAt = "e", issuedAt = "i"
            case jti = "j"
        }
    }

    /// The bucket a record key (family ID or access-token hash) belongs to.
    static func bucket(of key: String) -> Int {
        var hash: UInt32 = 2_166_136_261
        for byte in key.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return Int(hash % UInt32(bucketCount))
    }

    static let bucketPrefix = "tsidp-grants-"
    static let journalPrefix = "tsidp-grants-log-"

    /// The state key of bucket `index`.
    static func bucketKey(_ index: Int) -> String {
        bucketPrefix + (index < 10 ? "0" : "") + String(index) + ".json"
    }

    /// The bucket index a state key names, if it names one.
    static func bucketIndex(_ key: String) -> Int? {
        guard key.hasPrefix(bucketPrefix), key.hasSuffix(".json"), !key.hasPrefix(journalPrefix) else { return nil }
        let digits = key.dropFirst(bucketPrefix.count).dropLast(".json".count)
        guard digits.count == 2, let index = Int(digits), index >= 0, index < bucketCount else { return nil }
        return index
    }

    /// The state key of journal entry `sequence`.
    static func journalKey(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return journalPrefix + String(repeating: "0", count: max(0, 10 - digits.count)) + digits + ".json"
    }

    /// The sequence a journal key names, if it names one.
    static func journalSequence(_ key: String) -> UInt64? {
        guard key.hasPrefix(journalPrefix), key.hasSuffix(".json") else { return nil }
        return UInt64(key.dropFirst(journalPrefix.count).dropLast(".json".count))
    }

    /// Whether `key` belongs to grant state (buckets, journal, or files this version does not
    /// know but a newer one might have written).
    static func isGrantKey(_ key: String) -> Bool { key.hasPrefix(bucketPrefix) }

    /// How an access token is stored: by reference to its family when it shares the family's
    /// identity and client and acts for nobody else.
    static func reference(_ record: AccessTokenRecord, family: RefreshFamily?) -> FamilyAccessRecord? {
        guard let familyID = record.familyID, let family, record.actor == nil,
            family.grant.identity == record.grant.identity, family.grant.clientID == record.grant.clientID
        else { return nil }
        return FamilyAccessRecord(
            familyID: familyID, scopes: record.grant.scopes, resources: record.grant.resources,
            audience: record.audience, expiresAt: record.expiresAt, issuedAt: record.issuedAt, jti: record.jti)
    }

    /// Rebuilds an access token stored by reference.
    static func resolve(_ item: FamilyAccessRecord, family: RefreshFamily) -> AccessTokenRecord {
        var grant = family.grant
        grant.scopes = item.scopes
        grant.resources = item.resources
        return AccessTokenRecord(
            grant: grant, audience: item.audience, expiresAt: item.expiresAt, issuedAt: item.issuedAt,
            familyID: item.familyID, jti: item.jti, actor: nil)
    }

    /// Adds an access token to `file` in the form ``reference(_:family:)`` picks; `nil` removes it.
    static func put(_ key: String, _ record: AccessTokenRecord?, family: RefreshFamily?, into file: inout File) {
        guard let record else {
            file.access[key] = .some(nil)
            return
        }
        if let reference = reference(record, family: family) {
            file.familyAccess = file.familyAccess ?? [:]
            file.familyAccess![key] = .some(reference)
        } else {
            file.access[key] = .some(record)
        }
    }

    /// The file as JSON, written directly (see ``GrantFileWriter``).
    static func encode(_ file: File) throws -> Data {
        GrantFileWriter.encode(file)
    }

    /// The same file as `JSONEncoder` writes it (the reference the direct writer is tested against).
    static func encodeWithFoundation(_ file: File) throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(file)
    }

    /// The latest time a stored record may name: the end of the year 9999.
    static let latestTimestamp: TimeInterval = 253_402_300_799

    /// The highest sequence a file may hold; no store is written that often, and the next
    /// journal entry must still have a number.
    static let highestSequence = UInt64(Int64.max)

    /// Decodes one file; `key` names it in errors and supplies the sequence of format-1 journal
    /// entries.
    ///
    /// - Important: Times before 1970 or after ``latestTimestamp`` and sequences above
    ///   ``highestSequence`` make the file damaged: tokens, introspection answers and the next
    ///   journal entry turn them into integers, which must not overflow.
    static func decode(_ data: Data, key: String, source: String) throws -> File {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { value in
            let seconds = try value.singleValueContainer().decode(Double.self)
            guard (0...latestTimestamp).contains(seconds) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: value.codingPath, debugDescription: "time \(seconds) is out of range"))
            }
            return Date(timeIntervalSince1970: seconds)
        }
        var file: File
        do {
            file = try decoder.decode(File.self, from: data)
        } catch {
            throw KeyFileError(
                "\(key) in \(source) is damaged (\(Self.reason(error))); restore it from a backup, or remove every tsidp-grants-* file to start without sessions"
            )
        }
        let version = file.version ?? 1
        guard version <= formatVersion else {
            throw KeyFileError(
                "\(key) in \(source) was written by a newer tsidp (grant state format \(version)); this tsidp reads formats up to \(formatVersion): upgrade tsidp"
            )
        }
        if file.sequence == nil {
            guard version == 1 else {
                throw KeyFileError("\(key) in \(source) has no sequence number; the file is damaged")
            }
            file.sequence = journalSequence(key) ?? 0
        }
        guard let sequence = file.sequence, sequence <= highestSequence else {
            throw KeyFileError("\(key) in \(source) holds sequence \(file.sequence ?? 0); the file is damaged")
        }
        file.version = version
        return file
    }

    private static func reason(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context),
            DecodingError.valueNotFound(_, let context), DecodingError.keyNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "at \(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

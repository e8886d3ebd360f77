import AnyJSON
import Crypto
import CryptoExtras
import Foundation
import StateStore
import Synchronization

/// The provider's signing keys and the JWKS that publishes them.
///
/// For each algorithm (RS256, ES256, EdDSA) the ring holds a *current* key that signs, a *next*
/// key that is already published but does not sign yet, and *previous* keys that no longer sign
/// but stay published until every token they signed has expired. Rotation promotes next to
/// current and current to previous, and creates a new next key; relying parties that cached the
/// JWKS therefore always know a key before it signs.
///
/// The ring is stored as `tsidp-keys.json`; the current RS256 key is also written to
/// `oidc-key.json` in the Go tsidp's format, and a Go tsidp `oidc-key.json` (either of its two
/// formats) is imported with its `kid` on first start.
public final class KeyRing: StateWriteSource, Sendable {
    /// The Go tsidp's key file.
    public static let stateKey = "oidc-key.json"
    /// The ring, with every key and its status.
    public static let ringKey = "tsidp-keys.json"
    /// The secret pairwise subject identifiers are derived from (base64url of 32 random bytes),
    /// made on first start and never changed: a new one would give every user of a pairwise
    /// client a new `sub`.
    public static let pairwiseKey = "tsidp-pairwise-secret"

    /// When keys rotate and how long retired keys stay published.
    public struct Policy: Sendable {
        /// A current key signs for this long before it is rotated out.
        public var rotationInterval: TimeInterval = 90 * 24 * 3600
        /// A retired key stays in the JWKS this long (much longer than any token it signed lives).
        public var retention: TimeInterval = 24 * 3600
        /// `Cache-Control: max-age` of the JWKS; a next key is always published far longer than this.
        public var jwksMaxAge: Int = 3600
        public init() {}
    }

    enum Status: String, Codable { case current, next, previous }

    struct Entry: Sendable {
        var key: SigningKey
        var status: Status
        var since: Date
        var retireAt: Date?
    }

    struct StoredEntry: Codable {
        var kid: String
        var alg: SigningAlgorithm
        var key: String
        var status: Status
        var since: Date
        var retireAt: Date?

        enum CodingKeys: String, CodingKey {
            case kid, alg, key, status, since, retireAt = "retire_at"
        }
    }

    struct State: Sendable {
        var entries: [Entry]
        var jwks: [UInt8]
    }

    private let state: Mutex<State>
    private let changes = Mutex(ChangeQueue<[Entry]>())
    private let writer: StateWriter?
    public let policy: Policy
    public let name = "keys"
    /// The pairwise subject secret (see ``pairwiseKey``).
    let pairwiseSecret: SymmetricKey

    init(entries: [Entry], writer: StateWriter?, policy: Policy, pairwiseSecret: SymmetricKey) {
        self.state = Mutex(State(entries: entries, jwks: Self.jwks(for: entries)))
        self.writer = writer
        self.policy = policy
        self.pairwiseSecret = pairwiseSecret
    }

    /// The pairwise subject identifier of `userID` at `sector` (OIDC Core §8.1): base64url of
    /// HMAC-SHA256 under the installation's secret, so the same user gets the same `sub` from
    /// every client of one sector and unrelated ones elsewhere, and nobody without the secret
    /// can link them.
    public func pairwiseSubject(userID: Int64, sector: String) -> String {
        let input = Data("\(sector.lowercased())\u{0}\(userID)".utf8)
        return Base64URL.encode(HMAC<SHA256>.authenticationCode(for: input, using: pairwiseSecret))
    }

    /// Loads the ring from the writer's store, importing a Go tsidp key or creating keys as
    /// needed.
    ///
    /// - Important: An unreadable key file stops start-up with an error instead of being replaced,
    ///   because replacing it would silently break every relying party that cached the old `kid`.
    public static func load(from writer: StateWriter, policy: Policy = Policy(), now: Date = Date()) async throws
        -> KeyRing
    {
        let store = writer.store
        func read(_ key: String) async throws -> Data? {
            do {
                return try await store.read(key)
            } catch {
                throw KeyFileError("cannot read \(key) in \(store.description): \(error)")
            }
        }
        var entries: [Entry] = []
        var changed = false
        if let data = try await read(ringKey), !data.isEmpty {
            entries = try decodeRing(data, source: store.description)
        } else {
            let imported: SigningKey
            if let data = try await read(stateKey), !data.isEmpty {
                imported = try decodeKeyFile(data, source: store.description)
            } else {
                imported = try SigningKey.generate(.rs256)
            }
            entries.append(Entry(key: imported, status: .current, since: now))
            changed = true
        }
        for algorithm in SigningAlgorithm.allCases {
            for status in [Status.current, .next]
            where !entries.contains(where: { $0.key.algorithm == algorithm && $0.status == status }) {
                entries.append(Entry(key: try SigningKey.generate(algorithm), status: status, since: now))
                changed = true
            }
        }
        let secret: SymmetricKey
        if let data = try await read(pairwiseKey), !data.isEmpty {
            guard let text = String(data: data, encoding: .utf8),
                let bytes = Base64URL.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count >= 32
            else {
                throw KeyFileError(
                    "\(pairwiseKey) in \(store.description) is damaged; restore it from a backup (a new one gives every user of a pairwise client a new subject)"
                )
            }
            secret = SymmetricKey(data: bytes)
        } else {
            secret = SymmetricKey(size: .bits256)
            changed = true
        }
        let ring = KeyRing(entries: entries, writer: writer, policy: policy, pairwiseSecret: secret)
        let created = entries
        if changed {
            do {
                try await ring.update { _ in created }
            } catch {
                throw KeyFileError("cannot store the signing keys in \(store.description): \(error)")
            }
        }
        return ring
    }

    /// The current key of `algorithm`.
    public func signingKey(for algorithm: SigningAlgorithm) -> SigningKey {
        state.withLock { state in
            state.entries.first { $0.key.algorithm == algorithm && $0.status == .current }!.key
        }
    }

    /// The current RS256 key, the default signer.
    public var signingKey: SigningKey { signingKey(for: .rs256) }

    /// Every key a relying party may see a signature from (current, next and previous).
    public var publishedKeys: [SigningKey] { state.withLock { $0.entries.map(\.key) } }

    /// The serialized JWKS document, computed once per change.
    public var jwksDocument: [UInt8] { state.withLock { $0.jwks } }

    /// Finds a published key by `kid`.
    public func key(withID kid: String) -> SigningKey? {
        state.withLock { $0.entries.first { $0.key.kid == kid }?.key }
    }

    /// Promotes every next key to current now (an operator's forced rotation).
    public func rotate(now: Date = Date()) async throws {
        try await update { entries in try Self.rotated(entries, now: now, policy: self.policy) }
    }

    /// Rotates when the current RS256 key has signed for a whole interval, and drops previous keys
    /// whose retention is over. Returns whether anything changed.
    @discardableResult
    public func maintain(now time: Date = Date()) async throws -> Bool {
        let policy = self.policy
        @Sendable func due(_ entries: [Entry]) -> (rotate: Bool, expire: Bool) {
            (
                entries.contains {
                    $0.status == .current && $0.since.addingTimeInterval(policy.rotationInterval) <= time
                },
                entries.contains { $0.status == .previous && ($0.retireAt ?? .distantFuture) <= time }
            )
        }
        let first = due(state.withLock { $0.entries })
        guard first.rotate || first.expire else { return false }
        try await update { entries in
            // Decided again on the ring as it is when the change is written: two maintenance
            // runs never rotate twice.
            let pending = due(entries)
            var result = entries.filter { !($0.status == .previous && ($0.retireAt ?? .distantFuture) <= time) }
            if pending.rotate { result = try Self.rotated(result, now: time, policy: policy) }
            return result
        }
        return true
    }

    /// Changes the ring through the write path: the new ring is stored first and published
    /// (used for signing, shown in the JWKS) only once it is durable.
    ///
    /// - Throws: the change's own error, or `temporarily_unavailable` (HTTP 503) when the store
    ///   could not be written, with the ring unchanged.
    private func update(_ change: @escaping @Sendable ([Entry]) throws -> [Entry]) async throws {
        guard let writer else {
            let next = try change(state.withLock { $0.entries })
            publish(next)
            return
        }
        let ticket = changes.withLock { $0.enqueue { entries in entries = try change(entries) } }
        await writer.flush(self)
        do {
            try await ticket.wait()
        } catch let error as KeyFileError {
            throw error
        } catch let error as OAuthError {
            throw error
        } catch {
            throw OAuthError.storageUnavailable("the signing keys")
        }
    }

    private func publish(_ entries: [Entry]) {
        let jwks = Self.jwks(for: entries)
        state.withLock { state in
            state.entries = entries
            state.jwks = jwks
        }
    }

    public func nextBatch() async -> StateBatch? {
        let current = state.withLock { $0.entries }
        guard let next = changes.withLock({ $0.begin(from: current) }) else { return nil }
        do {
            var entries = try Self.encode(next)
            entries[Self.pairwiseKey] = Data(pairwiseSecret.withUnsafeBytes { Base64URL.encode(Array($0)) }.utf8)
            return StateBatch(entries: entries)
        } catch {
            for ticket in changes.withLock({ $0.finish(error: error) }).tickets { ticket.resolve(error) }
            return nil
        }
    }

    public func finish(_ batch: StateBatch, error: (any Error)?) async {
        let (published, tickets) = changes.withLock { $0.finish(error: error) }
        if let published { publish(published) }
        for ticket in tickets { ticket.resolve(error) }
    }

    public func abandon(_ error: any Error) async {
        changes.withLock { $0.abandon(error) }
    }

    static func rotated(_ entries: [Entry], now: Date, policy: Policy) throws -> [Entry] {
        var result: [Entry] = []
        for entry in entries {
            var entry = entry
            switch entry.status {
            case .current:
                entry.status = .previous
                entry.retireAt = now.addingTimeInterval(policy.retention)
                entry.since = now
            case .next:
                entry.status = .current
                entry.since = now
            case .previous:
                break
            }
            result.append(entry)
        }
        for algorithm in SigningAlgorithm.allCases {
            result.append(Entry(key: try SigningKey.generate(algorithm), status: .next, since: now))
        }
        return result
    }

    /// The stored form of `entries`: the ring, and the current RS256 key in the Go tsidp's
    /// format.
    static func encode(_ entries: [Entry]) throws -> [String: Data?] {
        let stored = entries.map {
            StoredEntry(
                kid: $0.key.kid, alg: $0.key.algorithm, key: $0.key.privateText, status: $0.status, since: $0.since,
                retireAt: $0.retireAt)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        var batch: [String: Data?] = [
            Self.ringKey: try encoder.encode(StoredRing(version: Self.ringFormatVersion, keys: stored))
        ]
        if let rsa = entries.first(where: { $0.key.algorithm == .rs256 && $0.status == .current })?.key {
            batch[Self.stateKey] = try Self.encodeKeyFile(rsa)
        }
        return batch
    }

    /// The format of `tsidp-keys.json` written; earlier versions wrote a bare array (format 1).
    static let ringFormatVersion = 2

    struct StoredRing: Codable {
        var version: Int
        var keys: [StoredEntry]
    }

    static func decodeRing(_ data: Data, source: String) throws -> [Entry] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let stored: [StoredEntry]
        do {
            if let ring = try? decoder.decode(StoredRing.self, from: data) {
                guard ring.version <= ringFormatVersion else {
                    throw KeyFileError(
                        "\(ringKey) in \(source) was written by a newer tsidp (format \(ring.version)); this tsidp reads formats up to \(ringFormatVersion): upgrade tsidp"
                    )
                }
                stored = ring.keys
            } else {
                stored = try decoder.decode([StoredEntry].self, from: data)
            }
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw KeyFileError(
                "\(ringKey) in \(source) is damaged; restore it from a backup (removing it re-imports \(stateKey) and loses the other keys)"
            )
        }
        return try stored.map { item in
            do {
                return Entry(
                    key: try SigningKey(kid: item.kid, algorithm: item.alg, privateText: item.key), status: item.status,
                    since: item.since, retireAt: item.retireAt)
            } catch {
                throw KeyFileError("\(ringKey) in \(source): key \(item.kid) cannot be read")
            }
        }
    }

    static func jwks(for entries: [Entry]) -> [UInt8] {
        let order: [Status] = [.current, .next, .previous]
        let algorithms = SigningAlgorithm.allCases
        let sorted = entries.sorted {
            (algorithms.firstIndex(of: $0.key.algorithm)!, order.firstIndex(of: $0.status)!)
                < (algorithms.firstIndex(of: $1.key.algorithm)!, order.firstIndex(of: $1.status)!)
        }
        let keys = sorted.map { JSONText.object($0.key.jwk) }
        return Array("{\"keys\":[\(keys.joined(separator: ","))]}".utf8)
    }

    static func encodeKeyFile(_ key: SigningKey) throws -> Data {
        guard let id = UInt64(key.kid), let pem = key.pkcs1PEM else {
            throw KeyFileError("key \(key.kid) cannot be written in the Go tsidp's format")
        }
        let text = "{\n  \"kid\": \(id),\n  \"key\": \(JSONText.quote(pem))\n}\n"
        return Data(text.utf8)
    }

    static func decodeKeyFile(_ data: Data, source: String) throws -> SigningKey {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw KeyFileError("not a JSON object")
            }
            object = parsed
        } catch let error as KeyFileError {
            throw KeyFileError("\(stateKey) in \(source): \(error.message)")
        } catch {
            throw KeyFileError("\(stateKey) in \(source) is not valid JSON")
        }
        let pem: String
        let kid: String
        if let key = object["key"] as? String {
            pem = key
            kid = try kidText(object["kid"], field: "kid", raw: data, source: source)
        } else if let wrapped = object["Key"] as? String {
            guard let decoded = Base64URL.decode(wrapped) ?? Data(base64Encoded: wrapped),
                let text = String(data: decoded, encoding: .utf8)
            else {
                throw KeyFileError("\(stateKey) in \(source): Key is not base64-encoded PEM")
            }
            pem = text
            kid = try kidText(object["ID"], field: "ID", raw: data, source: source)
        } else {
            throw KeyFileError("\(stateKey) in \(source) has neither \"key\" nor \"Key\"")
        }
        do {
            let privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
            guard privateKey.keySizeInBits >= 2048 else {
                throw KeyFileError("\(stateKey) in \(source): RSA key is shorter than 2048 bits")
            }
            return try SigningKey(kid: kid, rsa: privateKey)
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw KeyFileError("\(stateKey) in \(source): the key is not an RSA private key in PEM form")
        }
    }

    private static func kidText(_ value: Any?, field: String, raw: Data, source: String) throws -> String {
        // Read the digits from the text itself: a 64-bit ID does not survive a trip through Double.
        if value is NSNumber, let text = String(data: raw, encoding: .utf8),
            let match = text.firstMatch(of: try! Regex("\"\(field)\"\\s*:\\s*([0-9]+)")),
            let digits = match.output[1].substring, let id = UInt64(digits), id != 0
        {
            return String(id)
        }
        if let text = value as? String, let id = UInt64(text), id != 0 {
            return String(id)
        }
        throw KeyFileError("\(stateKey) in \(source): key ID is missing or not a positive 64-bit number")
    }
}

/// A signing key file that cannot be used.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

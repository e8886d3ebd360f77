import AnyJSON
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
public final class KeyRing: Sendable {
    /// The Go tsidp's key file.
    public static let stateKey = "oidc-key.json"
    /// The ring, with every key and its status.
    public static let ringKey = "tsidp-keys.json"

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
    private let writer: KeyRingWriter?
    public let policy: Policy

    init(entries: [Entry], store: (any StateStore)?, policy: Policy) {
        self.state = Mutex(State(entries: entries, jwks: Self.jwks(for: entries)))
        self.writer = store.map(KeyRingWriter.init)
        self.policy = policy
    }

    /// Loads the ring from `store`, importing a Go tsidp key or creating keys as needed.
    ///
    /// - Important: An unreadable key file stops start-up with an error instead of being replaced,
    ///   because replacing it would silently break every relying party that cached the old `kid`.
    public static func load(from store: any StateStore, policy: Policy = Policy(), now: Date = Date()) async throws
        -> KeyRing
    {
        var entries: [Entry] = []
        var changed = false
        if let data = try await store.read(ringKey), !data.isEmpty {
            entries = try decodeRing(data, source: store.description)
        } else {
            let imported: SigningKey
            if let data = try await store.read(stateKey), !data.isEmpty {
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
        let ring = KeyRing(entries: entries, store: store, policy: policy)
        if changed { try await ring.persist(entries) }
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
    public func maintain(now: Date = Date()) async throws -> Bool {
        let entries = state.withLock { $0.entries }
        let due = entries.contains {
            $0.status == .current && $0.since.addingTimeInterval(policy.rotationInterval) <= now
        }
        let expired = entries.contains { $0.status == .previous && ($0.retireAt ?? .distantFuture) <= now }
        guard due || expired else { return false }
        try await update { entries in
            var result = entries.filter { !($0.status == .previous && ($0.retireAt ?? .distantFuture) <= now) }
            if due { result = try Self.rotated(result, now: now, policy: self.policy) }
            return result
        }
        return true
    }

    private func update(_ change: @escaping @Sendable ([Entry]) throws -> [Entry]) async throws {
        guard let writer else {
            state.withLock { state in
                if let next = try? change(state.entries) {
                    state.entries = next
                    state.jwks = Self.jwks(for: next)
                }
            }
            return
        }
        try await writer.serialize {
            let before = self.state.withLock { $0.entries }
            let after = try change(before)
            try await self.persist(after)
            self.state.withLock { state in
                state.entries = after
                state.jwks = Self.jwks(for: after)
            }
        }
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

    func persist(_ entries: [Entry]) async throws {
        guard let writer else { return }
        let stored = entries.map {
            StoredEntry(
                kid: $0.key.kid, alg: $0.key.algorithm, key: $0.key.privateText, status: $0.status, since: $0.since,
                retireAt: $0.retireAt)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        var batch: [String: Data?] = [Self.ringKey: try encoder.encode(stored)]
        if let rsa = entries.first(where: { $0.key.algorithm == .rs256 && $0.status == .current })?.key {
            batch[Self.stateKey] = try Self.encodeKeyFile(rsa)
        }
        try await writer.store.write(batch)
    }

    static func decodeRing(_ data: Data, source: String) throws -> [Entry] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let stored: [StoredEntry]
        do {
            stored = try decoder.decode([StoredEntry].self, from: data)
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

/// Runs key-ring changes one at a time, so that stored and published state never disagree.
actor KeyRingWriter {
    let store: any StateStore

    init(store: any StateStore) {
        self.store = store
    }

    private var last: Task<Void, any Error>?

    /// Runs `body` after every change submitted before it has finished (actors alone are
    /// reentrant across `await`, which would let two rotations read the same ring).
    func serialize(_ body: @escaping @Sendable () async throws -> Void) async throws {
        let previous = last
        let task = Task {
            _ = await previous?.result
            try await body()
        }
        last = task
        try await task.value
    }
}

/// A signing key file that cannot be used.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

import Crypto
import Foundation
import Synchronization

/// What the user authorized at `/authorize`: carried by a code, then by the tokens it mints.
public struct AuthorizationGrant: Sendable, Equatable, Codable {
    public var clientID: String
    public var redirectURI: String
    public var scopes: [String]
    public var nonce: String?
    public var codeChallenge: String?
    public var codeChallengeMethod: PKCE.Method?
    public var resources: [String]
    public var identity: UserIdentity
    public var authTime: Date
    /// Legacy flow: the relying party's node, which alone may redeem the code and refresh.
    public var boundNodeID: Int64? = nil

    enum CodingKeys: String, CodingKey {
        case clientID = "c", redirectURI = "r", scopes = "s", nonce = "n", codeChallenge = "cc"
        case codeChallengeMethod = "cm", resources = "res", identity = "id", authTime = "at", boundNodeID = "node"
    }
}

/// Authorization codes, access tokens and refresh-token families.
///
/// Tokens are looked up by the SHA-256 of their value; the values themselves are never kept, so
/// a leaked state file yields no usable token. A refresh token belongs to a family that starts at
/// one code redemption; rotating hands out the family's next token, and presenting an earlier
/// one revokes the family and its access tokens.
///
/// Access tokens and families are what survives a restart (see ``snapshot()``); codes live five
/// minutes and stay in memory.
final class GrantStore: Sendable {
    struct CodeEntry: Sendable {
        var grant: AuthorizationGrant
        var expiresAt: Date
        /// Set once redeemed; a second redemption revokes what the first one minted.
        var redeemed = false
        var mintedFamily: String?
        var mintedAccessToken: String?
        /// Replayed before the first redemption had recorded its tokens: they are revoked as soon
        /// as they are recorded.
        var poisoned = false
    }

    struct AccessEntry: Sendable, Codable, Equatable {
        var grant: AuthorizationGrant
        var audience: [String]
        var expiresAt: Date
        var issuedAt: Date
        var familyID: String?
        var jti: String
        /// RFC 8693 actor chain, for exchanged tokens.
        var actor: ActorClaim?

        enum CodingKeys: String, CodingKey {
            case grant = "g", audience = "a", expiresAt = "e", issuedAt = "i", familyID = "f", jti = "j", actor = "act"
        }
    }

    struct Family: Sendable, Codable, Equatable {
        var grant: AuthorizationGrant
        var currentTokenHash: String
        var expiresAt: Date
        var accessTokens: Set<String>
        /// The most recent retired token hashes, newest last; presenting one revokes the family.
        var retiredTokenHashes: [String]

        enum CodingKeys: String, CodingKey {
            case grant = "g", currentTokenHash = "t", expiresAt = "e", accessTokens = "a", retiredTokenHashes = "r"
        }
    }

    /// How many retired refresh tokens per family are remembered for reuse detection. An older
    /// one is merely unknown (`invalid_grant`) rather than a trigger for revocation.
    static let retiredTokensKept = 8

    /// How many files the durable state is spread over; a write rewrites only the files whose
    /// entries changed, so its cost does not grow with the number of logins.
    static let bucketCount = 32

    /// The bucket of a family (and of its access tokens), or of an access token of its own.
    static func bucket(_ key: String) -> Int {
        var hash: UInt32 = 2_166_136_261
        for byte in key.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return Int(hash % UInt32(bucketCount))
    }

    struct State: Sendable {
        var codes: [String: CodeEntry] = [:]
        var access = BucketedMap<AccessEntry>(bucket: { key, entry in GrantStore.bucket(entry.familyID ?? key) })
        var families = BucketedMap<Family>(bucket: { key, _ in GrantStore.bucket(key) })
        /// refresh token hash → family ID, for current and retired tokens.
        var refreshIndex: [String: String] = [:]

        /// Encoded text of each family and access token, valid until the entry changes.
        var familyCache: [String: String] = [:]
        var accessCache: [String: (byFamily: Bool, text: String)] = [:]

        /// Unredeemed codes per user and client, kept in step with `codes` by ``setCode(_:_:)``.
        var pending: [String: Int] = [:]

        static func pendingKey(_ grant: AuthorizationGrant) -> String { "\(grant.identity.userID)|\(grant.clientID)" }

        /// Sets or removes a code, keeping the per-user-and-client count of unredeemed codes.
        mutating func setCode(_ key: String, _ entry: CodeEntry?) {
            if let old = codes[key], !old.redeemed { pending[Self.pendingKey(old.grant), default: 1] -= 1 }
            if let entry, !entry.redeemed { pending[Self.pendingKey(entry.grant), default: 0] += 1 }
            codes[key] = entry
        }

        /// Recounts after codes were filtered wholesale (sweeps, purges).
        mutating func recountPending() {
            pending = [:]
            for entry in codes.values where !entry.redeemed { pending[Self.pendingKey(entry.grant), default: 0] += 1 }
        }

        /// Buckets changed since the last snapshot.
        var dirty: Set<Int> { access.dirty.union(families.dirty) }

        mutating func clearDirty() {
            access.dirty.removeAll()
            families.dirty.removeAll()
            access.changed.removeAll()
            families.changed.removeAll()
        }
    }

    let state = Mutex(State())

    static func hash(_ token: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data(token.utf8)))
    }

    // MARK: Persistence

    /// The durable part of the state, as stored (format version 1).
    struct Snapshot: Codable {
        var version: Int
        var families: [String: Family]
        /// Access tokens with a grant of their own (exchanged tokens).
        var access: [String: AccessEntry]
        /// Access tokens of a refresh family: the family's grant is not repeated.
        var familyAccess: [String: FamilyAccess]?

        enum CodingKeys: String, CodingKey {
            case version, families, access, familyAccess = "family_access"
        }
    }

    /// An access token stored by reference to its family's grant.
    struct FamilyAccess: Codable {
        var familyID: String
        var scopes: [String]
        var resources: [String]
        var audience: [String]
        var expiresAt: Date
        var issuedAt: Date
        var jti: String

        enum CodingKeys: String, CodingKey {
            case familyID = "f", scopes = "s", resources = "r", audience = "a", expiresAt = "e", issuedAt = "i", jti =
                "j"
        }
    }

    /// The state key of bucket `index`.
    static func stateKey(bucket index: Int) -> String {
        "tsidp-grants-" + String(format: "%02d", index) + ".json"
    }

    /// Whether `key` names a grant-state bucket.
    static func isStateKey(_ key: String) -> Bool {
        key.hasPrefix("tsidp-grants-") && key.hasSuffix(".json") && !isLogKey(key)
    }

    /// The journal entry with sequence number `sequence`.
    static func logKey(_ sequence: Int) -> String {
        "tsidp-grants-log-" + String(format: "%010d", sequence) + ".json"
    }

    /// Whether `key` names a journal entry.
    static func isLogKey(_ key: String) -> Bool {
        key.hasPrefix("tsidp-grants-log-") && key.hasSuffix(".json")
    }

    /// The buckets changed since the last call, serialized (`nil` for a bucket that became empty).
    func dirtySnapshot() throws -> (entries: [String: Data?], buckets: Set<Int>) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        func json(_ value: some Encodable) throws -> String {
            String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        return try state.withLock { state in
            let dirty = state.dirty
            guard !dirty.isEmpty else { return ([:], []) }
            // Entries are encoded once and cached; a write re-encodes only what changed since the
            // last one, and assembles its buckets from the cached text.
            for id in state.families.changed {
                state.familyCache[id] = nil
                for key in state.families[id]?.accessTokens ?? [] { state.accessCache[key] = nil }
            }
            for key in state.access.changed { state.accessCache[key] = nil }
            state.families.changed.removeAll()
            state.access.changed.removeAll()

            var families: [Int: [(String, String)]] = [:]
            var own: [Int: [(String, String)]] = [:]
            var referenced: [Int: [(String, String)]] = [:]
            for (id, family) in state.families.storage {
                let index = Self.bucket(id)
                guard dirty.contains(index) else { continue }
                let text: String
                if let cached = state.familyCache[id] {
                    text = cached
                } else {
                    text = try json(family)
                    state.familyCache[id] = text
                }
                families[index, default: []].append((id, text))
            }
            for (key, entry) in state.access.storage {
                let index = Self.bucket(entry.familyID ?? key)
                guard dirty.contains(index) else { continue }
                if let cached = state.accessCache[key] {
                    if cached.byFamily {
                        referenced[index, default: []].append((key, cached.text))
                    } else {
                        own[index, default: []].append((key, cached.text))
                    }
                    continue
                }
                if let familyID = entry.familyID, let family = state.families[familyID], entry.actor == nil,
                    family.grant.identity == entry.grant.identity, family.grant.clientID == entry.grant.clientID
                {
                    let text = try json(
                        FamilyAccess(
                            familyID: familyID, scopes: entry.grant.scopes, resources: entry.grant.resources,
                            audience: entry.audience, expiresAt: entry.expiresAt, issuedAt: entry.issuedAt,
                            jti: entry.jti))
                    state.accessCache[key] = (true, text)
                    referenced[index, default: []].append((key, text))
                } else {
                    let text = try json(entry)
                    state.accessCache[key] = (false, text)
                    own[index, default: []].append((key, text))
                }
            }
            state.clearDirty()

            func members(_ items: [(String, String)]?) -> String {
                (items ?? []).sorted { $0.0 < $1.0 }.map { JSONText.quote($0.0) + ":" + $0.1 }.joined(separator: ",")
            }
            var entries: [String: Data?] = [:]
            for index in dirty {
                if families[index] == nil && own[index] == nil && referenced[index] == nil {
                    entries.updateValue(nil, forKey: Self.stateKey(bucket: index))
                    continue
                }
                let text =
                    "{\"access\":{\(members(own[index]))},\"families\":{\(members(families[index]))},"
                    + "\"family_access\":{\(members(referenced[index]))},\"version\":1}"
                entries[Self.stateKey(bucket: index)] = .some(Data(text.utf8))
            }
            return (entries, dirty)
        }
    }

    /// The changes since the last delta, as a journal entry.
    struct Delta: Codable {
        var families: [String: Family?]
        var access: [String: AccessEntry?]
        var familyAccess: [String: FamilyAccess?]

        enum CodingKeys: String, CodingKey {
            case families, access, familyAccess = "family_access"
        }
    }

    /// The entries changed since the last call, as journal text (`nil` when nothing changed), and
    /// the keys it covers (to hand back with ``requeue(_:)`` if the write fails). Buckets stay
    /// dirty until a ``dirtySnapshot()`` compacts them.
    func delta() throws -> (text: Data?, families: Set<String>, access: Set<String>) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return try state.withLock { state in
            let familyKeys = state.families.changed
            let accessKeys = state.access.changed
            guard !familyKeys.isEmpty || !accessKeys.isEmpty else { return (nil, [], []) }
            state.families.changed.removeAll()
            state.access.changed.removeAll()
            var familyMembers: [String] = []
            var ownMembers: [String] = []
            var referencedMembers: [String] = []
            var touchedAccess = accessKeys
            for id in familyKeys.sorted() {
                state.familyCache[id] = nil
                for key in state.families[id]?.accessTokens ?? [] {
                    state.accessCache[key] = nil
                    touchedAccess.insert(key)
                }
                let text: String
                if let family = state.families[id] {
                    text = String(decoding: try encoder.encode(family), as: UTF8.self)
                    state.familyCache[id] = text
                } else {
                    text = "null"
                }
                familyMembers.append(JSONText.quote(id) + ":" + text)
            }
            for key in touchedAccess.sorted() {
                state.accessCache[key] = nil
                guard let entry = state.access[key] else {
                    ownMembers.append(JSONText.quote(key) + ":null")
                    referencedMembers.append(JSONText.quote(key) + ":null")
                    continue
                }
                if let familyID = entry.familyID, let family = state.families[familyID], entry.actor == nil,
                    family.grant.identity == entry.grant.identity, family.grant.clientID == entry.grant.clientID
                {
                    let text = String(
                        decoding: try encoder.encode(
                            FamilyAccess(
                                familyID: familyID, scopes: entry.grant.scopes, resources: entry.grant.resources,
                                audience: entry.audience, expiresAt: entry.expiresAt, issuedAt: entry.issuedAt,
                                jti: entry.jti)), as: UTF8.self)
                    state.accessCache[key] = (true, text)
                    referencedMembers.append(JSONText.quote(key) + ":" + text)
                } else {
                    let text = String(decoding: try encoder.encode(entry), as: UTF8.self)
                    state.accessCache[key] = (false, text)
                    ownMembers.append(JSONText.quote(key) + ":" + text)
                }
            }
            let text =
                "{\"access\":{\(ownMembers.joined(separator: ","))},\"families\":{\(familyMembers.joined(separator: ","))},"
                + "\"family_access\":{\(referencedMembers.joined(separator: ","))}}"
            return (Data(text.utf8), familyKeys, accessKeys)
        }
    }

    /// Hands changed keys back after a failed journal write.
    func requeue(families: Set<String>, access: Set<String>) {
        state.withLock { state in
            state.families.changed.formUnion(families)
            state.access.changed.formUnion(access)
        }
    }

    /// Marks buckets for the next snapshot again (after a failed write).
    func markDirty(_ buckets: Set<Int>) {
        state.withLock { state in state.families.dirty.formUnion(buckets) }
    }

    /// Loads the buckets written by an earlier run.
    func restore(_ buckets: [Data], logs: [Data] = [], now: Date) throws {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let snapshots = try buckets.map { try decoder.decode(Snapshot.self, from: $0) }
        if let bad = snapshots.first(where: { $0.version != 1 }) {
            throw KeyFileError("grant state has format version \(bad.version); this tsidp reads version 1")
        }
        // Buckets, then the journal on top of them, in order; `null` deletes.
        var families: [String: Family] = [:]
        var own: [String: AccessEntry] = [:]
        var referenced: [String: FamilyAccess] = [:]
        for snapshot in snapshots {
            families.merge(snapshot.families) { $1 }
            own.merge(snapshot.access) { $1 }
            referenced.merge(snapshot.familyAccess ?? [:]) { $1 }
        }
        for data in logs {
            let delta = try decoder.decode(Delta.self, from: data)
            for (id, family) in delta.families { families[id] = family }
            for (key, entry) in delta.access {
                own[key] = entry
                if entry == nil { referenced[key] = nil }
            }
            for (key, item) in delta.familyAccess {
                referenced[key] = item
                if item == nil { own[key] = nil }
            }
        }
        let merged = Snapshot(version: 1, families: families, access: own, familyAccess: referenced)
        state.withLock { state in
            for snapshot in [merged] {
                for (id, family) in snapshot.families where family.expiresAt > now { state.families[id] = family }
            }
            for snapshot in [merged] {
                for (key, entry) in snapshot.access where entry.expiresAt > now { state.access[key] = entry }
                for (key, item) in snapshot.familyAccess ?? [:] where item.expiresAt > now {
                    guard let family = state.families[item.familyID] else { continue }
                    var grant = family.grant
                    grant.scopes = item.scopes
                    grant.resources = item.resources
                    state.access[key] = AccessEntry(
                        grant: grant, audience: item.audience, expiresAt: item.expiresAt, issuedAt: item.issuedAt,
                        familyID: item.familyID, jti: item.jti, actor: nil)
                }
            }
            state.refreshIndex = [:]
            for (id, family) in state.families.storage {
                state.refreshIndex[family.currentTokenHash] = id
                for retired in family.retiredTokenHashes { state.refreshIndex[retired] = id }
            }
            state.clearDirty()
            // The journal's changes are not in the bucket files yet: the next compaction must
            // rewrite every bucket before it deletes the journal.
            if !logs.isEmpty { state.families.dirty = Set(0..<Self.bucketCount) }
        }
    }

    // MARK: Codes

    /// The grant of an unredeemed code, without redeeming it.
    func peekCode(_ code: String) -> AuthorizationGrant? {
        state.withLock { $0.codes[Self.hash(code)]?.grant }
    }

    /// The grant of the family a refresh token belongs to, without using the token.
    func peekFamily(_ token: String) -> AuthorizationGrant? {
        state.withLock { state in state.refreshIndex[Self.hash(token)].flatMap { state.families[$0]?.grant } }
    }

    /// Outstanding (unredeemed, unexpired) codes allowed per user and client, and in all.
    static let codesPerUserAndClient = 32
    static let codesInAll = 100_000

    /// Stores a new code; returns false when the caller already holds too many outstanding codes
    /// (a loop on `/authorize` must not grow memory without bound).
    func storeCode(_ code: String, grant: AuthorizationGrant, expiresAt: Date, now: Date) -> Bool {
        state.withLock { state in
            if state.codes.count >= Self.codesInAll
                || state.pending[State.pendingKey(grant), default: 0] >= Self.codesPerUserAndClient
            {
                // Expired codes still count until swept; sweep before refusing.
                state.codes = state.codes.filter { $0.value.expiresAt > now }
                state.recountPending()
            }
            guard state.codes.count < Self.codesInAll,
                state.pending[State.pendingKey(grant), default: 0] < Self.codesPerUserAndClient
            else { return false }
            state.setCode(Self.hash(code), CodeEntry(grant: grant, expiresAt: expiresAt))
            return true
        }
    }

    enum CodeLookup {
        case valid(AuthorizationGrant)
        case unknown
        case expired
        /// A replay; `revoked` says whether it revoked tokens (which then must be persisted).
        case replayed(revoked: Bool)
    }

    /// Redeems a code once. A replay revokes the family and access token the first redemption
    /// produced (OAuth 2.0 Security BCP §4.5).
    func redeemCode(_ code: String, now: Date) -> CodeLookup {
        let key = Self.hash(code)
        return state.withLock { state in
            guard var entry = state.codes[key] else { return .unknown }
            if entry.redeemed {
                var revoked = false
                if let family = entry.mintedFamily {
                    revoked = Self.revokeFamily(family, in: &state)
                }
                if let access = entry.mintedAccessToken, state.access.removeValue(forKey: access) != nil {
                    revoked = true
                }
                if entry.mintedFamily == nil && entry.mintedAccessToken == nil { entry.poisoned = true }
                entry.mintedFamily = nil
                entry.mintedAccessToken = nil
                state.setCode(key, entry)
                return .replayed(revoked: revoked)
            }
            guard entry.expiresAt > now else {
                state.setCode(key, nil)
                return .expired
            }
            entry.redeemed = true
            state.setCode(key, entry)
            return .valid(entry.grant)
        }
    }

    /// Records what a code minted, so that a replay of it can revoke them.
    func recordMinted(code: String, familyID: String?, accessTokenHash: String) {
        state.withLock { state in
            let key = Self.hash(code)
            if state.codes[key]?.poisoned == true {
                if let familyID { Self.revokeFamily(familyID, in: &state) }
                state.access.removeValue(forKey: accessTokenHash)
                return
            }
            state.codes[key]?.mintedFamily = familyID
            state.codes[key]?.mintedAccessToken = accessTokenHash
        }
    }

    /// Undoes a redemption whose tokens could not be stored: the code can be redeemed again and
    /// what it minted is gone.
    func rollbackRedemption(code: String) {
        state.withLock { state in
            let key = Self.hash(code)
            guard var entry = state.codes[key], !entry.poisoned else { return }
            if let family = entry.mintedFamily { Self.revokeFamily(family, in: &state) }
            if let access = entry.mintedAccessToken { state.access.removeValue(forKey: access) }
            entry.redeemed = false
            entry.mintedFamily = nil
            entry.mintedAccessToken = nil
            state.setCode(key, entry)
        }
    }

    /// A copy of a family, to restore after a rotation that could not be stored.
    func family(_ id: String) -> Family? {
        state.withLock { $0.families[id] }
    }

    /// Puts a family back as it was before a rotation whose result could not be stored: the
    /// presented refresh token is current again, and tokens minted by the rotation are gone.
    func rollbackRotation(familyID: String, to previous: Family, nextToken: String) {
        state.withLock { state in
            guard state.families[familyID] != nil else { return }
            state.refreshIndex[Self.hash(nextToken)] = nil
            let minted = state.access.storage.filter {
                $0.value.familyID == familyID && !previous.accessTokens.contains($0.key)
            }.map(\.key)
            for key in minted { state.access.removeValue(forKey: key) }
            state.families[familyID] = previous
            state.refreshIndex[previous.currentTokenHash] = familyID
        }
    }

    // MARK: Access tokens

    func storeAccessToken(_ token: String, entry: AccessEntry) -> String {
        let key = Self.hash(token)
        state.withLock { state in
            state.access[key] = entry
            if let family = entry.familyID { state.families[family]?.accessTokens.insert(key) }
        }
        return key
    }

    func accessToken(_ token: String) -> AccessEntry? {
        state.withLock { $0.access[Self.hash(token)] }
    }

    @discardableResult
    func removeAccessToken(_ token: String) -> Bool {
        state.withLock { $0.access.removeValue(forKey: Self.hash(token)) != nil }
    }

    // MARK: Refresh families

    func startFamily(grant: AuthorizationGrant, refreshToken: String, expiresAt: Date) -> String {
        let id = RandomToken.make(bytes: 16)
        let key = Self.hash(refreshToken)
        state.withLock { state in
            state.families[id] = Family(
                grant: grant, currentTokenHash: key, expiresAt: expiresAt, accessTokens: [], retiredTokenHashes: [])
            state.refreshIndex[key] = id
        }
        return id
    }

    enum RefreshLookup {
        case valid(familyID: String, grant: AuthorizationGrant)
        case unknown
        case expired
        case reused
        case rejected(OAuthError)
    }

    /// Looks at a refresh token without using it up: a reused or expired token revokes its family
    /// here already.
    func inspect(_ presented: String, now: Date, clientID: String) -> RefreshLookup {
        let key = Self.hash(presented)
        return state.withLock { state in
            guard let familyID = state.refreshIndex[key], let family = state.families[familyID] else { return .unknown }
            guard family.grant.clientID == clientID else { return .unknown }
            guard family.currentTokenHash == key else {
                Self.revokeFamily(familyID, in: &state)
                return .reused
            }
            guard family.expiresAt > now else {
                Self.revokeFamily(familyID, in: &state)
                return .expired
            }
            return .valid(familyID: familyID, grant: family.grant)
        }
    }

    /// Rotates a refresh token: the presented one is retired and `next` becomes current, and the
    /// family's grant is replaced by `grant` (a fresh identity). Fails as ``inspect`` does when the
    /// token stopped being current in the meantime.
    func rotate(
        _ presented: String, next: String, expiresAt: Date, now: Date, clientID: String, grant: AuthorizationGrant
    ) -> RefreshLookup {
        let key = Self.hash(presented)
        return state.withLock { state in
            guard let familyID = state.refreshIndex[key], var family = state.families[familyID],
                family.grant.clientID == clientID
            else { return .unknown }
            guard family.currentTokenHash == key else {
                Self.revokeFamily(familyID, in: &state)
                return .reused
            }
            let nextKey = Self.hash(next)
            family.retiredTokenHashes.append(key)
            if family.retiredTokenHashes.count > Self.retiredTokensKept {
                let dropped = family.retiredTokenHashes.removeFirst()
                state.refreshIndex[dropped] = nil
            }
            family.currentTokenHash = nextKey
            family.expiresAt = expiresAt
            family.grant = grant
            state.families[familyID] = family
            state.refreshIndex[nextKey] = familyID
            return .valid(familyID: familyID, grant: grant)
        }
    }

    /// Revokes the family a refresh token belongs to (RFC 7009), if `clientID` owns it.
    func revokeRefreshToken(_ token: String, clientID: String) -> Bool {
        let key = Self.hash(token)
        return state.withLock { state in
            guard let id = state.refreshIndex[key], state.families[id]?.grant.clientID == clientID else { return false }
            return Self.revokeFamily(id, in: &state)
        }
    }

    /// Ends a family (a removed node or user).
    func revokeFamily(_ id: String) {
        state.withLock { _ = Self.revokeFamily(id, in: &$0) }
    }

    /// The refresh family a token belongs to, if current.
    func family(ofRefreshToken token: String) -> (id: String, family: Family)? {
        let key = Self.hash(token)
        return state.withLock { state in
            guard let id = state.refreshIndex[key], let family = state.families[id], family.currentTokenHash == key
            else {
                return nil
            }
            return (id, family)
        }
    }

    @discardableResult
    private static func revokeFamily(_ id: String, in state: inout State) -> Bool {
        guard let family = state.families.removeValue(forKey: id) else { return false }
        for key in family.accessTokens { state.access[key] = nil }
        state.refreshIndex[family.currentTokenHash] = nil
        for key in family.retiredTokenHashes { state.refreshIndex[key] = nil }
        return true
    }

    /// Drops expired codes, access tokens and families; returns whether durable state changed.
    @discardableResult
    func sweep(now: Date) -> Bool {
        state.withLock { state in
            state.codes = state.codes.filter { $0.value.expiresAt > now }
            state.recountPending()
            var changed = state.access.removeAll { $0.expiresAt <= now } > 0
            for (id, family) in state.families.storage where family.expiresAt <= now {
                Self.revokeFamily(id, in: &state)
                changed = true
            }
            for (id, family) in state.families.storage {
                let live = family.accessTokens.filter { state.access[$0] != nil }
                if live.count != family.accessTokens.count { state.families[id]?.accessTokens = live }
            }
            return changed
        }
    }

    /// Ends every legacy-flow grant (when the legacy flow has been turned off); returns whether any
    /// existed.
    func revokeNodeBoundFamilies() -> Bool {
        state.withLock { state in
            let bound = state.families.storage.filter { $0.value.grant.boundNodeID != nil }.map(\.key)
            for id in bound { Self.revokeFamily(id, in: &state) }
            return !bound.isEmpty
        }
    }

    /// Forgets everything issued to `clientID` (when the client is deleted).
    func purge(clientID: String) {
        state.withLock { state in
            state.codes = state.codes.filter { $0.value.grant.clientID != clientID }
            state.recountPending()
            state.access.removeAll { $0.grant.clientID == clientID }
            for (id, family) in state.families.storage where family.grant.clientID == clientID {
                Self.revokeFamily(id, in: &state)
            }
        }
    }

    /// Counts for metrics and tests.
    var counts: (codes: Int, accessTokens: Int, families: Int) {
        state.withLock { ($0.codes.count, $0.access.count, $0.families.count) }
    }
}

/// The RFC 8693 `act` claim: who acts on the subject's behalf, possibly nested.
public struct ActorClaim: Sendable, Codable, Equatable {
    public var sub: String
    public var clientID: String?
    public var act: Box?

    /// Indirection so the claim can nest.
    public final class Box: Sendable, Codable, Equatable {
        public let value: ActorClaim
        public init(_ value: ActorClaim) { self.value = value }
        public static func == (a: Box, b: Box) -> Bool { a.value == b.value }
        public init(from decoder: any Decoder) throws { value = try ActorClaim(from: decoder) }
        public func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    enum CodingKeys: String, CodingKey {
        case sub, clientID = "client_id", act
    }
}

/// A dictionary that remembers which buckets its changes touched.
struct BucketedMap<Value: Sendable>: Sendable {
    private(set) var storage: [String: Value] = [:]
    var dirty = Set<Int>()
    /// Keys changed since the last snapshot.
    var changed = Set<String>()
    let bucket: @Sendable (String, Value) -> Int

    init(bucket: @escaping @Sendable (String, Value) -> Int) {
        self.bucket = bucket
    }

    subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let old = storage[key] { dirty.insert(bucket(key, old)) }
            if let newValue { dirty.insert(bucket(key, newValue)) }
            changed.insert(key)
            storage[key] = newValue
        }
    }

    @discardableResult
    mutating func removeValue(forKey key: String) -> Value? {
        guard let old = storage.removeValue(forKey: key) else { return nil }
        dirty.insert(bucket(key, old))
        changed.insert(key)
        return old
    }

    /// Removes the entries `predicate` selects; returns how many.
    @discardableResult
    mutating func removeAll(where predicate: (Value) -> Bool) -> Int {
        let doomed = storage.filter { predicate($0.value) }
        for (key, value) in doomed {
            storage[key] = nil
            dirty.insert(bucket(key, value))
            changed.insert(key)
        }
        return doomed.count
    }

    var count: Int { storage.count }
}

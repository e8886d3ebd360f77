import AnyJSON
import Foundation

/// Writes grant files (``GrantFileCodec/File``) as JSON bytes directly, without an encoder: every
/// refresh and code redemption writes a journal entry, and a compaction rewrites whole buckets,
/// so this is on the token path. The output is what `JSONEncoder` (sorted keys, dates as seconds
/// since 1970) writes, up to insignificant spelling (`/` is not escaped, numbers are written in
/// their shortest form); ``GrantFileCodec/decode(_:key:source:)`` reads both, and the tests hold
/// the two to the same decoded result.
struct GrantFileWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 1_024) {
        bytes.reserveCapacity(capacity)
    }

    static func encode(_ file: GrantFileCodec.File) -> Data {
        var writer = GrantFileWriter(capacity: 512 + 1_024 * (file.families.count + file.access.count))
        writer.file(file)
        return Data(writer.bytes)
    }

    // MARK: The file and its records, members in sorted order as JSONEncoder writes them.

    mutating func file(_ file: GrantFileCodec.File) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("access", &first)
        dictionary(file.access) { $0.accessRecord($1) }
        if let consents = file.consents {
            member("consents", &first)
            dictionary(consents) { $0.consent($1) }
        }
        member("families", &first)
        dictionary(file.families) { $0.family($1) }
        if let familyAccess = file.familyAccess {
            member("family_access", &first)
            dictionary(familyAccess) { $0.familyAccessRecord($1) }
        }
        if let sequence = file.sequence {
            member("sequence", &first)
            unsigned(sequence)
        }
        if let version = file.version {
            member("version", &first)
            integer(Int64(version))
        }
        byte(UInt8(ascii: "}"))
    }

    mutating func family(_ family: RefreshFamily) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("e", &first)
        date(family.expiresAt)
        member("g", &first)
        grant(family.grant)
        member("r", &first)
        strings(family.retiredTokenHashes)
        member("t", &first)
        string(family.currentTokenHash)
        byte(UInt8(ascii: "}"))
    }

    mutating func accessRecord(_ record: AccessTokenRecord) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("a", &first)
        strings(record.audience)
        if let actor = record.actor {
            member("act", &first)
            self.actor(actor)
        }
        member("e", &first)
        date(record.expiresAt)
        if let familyID = record.familyID {
            member("f", &first)
            string(familyID)
        }
        member("g", &first)
        grant(record.grant)
        member("i", &first)
        date(record.issuedAt)
        member("j", &first)
        string(record.jti)
        byte(UInt8(ascii: "}"))
    }

    mutating func familyAccessRecord(_ record: GrantFileCodec.FamilyAccessRecord) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("a", &first)
        strings(record.audience)
        member("e", &first)
        date(record.expiresAt)
        member("f", &first)
        string(record.familyID)
        member("i", &first)
        date(record.issuedAt)
        member("j", &first)
        string(record.jti)
        member("r", &first)
        strings(record.resources)
        member("s", &first)
        strings(record.scopes)
        byte(UInt8(ascii: "}"))
    }

    mutating func consent(_ consent: ConsentRecord) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("c", &first)
        string(consent.clientID)
        member("s", &first)
        strings(consent.scopes)
        member("t", &first)
        date(consent.grantedAt)
        member("u", &first)
        integer(consent.userID)
        byte(UInt8(ascii: "}"))
    }

    mutating func grant(_ grant: AuthorizationGrant) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("at", &first)
        date(grant.authTime)
        member("c", &first)
        string(grant.clientID)
        if let challenge = grant.codeChallenge {
            member("cc", &first)
            string(challenge)
        }
        if let claims = grant.claims {
            member("cl", &first)
            byte(UInt8(ascii: "{"))
            var inner = true
            member("i", &inner)
            strings(claims.idToken)
            member("u", &inner)
            strings(claims.userInfo)
            byte(UInt8(ascii: "}"))
        }
        if let method = grant.codeChallengeMethod {
            member("cm", &first)
            string(method.rawValue)
        }
        member("id", &first)
        identity(grant.identity)
        if let nonce = grant.nonce {
            member("n", &first)
            string(nonce)
        }
        if let node = grant.boundNodeID {
            member("node", &first)
            integer(node)
        }
        if let pairwise = grant.pairwiseSubject {
            member("ps", &first)
            string(pairwise)
        }
        member("r", &first)
        string(grant.redirectURI)
        member("res", &first)
        strings(grant.resources)
        member("s", &first)
        strings(grant.scopes)
        byte(UInt8(ascii: "}"))
    }

    mutating func identity(_ identity: UserIdentity) {
        byte(UInt8(ascii: "{"))
        var first = true
        member("a", &first)
        strings(identity.addresses)
        member("c", &first)
        byte(UInt8(ascii: "["))
        for (index, value) in identity.capabilityValues.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            json(value)
        }
        byte(UInt8(ascii: "]"))
        member("d", &first)
        string(identity.displayName)
        member("g", &first)
        strings(identity.groups)
        member("l", &first)
        string(identity.loginName)
        member("n", &first)
        integer(identity.nodeID)
        member("nk", &first)
        string(identity.nodeKey)
        member("nn", &first)
        string(identity.nodeName)
        member("ns", &first)
        string(identity.nodeStableID)
        member("p", &first)
        string(identity.profilePicURL)
        member("t", &first)
        strings(identity.tags)
        member("u", &first)
        integer(identity.userID)
        byte(UInt8(ascii: "}"))
    }

    mutating func actor(_ actor: ActorClaim) {
        byte(UInt8(ascii: "{"))
        var first = true
        if let nested = actor.act {
            member("act", &first)
            self.actor(nested.value)
        }
        if let clientID = actor.clientID {
            member("client_id", &first)
            string(clientID)
        }
        member("sub", &first)
        string(actor.sub)
        byte(UInt8(ascii: "}"))
    }

    // MARK: JSON pieces.

    /// A `[String: Record?]` dictionary, keys sorted; `nil` values are `null` (a removal).
    mutating func dictionary<Record>(_ members: [String: Record?], _ write: (inout Self, Record) -> Void) {
        byte(UInt8(ascii: "{"))
        var first = true
        for key in members.keys.sorted() {
            member(key, &first)
            if let value = members[key] ?? nil { write(&self, value) } else { null() }
        }
        byte(UInt8(ascii: "}"))
    }

    mutating func json(_ value: JSONValue) {
        switch value {
        case .null: null()
        case .bool(let flag): bytes.append(contentsOf: flag ? Array("true".utf8) : Array("false".utf8))
        case .int(let number): integer(number)
        case .double(let number): double(number)
        case .string(let text): string(text)
        case .array(let values):
            byte(UInt8(ascii: "["))
            for (index, item) in values.enumerated() {
                if index > 0 { byte(UInt8(ascii: ",")) }
                json(item)
            }
            byte(UInt8(ascii: "]"))
        case .object(let members):
            byte(UInt8(ascii: "{"))
            var first = true
            for key in members.keys.sorted() {
                member(key, &first)
                json(members[key]!)
            }
            byte(UInt8(ascii: "}"))
        }
    }

    private mutating func byte(_ value: UInt8) { bytes.append(value) }

    private mutating func null() { bytes.append(contentsOf: [110, 117, 108, 108]) }

    private mutating func member(_ name: StaticString, _ first: inout Bool) {
        if !first { byte(UInt8(ascii: ",")) }
        first = false
        byte(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        byte(UInt8(ascii: "\""))
        byte(UInt8(ascii: ":"))
    }

    private mutating func member(_ name: String, _ first: inout Bool) {
        if !first { byte(UInt8(ascii: ",")) }
        first = false
        string(name)
        byte(UInt8(ascii: ":"))
    }

    mutating func strings(_ values: [String]) {
        byte(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            string(value)
        }
        byte(UInt8(ascii: "]"))
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A JSON string: `"` and `\` escaped, control characters as `\u00XX`, everything else as
    /// its UTF-8 bytes.
    mutating func string(_ value: String) {
        byte(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let code = utf8[index]
                guard code < 0x20 || code == UInt8(ascii: "\"") || code == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                byte(UInt8(ascii: "\\"))
                switch code {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): byte(code)
                case 0x0A: byte(UInt8(ascii: "n"))
                case 0x0D: byte(UInt8(ascii: "r"))
                case 0x09: byte(UInt8(ascii: "t"))
                default:
                    bytes.append(contentsOf: Array("u00".utf8))
                    byte(Self.hex[Int(code >> 4)])
                    byte(Self.hex[Int(code & 0x0F)])
                }
                start = index + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<utf8.count]))
        }
        byte(UInt8(ascii: "\""))
    }

    mutating func integer(_ value: Int64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func unsigned(_ value: UInt64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    /// A double in its shortest form that reads back exactly; integral values without a fraction.
    mutating func double(_ value: Double) {
        guard value.isFinite else { return null() }
        if value == value.rounded(), abs(value) < 1e15 {
            integer(Int64(value))
        } else {
            bytes.append(contentsOf: value.description.utf8)
        }
    }

    /// A date as seconds since 1970 (the codec's date strategy).
    mutating func date(_ value: Date) {
        double(value.timeIntervalSince1970)
    }
}

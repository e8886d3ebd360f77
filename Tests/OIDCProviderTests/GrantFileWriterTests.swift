import AnyJSON
import Foundation
import Testing

@testable import OIDCProvider

@Suite("Grant files written directly read back as JSONEncoder's do")
struct GrantFileWriterTests {
    /// A small deterministic generator, so a failure names a reproducible case.
    struct Generator {
        var state: UInt64
        /// Whether capability values hold doubles, which read back as integers when integral.
        var doubles = true
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

        static let pieces = [
            "alice@example.com", "", "a\"quote", "back\\slash", "line\nbreak\ttab\r", "\u{0}\u{1}\u{1f}",
            "slash/and<html>&amp;", "ünïcødé", "emoji 🙂", "\u{2028}\u{2029}", "https://app.example.com/cb?x=1",
            "userid:2001", "日本語",
        ]

        mutating func text() -> String {
            (0..<below(3) + 1).map { _ in Self.pieces[below(Self.pieces.count)] }.joined()
        }
        mutating func texts() -> [String] { (0..<below(4)).map { _ in text() } }
        mutating func date() -> Date {
            let seconds = Double(1_700_000_000 + below(200_000_000))
            return Date(timeIntervalSince1970: chance(50) ? seconds : seconds + Double(below(1_000_000)) / 1_000_000)
        }

        mutating func json(depth: Int = 0) -> JSONValue {
            switch below(depth > 2 ? 5 : 7) {
            case 0: return .null
            case 1: return .bool(chance(50))
            case 2: return .int(Int64(below(1_000_000)) - 500_000)
            case 3: return doubles ? .double(Double(below(1_000_000)) / 7) : .int(Int64(below(100)))
            case 4: return .string(text())
            case 5: return .array((0..<below(4)).map { _ in json(depth: depth + 1) })
            default:
                var members: [String: JSONValue] = [:]
                for _ in 0..<below(4) { members[text()] = json(depth: depth + 1) }
                return .object(members)
            }
        }

        mutating func identity() -> UserIdentity {
            UserIdentity(
                userID: Int64(below(1_000_000)), loginName: text(), displayName: text(), profilePicURL: text(),
                groups: texts(), nodeID: Int64(below(1_000_000)), nodeStableID: text(), nodeName: text(),
                nodeKey: text(), addresses: texts(), tags: texts(),
                capabilityValues: (0..<below(3)).map { _ in json() })
        }

        mutating func grant() -> AuthorizationGrant {
            var grant = AuthorizationGrant(
                clientID: text(), redirectURI: text(), scopes: texts(), nonce: chance(50) ? text() : nil,
                codeChallenge: chance(50) ? text() : nil, codeChallengeMethod: chance(50) ? .s256 : nil,
                resources: texts(), identity: identity(), authTime: date(),
                boundNodeID: chance(20) ? Int64(below(100_000)) : nil,
                claims: chance(30) ? ClaimsRequest(idToken: texts(), userInfo: texts()) : nil)
            if chance(30) { grant.pairwiseSubject = text() }
            return grant
        }

        mutating func actor(depth: Int = 0) -> ActorClaim {
            ActorClaim(
                sub: text(), clientID: chance(50) ? text() : nil,
                act: depth < 3 && chance(40) ? ActorClaim.Box(actor(depth: depth + 1)) : nil)
        }

        mutating func file() -> GrantFileCodec.File {
            var file = GrantFileCodec.File(sequence: UInt64(below(1_000_000)))
            for _ in 0..<below(4) {
                if chance(20) {
                    file.families[text()] = .some(nil)
                } else {
                    var family = RefreshFamily(grant: grant(), currentTokenHash: text(), expiresAt: date())
                    family.retiredTokenHashes = texts()
                    file.families[text()] = family
                }
            }
            for _ in 0..<below(4) {
                file.access[text()] =
                    chance(20)
                    ? .some(nil)
                    : AccessTokenRecord(
                        grant: grant(), audience: texts(), expiresAt: date(), issuedAt: date(),
                        familyID: chance(50) ? text() : nil, jti: text(), actor: chance(40) ? actor() : nil)
            }
            if chance(80) {
                for _ in 0..<below(3) {
                    file.familyAccess?[text()] =
                        chance(20)
                        ? .some(nil)
                        : GrantFileCodec.FamilyAccessRecord(
                            familyID: text(), scopes: texts(), resources: texts(), audience: texts(), expiresAt: date(),
                            issuedAt: date(), jti: text())
                }
            } else {
                file.familyAccess = nil
            }
            if chance(80) {
                for _ in 0..<below(3) {
                    file.consents?[text()] =
                        chance(20)
                        ? .some(nil)
                        : ConsentRecord(
                            userID: Int64(below(100_000)), clientID: text(), grantedAt: date(), scopes: texts())
                }
            } else {
                file.consents = nil
            }
            return file
        }
    }

    @Test("300 varied files: the direct writer's bytes decode to the file, and to what JSONEncoder's decode to")
    func matchesFoundation() throws {
        var generator = Generator(state: 2001)
        for round in 0..<300 {
            let file = generator.file()
            let direct = try GrantFileCodec.encode(file)
            let reference = try GrantFileCodec.encodeWithFoundation(file)
            let fromDirect = try GrantFileCodec.decode(direct, key: "tsidp-grants-00.json", source: "test")
            let fromReference = try GrantFileCodec.decode(reference, key: "tsidp-grants-00.json", source: "test")
            #expect(fromDirect == fromReference, "round \(round)")
            // Valid JSON for any reader, not only Swift's.
            #expect(try JSONSerialization.jsonObject(with: direct) is [String: Any], "round \(round)")
        }
    }

    @Test("without doubles in capability values, a file reads back exactly as it was")
    func exact() throws {
        var generator = Generator(state: 7, doubles: false)
        for round in 0..<200 {
            let file = generator.file()
            let read = try GrantFileCodec.decode(
                try GrantFileCodec.encode(file), key: "tsidp-grants-00.json", source: "test")
            #expect(read == file, "round \(round)")
        }
    }

    @Test("control characters, quotes and backslashes are escaped; other text is kept as UTF-8")
    func escaping() throws {
        var writer = GrantFileWriter()
        writer.string("a\"b\\c\nd\u{1}é🙂/")
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""a\"b\\c\nd\u0001é🙂/""#)
    }

    @Test("dates keep their fraction; integral values are written without one")
    func dates() throws {
        var writer = GrantFileWriter()
        writer.date(Date(timeIntervalSince1970: 1_800_000_000))
        writer.strings([])
        writer.date(Date(timeIntervalSince1970: 1_800_000_000.25))
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "1800000000[]1800000000.25")
    }
}

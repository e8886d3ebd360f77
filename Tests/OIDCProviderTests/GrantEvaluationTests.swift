import AnyJSON
import Foundation
import Logging
import Synchronization
import Testing

@testable import OIDCProvider

/// The grant model of `tailscale.com/cap/tsidp` (or the name `--cap-name` gives), checked case by
/// case against the Go tsidp's extra-claim and grant tests (names in the test titles), with our
/// stricter rules where we differ: malformed grants grant nothing, a rule that sets a protected
/// claim is ignored (and logged) while the sign-in goes on, and merges are deterministic.
@Suite("Grant evaluation")
struct GrantEvaluationTests {
    static func merged(_ rules: [JSONValue], userInfo: Bool = false) throws -> [String: JSONValue] {
        let grants = Grants(try CapabilityRule.parse(rules))
        return Dictionary(
            uniqueKeysWithValues: grants.extraClaims(forUserInfo: userInfo, protected: IDToken.protectedClaims).map {
                ($0.0, $0.1)
            })
    }

    static func claims(_ members: [String: JSONValue], userInfo: Bool = false) -> JSONValue {
        var rule: [String: JSONValue] = ["extraClaims": .object(members)]
        if userInfo { rule["includeInUserInfo"] = .bool(true) }
        return .object(rule)
    }

    @Test("FlattenExtraClaims: empty grants and empty extraClaims add nothing")
    func empty() throws {
        #expect(try Self.merged([]).isEmpty)
        #expect(try Self.merged([Self.claims([:])]).isEmpty)
        #expect(try Self.merged([.object([:])]).isEmpty)
    }

    @Test("FlattenExtraClaims: strings, numbers and booleans pass through")
    func scalars() throws {
        let merged = try Self.merged([
            Self.claims(["team": .string("infra"), "level": .int(3), "ratio": .double(0.5), "oncall": .bool(false)])
        ])
        #expect(merged["team"] == .string("infra"))
        #expect(merged["level"] == .int(3))
        #expect(merged["ratio"] == .double(0.5))
        #expect(merged["oncall"] == .bool(false))
    }

    @Test("FlattenExtraClaims: lists of strings and numbers, de-duplicated across rules, first seen first")
    func lists() throws {
        let merged = try Self.merged([
            Self.claims(["roles": .array([.string("viewer"), .int(7)])]),
            Self.claims(["roles": .array([.string("editor"), .string("viewer")])]),
        ])
        #expect(merged["roles"] == .array([.string("viewer"), .int(7), .string("editor")]))
    }

    @Test("FlattenExtraClaims: a scalar then a list make a list; a repeated scalar stays a scalar")
    func scalarThenList() throws {
        let merged = try Self.merged([
            Self.claims(["groups": .string("a"), "tier": .string("gold")]),
            Self.claims(["groups": .array([.string("b"), .string("a")]), "tier": .string("gold")]),
        ])
        #expect(merged["groups"] == .array([.string("a"), .string("b")]))
        #expect(merged["tier"] == .string("gold"))
    }

    @Test("FlattenExtraClaims: two different scalars keep the first rule's value, in grant order")
    func conflictingScalars() throws {
        let merged = try Self.merged([Self.claims(["tier": .string("gold")]), Self.claims(["tier": .string("silver")])])
        #expect(merged["tier"] == .string("gold"))
        let reversed = try Self.merged([
            Self.claims(["tier": .string("silver")]), Self.claims(["tier": .string("gold")]),
        ])
        #expect(reversed["tier"] == .string("silver"))
    }

    @Test("FlattenExtraClaims: nested objects and unsupported list items are dropped, the rest kept")
    func unsupported() throws {
        let merged = try Self.merged([
            Self.claims([
                "nested": .object(["x": .int(1)]),
                "mixed": .array([.string("ok"), .object(["x": .int(1)]), .array([.int(1)]), .null, .bool(true)]),
                "nothing": .null,
            ]),
            Self.claims(["scalarThenMap": .string("kept")]),
            Self.claims(["scalarThenMap": .object(["y": .int(2)])]),
        ])
        #expect(merged["nested"] == nil)
        #expect(merged["nothing"] == nil)
        #expect(merged["mixed"] == .array([.string("ok"), .bool(true)]))
        #expect(merged["scalarThenMap"] == .string("kept"))
    }

    @Test("The merge is deterministic: the same grants give the same member order every time")
    func deterministic() throws {
        let rules: [JSONValue] = [
            Self.claims(["zeta": .int(1), "alpha": .int(2), "mid": .array([.string("x")])]),
            Self.claims(["beta": .int(3), "alpha": .int(4)]),
        ]
        let grants = Grants(try CapabilityRule.parse(rules))
        let first = grants.extraClaims(forUserInfo: false).map(\.0)
        #expect(first == ["alpha", "mid", "zeta", "beta"])
        for _ in 0..<20 { #expect(grants.extraClaims(forUserInfo: false).map(\.0) == first) }
    }

    @Test("ExtraUserInfo: only rules with includeInUserInfo reach userinfo")
    func userInfoOnly() throws {
        let rules: [JSONValue] = [
            Self.claims(["groups": .array([.string("portainer-admins")])], userInfo: true),
            Self.claims(["secret_level": .int(9)]),
        ]
        #expect(try Self.merged(rules, userInfo: true) == ["groups": .array([.string("portainer-admins")])])
        #expect(try Self.merged(rules).count == 2)
    }

    @Test("ExtraClaims: a rule setting a protected claim adds nothing; the other rules still apply")
    func protectedClaims() throws {
        for claim in ["sub", "iss", "aud", "exp", "email", "username", "nonce", "azp", "act", "auth_time", "at_hash"] {
            let rules: [JSONValue] = [
                Self.claims([claim: .string("forged"), "team": .string("from-bad-rule")]),
                Self.claims(["role": .string("viewer")]),
            ]
            let merged = try Self.merged(rules)
            #expect(merged[claim] == nil, "\(claim) was overwritten")
            #expect(merged["team"] == nil)
            #expect(merged["role"] == .string("viewer"))
            let grants = Grants(try CapabilityRule.parse(rules))
            #expect(grants.rulesSettingProtectedClaims(IDToken.protectedClaims).map(\.rule) == [1])
            #expect(grants.rulesSettingProtectedClaims(IDToken.protectedClaims).map(\.claim) == [claim])
        }
    }

    @Test("Grants deny by default and OR booleans across rules")
    func denyByDefault() throws {
        let none = Grants(try CapabilityRule.parse([.object([:])]))
        #expect(!none.allowAdminUI && !none.allowDCR)
        #expect(!none.allows(resource: "https://mcp.example.com", for: "alice@example.com"))
        let some = Grants(
            try CapabilityRule.parse([
                .object(["allow_admin_ui": .bool(false)]), .object(["allow_admin_ui": .bool(true)]),
            ]))
        #expect(some.allowAdminUI && !some.allowDCR)
    }

    @Test("A grant that does not parse names the bad field and grants nothing")
    func malformed() async throws {
        let cases: [(JSONValue, String)] = [
            (.string("admin"), "grant value 2 is not a JSON object"),
            (.object(["allow_dcr": .string("true")]), "allow_dcr is not a boolean"),
            (.object(["includeInUserInfo": .int(1)]), "includeInUserInfo is not a boolean"),
            (.object(["resources": .string("*")]), "resources is not a list"),
            (.object(["users": .array([.int(3)])]), "users holds a non-string"),
            (.object(["extraClaims": .array([.string("x")])]), "extraClaims is not an object"),
        ]
        for (value, expected) in cases {
            do {
                _ = try CapabilityRule.parse([.object(["allow_admin_ui": .bool(true)]), value])
                Issue.record("\(value) parsed")
            } catch let error as CapabilityError {
                #expect(error.message.contains(expected), "\(error.message)")
                #expect(error.message.hasPrefix("grant value 2"), "the second rule is the bad one: \(error.message)")
            }
        }
        // The provider turns it into a refusal, never a partial grant.
        let identity = Fixtures.alice(rules: [.object(["allow_admin_ui": .bool(true)]), .string("oops")])
        let setup = try await Fixtures.provider()
        #expect(throws: OAuthError.self) { try setup.provider.policy(for: identity) }
    }

    @Test("A protected-claim rule is logged once per node, and the sign-in and userinfo still work")
    func protectedClaimSignIn() async throws {
        let lines = CollectedLines()
        let setup = try await Fixtures.provider(logger: Logger(label: "test") { _ in LineCollector(lines: lines) })
        let identity = Fixtures.alice(rules: [
            .object([
                "extraClaims": .object(["email": .string("mallory@example.com")]), "includeInUserInfo": .bool(true),
            ]),
            .object(["extraClaims": .object(["department": .string("research")]), "includeInUserInfo": .bool(true)]),
        ])
        for _ in 0..<3 {
            let answer = await setup.redeem(try await setup.code(identity: identity))
            #expect(answer.status == 200)
            let body = Fixtures.json(answer.body)
            let access = try #require(body["access_token"] as? String)
            let info = Fixtures.json(setup.provider.userInfo(accessToken: access).body)
            #expect(info["email"] as? String == "alice@example.com")
            #expect(info["department"] as? String == "research")
        }
        let warnings = lines.all.filter { $0.contains("protected claim email") }
        #expect(warnings.count == 1, "\(lines.all)")
    }
}

/// Log lines collected by ``LineCollector``.
final class CollectedLines: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

/// Collects each line's message and metadata.
struct LineCollector: LogHandler {
    let lines: CollectedLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        lines.append("\(event.level) \(event.message) \(event.metadata ?? [:])")
    }
}

import AnyJSON
import Foundation
import Logging
import Synchronization
import Testing

@testable import OIDCProvider

/// A tsidp grant that does not parse grants nothing, says which field is wrong, and is logged
/// once per node.
@Suite("Malformed grants")
struct MalformedGrantTests {
    static let broken: [JSONValue] = [.object(["allow_admin_ui": .string("yes")])]

    /// Collects warnings.
    final class Warnings: Sendable {
        let lines = Mutex<[String]>([])

        var logger: Logger {
            Logger(label: "test") { _ in Handler(warnings: self) }
        }

        struct Handler: LogHandler {
            let warnings: Warnings
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                guard event.level == .warning else { return }
                warnings.lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
            }
        }
    }

    @Test("/authorize shows a 403 page naming the bad field and issues no code")
    func authorize() async throws {
        let setup = try await Fixtures.provider()
        let result = await setup.provider.authorize(
            Fixtures.query([
                ("client_id", setup.client.clientID), ("redirect_uri", Fixtures.redirect), ("response_type", "code"),
                ("scope", "openid"),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice(rules: Self.broken) }
        guard case .errorPage(let error) = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
        #expect(error.status == 403)
        #expect(error.code == .accessDenied)
        #expect(error.message.contains("allow_admin_ui is not a boolean"))
    }

    @Test("a refresh whose re-identified grant does not parse answers 403 and leaves the grant usable once fixed")
    func refresh() async throws {
        let base = try await Fixtures.provider()
        let tailnet = Tailnet(Fixtures.alice())
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net"),
            keys: base.provider.keys, clients: base.provider.clients,
            reidentify: { (identity: UserIdentity) async throws(IdentityFailure) -> UserIdentity in
                try tailnet.whois(identity)
            },
            now: { base.clock.now })
        let setup = base.with(provider: provider)
        let refresh = try #require(
            Fixtures.json(await setup.redeem(try await setup.code()).body)["refresh_token"] as? String)

        tailnet.set(.identity(Fixtures.alice(rules: Self.broken)))
        let refused = await setup.refresh(refresh)
        #expect(refused.status == 403)
        let body = Fixtures.json(refused.body)
        #expect(body["error"] as? String == "access_denied")
        #expect((body["error_description"] as? String)?.contains("allow_admin_ui") == true)

        tailnet.set(.identity(Fixtures.alice()))
        #expect(await setup.refresh(refresh).status == 200)
    }

    @Test("the grant policy of an identity refuses a malformed grant with 403 naming the field")
    func policy() async throws {
        let setup = try await Fixtures.provider()
        let broken = Fixtures.alice(rules: [.object(["extraClaims": .array([])])])
        let policyError = #expect(throws: OAuthError.self) { try setup.provider.policy(for: broken) }
        #expect(policyError?.status == 403)
        #expect(policyError?.message.contains("extraClaims is not an object") == true)
    }

    @Test("each node's malformed grant is logged once, not on every request")
    func loggedOnce() async throws {
        let base = try await Fixtures.provider()
        let warnings = Warnings()
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net"),
            keys: base.provider.keys, clients: base.provider.clients, logger: warnings.logger)
        let alice = Fixtures.alice(rules: Self.broken)
        for _ in 0..<5 { _ = try? provider.policy(for: alice) }
        #expect(warnings.lines.withLock { $0.count } == 1)
        #expect(warnings.lines.withLock { $0.first?.contains("allow_admin_ui") } == true)
        var bob = Fixtures.bob
        bob.capabilityValues = Self.broken
        for _ in 0..<3 { _ = try? provider.policy(for: bob) }
        #expect(warnings.lines.withLock { $0.count } == 2)
        // The same node with another problem is worth a new line.
        _ = try? provider.policy(for: Fixtures.alice(rules: [.string("not an object")]))
        #expect(warnings.lines.withLock { $0.count } == 3)
        // A grant that parses logs nothing.
        _ = try provider.policy(for: Fixtures.alice(rules: [.object(["allow_dcr": .bool(true)])]))
        #expect(warnings.lines.withLock { $0.count } == 3)
    }
}

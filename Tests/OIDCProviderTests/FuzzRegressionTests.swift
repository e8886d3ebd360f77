import Foundation
import StateStore
import Testing

@testable import OIDCProvider

/// Inputs the fuzz targets (`Fuzz/`) crashed on, reduced; each must now give an error.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    static let client = Data(
        #"{"client_id": "app", "client_secret": "app-secret", "redirect_uris": ["https://app.example.com/callback"]}"#
            .utf8)
    static let basic = "Basic " + Data("app:app-secret".utf8).base64EncodedString()

    /// A bucket file with alice's login (refresh token `refresh-alice`) and one of its access
    /// tokens (`access-alice`), with the given times and sequence as JSON text.
    static func bucket(
        authTime: String = "1800000000", expiresAt: String = "1800000300", sequence: String = "3"
    ) -> Data {
        let identity = """
            {"u": 2001, "l": "alice@example.com", "d": "Alice Example", "p": "", "g": [], "n": 1001, "ns": "nA",
             "nn": "alice-laptop.example-tailnet.ts.net.", "nk": "nodekey:aa", "a": ["100.64.0.1/32"], "t": [], "c": []}
            """
        let grant = """
            {"c": "app", "r": "https://app.example.com/callback", "s": ["openid", "email"], "res": [],
             "id": \(identity), "at": \(authTime)}
            """
        return Data(
            """
            {"version": 2, "sequence": \(sequence),
             "families": {"family-alice": {"g": \(grant), "t": "\(GrantLedger.hash("refresh-alice"))", "e": 1802592000, "r": []}},
             "access": {},
             "family_access": {"\(GrantLedger.hash("access-alice"))": {"f": "family-alice", "s": ["openid", "email"], "r": [],
                               "a": ["app"], "e": \(expiresAt), "i": 1800000000, "j": "jti-1"}}}
            """.utf8)
    }

    /// A provider over a store holding the fixture client and `files`, with grant state loaded.
    static func restored(_ files: [String: Data]) async throws -> Provider {
        let store = MemoryStateStore(files.merging(["tsidp-client-app.json": client]) { own, _ in own })
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net"),
            keys: try await KeyRing.load(from: StateWriter(store: MemoryStateStore())),
            clients: try await ClientRegistry.load(from: StateWriter(store: store)), writer: StateWriter(store: store),
            now: { Date(timeIntervalSince1970: 1_800_000_100) })
        try await provider.restoreGrants()
        return provider
    }

    @Test("the same grant file with ordinary times loads, refreshes and introspects")
    func ordinaryGrantFile() async throws {
        let provider = try await Self.restored(["tsidp-grants-08.json": Self.bucket()])
        let introspection = await provider.introspect(
            OAuthParameters([("token", "access-alice")]), authorization: Self.basic)
        #expect(Fixtures.json(introspection.body)["active"] as? Bool == true)
        let refresh = await provider.token(
            OAuthParameters([("grant_type", "refresh_token"), ("refresh_token", "refresh-alice")]),
            authorization: Self.basic)
        #expect(refresh.status == 200)
    }

    @Test(
        "a grant file whose times do not fit a token's integer claims is damaged (was a crash at refresh or introspection)",
        arguments: [
            ("18000922337203685477580800000", "1800000300"), ("1800000000", "1e300"), ("-1e300", "1800000300"),
        ])
    func timesOutOfRange(authTime: String, expiresAt: String) async throws {
        await #expect {
            _ = try await Self.restored([
                "tsidp-grants-08.json": Self.bucket(authTime: authTime, expiresAt: expiresAt)
            ])
        } throws: { error in
            "\(error)".contains("tsidp-grants-08.json") && "\(error)".contains("out of range")
        }
    }

    @Test("a grant file whose sequence leaves no number for the next journal entry is damaged (was a crash)")
    func sequenceOutOfRange() async throws {
        await #expect {
            _ = try await Self.restored([
                "tsidp-grants-08.json": Self.bucket(sequence: "18446744073709551615")
            ])
        } throws: { error in
            "\(error)".contains("tsidp-grants-08.json") && "\(error)".contains("sequence 18446744073709551615")
        }
        // A format-1 journal entry takes its sequence from its name.
        let formatOne = Data(#"{"families": {}, "access": {}}"#.utf8)
        await #expect {
            _ = try await Self.restored(["tsidp-grants-log-18446744073709551615.json": formatOne])
        } throws: { error in
            "\(error)".contains("tsidp-grants-log-18446744073709551615.json") && "\(error)".contains("damaged")
        }
    }
}

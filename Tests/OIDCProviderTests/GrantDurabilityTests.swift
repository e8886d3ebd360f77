import AnyJSON
import Foundation
import StateStore
import Synchronization
import Testing

@testable import OIDCProvider

/// A store that takes its time, so that concurrent writers overlap.
final class SlowStore: StateStore {
    let inner = MemoryStateStore()
    let failing = Mutex(false)
    func read(_ key: String) async throws -> Data? { try await inner.read(key) }
    func write(_ entries: [String: Data?]) async throws {
        try await Task.sleep(for: .milliseconds(30))
        if failing.withLock({ $0 }) { throw StateStoreError(.io, "disk full") }
        try await inner.write(entries)
    }
    func keys() async throws -> [String] { try await inner.keys() }
    var description: String { "slow" }
}

/// The identity the "tailnet" reports now, changeable by a test.
final class Tailnet: Sendable {
    enum Answer: Sendable { case identity(UserIdentity), unknown, down }
    let answer: Mutex<Answer>
    init(_ identity: UserIdentity) { answer = Mutex(.identity(identity)) }
    func set(_ value: Answer) { answer.withLock { $0 = value } }
    func whois(_ previous: UserIdentity) throws(IdentityFailure) -> UserIdentity {
        switch answer.withLock({ $0 }) {
        case .identity(let identity): return identity
        case .unknown: throw .unknownDevice("gone")
        case .down: throw .unavailable("socket closed")
        }
    }
}

@Suite("Grant durability and re-identification")
struct GrantDurabilityTests {
    struct Rig {
        let setup: Fixtures.Setup
        let store: any StateStore
        let tailnet: Tailnet
    }

    /// A provider over `store` sharing keys and clients with `base`.
    func provider(
        _ base: Fixtures.Setup, store: any StateStore, tailnet: Tailnet,
        compaction: GrantLedger.CompactionPolicy = .every(64)
    ) async throws -> Provider {
        var configuration = ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net")
        configuration.grantCompaction = compaction
        let provider = Provider(
            configuration: configuration,
            keys: base.provider.keys, clients: base.provider.clients, writer: StateWriter(store: store),
            reidentify: { (identity: UserIdentity) async throws(IdentityFailure) -> UserIdentity in
                try tailnet.whois(identity)
            },
            now: { base.clock.now })
        try await provider.restoreGrants()
        return provider
    }

    func rig(store: any StateStore = MemoryStateStore()) async throws -> Rig {
        let base = try await Fixtures.provider()
        let tailnet = Tailnet(Fixtures.alice())
        let provider = try await provider(base, store: store, tailnet: tailnet)
        let setup = base.with(provider: provider)
        return Rig(setup: setup, store: store, tailnet: tailnet)
    }

    @Test("a claims request is kept with the login: after a restart, userinfo and refreshed ID tokens honour it")
    func claimsRequestSurvivesRestart() async throws {
        let rig = try await rig()
        let request = #"{"id_token":{"email":null},"userinfo":{"name":{"essential":true}}}"#
        let code = try await rig.setup.code(scope: "openid", extra: [("claims", request)])
        let body = Fixtures.json(await rig.setup.redeem(code).body)
        let refresh = try #require(body["refresh_token"] as? String)
        let access = try #require(body["access_token"] as? String)

        let restarted = try await provider(rig.setup, store: rig.store, tailnet: rig.tailnet)
        let info = Fixtures.json(restarted.userInfo(accessToken: access).body)
        #expect(info["name"] as? String == "Alice Example")
        #expect(info["email"] == nil)
        let refreshed = Fixtures.json(await rig.setup.with(provider: restarted).refresh(refresh).body)
        let idToken = try #require(refreshed["id_token"] as? String)
        let payload = try #require(Base64URL.decode(idToken.split(separator: ".")[1]))
        let claims = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        #expect(claims["email"] as? String == "alice@example.com")
        #expect(claims["name"] == nil)
    }

    @Test("refresh tokens and access tokens survive a restart; nothing is stored in clear")
    func restart() async throws {
        let rig = try await rig()
        let body = Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)
        let refresh = try #require(body["refresh_token"] as? String)
        let access = try #require(body["access_token"] as? String)
        var stored = ""
        for key in try await rig.store.keys() where key.hasPrefix("tsidp-grants-") {
            stored += String(decoding: try #require(try await rig.store.read(key)), as: UTF8.self)
        }
        #expect(stored.contains("userid") || stored.contains("alice@example.com"))
        #expect(!stored.contains(refresh))
        #expect(!stored.contains(access))

        let restarted = try await provider(rig.setup, store: rig.store, tailnet: rig.tailnet)
        #expect(restarted.userInfo(accessToken: access).status == 200)
        let again = rig.setup.with(provider: restarted)
        let refreshed = await again.refresh(refresh)
        #expect(refreshed.status == 200)
        // The rotation was persisted: after another restart the old token is a reuse.
        let third = try await provider(rig.setup, store: rig.store, tailnet: rig.tailnet)
        let replay = rig.setup.with(provider: third)
        #expect(Fixtures.json(await replay.refresh(refresh).body)["error"] as? String == "invalid_grant")
    }

    @Test("concurrent token requests share store writes, and every one is durable")
    func groupCommit() async throws {
        let store = SlowStore()
        let rig = try await rig(store: store)
        var codes: [String] = []
        for _ in 0..<16 { codes.append(try await rig.setup.code()) }
        let writesBefore = rig.setup.provider.grantWrites
        let setup = rig.setup
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for code in codes {
                group.addTask {
                    let body = Fixtures.json(await setup.redeem(code).body)
                    guard let token = body["refresh_token"] as? String else { throw TestFailure("no token: \(body)") }
                    return token
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        let writes = rig.setup.provider.grantWrites - writesBefore
        #expect(tokens.count == 16)
        #expect(writes < 16, "expected batched writes, got \(writes)")
        let restarted = try await provider(rig.setup, store: store, tailnet: rig.tailnet)
        let again = rig.setup.with(provider: restarted)
        for token in tokens { #expect(await again.refresh(token).status == 200) }
    }

    @Test("a write appends a small journal entry; compaction rewrites buckets and clears the journal")
    func journal() async throws {
        let store = SlowStore()
        let rig = try await rig(store: store)
        var tokens: [String] = []
        for _ in 0..<70 {
            let body = Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)
            tokens.append(try #require(body["refresh_token"] as? String))
        }
        let keys = try await store.keys()
        let journal = keys.filter { $0.hasPrefix("tsidp-grants-log-") }
        let buckets = keys.filter { $0.hasPrefix("tsidp-grants-") && !$0.hasPrefix("tsidp-grants-log-") }
        #expect(
            journal.count < 64, "compaction must have cleared the journal once: \(journal.count) \(journal.prefix(3))")
        #expect(buckets.count > 10)
        let before = Set(keys)
        _ = await rig.setup.redeem(try await rig.setup.code())
        let added = Set(try await store.keys()).subtracting(before)
        #expect(added.count == 1 && added.first?.hasPrefix("tsidp-grants-log-") == true)
        // A restart replays buckets and journal: every login survives.
        let restarted = try await provider(rig.setup, store: store, tailnet: rig.tailnet)
        let again = rig.setup.with(provider: restarted)
        for token in tokens { #expect(await again.refresh(token).status == 200) }
        // After the restart the journal continues and the next compaction still loses nothing.
        var latest: [String] = []
        for _ in 0..<70 {
            let body = Fixtures.json(await again.redeem(try await again.code()).body)
            latest.append(try #require(body["refresh_token"] as? String))
        }
        let third = try await provider(rig.setup, store: store, tailnet: rig.tailnet)
        let last = rig.setup.with(provider: third)
        for token in latest { #expect(await last.refresh(token).status == 200) }
    }

    @Test("a failed store write answers 503 and issues nothing")
    func failedWrite() async throws {
        let store = SlowStore()
        let rig = try await rig(store: store)
        let code = try await rig.setup.code()
        store.failing.withLock { $0 = true }
        let answer = await rig.setup.redeem(code)
        #expect(answer.status == 503)
        #expect(Fixtures.json(answer.body)["error"] as? String == "temporarily_unavailable")
        #expect(Fixtures.json(answer.body)["access_token"] == nil)
    }

    @Test("a refresh picks up profile and grant changes")
    func freshIdentity() async throws {
        let rig = try await rig()
        let token = try #require(
            Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)["refresh_token"] as? String)
        var renamed = Fixtures.alice(rules: [.object(["extraClaims": .object(["team": .string("red")])])])
        renamed.displayName = "Alice Renamed"
        rig.tailnet.set(.identity(renamed))
        let body = Fixtures.json(await rig.setup.refresh(token).body)
        let idToken = try #require(body["id_token"] as? String)
        let payload = String(decoding: Base64URL.decode(idToken.split(separator: ".")[1])!, as: UTF8.self)
        #expect(payload.contains("Alice Renamed"))
        #expect(payload.contains("\"team\":\"red\""))
    }

    @Test("a node that left the tailnet, or now belongs to someone else, ends the grant")
    func removedNode() async throws {
        let rig = try await rig()
        let first = try #require(
            Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)["refresh_token"] as? String)
        rig.tailnet.set(.unknown)
        #expect(Fixtures.json(await rig.setup.refresh(first).body)["error"] as? String == "invalid_grant")
        rig.tailnet.set(.identity(Fixtures.alice()))
        #expect(Fixtures.json(await rig.setup.refresh(first).body)["error"] as? String == "invalid_grant")

        let second = try #require(
            Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)["refresh_token"] as? String)
        rig.tailnet.set(.identity(Fixtures.bob))
        #expect(Fixtures.json(await rig.setup.refresh(second).body)["error"] as? String == "invalid_grant")

        let third = try #require(
            Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)["refresh_token"] as? String)
        var tagged = Fixtures.alice()
        tagged.tags = ["tag:server"]
        rig.tailnet.set(.identity(tagged))
        #expect(Fixtures.json(await rig.setup.refresh(third).body)["error"] as? String == "invalid_grant")
    }

    @Test("when the tailnet cannot be asked, the refresh fails with 503 and the token stays usable")
    func tailnetDown() async throws {
        let rig = try await rig()
        let token = try #require(
            Fixtures.json(await rig.setup.redeem(try await rig.setup.code()).body)["refresh_token"] as? String)
        rig.tailnet.set(.down)
        let answer = await rig.setup.refresh(token)
        #expect(answer.status == 503)
        rig.tailnet.set(.identity(Fixtures.alice()))
        #expect(await rig.setup.refresh(token).status == 200)
    }

    @Test("a damaged grant file stops start-up and is left untouched")
    func damaged() async throws {
        let store = MemoryStateStore(["tsidp-grants-07.json": Data("{\"version\": 1, \"families\": 5}".utf8)])
        let base = try await Fixtures.provider()
        await #expect(throws: KeyFileError.self) {
            try await self.provider(base, store: store, tailnet: Tailnet(Fixtures.alice()))
        }
        #expect(try await store.read("tsidp-grants-07.json") == Data("{\"version\": 1, \"families\": 5}".utf8))
    }
}

@Suite("Failed writes do not punish the client's retry")
struct FailedWriteRetryTests {
    @Test("a code whose tokens could not be stored can be redeemed again")
    func codeRetry() async throws {
        let store = SlowStore()
        let base = try await Fixtures.provider()
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp"), keys: base.provider.keys,
            clients: base.provider.clients, writer: StateWriter(store: store), now: { base.clock.now })
        let setup = base.with(provider: provider)
        let code = try await setup.code()
        store.failing.withLock { $0 = true }
        #expect(await setup.redeem(code).status == 503)
        store.failing.withLock { $0 = false }
        let retry = await setup.redeem(code)
        #expect(retry.status == 200)
        let refresh = try #require(Fixtures.json(retry.body)["refresh_token"] as? String)
        store.failing.withLock { $0 = true }
        #expect(await setup.refresh(refresh).status == 503)
        store.failing.withLock { $0 = false }
        let again = await setup.refresh(refresh)
        #expect(
            again.status == 200, "the retry must not count as reuse: \(String(decoding: again.body, as: UTF8.self))")
    }

    @Test("a code presented by another client is not used up")
    func foreignClientDoesNotBurn() async throws {
        let setup = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Public", redirectURIs: [Fixtures.redirect])
        registration.tokenEndpointAuthMethod = "none"
        let other = try await setup.provider.clients.register(registration)
        let code = try await setup.code()
        let stolen = await setup.provider.token(
            Fixtures.query([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Fixtures.redirect),
                ("client_id", other.client.clientID),
            ]), authorization: nil)
        #expect(Fixtures.json(stolen.body)["error"] as? String == "invalid_grant")
        #expect(await setup.redeem(code).status == 200)
    }
}

import Foundation
import OIDCProvider
import StateStore

/// Stored grant state (`tsidp-grants-NN.json` buckets and `tsidp-grants-log-N.json` journal
/// entries, in the ``StateFiles`` format, beside the fixture clients): loaded at start-up, then
/// used the way requests use it, with the tokens whose digests the seeds hold
/// (`fuzz-access-1`, `fuzz-access-2`, `fuzz-refresh-1`), swept a month later, and loaded again
/// from what was written meanwhile by a provider without the legacy flow.
enum GrantsTarget {
    static let access = "fuzz-access-1"
    static let otherAccess = "fuzz-access-2"
    static let refresh = "fuzz-refresh-1"

    @Sendable static func run(_ input: Data) async {
        var files = Fixture.clientFiles
        files.merge(StateFiles.parse(input)) { _, fuzzed in fuzzed }
        let store = MemoryStateStore(files)
        let shared = Shared.instance
        let clock = FuzzClock()
        guard let clients = try? await ClientRegistry.load(from: StateWriter(store: store)) else { return }
        let provider = shared.provider(
            clock: clock, writer: StateWriter(store: store), clients: clients, journalEntries: 2)
        do {
            try await provider.restoreGrants()
        } catch {
            return
        }
        let basic = Fixture.basic("app", "app-secret")
        _ = provider.userInfo(accessToken: access)
        _ = await provider.introspect(OAuthParameters([("token", access)]), authorization: basic)
        _ = await provider.introspect(OAuthParameters([("token", refresh)]), authorization: basic)
        _ = await provider.token(
            OAuthParameters([
                ("grant_type", TokenType.grantType), ("subject_token", access),
                ("subject_token_type", TokenType.accessToken), ("audience", "https://api.example.com"),
                ("actor_token", otherAccess), ("actor_token_type", TokenType.accessToken),
            ]), authorization: basic)
        _ = await provider.token(
            OAuthParameters([("grant_type", "refresh_token"), ("refresh_token", refresh)]), authorization: basic)
        _ = await provider.revoke(OAuthParameters([("token", otherAccess)]), authorization: basic)
        clock.advance(31 * 24 * 3600)
        try? await provider.sweep()
        let restarted = shared.provider(
            clock: clock, writer: StateWriter(store: store), clients: clients, legacyFlow: false, journalEntries: 2)
        try? await restarted.restoreGrants()
    }
}

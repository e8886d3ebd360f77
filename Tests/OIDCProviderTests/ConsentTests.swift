import Foundation
import StateStore
import Testing

@testable import OIDCProvider

@Suite("Consent for clients the operator did not vet")
struct ConsentTests {
    struct Rig {
        let setup: Fixtures.Setup
        let store: MemoryStateStore
    }

    /// A provider with a persisted grant state and one dynamically registered public client.
    func rig(consentRequired: Bool = false, dynamic: Bool = true) async throws -> Rig {
        let base = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Grafana", redirectURIs: [Fixtures.redirect])
        registration.dynamicallyRegistered = dynamic
        registration.consentRequired = consentRequired
        let created = try await base.provider.clients.register(registration)
        let store = MemoryStateStore()
        let provider = Provider(
            configuration: base.provider.configuration, keys: base.provider.keys, clients: base.provider.clients,
            writer: StateWriter(store: store), now: { base.clock.now })
        let setup = base.with(provider: provider).with(client: created.client, secret: created.secret ?? "")
        return Rig(setup: setup, store: store)
    }

    func authorize(
        _ setup: Fixtures.Setup, as identity: UserIdentity = Fixtures.alice(), extra: [(String, String)] = []
    )
        async -> AuthorizeResult
    {
        await setup.provider.authorize(
            Fixtures.query(
                [
                    ("client_id", setup.client.clientID), ("redirect_uri", Fixtures.redirect),
                    ("response_type", "code"), ("scope", "openid email profile"), ("state", "s1"),
                ] + extra)
        ) { () async throws(IdentityFailure) -> UserIdentity in identity }
    }

    func decide(
        _ setup: Fixtures.Setup, _ prompt: ConsentPrompt, _ decision: ConsentDecision,
        as identity: UserIdentity = Fixtures.alice(), token: String? = nil
    ) async -> AuthorizeResult {
        await setup.provider.decideConsent(
            requestID: prompt.requestID, csrfToken: token ?? prompt.csrfToken, decision: decision
        ) { () async throws(IdentityFailure) -> UserIdentity in identity }
    }

    func prompt(_ result: AuthorizeResult) throws -> ConsentPrompt {
        guard case .consent(let prompt) = result else { throw TestFailure("expected a consent page, got \(result)") }
        return prompt
    }

    @Test("the first sign-in shows the page; Continue issues a code and is remembered, also after a restart")
    func allowAndRemember() async throws {
        let rig = try await rig()
        let page = try prompt(await authorize(rig.setup))
        #expect(page.clientName == "Grafana")
        #expect(page.redirectHost == "app.example.com")
        #expect(page.userLogin == "alice@example.com")
        #expect(page.dynamicallyRegistered)
        #expect(page.claims.contains { $0.contains("email") })
        let answer = await decide(rig.setup, page, .allow)
        #expect(Fixtures.redirectParameters(answer)["code"] != nil)
        #expect(Fixtures.redirectParameters(answer)["state"] == "s1")
        // Remembered: no page the second time.
        #expect(Fixtures.redirectParameters(await authorize(rig.setup))["code"] != nil)
        // prompt=consent asks again.
        _ = try prompt(await authorize(rig.setup, extra: [("prompt", "consent")]))
        // The consent is part of the stored grant state.
        let restarted = Provider(
            configuration: rig.setup.provider.configuration, keys: rig.setup.provider.keys,
            clients: rig.setup.provider.clients, writer: StateWriter(store: rig.store), now: { rig.setup.clock.now })
        try await restarted.restoreGrants()
        let again = rig.setup.with(provider: restarted)
        #expect(Fixtures.redirectParameters(await authorize(again))["code"] != nil)
    }

    @Test("Cancel sends access_denied to the client and issues nothing")
    func deny() async throws {
        let rig = try await rig()
        let page = try prompt(await authorize(rig.setup))
        let answer = Fixtures.redirectParameters(await decide(rig.setup, page, .deny))
        #expect(answer["error"] == "access_denied")
        #expect(answer["state"] == "s1")
        #expect(answer["code"] == nil)
        _ = try prompt(await authorize(rig.setup))
    }

    @Test("prompt=none without consent answers consent_required")
    func promptNone() async throws {
        let rig = try await rig()
        let answer = Fixtures.redirectParameters(await authorize(rig.setup, extra: [("prompt", "none")]))
        #expect(answer["error"] == "consent_required")
        #expect(answer["code"] == nil)
    }

    @Test("the answer needs its CSRF token, the same user and device, and works once")
    func forgedAnswers() async throws {
        let rig = try await rig()
        let page = try prompt(await authorize(rig.setup))
        guard case .errorPage(let forged) = await decide(rig.setup, page, .allow, token: "guess") else {
            throw TestFailure("a wrong CSRF token must be refused")
        }
        #expect(forged.status == 403)
        // The request was used up by the forged answer.
        guard case .errorPage = await decide(rig.setup, page, .allow) else {
            throw TestFailure("an answered request must not be answerable again")
        }
        let second = try prompt(await authorize(rig.setup))
        guard case .errorPage(let stranger) = await decide(rig.setup, second, .allow, as: Fixtures.bob) else {
            throw TestFailure("another user must not answer alice's consent page")
        }
        #expect(stranger.status == 403)
        var otherDevice = Fixtures.alice()
        otherDevice.nodeID = 4242
        let third = try prompt(await authorize(rig.setup))
        guard case .errorPage = await decide(rig.setup, third, .allow, as: otherDevice) else {
            throw TestFailure("another device must not answer the consent page")
        }
        #expect(await rig.setup.provider.consents(userID: 2001).isEmpty)
    }

    @Test("taking consent back ends the user's logins with the client and asks again")
    func revoke() async throws {
        let rig = try await rig()
        let page = try prompt(await authorize(rig.setup))
        let code = try #require(Fixtures.redirectParameters(await decide(rig.setup, page, .allow))["code"])
        let tokens = Fixtures.json(await rig.setup.redeem(code).body)
        let refresh = try #require(tokens["refresh_token"] as? String)
        let listed = await rig.setup.provider.consents(userID: 2001)
        #expect(listed.count == 1 && listed[0].activeLogins == 1 && listed[0].clientName == "Grafana")
        #expect(try await rig.setup.provider.revokeConsent(userID: 2001, clientID: rig.setup.client.clientID))
        #expect(await rig.setup.refresh(refresh).status == 400)
        _ = try prompt(await authorize(rig.setup))
        #expect(await rig.setup.provider.consents(userID: 2001).isEmpty)
    }

    @Test("operator-registered clients sign in without a click unless the operator asks for consent")
    func operatorClients() async throws {
        let vetted = try await rig(dynamic: false)
        #expect(Fixtures.redirectParameters(await authorize(vetted.setup))["code"] != nil)
        let marked = try await rig(consentRequired: true, dynamic: false)
        let page = try prompt(await authorize(marked.setup))
        #expect(!page.dynamicallyRegistered)
    }

    @Test("deleting the client forgets the consents given to it")
    func deletedClient() async throws {
        let rig = try await rig()
        _ = await decide(rig.setup, try prompt(await authorize(rig.setup)), .allow)
        #expect(try await rig.setup.provider.deleteClient(rig.setup.client.clientID))
        #expect(await rig.setup.provider.consents(userID: 2001).isEmpty)
    }
}

@Suite("Outstanding-code cap")
struct OutstandingCodeTests {
    @Test("a code spent by a failed token request no longer counts against the user's cap")
    func spentCodesDoNotCount() async throws {
        let setup = try await Fixtures.provider()
        var codes: [String] = []
        for _ in 0..<CodeBook.perUserAndClient { codes.append(try await setup.code()) }
        // The cap is reached: the next sign-in is refused until codes are used.
        await #expect(throws: TestFailure.self) { _ = try await setup.code() }
        for code in codes.prefix(3) {
            let failed = await setup.redeem(code, extra: [("code_verifier", "wrong")])
            #expect(failed.status == 400)
        }
        _ = try await setup.code()
    }
}

import Foundation
import OIDCProvider
import StateStore
import StateStoreTesting
import Testing

@Suite("RP-initiated logout")
struct LogoutTests {
    static let signedOut = "https://app.example.com/signed-out"

    /// A provider over `store` with a client that registered ``signedOut`` for logout.
    static func setup(store: any StateStore = MemoryStateStore()) async throws -> Fixtures.Setup {
        let base = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Wiki", redirectURIs: [Fixtures.redirect])
        registration.postLogoutRedirectURIs = [signedOut]
        let created = try await base.provider.clients.register(registration)
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net"),
            keys: base.provider.keys, clients: base.provider.clients, writer: StateWriter(store: store),
            now: { base.clock.now })
        return base.with(provider: provider).with(client: created.client, secret: created.secret ?? "")
    }

    struct Login {
        var idToken: String
        var refresh: String
        var access: String
    }

    static func login(_ setup: Fixtures.Setup, as identity: UserIdentity = Fixtures.alice()) async throws -> Login {
        let body = Fixtures.json(await setup.redeem(try await setup.code(identity: identity)).body)
        return Login(
            idToken: try #require(body["id_token"] as? String), refresh: try #require(body["refresh_token"] as? String),
            access: try #require(body["access_token"] as? String))
    }

    static func logout(
        _ setup: Fixtures.Setup, _ pairs: [(String, String)], caller: UserIdentity = Fixtures.alice()
    ) async -> EndSessionResult {
        await setup.provider.endSession(Fixtures.query(pairs)) { () async throws(IdentityFailure) -> UserIdentity in
            caller
        }
    }

    static func isAlive(_ setup: Fixtures.Setup, _ login: Login) -> Bool {
        setup.provider.userInfo(accessToken: login.access).status == 200
    }

    @Test("a hinted logout ends the caller's login to the client and returns to the registered URI with state")
    func endsLoginAndRedirects() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        let result = await Self.logout(
            setup, [("id_token_hint", login.idToken), ("post_logout_redirect_uri", Self.signedOut), ("state", "s2")])
        #expect(result == .redirect(Self.signedOut + "?state=s2"))
        #expect(!Self.isAlive(setup, login))
        #expect(await setup.refresh(login.refresh).status == 400)
    }

    @Test("an expired ID token is still a valid hint")
    func expiredHint() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        setup.clock.advance(3_600)
        let result = await Self.logout(setup, [("id_token_hint", login.idToken)])
        #expect(result == .signedOut(clientName: "Wiki", endedLogins: 1))
        #expect(await setup.refresh(login.refresh).status == 400)
    }

    @Test("another user's hint ends nothing, and the caller's logins stay too")
    func otherUsersHint() async throws {
        let setup = try await Self.setup()
        let alice = try await Self.login(setup)
        let bob = try await Self.login(setup, as: Fixtures.bob)
        let result = await Self.logout(setup, [("id_token_hint", bob.idToken)], caller: Fixtures.alice())
        guard case .errorPage(let error) = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
        #expect(error.status == 403)
        #expect(Self.isAlive(setup, alice) && Self.isAlive(setup, bob))
    }

    @Test("logins to other clients are kept")
    func otherClientsKept() async throws {
        let setup = try await Self.setup()
        var registration = ClientRegistry.Registration(name: "Other", redirectURIs: [Fixtures.redirect])
        registration.postLogoutRedirectURIs = []
        let other = try await setup.provider.clients.register(registration)
        let otherSetup = setup.with(client: other.client, secret: other.secret ?? "")
        let kept = try await Self.login(otherSetup)
        let ended = try await Self.login(setup)
        #expect(
            await Self.logout(setup, [("id_token_hint", ended.idToken)])
                == .signedOut(clientName: "Wiki", endedLogins: 1))
        #expect(Self.isAlive(setup, kept))
        #expect(!Self.isAlive(setup, ended))
    }

    @Test(
        "an unregistered or altered post_logout_redirect_uri is never followed",
        arguments: [
            "https://evil.example.net/", signedOut + "?x=1", signedOut + "/", "https://app.example.com/callback",
        ])
    func unregisteredReturn(_ uri: String) async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        let result = await Self.logout(
            setup, [("id_token_hint", login.idToken), ("post_logout_redirect_uri", uri), ("state", "s")])
        guard case .errorPage(let error) = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
        #expect(error.code == .invalidRequest)
        #expect(Self.isAlive(setup, login))
    }

    @Test("a hint this provider did not sign, or one altered, is refused")
    func badHint() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        let parts = login.idToken.split(separator: ".").map(String.init)
        let claims = try #require(Base64URL.decode(parts[1]))
        let altered = String(decoding: claims, as: UTF8.self).replacingOccurrences(
            of: "userid:2001", with: "userid:2002")
        let modified = [parts[0], Base64URL.encode(Data(altered.utf8)), parts[2]].joined(separator: ".")
        for hint in ["not-a-jwt", modified, parts[0] + "." + parts[1] + "."] {
            let result = await Self.logout(
                setup, [("id_token_hint", hint), ("post_logout_redirect_uri", Self.signedOut)])
            guard case .errorPage(let error) = result else {
                Issue.record("expected an error page for \(hint), got \(result)")
                continue
            }
            #expect(error.code == .invalidRequest)
        }
        #expect(Self.isAlive(setup, login))
    }

    @Test("client_id must match the hint's audience")
    func clientMismatch() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        let other = try await setup.provider.clients.register(.init(name: "Other", redirectURIs: [Fixtures.redirect]))
        let result = await Self.logout(setup, [("id_token_hint", login.idToken), ("client_id", other.client.clientID)])
        guard case .errorPage = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
        #expect(Self.isAlive(setup, login))
    }

    @Test("without a hint nothing ends: a bare link may return to a registered URI or show the page")
    func noHint() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        #expect(await Self.logout(setup, []) == .signedOut(clientName: nil, endedLogins: 0))
        #expect(
            await Self.logout(
                setup,
                [("client_id", setup.client.clientID), ("post_logout_redirect_uri", Self.signedOut), ("state", "x")])
                == .redirect(Self.signedOut + "?state=x"))
        guard case .errorPage = await Self.logout(setup, [("post_logout_redirect_uri", Self.signedOut)]) else {
            Issue.record("a return URI without an application must be refused")
            return
        }
        #expect(Self.isAlive(setup, login))
    }

    @Test("an unidentified caller ends nothing")
    func unidentified() async throws {
        let setup = try await Self.setup()
        let login = try await Self.login(setup)
        let result = await setup.provider.endSession(Fixtures.query([("id_token_hint", login.idToken)])) {
            () async throws(IdentityFailure) -> UserIdentity in throw .unknownDevice("100.64.0.9")
        }
        guard case .errorPage(let error) = result else {
            Issue.record("expected an error page, got \(result)")
            return
        }
        #expect(error.status == 403)
        #expect(Self.isAlive(setup, login))
    }

    @Test("a failed state write answers 503 and keeps the login; the retry ends it durably")
    func writeFault() async throws {
        let memory = MemoryStateStore()
        let faulty = FaultInjectingStateStore(wrapping: memory)
        let setup = try await Self.setup(store: faulty)
        let login = try await Self.login(setup)
        faulty.failNextWrite()
        guard case .errorPage(let error) = await Self.logout(setup, [("id_token_hint", login.idToken)]) else {
            Issue.record("the logout must fail")
            return
        }
        #expect(error.status == 503)
        #expect(Self.isAlive(setup, login))
        #expect(
            await Self.logout(setup, [("id_token_hint", login.idToken)])
                == .signedOut(clientName: "Wiki", endedLogins: 1))
        let restarted = Provider(
            configuration: ProviderConfiguration(issuer: Fixtures.issuer, idpHost: "idp.example-tailnet.ts.net"),
            keys: setup.provider.keys, clients: setup.provider.clients, writer: StateWriter(store: memory),
            now: { setup.clock.now })
        try await restarted.restoreGrants()
        #expect(await setup.with(provider: restarted).refresh(login.refresh).status == 400)
    }

    @Test("post_logout_redirect_uris are registered, checked like redirect URIs, and kept in the client file")
    func registration() async throws {
        let setup = try await Self.setup()
        let body =
            #"{"redirect_uris":["https://a.example.com/cb"],"post_logout_redirect_uris":["https://a.example.com/bye"]}"#
        let registration = try ClientRegistry.Registration(rfc7591JSON: Data(body.utf8))
        #expect(registration.postLogoutRedirectURIs == ["https://a.example.com/bye"])
        let created = try await setup.provider.clients.register(registration)
        let decoded = try JSONDecoder().decode(Client.self, from: try JSONEncoder().encode(created.client))
        #expect(decoded.postLogoutRedirectURIs == ["https://a.example.com/bye"])
        for bad in ["javascript:alert(1)", "http://public.example.com/bye", "https://a.example.com/bye#frag"] {
            var bad1 = ClientRegistry.Registration(name: "Bad", redirectURIs: ["https://a.example.com/cb"])
            bad1.postLogoutRedirectURIs = [bad]
            await #expect(throws: OAuthError.self, "\(bad)") { try await setup.provider.clients.register(bad1) }
        }
    }
}

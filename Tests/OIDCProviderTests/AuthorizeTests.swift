import AnyJSON
import Foundation
import OIDCProvider
import Testing

@Suite("Authorization endpoint")
struct AuthorizeTests {
    func authorize(
        _ setup: Fixtures.Setup, _ pairs: [(String, String)], identity: UserIdentity = Fixtures.alice()
    ) async -> AuthorizeResult {
        await setup.provider.authorize(Fixtures.query(pairs)) { () async throws(IdentityFailure) -> UserIdentity in
            identity
        }
    }

    func base(_ setup: Fixtures.Setup, redirect: String? = nil) -> [(String, String)] {
        [
            ("client_id", setup.client.clientID), ("redirect_uri", redirect ?? setup.client.redirectURIs[0]),
            ("response_type", "code"), ("scope", "openid"), ("state", "st"),
        ]
    }

    @Test("success redirects with code, state and iss")
    func success() async throws {
        let setup = try await Fixtures.provider()
        let parameters = Fixtures.redirectParameters(await authorize(setup, base(setup)))
        #expect(parameters["code"]?.isEmpty == false)
        #expect(parameters["state"] == "st")
        #expect(parameters["iss"] == Fixtures.issuer)
    }

    @Test("the registered redirect URI's query is preserved on success")
    func queryPreserved() async throws {
        let uri = "https://app.example.com/cb?tenant=blue"
        let setup = try await Fixtures.provider(redirectURIs: [uri])
        let result = await authorize(setup, base(setup, redirect: uri))
        guard case .redirect(let location) = result else {
            Issue.record("expected redirect, got \(result)")
            return
        }
        #expect(location.hasPrefix("https://app.example.com/cb?tenant=blue&code="))
    }

    @Test("missing or unknown client and unregistered redirect URIs never redirect")
    func errorPages() async throws {
        let setup = try await Fixtures.provider()
        var pairs = base(setup)
        pairs.removeAll { $0.0 == "client_id" }
        guard case .errorPage(let missing) = await authorize(setup, pairs) else {
            Issue.record("missing client_id should be an error page")
            return
        }
        #expect(missing.code == .invalidRequest)

        pairs = base(setup)
        pairs[0] = ("client_id", "no-such-client")
        guard case .errorPage(let unknown) = await authorize(setup, pairs) else {
            Issue.record("unknown client should be an error page")
            return
        }
        #expect(unknown.code == .invalidClient)

        for uri in [
            "https://evil.example.com/callback", Fixtures.redirect + "?x=1", Fixtures.redirect + "/",
            "HTTPS://app.example.com/callback",
        ] {
            guard case .errorPage(let error) = await authorize(setup, base(setup, redirect: uri)) else {
                Issue.record("redirect_uri \(uri) must not be accepted")
                continue
            }
            #expect(error.code == .invalidRequest)
        }
        pairs = base(setup)
        pairs.removeAll { $0.0 == "redirect_uri" }
        guard case .errorPage = await authorize(setup, pairs) else {
            Issue.record("missing redirect_uri should be an error page")
            return
        }
    }

    @Test("response_type is required and must be code")
    func responseType() async throws {
        let setup = try await Fixtures.provider()
        var pairs = base(setup)
        pairs.removeAll { $0.0 == "response_type" }
        #expect(Fixtures.redirectParameters(await authorize(setup, pairs))["error"] == "invalid_request")
        pairs.append(("response_type", "token"))
        let parameters = Fixtures.redirectParameters(await authorize(setup, pairs))
        #expect(parameters["error"] == "unsupported_response_type")
        #expect(parameters["state"] == "st")
    }

    @Test(
        "unknown scopes are ignored in OpenID requests and refused in plain OAuth ones; registered custom scopes are allowed"
    )
    func scopes() async throws {
        let setup = try await Fixtures.provider(scope: "openid read:metrics")
        var pairs = base(setup)
        pairs[3] = ("scope", "admin email")
        #expect(Fixtures.redirectParameters(await authorize(setup, pairs))["error"] == "invalid_scope")
        let ignored = try await setup.code(scope: "openid address phone email")
        let body = Fixtures.json(await setup.redeem(ignored).body)
        #expect(body["scope"] as? String == "openid email")
        pairs[3] = ("scope", "openid read:metrics offline_access email profile groups")
        #expect(Fixtures.redirectParameters(await authorize(setup, pairs))["code"] != nil)
    }

    @Test("PKCE parameters are validated")
    func pkce() async throws {
        let setup = try await Fixtures.provider()
        let good = String(repeating: "a", count: 43)
        #expect(
            Fixtures.redirectParameters(
                await authorize(setup, base(setup) + [("code_challenge", good), ("code_challenge_method", "S512")]))[
                    "error"] == "invalid_request")
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("code_challenge", "short")]))["error"]
                == "invalid_request")
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("code_challenge", good)]))["code"] != nil
        )
    }

    @Test("public clients must use S256")
    func publicClientsNeedS256() async throws {
        let setup = try await Fixtures.provider(authMethod: "none")
        let challenge = PKCE.s256Challenge(of: String(repeating: "v", count: 50))
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup)))["error"] == "invalid_request")
        #expect(
            Fixtures.redirectParameters(
                await authorize(
                    setup, base(setup) + [("code_challenge", challenge), ("code_challenge_method", "plain")]))["error"]
                == "invalid_request")
        #expect(
            Fixtures.redirectParameters(
                await authorize(
                    setup, base(setup) + [("code_challenge", challenge), ("code_challenge_method", "S256")]))["code"]
                != nil)
    }

    @Test("tagged devices are refused")
    func tagged() async throws {
        let setup = try await Fixtures.provider()
        var identity = Fixtures.alice()
        identity.tags = ["tag:server"]
        let parameters = Fixtures.redirectParameters(await authorize(setup, base(setup), identity: identity))
        #expect(parameters["error"] == "access_denied")
        #expect(parameters["code"] == nil)
    }

    @Test("identity failures fail closed; prompt=none answers login_required")
    func identityFailure() async throws {
        let setup = try await Fixtures.provider()
        let unknown = await setup.provider.authorize(Fixtures.query(base(setup))) {
            () async throws(IdentityFailure) -> UserIdentity in
            throw .unknownDevice("no peer")
        }
        #expect(Fixtures.redirectParameters(unknown)["error"] == "access_denied")
        let down = await setup.provider.authorize(Fixtures.query(base(setup))) {
            () async throws(IdentityFailure) -> UserIdentity in
            throw .unavailable("socket gone")
        }
        #expect(Fixtures.redirectParameters(down)["error"] == "temporarily_unavailable")
        let silent = await setup.provider.authorize(Fixtures.query(base(setup) + [("prompt", "none")])) {
            () async throws(IdentityFailure) -> UserIdentity in
            throw .unknownDevice("no peer")
        }
        #expect(Fixtures.redirectParameters(silent)["error"] == "login_required")
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup) + [("prompt", "none")]))["code"] != nil)
    }

    @Test("request objects are answered with request_not_supported")
    func requestObjects() async throws {
        let setup = try await Fixtures.provider()
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("request", "eyJ.x.y")]))["error"]
                == "request_not_supported")
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("request_uri", "https://x.example/r")]))[
                "error"] == "request_uri_not_supported")
    }

    @Test("unknown and optional parameters are accepted")
    func tolerated() async throws {
        let setup = try await Fixtures.provider()
        let extra: [(String, String)] = [
            ("extra", "foobar"), ("max_age", "10000"), ("login_hint", "alice"), ("ui_locales", "de"),
            ("display", "page"),
            ("acr_values", "1"), ("claims", "{\"id_token\":{\"name\":{\"essential\":true}}}"), ("prompt", "login"),
        ]
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup) + extra))["code"] != nil)
    }

    @Test("id_token_hint must be ours and for this client; with prompt=none it must name the device's user")
    func idTokenHint() async throws {
        let setup = try await Fixtures.provider()
        let idToken = try #require(
            Fixtures.json(await setup.redeem(try await setup.code()).body)["id_token"] as? String)
        #expect(
            Fixtures.redirectParameters(
                await authorize(setup, base(setup) + [("prompt", "none"), ("id_token_hint", idToken)]))["code"] != nil)
        let asBob = await authorize(
            setup, base(setup) + [("prompt", "none"), ("id_token_hint", idToken)], identity: Fixtures.bob)
        #expect(Fixtures.redirectParameters(asBob)["error"] == "login_required")
        #expect(
            Fixtures.redirectParameters(
                await authorize(setup, base(setup) + [("id_token_hint", idToken)], identity: Fixtures.bob))["code"]
                != nil)
        var forged = idToken.split(separator: ".").map(String.init)
        forged[1] = Base64URL.encode(
            Data(#"{"iss":"https://idp.example-tailnet.ts.net","sub":"userid:1","aud":"x"}"#.utf8))
        #expect(
            Fixtures.redirectParameters(
                await authorize(setup, base(setup) + [("id_token_hint", forged.joined(separator: "."))]))["error"]
                == "invalid_request")
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("id_token_hint", "garbage")]))["error"]
                == "invalid_request")
    }

    @Test("outstanding codes per user and client are bounded")
    func codeCap() async throws {
        let setup = try await Fixtures.provider()
        for _ in 0..<32 { #expect(Fixtures.redirectParameters(await authorize(setup, base(setup)))["code"] != nil) }
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup)))["error"] == "temporarily_unavailable")
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup), identity: Fixtures.bob))["code"] != nil)
        setup.clock.advance(301)
        #expect(Fixtures.redirectParameters(await authorize(setup, base(setup)))["code"] != nil)
    }

    @Test("a repeated parameter is invalid_request")
    func repeated() async throws {
        let setup = try await Fixtures.provider()
        #expect(
            Fixtures.redirectParameters(await authorize(setup, base(setup) + [("scope", "email")]))["error"]
                == "invalid_request")
    }

    @Test("response_mode=form_post returns a form for the redirect URI")
    func formPost() async throws {
        let setup = try await Fixtures.provider()
        let result = await authorize(setup, base(setup) + [("response_mode", "form_post")])
        guard case .formPost(let action, let fields) = result else {
            Issue.record("expected form_post, got \(result)")
            return
        }
        #expect(action == Fixtures.redirect)
        #expect(fields["code"] != nil)
        #expect(fields["state"] == "st")
    }

    @Test("resources are filtered by the users/resources grant")
    func resources() async throws {
        let setup = try await Fixtures.provider()
        let granted = Fixtures.alice(rules: [
            .object([
                "users": .array([.string("alice@example.com")]),
                "resources": .array([.string("https://api.example.com")]),
            ])
        ])
        let ok = await authorize(setup, base(setup) + [("resource", "https://api.example.com")], identity: granted)
        #expect(Fixtures.redirectParameters(ok)["code"] != nil)
        let refused = await authorize(
            setup, base(setup) + [("resource", "https://other.example.com")], identity: granted)
        #expect(Fixtures.redirectParameters(refused)["error"] == "invalid_target")
    }
}

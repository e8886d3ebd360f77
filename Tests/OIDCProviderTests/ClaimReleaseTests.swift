import AnyJSON
import Foundation
import StateStore
import Testing

@testable import OIDCProvider

@Suite("Claims released by scope and by the claims parameter")
struct ClaimReleaseTests {
    /// Signs in with `scope` (and `extra` parameters) and returns the ID token's and userinfo's claims.
    static func signIn(
        _ setup: Fixtures.Setup, scope: String, extra: [(String, String)] = [],
        identity: UserIdentity = Fixtures.alice()
    ) async throws -> (idToken: [String: Any], userInfo: [String: Any]) {
        let answer = await setup.redeem(try await setup.code(identity: identity, scope: scope, extra: extra))
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        let idToken = try #require(body["id_token"] as? String)
        let access = try #require(body["access_token"] as? String)
        let payload = try #require(Base64URL.decode(idToken.split(separator: ".")[1]))
        let claims = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        let info = setup.provider.userInfo(accessToken: access)
        #expect(info.status == 200)
        return (claims, Fixtures.json(info.body))
    }

    static let profileClaims = ["name", "preferred_username", "picture", "username"]
    static let emailClaims = ["email", "email_verified"]

    @Test("openid alone releases sub and the device claims, no profile, email or groups")
    func openidOnly() async throws {
        let setup = try await Fixtures.provider()
        let (idToken, info) = try await Self.signIn(setup, scope: "openid")
        #expect(Set(info.keys) == ["sub"])
        for name in Self.profileClaims + Self.emailClaims + ["groups"] {
            #expect(idToken[name] == nil, "\(name) in \(idToken)")
        }
        #expect(idToken["amr"] as? [String] == ["tailscale"])
        #expect(idToken["node"] as? String == "alice-laptop.example-tailnet.ts.net.")
    }

    @Test("profile releases name, preferred_username and picture; username in userinfo only")
    func profile() async throws {
        let setup = try await Fixtures.provider()
        let (idToken, info) = try await Self.signIn(setup, scope: "openid profile")
        #expect(info["name"] as? String == "Alice Example")
        #expect(info["preferred_username"] as? String == "alice")
        #expect(info["username"] as? String == "alice")
        #expect(info["picture"] as? String == "https://pics.example.com/alice.png")
        #expect(info["email"] == nil)
        #expect(idToken["name"] as? String == "Alice Example")
        #expect(idToken["username"] == nil)
    }

    @Test("email releases email and email_verified, true for a login name with a real domain")
    func email() async throws {
        let setup = try await Fixtures.provider()
        let (idToken, info) = try await Self.signIn(setup, scope: "openid email")
        #expect(info["email"] as? String == "alice@example.com")
        #expect(info["email_verified"] as? Bool == true)
        #expect(idToken["email_verified"] as? Bool == true)
        #expect(info["name"] == nil)
    }

    @Test("an invented realish address is not verified")
    func realishNotVerified() async throws {
        let setup = try await Fixtures.provider()
        var identity = Fixtures.alice()
        identity.loginName = "alice@github"
        let (_, info) = try await Self.signIn(setup, scope: "openid email", identity: identity)
        #expect(info["email"] as? String == "alice@github.idp.example-tailnet.ts.net")
        #expect(info["email_verified"] as? Bool == false)
    }

    @Test("the groups scope releases the tailnet's groups")
    func groups() async throws {
        let setup = try await Fixtures.provider()
        let (idToken, info) = try await Self.signIn(setup, scope: "openid groups")
        #expect(idToken["groups"] as? [String] == ["group:eng"])
        #expect(info["groups"] as? [String] == ["group:eng"])
    }

    @Test("the Go tsidp guides' scopes still give name, email, preferred_username and username in userinfo")
    func guideScopes() async throws {
        let setup = try await Fixtures.provider()
        let (_, info) = try await Self.signIn(setup, scope: "openid email profile")
        #expect(info["name"] as? String == "Alice Example")
        #expect(info["email"] as? String == "alice@example.com")
        #expect(info["preferred_username"] as? String == "alice")
        #expect(info["username"] as? String == "alice")
    }

    @Test("extra claims granted for userinfo are released whatever the scope")
    func extraClaimsAnyScope() async throws {
        let setup = try await Fixtures.provider()
        let identity = Fixtures.alice(rules: [
            .object([
                "extraClaims": .object(["groups": .array([.string("portainer-admins")])]),
                "includeInUserInfo": .bool(true),
            ])
        ])
        let (idToken, info) = try await Self.signIn(setup, scope: "openid", identity: identity)
        #expect(info["groups"] as? [String] == ["portainer-admins"])
        #expect(idToken["groups"] as? [String] == ["portainer-admins"])
    }

    @Test("a claims request adds the claims it names, to the ID token and userinfo separately")
    func claimsParameter() async throws {
        let setup = try await Fixtures.provider()
        let request =
            #"{"id_token":{"email":{"essential":true},"address":null},"userinfo":{"name":null,"groups":{"values":["x"]}}}"#
        let (idToken, info) = try await Self.signIn(setup, scope: "openid", extra: [("claims", request)])
        #expect(idToken["email"] as? String == "alice@example.com")
        #expect(idToken["name"] == nil)
        #expect(idToken["address"] == nil)
        #expect(info["name"] as? String == "Alice Example")
        #expect(info["groups"] as? [String] == ["group:eng"])
        #expect(info["email"] == nil)
    }

    @Test(
        "a malformed claims parameter is an invalid_request redirect",
        arguments: [
            "[]", "not json", #"{"userinfo":[]}"#, #"{"id_token":{"name":1}}"#,
            #"{"userinfo":{"name":{"essential":"yes"}}}"#, #"{"userinfo":{"name":{"values":"a"}}}"#,
        ])
    func malformedClaims(_ value: String) async throws {
        let setup = try await Fixtures.provider()
        let result = await setup.provider.authorize(
            Fixtures.query([
                ("client_id", setup.client.clientID), ("redirect_uri", Fixtures.redirect), ("response_type", "code"),
                ("scope", "openid"), ("state", "s1"), ("claims", value),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() }
        let parameters = Fixtures.redirectParameters(result)
        #expect(parameters["error"] == "invalid_request")
        #expect(parameters["state"] == "s1")
    }

    @Test("a grant round-trips with its claims request, and a grant of older state (without one) still loads")
    func claimsRequestPersisted() async throws {
        let grant = AuthorizationGrant(
            clientID: "c", redirectURI: Fixtures.redirect, scopes: ["openid"], nonce: nil, codeChallenge: nil,
            codeChallengeMethod: nil, resources: [], identity: Fixtures.alice(),
            authTime: Date(timeIntervalSince1970: 0),
            claims: ClaimsRequest(idToken: ["email"], userInfo: ["name"]))
        let encoded = try JSONEncoder().encode(grant)
        #expect(try JSONDecoder().decode(AuthorizationGrant.self, from: encoded) == grant)
        var old = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        old["cl"] = nil
        let decoded = try JSONDecoder().decode(
            AuthorizationGrant.self, from: try JSONSerialization.data(withJSONObject: old))
        #expect(decoded.claims == nil)
        #expect(decoded.clientID == "c")
    }

    @Test("the consent page lists claims asked for with the claims parameter, not only by scope")
    func consentLines() {
        var grant = AuthorizationGrant(
            clientID: "c", redirectURI: Fixtures.redirect, scopes: ["openid"], nonce: nil, codeChallenge: nil,
            codeChallengeMethod: nil, resources: [], identity: Fixtures.alice(),
            authTime: Date(timeIntervalSince1970: 0))
        let plain = Provider.claimLines(grant)
        #expect(!plain.contains("your login name as an email address"))
        grant.claims = ClaimsRequest(idToken: [], userInfo: ["email", "groups"])
        let lines = Provider.claimLines(grant)
        #expect(lines.contains("your login name as an email address"))
        #expect(lines.contains("the groups you belong to"))
        #expect(!lines.contains("your name, user name and profile picture"))
    }

    @Test("discovery advertises the claims parameter, email_verified and amr")
    func discovery() async throws {
        let setup = try await Fixtures.provider()
        let document = Fixtures.json(setup.provider.discoveryDocument(includeRegistration: true))
        #expect(document["claims_parameter_supported"] as? Bool == true)
        let claims = try #require(document["claims_supported"] as? [String])
        #expect(claims.contains("email_verified") && claims.contains("amr"))
    }
}

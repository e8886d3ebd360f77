import Foundation
import StateStore
import Testing

@testable import OIDCProvider

@Suite("Registered grant types are enforced; acr describes a tailnet device sign-in")
struct GrantTypeAndACRTests {
    /// A provider whose client registered `grantTypes` only.
    static func setup(grantTypes: [String]) async throws -> Fixtures.Setup {
        let base = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Code only", redirectURIs: [Fixtures.redirect])
        registration.grantTypes = grantTypes
        let created = try await base.provider.clients.register(registration)
        return base.with(client: created.client, secret: created.secret ?? "")
    }

    @Test("a client registered without refresh_token gets no refresh token, and a refresh is unauthorized_client")
    func noRefreshGrant() async throws {
        let setup = try await Self.setup(grantTypes: ["authorization_code"])
        let answer = await setup.redeem(try await setup.code())
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        #expect(body["access_token"] is String)
        #expect(body["id_token"] is String)
        #expect(body["refresh_token"] == nil, "\(body)")
        // Even with a refresh token of the same client that exists (minted while the
        // registration allowed refreshes), the grant type is refused first.
        let refused = await setup.refresh("anything")
        #expect(refused.status == 400)
        #expect(Fixtures.json(refused.body)["error"] as? String == "unauthorized_client")
    }

    @Test("a refresh token minted before the client dropped refresh_token stops working")
    func droppedRefreshGrant() async throws {
        let setup = try await Fixtures.provider()
        let body = Fixtures.json(await setup.redeem(try await setup.code()).body)
        let refresh = try #require(body["refresh_token"] as? String)
        var registration = ClientRegistry.Registration(name: "Example App", redirectURIs: [Fixtures.redirect])
        registration.grantTypes = ["authorization_code"]
        _ = try await setup.provider.clients.replaceMetadata(
            setup.client.clientID, with: registration, presentedSecret: nil)
        let refused = await setup.refresh(refresh)
        #expect(Fixtures.json(refused.body)["error"] as? String == "unauthorized_client")
    }

    @Test("registration refuses grant types tsidp does not offer and code without authorization_code")
    func registrationRules() async throws {
        let setup = try await Fixtures.provider()
        for grantTypes in [["implicit"], ["refresh_token"], ["client_credentials", "authorization_code"]] {
            var registration = ClientRegistry.Registration(name: "Bad", redirectURIs: [Fixtures.redirect])
            registration.grantTypes = grantTypes
            await #expect(throws: OAuthError.self) { _ = try await setup.provider.clients.register(registration) }
            do {
                _ = try await setup.provider.clients.register(registration)
            } catch let error as OAuthError {
                #expect(error.code == .invalidClientMetadata)
            }
        }
    }

    @Test("a client registered without authorization_code cannot start a sign-in")
    func authorizeUnauthorized() async throws {
        let setup = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "x", redirectURIs: [Fixtures.redirect])
        registration.grantTypes = ["refresh_token"]
        registration.responseTypes = []
        let created = try await setup.provider.clients.register(registration)
        let result = await setup.provider.authorize(
            Fixtures.query([
                ("client_id", created.client.clientID), ("redirect_uri", Fixtures.redirect),
                ("response_type", "code"), ("scope", "openid"), ("state", "s1"),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() }
        let parameters = Fixtures.redirectParameters(result)
        #expect(parameters["error"] == "unauthorized_client")
        #expect(parameters["state"] == "s1")
        #expect(parameters["code"] == nil)
    }

    static func idTokenClaims(_ setup: Fixtures.Setup, extra: [(String, String)] = []) async throws -> [String: Any] {
        let body = Fixtures.json(await setup.redeem(try await setup.code(extra: extra)).body)
        let idToken = try #require(body["id_token"] as? String)
        let payload = try #require(Base64URL.decode(idToken.split(separator: ".")[1]))
        return try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
    }

    @Test("every ID token carries acr tailnet-device, with or without acr_values")
    func acrAlways() async throws {
        let setup = try await Fixtures.provider()
        #expect(try await Self.idTokenClaims(setup)["acr"] as? String == "tailnet-device")
        let asked = try await Self.idTokenClaims(setup, extra: [("acr_values", "urn:example:gold tailnet-device")])
        #expect(asked["acr"] as? String == "tailnet-device")
        // Voluntary values tsidp cannot meet do not fail the sign-in (OIDC Core §3.1.2.1).
        let voluntary = try await Self.idTokenClaims(setup, extra: [("acr_values", "urn:example:gold")])
        #expect(voluntary["acr"] as? String == "tailnet-device")
    }

    @Test("an essential acr tsidp cannot meet fails the sign-in with access_denied; one it meets passes")
    func essentialACR() async throws {
        let setup = try await Fixtures.provider()
        let unmet = await setup.provider.authorize(
            Fixtures.query([
                ("client_id", setup.client.clientID), ("redirect_uri", Fixtures.redirect), ("response_type", "code"),
                ("scope", "openid"), ("state", "s1"),
                ("claims", #"{"id_token":{"acr":{"essential":true,"values":["urn:example:gold"]}}}"#),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.alice() }
        #expect(Fixtures.redirectParameters(unmet)["error"] == "access_denied")
        let met = try await Self.idTokenClaims(
            setup, extra: [("claims", #"{"id_token":{"acr":{"essential":true,"value":"tailnet-device"}}}"#)])
        #expect(met["acr"] as? String == "tailnet-device")
        let voluntary = try await Self.idTokenClaims(
            setup, extra: [("claims", #"{"id_token":{"acr":{"values":["urn:example:gold"]}}}"#)])
        #expect(voluntary["acr"] as? String == "tailnet-device")
    }

    @Test("a grant cannot set acr through extraClaims")
    func acrProtected() {
        #expect(IDToken.protectedClaims.contains("acr"))
        #expect(IDToken.supportedClaims.contains("acr"))
    }

    @Test("discovery lists acr_values_supported")
    func discovery() async throws {
        let setup = try await Fixtures.provider()
        let document = Fixtures.json(setup.provider.discoveryDocument(includeRegistration: true))
        #expect(document["acr_values_supported"] as? [String] == ["tailnet-device"])
    }
}

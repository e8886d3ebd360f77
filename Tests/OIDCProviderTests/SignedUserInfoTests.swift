import Foundation
import JWTKit
import OIDCProvider
import Testing

struct UserInfoJWT: JWTPayload {
    var iss: IssuerClaim
    var aud: AudienceClaim
    var sub: SubjectClaim
    var email: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

@Suite("Signed userinfo")
struct SignedUserInfoTests {
    @Test(
        "a client that registered userinfo_signed_response_alg gets a JWT with iss and aud, signed with that algorithm",
        arguments: ["RS256", "ES256", "EdDSA"])
    func signed(_ algorithm: String) async throws {
        let base = try await Fixtures.provider()
        var registration = ClientRegistry.Registration(name: "Signed", redirectURIs: [Fixtures.redirect])
        registration.userInfoSignedResponseAlg = algorithm
        let created = try await base.provider.clients.register(registration)
        #expect(created.client.userInfoSignedResponseAlg?.rawValue == algorithm)
        let setup = base.with(client: created.client, secret: created.secret ?? "")
        let body = Fixtures.json(await setup.redeem(try await setup.code(scope: "openid email")).body)
        let access = try #require(body["access_token"] as? String)

        let answer = await setup.provider.userInfoAnswer(accessToken: access)
        #expect(answer.status == 200)
        #expect(answer.contentType == "application/jwt")
        let jwt = String(decoding: answer.body, as: UTF8.self)
        let header = try #require(Base64URL.decode(jwt.split(separator: ".")[0]))
        #expect(Fixtures.json(Array(header))["alg"] as? String == algorithm)
        let keys = JWTKeyCollection()
        try await keys.add(jwksJSON: String(decoding: setup.provider.keys.jwksDocument, as: UTF8.self))
        let claims = try await keys.verify(jwt, as: UserInfoJWT.self)
        #expect(claims.iss.value == Fixtures.issuer)
        #expect(claims.aud.value == [created.client.clientID])
        #expect(claims.sub.value == "userid:2001")
        #expect(claims.email == "alice@example.com")
    }

    @Test("other clients get plain JSON; an unknown algorithm is refused at registration")
    func plainAndRefused() async throws {
        let setup = try await Fixtures.provider()
        let body = Fixtures.json(await setup.redeem(try await setup.code()).body)
        let answer = await setup.provider.userInfoAnswer(accessToken: try #require(body["access_token"] as? String))
        #expect(answer.contentType == "application/json")
        #expect(Fixtures.json(answer.body)["sub"] as? String == "userid:2001")
        #expect(await setup.provider.userInfoAnswer(accessToken: "nope").status == 401)
        var bad = ClientRegistry.Registration(name: "Bad", redirectURIs: [Fixtures.redirect])
        bad.userInfoSignedResponseAlg = "none"
        await #expect(throws: OAuthError.self) { try await setup.provider.clients.register(bad) }
        let dcr = try ClientRegistry.Registration(
            rfc7591JSON: Data(
                #"{"redirect_uris":["https://a.example.com/cb"],"userinfo_signed_response_alg":"ES256"}"#.utf8))
        #expect(dcr.userInfoSignedResponseAlg == "ES256")
        let document = Fixtures.json(setup.provider.discoveryDocument(includeRegistration: true))
        #expect(document["userinfo_signing_alg_values_supported"] as? [String] == ["RS256", "ES256", "EdDSA"])
    }
}

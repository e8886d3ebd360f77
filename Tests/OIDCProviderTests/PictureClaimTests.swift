import Foundation
import Testing

@testable import OIDCProvider

/// Profile picture URLs come from the tailnet's user profile and end up in relying parties'
/// pages: only `https` URLs are passed on.
@Suite("Picture claim")
struct PictureClaimTests {
    /// One provider for every case (each case signs in a user of its own).
    static let shared = Task { try await Fixtures.provider() }

    @Test(
        "only https profile pictures reach the ID token, userinfo and introspection",
        arguments: [
            ("javascript:alert(document.cookie)", false), ("JavaScript:alert(1)", false),
            ("data:image/svg+xml;base64,PHN2Zz4=", false), ("http://pics.example.com/alice.png", false),
            ("https:///no-host.png", false), ("//pics.example.com/alice.png", false),
            ("https://pics.example.com/alice.png", true), ("HTTPS://pics.example.com/a.png?s=64", true),
        ])
    func picture(_ url: String, _ kept: Bool) async throws {
        let setup = try await Self.shared.value
        var alice = Fixtures.alice()
        alice.profilePicURL = url
        let body = Fixtures.json(await setup.redeem(try await setup.code(identity: alice)).body)
        let idToken = try #require(body["id_token"] as? String)
        let access = try #require(body["access_token"] as? String)
        let payload = try #require(Base64URL.decode(idToken.split(separator: ".")[1]))
        let claims = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        let userinfo = Fixtures.json(setup.provider.userInfo(accessToken: access).body)
        let introspection = Fixtures.json(
            await setup.provider.introspect(
                Fixtures.query([("token", access)]), authorization: Fixtures.basic(setup.client.clientID, setup.secret)
            ).body)
        #expect(introspection["active"] as? Bool == true)
        for (name, answer) in [("ID token", claims), ("userinfo", userinfo), ("introspection", introspection)] {
            #expect((answer["picture"] as? String) == (kept ? url : nil), "\(name)")
        }
        #expect(alice.pictureURL == (kept ? url : nil))
    }
}

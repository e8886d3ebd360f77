import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Tailnet
import Testing

@testable import IDPServer

/// A profile picture URL from WhoIs that is not `https` never reaches a relying party.
@Suite("HTTP: picture claim")
struct PictureClaimHTTPTests {
    @Test("a javascript: picture from WhoIs is dropped when the caller is identified")
    func convert() {
        let caller = CallerIdentity(
            localAPI: LocalAPIClient(socketPath: "/nonexistent"), capabilityName: "tailscale.com/cap/tsidp")
        for (url, kept) in [
            ("javascript:alert(1)", false), ("http://pics.example.com/a.png", false),
            ("https://pics.example.com/a.png", true),
        ] {
            let whois = Harness.identity(login: "alice@example.com", rules: [], profilePicURL: url)
            #expect(caller.convert(whois).profilePicURL == (kept ? url : ""), "\(url)")
        }
    }

    @Test("userinfo over HTTP carries no javascript: picture")
    func userinfo() async throws {
        try await Harness.run(profilePicURL: "javascript:alert(document.domain)") {
            (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let authorize = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid%20profile",
                method: .get)
            let location = try #require(authorize.headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            var headers = HTTPFields()
            headers[.contentType] = "application/x-www-form-urlencoded"
            headers[.authorization] =
                "Basic " + Data("\(registered.id):\(registered.secret)".utf8).base64EncodedString()
            let token = try await client.execute(
                uri: "/token", method: .post, headers: headers,
                body: ByteBuffer(
                    string: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                ))
            let access = try #require(token.json["access_token"] as? String)
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(access)"
            let info = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
            #expect(info.status == .ok)
            #expect(info.json["picture"] == nil)
            #expect(!token.text.contains("javascript"))
        }
    }
}

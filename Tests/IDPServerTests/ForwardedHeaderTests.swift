import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import OIDCProvider
import Testing

@Suite("HTTP: identity comes from the connection, never from headers")
struct ForwardedHeaderTests {
    @Test("X-Forwarded-For and Tailscale-User-* headers do not change who signs in")
    func spoofedHeaders() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let app = try await harness.client(redirect: "https://app.example.com/cb")
            var headers = HTTPFields()
            headers[HTTPField.Name("X-Forwarded-For")!] = "100.64.0.2"
            headers[HTTPField.Name("Tailscale-User-Login")!] = "bob@example.com"
            headers[HTTPField.Name("Tailscale-User-Name")!] = "Bob Example"
            headers[HTTPField.Name("Forwarded")!] = "for=100.64.0.2"
            let answer = try await client.execute(
                uri: "/authorize?client_id=\(app.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                    + "&response_type=code&scope=openid%20email&state=s",
                method: .get, headers: headers)
            #expect(answer.status == .found)
            let location = try #require(answer.headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            let tokens = await harness.provider.token(
                OAuthParameters([
                    ("grant_type", "authorization_code"), ("code", code),
                    ("redirect_uri", "https://app.example.com/cb"),
                ]),
                authorization: "Basic " + Data("\(app.id):\(app.secret)".utf8).base64EncodedString())
            #expect(tokens.status == 200)
            let body = try JSONSerialization.jsonObject(with: Data(tokens.body)) as? [String: Any]
            let idToken = try #require(body?["id_token"] as? String)
            let payload = String(
                decoding: try #require(Base64URL.decode(idToken.split(separator: ".")[1])), as: UTF8.self)
            #expect(payload.contains("alice@example.com"))
            #expect(!payload.contains("bob"))
        }
    }
}

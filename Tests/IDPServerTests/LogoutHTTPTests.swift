import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import Testing

@testable import IDPServer

@Suite("HTTP: RP-initiated logout and claims")
struct LogoutHTTPTests {
    /// Signs in over HTTP with `query` added to the authorization request; returns the token answer.
    static func signIn(
        _ client: any TestClientProtocol, id: String, secret: String, extra: String = ""
    ) async throws -> [String: Any] {
        let query =
            "client_id=\(id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid&state=abc\(extra)"
        let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
        let location = try #require(authorize.headers[.location])
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        headers[.authorization] = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
        let token = try await client.execute(
            uri: "/token", method: .post, headers: headers,
            body: ByteBuffer(
                string: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"))
        #expect(token.status == .ok)
        return token.json
    }

    @Test("discovery names /logout; GET and POST /logout end the login and return to the registered URI")
    func logout() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let discovery = try await client.execute(uri: "/.well-known/openid-configuration", method: .get)
            #expect(discovery.json["end_session_endpoint"] as? String == "http://localhost:8080/logout")
            #expect(discovery.json["claims_parameter_supported"] as? Bool == true)

            var registration = ClientRegistry.Registration(name: "Wiki", redirectURIs: ["https://app.example.com/cb"])
            registration.postLogoutRedirectURIs = ["https://app.example.com/bye"]
            let created = try await harness.provider.clients.register(registration)
            let id = created.client.clientID
            let secret = try #require(created.secret)

            let first = try await Self.signIn(client, id: id, secret: secret)
            let hint = try #require(first["id_token"] as? String)
            let get = try await client.execute(
                uri:
                    "/logout?id_token_hint=\(hint)&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye&state=z",
                method: .get)
            #expect(get.status == .found)
            #expect(get.headers[.location] == "https://app.example.com/bye?state=z")
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(try #require(first["access_token"] as? String))"
            #expect(try await client.execute(uri: "/userinfo", method: .get, headers: bearer).status == .unauthorized)

            let second = try await Self.signIn(client, id: id, secret: secret)
            let (headers, body) = form("id_token_hint=\(try #require(second["id_token"] as? String))")
            let post = try await client.execute(uri: "/logout", method: .post, headers: headers, body: body)
            #expect(post.status == .ok)
            #expect(post.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(post.text.contains("Signed out"))

            let evil = try await client.execute(
                uri: "/logout?client_id=\(id)&post_logout_redirect_uri=https%3A%2F%2Fevil.example.net%2F",
                method: .get)
            #expect(evil.status == .badRequest)
            #expect(evil.headers[.location] == nil)
            #expect(evil.text.contains("is not registered"))
        }
    }

    @Test("/logout is refused over Funnel")
    func funnel() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            var headers = HTTPFields()
            headers[funnelHeader] = "?1"
            let response = try await client.execute(uri: "/logout", method: .get, headers: headers)
            #expect(response.status == .unauthorized)
            #expect(response.text.contains("not over Funnel"))
        }
    }

    @Test("a claims request is honoured over HTTP, and a malformed one is an invalid_request redirect")
    func claims() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let request = #"{"userinfo":{"email":{"essential":true}}}"#
                .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let token = try await Self.signIn(
                client, id: registered.id, secret: registered.secret, extra: "&claims=\(request)")
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(try #require(token["access_token"] as? String))"
            let info = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
            #expect(info.json["email"] as? String == "alice@example.com")
            #expect(info.json["name"] == nil)

            let bad = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid&state=s&claims=%5B%5D",
                method: .get)
            #expect(bad.status == .found)
            #expect(bad.headers[.location]?.contains("error=invalid_request") == true)
        }
    }
}

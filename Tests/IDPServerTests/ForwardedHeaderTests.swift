import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import Testing

@testable import IDPServer

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

    /// The redirect of an authorization request sent with `forwardedFor` (one value per header
    /// field): the code's login name, or the error.
    static func signIn(_ harness: Harness, _ client: any TestClientProtocol, forwardedFor: [String]) async throws
        -> String
    {
        let app = try await harness.client(redirect: "https://app.example.com/cb")
        var headers = HTTPFields()
        for value in forwardedFor { headers.append(HTTPField(name: CallerAddress.forwardedForField, value: value)) }
        let answer = try await client.execute(
            uri: "/authorize?client_id=\(app.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                + "&response_type=code&scope=openid%20email&state=s",
            method: .get, headers: headers)
        #expect(answer.status == .found)
        let query = URLComponents(string: answer.headers[.location] ?? "")?.queryItems ?? []
        guard let code = query.first(where: { $0.name == "code" })?.value else {
            return "error: " + (query.first { $0.name == "error" }?.value ?? "none")
        }
        let tokens = await harness.provider.token(
            OAuthParameters([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", "https://app.example.com/cb"),
            ]),
            authorization: "Basic " + Data("\(app.id):\(app.secret)".utf8).base64EncodedString())
        let body = try JSONSerialization.jsonObject(with: Data(tokens.body)) as? [String: Any]
        let idToken = try #require(body?["id_token"] as? String)
        let payload = try #require(Base64URL.decode(idToken.split(separator: ".")[1]))
        let claims = try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any]
        return try #require(claims?["email"] as? String)
    }

    @Test("behind a trusted proxy the last X-Forwarded-For address is the caller, and nothing else is")
    func trustedProxy() async throws {
        // The test client connects from 127.0.0.1, here the proxy; alice's device is 100.64.0.1.
        let trust = ForwardedTrust(networks: [try IPNetwork(parsing: "127.0.0.0/30")], unixSocketPeers: false)
        try await Harness.run(forwardedTrust: trust) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            #expect(try await Self.signIn(harness, client, forwardedFor: ["100.64.0.1"]) == "alice@example.com")
            #expect(
                try await Self.signIn(harness, client, forwardedFor: ["100.64.0.9, 100.64.0.1"]) == "alice@example.com")
            // A device the tailnet does not know, named last: no sign-in, whatever came before.
            for values in [["100.64.0.9"], ["100.64.0.1, 100.64.0.9"], ["100.64.0.1", "100.64.0.9"]] {
                #expect(try await Self.signIn(harness, client, forwardedFor: values) == "error: access_denied")
            }
            // No header, or one that names no address: no caller, never the proxy's own address
            // (which the simulated tailnet would answer with alice).
            for values in [[], ["alice"], ["100.64.0.1,"], ["100.64.0.1:443"]] {
                #expect(
                    try await Self.signIn(harness, client, forwardedFor: values) == "error: access_denied",
                    "\(values)")
            }
        }
    }

    @Test("a peer outside --trusted-proxy cannot choose its identity with X-Forwarded-For")
    func untrustedPeer() async throws {
        let trust = ForwardedTrust(networks: [try IPNetwork(parsing: "10.0.0.0/8")], unixSocketPeers: true)
        try await Harness.run(forwardedTrust: trust) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            for values in [["100.64.0.9"], ["garbage"], ["100.64.0.9", "100.64.0.9"]] {
                #expect(try await Self.signIn(harness, client, forwardedFor: values) == "alice@example.com")
            }
        }
    }

    @Test("the operator's listener never reads X-Forwarded-For")
    func localListener() async throws {
        let trust = ForwardedTrust(networks: [try IPNetwork(parsing: "127.0.0.1/32")], unixSocketPeers: false)
        try await Harness.run(listener: .local, forwardedTrust: trust) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            #expect(try await Self.signIn(harness, client, forwardedFor: ["100.64.0.9"]) == "alice@example.com")
        }
    }

    @Test("X-Forwarded-Host and X-Forwarded-Proto never change the issuer or an endpoint")
    func forwardedHostAndProto() async throws {
        let trust = ForwardedTrust(networks: [try IPNetwork(parsing: "127.0.0.1/32")], unixSocketPeers: false)
        try await Harness.run(forwardedTrust: trust) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            var headers = HTTPFields()
            headers[HTTPField.Name("X-Forwarded-Host")!] = "evil.example"
            headers[HTTPField.Name("X-Forwarded-Proto")!] = "https"
            headers[HTTPField.Name("Forwarded")!] = "host=evil.example;proto=https"
            headers[CallerAddress.forwardedForField] = "100.64.0.1"
            let answer = try await client.execute(
                uri: "/.well-known/openid-configuration", method: .get, headers: headers)
            #expect(answer.status == .ok)
            #expect(answer.json["issuer"] as? String == "http://localhost:8080")
            #expect(!answer.text.contains("evil"))
        }
    }

    @Test("a forwarded request reaches the admin API only under the issuer's host name")
    func forwardedHost() throws {
        func passes(_ authority: String, issuer: String, forwarded: Bool) -> Bool {
            let request = Request(
                head: HTTPRequest(method: .get, scheme: "http", authority: authority, path: "/clients/"),
                body: .init(buffer: ByteBuffer()))
            return (try? IDPServer.checkHost(request, issuer: issuer, forwarded: forwarded)) != nil
        }
        #expect(passes("id.example.com", issuer: "https://id.example.com", forwarded: true))
        #expect(passes("ID.example.com:443", issuer: "https://id.example.com", forwarded: true))
        #expect(!passes("localhost", issuer: "https://id.example.com", forwarded: true))
        #expect(!passes("127.0.0.1:8080", issuer: "https://id.example.com", forwarded: true))
        #expect(!passes("", issuer: "https://id.example.com", forwarded: true))
        #expect(passes("localhost", issuer: "https://id.example.com", forwarded: false))
    }
}

import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import IDPServer

/// Client management, key rotation and registration accept an `Origin` only when scheme, host
/// and port all match the issuer's origin or the listener's own loopback origin.
@Suite("Same-origin check")
struct OriginCheckTests {
    @Test(
        "Origin values name an origin only when they are exactly scheme://host[:port]",
        arguments: [
            ("http://localhost:8080", "http://localhost:8080"), ("HTTP://LocalHost:8080", "http://localhost:8080"),
            ("http://localhost", "http://localhost:80"),
            ("https://idp.example.ts.net", "https://idp.example.ts.net:443"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ])
    func parses(_ header: String, _ expected: String) {
        #expect(WebOrigin(header: header)?.description == expected)
    }

    @Test(
        "values that are not an origin",
        arguments: [
            "null", "", "localhost:8080", "ftp://localhost:8080", "http://localhost:8080/", "http://localhost:8080/x",
            "http://user@localhost:8080", "http://localhost:8080?x", "http://localhost:0", "http://",
        ])
    func rejects(_ header: String) {
        #expect(WebOrigin(header: header) == nil)
    }

    @Test("allowed: the issuer's origin, and on a loopback listener its own address and localhost")
    func allowed() throws {
        let loopback = try SocketAddress(ipAddress: "127.0.0.1", port: 9090)
        let allowed = IDPServer.allowedOrigins(issuer: "http://localhost:8080", listenerAddress: loopback)
        #expect(
            Set(allowed.map(\.description)) == [
                "http://localhost:8080", "http://localhost:9090", "http://127.0.0.1:9090",
            ])
        let tailnet = try SocketAddress(ipAddress: "100.64.0.9", port: 443)
        let remote = IDPServer.allowedOrigins(issuer: "https://idp.example.ts.net", listenerAddress: tailnet)
        #expect(remote.map(\.description) == ["https://idp.example.ts.net:443"])
    }

    @Test("an Origin differing in scheme, host or port is refused by /clients/new, /keys/rotate and /register")
    func exactMatch() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let port = try #require(client.port)
            let otherPort = port == 9999 ? 9998 : 9999
            let refused = [
                "http://localhost:\(otherPort)", "https://localhost:8080", "http://localhost", "http://localhost:8080/",
                "http://127.0.0.1:8080", "https://127.0.0.1:\(port)", "http://evil.example:8080", "null",
            ]
            for origin in refused {
                for (path, contentType, body) in [
                    (
                        "/clients/new", "application/x-www-form-urlencoded",
                        "name=x&redirect_uri=https%3A%2F%2Fa.example.com"
                    ),
                    ("/keys/rotate", "application/x-www-form-urlencoded", ""),
                    ("/register", "application/json", #"{"redirect_uris":["https://a.example.com/cb"]}"#),
                ] {
                    var headers = HTTPFields()
                    headers[.contentType] = contentType
                    headers[.origin] = origin
                    let response = try await client.execute(
                        uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
                    #expect(response.status == .forbidden, "\(path) with Origin \(origin)")
                }
            }
            #expect(await harness.provider.clients.all().isEmpty)
            for origin in ["http://localhost:8080", "http://127.0.0.1:\(port)", "http://localhost:\(port)"] {
                let (base, body) = form("name=x&redirect_uri=https%3A%2F%2Fa.example.com")
                var headers = base
                headers[.origin] = origin
                let response = try await client.execute(
                    uri: "/clients/new", method: .post, headers: headers, body: body)
                #expect(response.status == .ok, "Origin \(origin)")
            }
        }
    }
}

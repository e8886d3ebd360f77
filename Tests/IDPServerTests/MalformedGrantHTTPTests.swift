import AnyJSON
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import IDPServer

/// A tailnet grant that does not parse answers 403 naming the bad field (an HTML page for the
/// browser route), grants nothing, and is logged once per node.
@Suite("HTTP: malformed grants")
struct MalformedGrantHTTPTests {
    static let broken: [JSONValue] = [.object(["allow_admin_ui": .string("yes"), "allow_dcr": .bool(true)])]

    @Test("admin routes and /register answer 403 with a JSON error naming the field; logged once")
    func adminRoutes() async throws {
        try await Harness.run(rules: Self.broken) { (harness: Harness, client: any TestClientProtocol) async throws in
            var json = HTTPFields()
            json[.contentType] = "application/json"
            let (formHeaders, formBody) = form("name=x&redirect_uri=https%3A%2F%2Fa.example.com")
            let requests: [(String, HTTPRequest.Method, HTTPFields, ByteBuffer?)] = [
                ("/clients/", .get, [:], nil), ("/clients/new", .post, formHeaders, formBody),
                ("/keys/rotate", .post, [:], nil),
                ("/register", .post, json, ByteBuffer(string: #"{"redirect_uris":["https://a.example.com/cb"]}"#)),
                ("/clients/", .get, [:], nil),
            ]
            for (path, method, headers, body) in requests {
                let response = try await client.execute(uri: path, method: method, headers: headers, body: body)
                #expect(response.status == .forbidden, "\(path)")
                #expect(response.headers[.contentType] == "application/json", "\(path)")
                #expect(response.json["error"] as? String == "access_denied", "\(path)")
                #expect(
                    (response.json["error_description"] as? String)?.contains("allow_admin_ui is not a boolean")
                        == true,
                    "\(path)")
            }
            #expect(await harness.provider.clients.all().isEmpty)
            let warnings = harness.capture.lines.withLockedValue { lines in
                lines.filter { $0.hasPrefix("warning") && $0.contains("does not parse") }
            }
            #expect(warnings.count == 1)
        }
    }

    @Test("/authorize shows a 403 page naming the field and redirects nowhere")
    func authorize() async throws {
        try await Harness.run(rules: Self.broken) { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let response = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid",
                method: .get)
            #expect(response.status == .forbidden)
            #expect(response.headers[.location] == nil)
            #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(response.text.contains("allow_admin_ui is not a boolean"))
        }
    }
}

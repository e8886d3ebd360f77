import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import OIDCProvider
import StateStore
import Testing

/// RFC 7592: the client configuration endpoint of dynamically registered clients.
@Suite("HTTP: RFC 7592 client configuration")
struct ClientConfigurationHTTPTests {
    struct Registered: Sendable {
        var id: String
        var secret: String?
        var token: String
        var uri: String
    }

    static func json(token: String? = nil) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let token { headers[.authorization] = "Bearer \(token)" }
        return headers
    }

    static func register(
        _ client: any TestClientProtocol, body: String = #"{"redirect_uris":["https://app.example.com/cb"]}"#
    ) async throws -> Registered {
        let response = try await client.execute(
            uri: "/register", method: .post, headers: json(), body: ByteBuffer(string: body))
        #expect(response.status == .created, "\(response.text)")
        let document = response.json
        let id = try #require(document["client_id"] as? String)
        let token = try #require(document["registration_access_token"] as? String)
        let uri = try #require(document["registration_client_uri"] as? String)
        return Registered(id: id, secret: document["client_secret"] as? String, token: token, uri: uri)
    }

    static func bearer(_ token: String) -> HTTPFields {
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(token)"
        return headers
    }

    @Test("/register answers with the configuration endpoint and a token; only the token's digest is stored")
    func registrationResponse() async throws {
        try await Harness.run { harness, client in
            let registered = try await Self.register(client)
            #expect(registered.uri == "http://localhost:8080/register/\(registered.id)")
            #expect(registered.token.count == 64)
            let file = try #require(await harness.store.read(ClientRegistry.fileKey(registered.id)))
            let text = String(decoding: file, as: UTF8.self)
            #expect(!text.contains(registered.token))
            #expect(text.contains("registration_access_token_hash"))
            #expect(!harness.capture.text.contains(registered.token))
            // Operator-registered clients have no token.
            let vetted = try await harness.client()
            #expect(await harness.provider.clients.client(vetted.id)?.registrationTokenHash == nil)
        }
    }

    @Test("GET reads the metadata (no secret: only its digest is kept), PUT replaces it, DELETE removes the client")
    func readUpdateDelete() async throws {
        try await Harness.run { harness, client in
            let registered = try await Self.register(
                client,
                body:
                    #"{"redirect_uris":["https://app.example.com/cb"],"client_name":"Notes","scope":"openid notes.read"}"#
            )
            let read = try await client.execute(
                uri: "/register/\(registered.id)", method: .get, headers: Self.bearer(registered.token))
            #expect(read.status == .ok)
            #expect(read.headers[.cacheControl] == "no-store")
            #expect(read.json["client_id"] as? String == registered.id)
            #expect(read.json["client_name"] as? String == "Notes")
            #expect(read.json["scope"] as? String == "openid notes.read")
            #expect(read.json["redirect_uris"] as? [String] == ["https://app.example.com/cb"])
            #expect(read.json["registration_client_uri"] as? String == registered.uri)
            #expect(read.json["registration_access_token"] as? String == registered.token)
            #expect(read.json["client_secret"] == nil)
            #expect(read.json["client_secret_expires_at"] as? Int == 0)

            let replacement =
                #"{"client_id":"\#(registered.id)","client_secret":"\#(registered.secret ?? "")","redirect_uris":["https://app.example.com/callback","http://127.0.0.1:9000/cb"],"client_name":"Notes 2"}"#
            let put = try await client.execute(
                uri: "/register/\(registered.id)", method: .put, headers: Self.json(token: registered.token),
                body: ByteBuffer(string: replacement))
            #expect(put.status == .ok, "\(put.text)")
            #expect(put.json["client_name"] as? String == "Notes 2")
            #expect(put.json["scope"] == nil)
            let stored = try #require(await harness.provider.clients.client(registered.id))
            #expect(stored.name == "Notes 2")
            #expect(stored.redirectURIs == ["https://app.example.com/callback", "http://127.0.0.1:9000/cb"])
            #expect(stored.scope == "")
            #expect(stored.dynamicallyRegistered)
            #expect(stored.secretMatches(registered.secret ?? ""))

            let delete = try await client.execute(
                uri: "/register/\(registered.id)", method: .delete, headers: Self.bearer(registered.token))
            #expect(delete.status == .noContent)
            #expect(await harness.provider.clients.client(registered.id) == nil)
            #expect(try await harness.store.read(ClientRegistry.fileKey(registered.id)) == nil)
            // Gone, and the token with it: the same 401 as any wrong token.
            let again = try await client.execute(
                uri: "/register/\(registered.id)", method: .get, headers: Self.bearer(registered.token))
            #expect(again.status == .unauthorized)
        }
    }

    @Test("PUT checks the body like /register, and client_id and client_secret against the client")
    func updateRefusals() async throws {
        try await Harness.run { harness, client in
            let registered = try await Self.register(client)
            let before = try #require(await harness.provider.clients.client(registered.id))
            let cases: [(String, Int, String)] = [
                (#"{"client_id":"\#(registered.id)"}"#, 400, "invalid_client_metadata"),
                (#"{"redirect_uris":["https://app.example.com/cb"]}"#, 400, "invalid_request"),
                (#"{"client_id":"other","redirect_uris":["https://app.example.com/cb"]}"#, 400, "invalid_request"),
                (
                    #"{"client_id":"\#(registered.id)","client_secret":"wrong","redirect_uris":["https://app.example.com/cb"]}"#,
                    400, "invalid_request"
                ),
                (
                    #"{"client_id":"\#(registered.id)","redirect_uris":["javascript:alert(1)"]}"#, 400,
                    "invalid_redirect_uri"
                ),
                (
                    #"{"client_id":"\#(registered.id)","redirect_uris":["https://app.example.com/cb"],"grant_types":["password"]}"#,
                    400, "invalid_client_metadata"
                ),
                ("not json", 400, "invalid_client_metadata"),
                (#"{"client_id":7,"redirect_uris":["https://app.example.com/cb"]}"#, 400, "invalid_request"),
            ]
            for (body, status, code) in cases {
                let response = try await client.execute(
                    uri: "/register/\(registered.id)", method: .put, headers: Self.json(token: registered.token),
                    body: ByteBuffer(string: body))
                #expect(response.status.code == status, "\(body): \(response.text)")
                #expect(response.json["error"] as? String == code, "\(body): \(response.text)")
            }
            #expect(await harness.provider.clients.client(registered.id) == before)
        }
    }

    @Test("a missing, wrong or other client's token, or an unknown client: the same 401 with a Bearer challenge")
    func wrongTokens() async throws {
        try await Harness.run { harness, client in
            let first = try await Self.register(client)
            let second = try await Self.register(client)
            let vetted = try await harness.client()
            let attempts: [(String, String?)] = [
                (first.id, nil), (first.id, "0123456789abcdef"), (first.id, second.token),
                (vetted.id, first.token), (vetted.id, vetted.secret), ("ffffffffffffffffffffffffffffffff", first.token),
            ]
            for (id, token) in attempts {
                for method in [HTTPRequest.Method.get, .put, .delete] {
                    let response = try await client.execute(
                        uri: "/register/\(id)", method: method, headers: Self.json(token: token),
                        body: ByteBuffer(
                            string: #"{"client_id":"\#(id)","redirect_uris":["https://evil.example.com/cb"]}"#))
                    #expect(response.status == .unauthorized, "\(method) \(id)")
                    #expect(response.json["error"] as? String == "invalid_token")
                    #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                }
            }
            // A Basic header is the wrong scheme.
            var basic = HTTPFields()
            basic[.authorization] = "Basic " + Data("\(first.id):\(first.secret ?? "")".utf8).base64EncodedString()
            let wrongScheme = try await client.execute(uri: "/register/\(first.id)", method: .get, headers: basic)
            #expect(wrongScheme.status == .badRequest)
            #expect(wrongScheme.json["error"] as? String == "invalid_request")
            // Nothing changed.
            #expect(await harness.provider.clients.client(first.id)?.redirectURIs == ["https://app.example.com/cb"])
            #expect(await harness.provider.clients.client(vetted.id) != nil)
        }
    }

    @Test("over Funnel the configuration endpoint is refused like /register")
    func funnel() async throws {
        try await Harness.run { _, client in
            let registered = try await Self.register(client)
            var headers = Self.bearer(registered.token)
            headers[HTTPField.Name("Tailscale-Funnel-Request")!] = "?1"
            for method in [HTTPRequest.Method.get, .put, .delete] {
                let response = try await client.execute(
                    uri: "/register/\(registered.id)", method: method, headers: headers)
                #expect(response.status == .unauthorized)
                #expect(response.json["error"] as? String == "access_denied")
            }
        }
    }

    @Test("the registration access token survives a restart")
    func survivesRestart() async throws {
        let store = MemoryStateStore()
        let registeredBox = LockedBox<Registered?>(nil)
        try await Harness.run(store: store) { _, client in
            registeredBox.set(try await Self.register(client))
        }
        let registered = try #require(registeredBox.get())
        try await Harness.run(store: store) { _, client in
            let read = try await client.execute(
                uri: "/register/\(registered.id)", method: .get, headers: Self.bearer(registered.token))
            #expect(read.status == .ok)
            #expect(read.json["client_id"] as? String == registered.id)
            let wrong = try await client.execute(
                uri: "/register/\(registered.id)", method: .get, headers: Self.bearer(String(repeating: "0", count: 64))
            )
            #expect(wrong.status == .unauthorized)
        }
    }

    @Test("deleting a client through its configuration endpoint ends its refresh and access tokens")
    func deleteEndsTokens() async throws {
        try await Harness.run { harness, client in
            let registered = try await Self.register(client)
            let secret = try #require(registered.secret)
            let path =
                "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid%20offline_access"
            let page = try await client.execute(uri: path, method: .get)
            #expect(page.status == .ok)
            let request = try #require(ConsentHTTPTests.field("request", in: page.text))
            let csrf = try #require(ConsentHTTPTests.field("csrf_token", in: page.text))
            let (consentHeaders, consentBody) = form("request=\(request)&csrf_token=\(csrf)&decision=allow")
            let consent = try await client.execute(
                uri: "/consent", method: .post, headers: consentHeaders, body: consentBody)
            let location = try #require(consent.headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            var (headers, _) = form("")
            headers[.authorization] = "Basic " + Data("\(registered.id):\(secret)".utf8).base64EncodedString()
            let token = try await client.execute(
                uri: "/token", method: .post, headers: headers,
                body: ByteBuffer(
                    string: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                ))
            #expect(token.status == .ok, "\(token.text)")
            let access = try #require(token.json["access_token"] as? String)
            let refresh = try #require(token.json["refresh_token"] as? String)

            let delete = try await client.execute(
                uri: "/register/\(registered.id)", method: .delete, headers: Self.bearer(registered.token))
            #expect(delete.status == .noContent)
            #expect(harness.provider.grantCounts.families == 0)
            #expect(harness.provider.grantCounts.accessTokens == 0)
            let refreshed = try await client.execute(
                uri: "/token", method: .post, headers: headers,
                body: ByteBuffer(string: "grant_type=refresh_token&refresh_token=\(refresh)"))
            #expect(refreshed.status == .unauthorized || refreshed.status == .badRequest)
            #expect(["invalid_client", "invalid_grant"].contains(refreshed.json["error"] as? String ?? ""))
            let info = try await client.execute(uri: "/userinfo", method: .get, headers: Self.bearer(access))
            #expect(info.status == .unauthorized)
        }
    }

    @Test(
        "a failed store write during PUT or DELETE answers 503 and leaves the client exactly as before",
        arguments: ["put", "delete", "delete-client-file"])
    func storeFailure(operation: String) async throws {
        try await Harness.run { harness, client in
            let registered = try await Self.register(client)
            let before = try #require(await harness.provider.clients.client(registered.id))
            let storedBefore = try await harness.store.read(ClientRegistry.fileKey(registered.id))
            let response: TestResponse
            switch operation {
            case "put":
                harness.faults.failAllWrites = true
                response = try await client.execute(
                    uri: "/register/\(registered.id)", method: .put, headers: Self.json(token: registered.token),
                    body: ByteBuffer(
                        string: #"{"client_id":"\#(registered.id)","redirect_uris":["https://other.example.com/cb"]}"#))
            case "delete":
                harness.faults.failAllWrites = true
                response = try await client.execute(
                    uri: "/register/\(registered.id)", method: .delete, headers: Self.bearer(registered.token))
            default:
                // Grant records may go; the client file's deletion is what fails.
                harness.faults.failDeletes = true
                response = try await client.execute(
                    uri: "/register/\(registered.id)", method: .delete, headers: Self.bearer(registered.token))
            }
            harness.faults.failAllWrites = false
            harness.faults.failDeletes = false
            #expect(response.status == .serviceUnavailable, "\(response.text)")
            #expect(response.json["error"] as? String == "temporarily_unavailable")
            #expect(await harness.provider.clients.client(registered.id) == before)
            #expect(try await harness.store.read(ClientRegistry.fileKey(registered.id)) == storedBefore)
            // And it still works with its token.
            let read = try await client.execute(
                uri: "/register/\(registered.id)", method: .get, headers: Self.bearer(registered.token))
            #expect(read.status == .ok)
            #expect(read.json["redirect_uris"] as? [String] == ["https://app.example.com/cb"])
        }
    }
}

/// One rule for redirect URIs, whichever way a client is registered or changed.
@Suite("HTTP: redirect URIs on every registration path")
struct RedirectURIPathsTests {
    static let refused = [
        "javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "vbscript:x", "about:blank",
        "https://app.example.com/cb#fragment", "http://app.example.com/cb", "http://grafana:3000/cb",
        "https:///no-host", "relative/cb", "ftp://files.example.com/cb", "https://app.example.com/a b",
    ]
    static let accepted = [
        "https://app.example.com/cb", "http://127.0.0.1:9000/cb", "http://localhost/cb", "http://[::1]:8000/cb",
        "http://grafana.example-tailnet.ts.net:3000/cb", "http://100.101.102.103/cb", "http://[fd7a:115c:a1e0::5]/cb",
        "com.example.app:/oauth", "https://app.example.com/cb?tenant=1",
    ]

    /// Runs `uri` through `/register`, `PUT /register/<id>`, `POST /clients/new` and
    /// `PUT /clients/<id>`, returning each answer's status and error code.
    static func outcomes(_ uri: String, harness: Harness, client: any TestClientProtocol) async throws -> [String: (
        Int, String?
    )] {
        let quoted = String(decoding: try JSONSerialization.data(withJSONObject: [uri]), as: UTF8.self)
        var results: [String: (Int, String?)] = [:]
        let register = try await client.execute(
            uri: "/register", method: .post, headers: ClientConfigurationHTTPTests.json(),
            body: ByteBuffer(string: #"{"redirect_uris":\#(quoted)}"#))
        results["/register"] = (Int(register.status.code), register.json["error"] as? String)

        let dynamic = try await ClientConfigurationHTTPTests.register(client)
        let put = try await client.execute(
            uri: "/register/\(dynamic.id)", method: .put,
            headers: ClientConfigurationHTTPTests.json(token: dynamic.token),
            body: ByteBuffer(string: #"{"client_id":"\#(dynamic.id)","redirect_uris":\#(quoted)}"#))
        results["PUT /register/<id>"] = (Int(put.status.code), put.json["error"] as? String)

        let encoded = uri.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let (headers, body) = form("name=App&redirect_uri=\(encoded)")
        let new = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
        results["/clients/new"] = (Int(new.status.code), new.json["error"] as? String)

        let vetted = try await harness.client()
        let (putHeaders, putBody) = form("name=App&redirect_uri=\(encoded)")
        let update = try await client.execute(
            uri: "/clients/\(vetted.id)", method: .put, headers: putHeaders, body: putBody)
        results["PUT /clients/<id>"] = (Int(update.status.code), update.json["error"] as? String)
        return results
    }

    @Test("each refused redirect URI is refused by all four paths with invalid_redirect_uri", arguments: refused)
    func refusedEverywhere(uri: String) async throws {
        try await Harness.run { harness, client in
            let results = try await Self.outcomes(uri, harness: harness, client: client)
            #expect(results.count == 4)
            for (path, (status, code)) in results {
                #expect(status == 400, "\(path) \(uri)")
                #expect(code == "invalid_redirect_uri", "\(path) \(uri): \(code ?? "none")")
            }
        }
    }

    @Test("each accepted redirect URI is accepted by all four paths", arguments: accepted)
    func acceptedEverywhere(uri: String) async throws {
        try await Harness.run { harness, client in
            let results = try await Self.outcomes(uri, harness: harness, client: client)
            #expect(results.count == 4)
            for (path, (status, code)) in results {
                #expect((200...201).contains(status), "\(path) \(uri): \(code ?? "")")
            }
        }
    }
}

/// A value shared between a test and the closures it runs.
final class LockedBox<Value: Sendable>: Sendable {
    private let box: NIOLockedValueBox<Value>
    init(_ value: Value) { box = NIOLockedValueBox(value) }
    func get() -> Value { box.withLockedValue { $0 } }
    func set(_ value: Value) { box.withLockedValue { $0 = value } }
}

import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import StateStore
import Testing

/// Resource servers register the resource URIs they serve and introspect tokens minted for them.
@Suite("HTTP: resource servers")
struct ResourceServerHTTPTests {
    static let resource = "https://mcp.example-tailnet.ts.net/mcp"
    static let encodedResource = "https%3A%2F%2Fmcp.example-tailnet.ts.net%2Fmcp"
    static let redirect = "https%3A%2F%2Fapp.example.com%2Fcb"
    static let rules: [JSONValue] = [
        Harness.adminRule,
        .object(["users": .array([.string("alice@example.com")]), "resources": .array([.string(resource)])]),
    ]

    /// Signs in to `registered` for the resource and returns the token answer.
    static func signIn(_ client: any TestClientProtocol, _ registered: (id: String, secret: String)) async throws
        -> [String: Any]
    {
        let query =
            "client_id=\(registered.id)&redirect_uri=\(redirect)&response_type=code&scope=openid&resource=\(encodedResource)"
        let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
        let location = try #require(authorize.headers[.location])
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        let (headers, body) = form(
            "grant_type=authorization_code&code=\(code)&redirect_uri=\(redirect)&client_id=\(registered.id)"
                + "&client_secret=\(registered.secret)&resource=\(encodedResource)")
        let token = try await client.execute(uri: "/token", method: .post, headers: headers, body: body)
        #expect(token.status == .ok, "\(token.text)")
        return token.json
    }

    static func introspect(_ client: any TestClientProtocol, _ token: String, id: String, secret: String) async throws
        -> TestResponse
    {
        var (headers, _) = form("")
        headers[.authorization] = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
        return try await client.execute(
            uri: "/introspect", method: .post, headers: headers, body: ByteBuffer(string: "token=\(token)"))
    }

    @Test("a client created with resources introspects a token for them, also after a restart")
    func introspectAcrossRestart() async throws {
        let store = MemoryStateStore()
        let saved = LockedBox<(server: (String, String), access: String)?>(nil)
        try await Harness.run(rules: Self.rules, store: store) { harness, client in
            let (headers, body) = form(
                "name=MCP+server&redirect_uri=\(Self.redirect)&resources=\(Self.encodedResource)")
            let created = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(created.status == .ok, "\(created.text)")
            #expect(created.json["resources"] as? [String] == [Self.resource])
            let server = (
                try #require(created.json["client_id"] as? String),
                try #require(created.json["client_secret"] as? String)
            )
            let tokens = try await Self.signIn(client, try await harness.client())
            let access = try #require(tokens["access_token"] as? String)
            #expect(access.split(separator: ".").count == 3)
            let answer = try await Self.introspect(client, access, id: server.0, secret: server.1)
            #expect(answer.status == .ok)
            #expect(answer.json["active"] as? Bool == true)
            #expect(answer.json["aud"] as? String == Self.resource)
            #expect(!harness.capture.text.contains(access))
            saved.set((server, access))
        }
        let (server, access) = try #require(saved.get())
        try await Harness.run(rules: Self.rules, store: store) { harness, client in
            try await harness.provider.restoreGrants()
            #expect(await harness.provider.clients.client(server.0)?.resources == [Self.resource])
            let answer = try await Self.introspect(client, access, id: server.0, secret: server.1)
            #expect(answer.json["active"] as? Bool == true)
            // Clearing the resources ends the right to introspect.
            let (headers, body) = form("name=MCP+server&redirect_uri=\(Self.redirect)&resources=")
            let cleared = try await client.execute(
                uri: "/clients/\(server.0)", method: .put, headers: headers, body: body)
            #expect(cleared.status == .ok, "\(cleared.text)")
            #expect(cleared.json["resources"] == nil)
            let after = try await Self.introspect(client, access, id: server.0, secret: server.1)
            #expect(after.json["active"] as? Bool == false)
        }
    }

    @Test("dynamic registration accepts resources and echoes them")
    func dynamicRegistration() async throws {
        try await Harness.run(rules: Self.rules) { _, client in
            let response = try await client.execute(
                uri: "/register", method: .post, headers: ClientConfigurationHTTPTests.json(),
                body: ByteBuffer(
                    string: #"{"redirect_uris":["https://app.example.com/cb"],"resources":["\#(Self.resource)"]}"#))
            #expect(response.status == .created, "\(response.text)")
            #expect(response.json["resources"] as? [String] == [Self.resource])
        }
    }

    @Test(
        "a bad resource URI is invalid_client_metadata on all four registration paths",
        arguments: ["http://mcp.example.com/mcp", "https://mcp.example.com/mcp#x", "mcp", "ftp://mcp.example.com/"])
    func refusedEverywhere(uri: String) async throws {
        try await Harness.run { harness, client in
            let quoted = String(decoding: try JSONSerialization.data(withJSONObject: [uri]), as: UTF8.self)
            var results: [String: TestResponse] = [:]
            results["/register"] = try await client.execute(
                uri: "/register", method: .post, headers: ClientConfigurationHTTPTests.json(),
                body: ByteBuffer(string: #"{"redirect_uris":["https://app.example.com/cb"],"resources":\#(quoted)}"#))
            let dynamic = try await ClientConfigurationHTTPTests.register(client)
            results["PUT /register/<id>"] = try await client.execute(
                uri: "/register/\(dynamic.id)", method: .put,
                headers: ClientConfigurationHTTPTests.json(token: dynamic.token),
                body: ByteBuffer(
                    string:
                        #"{"client_id":"\#(dynamic.id)","redirect_uris":["https://app.example.com/cb"],"resources":\#(quoted)}"#
                ))
            let encoded = uri.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let (headers, body) = form("name=App&redirect_uri=\(Self.redirect)&resources=\(encoded)")
            results["/clients/new"] = try await client.execute(
                uri: "/clients/new", method: .post, headers: headers, body: body)
            let vetted = try await harness.client()
            let (putHeaders, putBody) = form("name=App&redirect_uri=\(Self.redirect)&resources=\(encoded)")
            results["PUT /clients/<id>"] = try await client.execute(
                uri: "/clients/\(vetted.id)", method: .put, headers: putHeaders, body: putBody)
            #expect(results.count == 4)
            for (path, response) in results {
                #expect(response.status == .badRequest, "\(path) \(uri)")
                #expect(response.json["error"] as? String == "invalid_client_metadata", "\(path) \(uri)")
                #expect((response.json["error_description"] as? String)?.contains("resource") == true, "\(path)")
            }
            #expect(await harness.provider.clients.client(vetted.id)?.resources == [])
        }
    }
}

/// A resource server on the tailnet may be allowed to introspect by its grant (`introspect`)
/// instead of a registered client.
@Suite("HTTP: introspection by grant")
struct IntrospectionGrantHTTPTests {
    static let other = "https://wiki.example-tailnet.ts.net/api"
    static let encodedOther = "https%3A%2F%2Fwiki.example-tailnet.ts.net%2Fapi"

    static func rules(introspect: [String]?) -> [JSONValue] {
        var rules: [JSONValue] = [
            Harness.adminRule,
            .object([
                "users": .array([.string("alice@example.com")]),
                "resources": .array([.string(ResourceServerHTTPTests.resource), .string(other)]),
            ]),
        ]
        if let introspect { rules.append(.object(["introspect": .array(introspect.map(JSONValue.string))])) }
        return rules
    }

    static func anonymousIntrospect(_ client: any TestClientProtocol, _ token: String) async throws -> TestResponse {
        let (headers, _) = form("")
        return try await client.execute(
            uri: "/introspect", method: .post, headers: headers, body: ByteBuffer(string: "token=\(token)"))
    }

    @Test("a device granted introspect for a resource learns about tokens for it, and nothing else")
    func grantedResource() async throws {
        try await Harness.run(rules: Self.rules(introspect: [ResourceServerHTTPTests.resource])) { harness, client in
            let registered = try await harness.client()
            let tokens = try await ResourceServerHTTPTests.signIn(client, registered)
            let access = try #require(tokens["access_token"] as? String)
            let refresh = try #require(tokens["refresh_token"] as? String)
            let answer = try await Self.anonymousIntrospect(client, access)
            #expect(answer.status == .ok, "\(answer.text)")
            #expect(answer.json["active"] as? Bool == true)
            #expect(answer.json["aud"] as? String == ResourceServerHTTPTests.resource)
            #expect(answer.json["username"] as? String == "alice@example.com")
            // Refresh tokens are never introspectable this way.
            #expect(try await Self.anonymousIntrospect(client, refresh).json["active"] as? Bool == false)
            // A token for another resource (the other one alice may ask for) is not this server's.
            let query =
                "client_id=\(registered.id)&redirect_uri=\(ResourceServerHTTPTests.redirect)&response_type=code&scope=openid&resource=\(Self.encodedOther)"
            let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
            let location = try #require(authorize.headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            let (headers, body) = form(
                "grant_type=authorization_code&code=\(code)&redirect_uri=\(ResourceServerHTTPTests.redirect)"
                    + "&client_id=\(registered.id)&client_secret=\(registered.secret)")
            let other = try await client.execute(uri: "/token", method: .post, headers: headers, body: body)
            let otherAccess = try #require(other.json["access_token"] as? String)
            #expect(try await Self.anonymousIntrospect(client, otherAccess).json["active"] as? Bool == false)
            #expect(try await Self.anonymousIntrospect(client, "made-up").json["active"] as? Bool == false)
        }
    }

    @Test("without an introspect grant, introspection without credentials is invalid_client")
    func noGrant() async throws {
        try await Harness.run(rules: Self.rules(introspect: nil)) { harness, client in
            let tokens = try await ResourceServerHTTPTests.signIn(client, try await harness.client())
            let access = try #require(tokens["access_token"] as? String)
            let answer = try await Self.anonymousIntrospect(client, access)
            #expect(answer.status == .unauthorized)
            #expect(answer.json["error"] as? String == "invalid_client")
        }
    }

    @Test("credentials, when sent, decide alone: a wrong secret is refused even with the grant")
    func credentialsDecide() async throws {
        try await Harness.run(rules: Self.rules(introspect: ["*"])) { harness, client in
            let registered = try await harness.client()
            let tokens = try await ResourceServerHTTPTests.signIn(client, registered)
            let access = try #require(tokens["access_token"] as? String)
            let wrong = try await ResourceServerHTTPTests.introspect(client, access, id: registered.id, secret: "nope")
            #expect(wrong.status == .unauthorized)
            // With `*` the device may introspect any live access token.
            #expect(try await Self.anonymousIntrospect(client, access).json["active"] as? Bool == true)
        }
    }

    @Test("a malformed introspect member is a malformed grant")
    func malformed() throws {
        #expect(throws: CapabilityError.self) {
            _ = try CapabilityRule.parse([.object(["introspect": .string(ResourceServerHTTPTests.resource)])])
        }
        let rules = try CapabilityRule.parse([
            .object(["introspect": .array([.string("https://a.example.com")])]),
            .object(["introspect": .array([.string("https://a.example.com"), .string("https://b.example.com")])]),
        ])
        #expect(Grants(rules).introspectableResources == ["https://a.example.com", "https://b.example.com"])
    }
}

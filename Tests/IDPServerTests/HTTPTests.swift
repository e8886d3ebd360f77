import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OIDCProvider
import Tailnet
import Testing

@testable import IDPServer

let funnelHeader = HTTPField.Name("Tailscale-Funnel-Request")!

@Suite("HTTP: discovery and keys")
struct DiscoveryHTTPTests {
    @Test("discovery documents are served with CORS and caching, the registration endpoint hidden over Funnel")
    func discovery() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(response.headers[.accessControlAllowOrigin] == "*")
                #expect(response.json["issuer"] as? String == "http://localhost:8080")
                #expect(response.json["registration_endpoint"] as? String == "http://localhost:8080/register")
                #expect(response.json["code_challenge_methods_supported"] as? [String] == ["S256", "plain"])
                var headers = HTTPFields()
                headers[funnelHeader] = "?1"
                let funnel = try await client.execute(uri: path, method: .get, headers: headers)
                #expect(funnel.json["registration_endpoint"] == nil)
                let options = try await client.execute(uri: path, method: .options)
                #expect(options.status == .noContent)
                #expect(options.headers[.accessControlAllowMethods] == "GET, OPTIONS")
            }
            let jwks = try await client.execute(uri: "/.well-known/jwks.json", method: .get)
            let key = try #require((jwks.json["keys"] as? [[String: Any]])?.first)
            for member in ["kty", "kid", "n", "e", "use", "alg"] { #expect(key[member] != nil) }
        }
    }

    @Test("health endpoints answer")
    func health() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/healthz/live", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/healthz/ready", method: .get).status == .ok)
            let missing = try await client.execute(uri: "/nope", method: .get)
            #expect(missing.status == .notFound)
            #expect(missing.json["error"] as? String == "not_found")
        }
    }
}

@Suite("HTTP: authorization and token")
struct OAuthHTTPTests {
    @Test("GET and POST /authorize redirect with a code; the caller's identity comes from the simulated tailnet")
    func authorize() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let query =
                "client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid%20email&state=abc"
            let get = try await client.execute(uri: "/authorize?\(query)", method: .get)
            #expect(get.status == .found)
            #expect(get.headers[.cacheControl] == "no-store")
            let location = try #require(get.headers[.location])
            #expect(location.hasPrefix("https://app.example.com/cb?code="))
            #expect(location.contains("state=abc"))
            let (headers, body) = form(query)
            let post = try await client.execute(uri: "/authorize", method: .post, headers: headers, body: body)
            #expect(post.status == .found)

            // Redeem over HTTP and check the answer's headers.
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            var tokenHeaders = HTTPFields()
            tokenHeaders[.contentType] = "application/x-www-form-urlencoded"
            tokenHeaders[.authorization] =
                "Basic " + Data("\(registered.id):\(registered.secret)".utf8).base64EncodedString()
            let token = try await client.execute(
                uri: "/token", method: .post, headers: tokenHeaders,
                body: ByteBuffer(
                    string: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                ))
            #expect(token.status == .ok)
            #expect(token.headers[.cacheControl] == "no-store")
            #expect(token.headers[.accessControlAllowOrigin] == "*")
            let access = try #require(token.json["access_token"] as? String)

            var bearer = HTTPFields()
            bearer[.authorization] = "bearer \(access)"
            let info = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
            #expect(info.status == .ok)
            #expect(info.json["email"] as? String == "alice@example.com")
            let (formHeaders, formBody) = form("access_token=\(access)")
            #expect(
                try await client.execute(uri: "/userinfo", method: .post, headers: formHeaders, body: formBody).status
                    == .ok)
        }
    }

    @Test("error pages are HTML, escaped, not framed, and never redirect")
    func errorPage() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            let response = try await client.execute(
                uri:
                    "/authorize?client_id=%3Cscript%3Ealert(1)%3C%2Fscript%3E&redirect_uri=https%3A%2F%2Fevil.example.com&response_type=code",
                method: .get)
            #expect(response.status == .badRequest)
            #expect(response.headers[.location] == nil)
            #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(response.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(response.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
            #expect(!response.text.contains("<script>alert"))
            #expect(response.text.contains("&lt;script&gt;"))
            let malformed = try await client.execute(uri: "/authorize?client_id=%zz", method: .get)
            #expect(malformed.status == .badRequest)
        }
    }

    @Test("a guide's \"Client ID: unused\" ends on a page that says what to do")
    func unusedClient() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            for path in [
                "/authorize?client_id=unused&redirect_uri=https%3A%2F%2Fpve.example.com%3A8006&response_type=code&scope=openid",
                "/authorize/1002?client_id=unused&redirect_uri=https%3A%2F%2Fpve.example.com%3A8006&response_type=code&scope=openid",
            ] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .badRequest)
                #expect(response.headers[.location] == nil)
                #expect(response.text.contains("--allow-insecure-registration"))
                #expect(response.text.contains("/clients/new"))
            }
        }
    }

    @Test("/authorize over Funnel is refused")
    func funnel() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            var headers = HTTPFields()
            headers[funnelHeader] = "?1"
            let response = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code",
                method: .get, headers: headers)
            #expect(response.status == .unauthorized)
            #expect(response.headers[.location] == nil)
        }
    }

    @Test("form_post answers an auto-submitting form under a strict CSP")
    func formPost() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let response = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&response_mode=form_post&state=%22%3E%3Cx",
                method: .get)
            #expect(response.status == .ok)
            #expect(response.text.contains("action=\"https://app.example.com/cb\""))
            #expect(response.text.contains("name=\"state\" value=\"&quot;&gt;&lt;x\""))
            let csp = try #require(response.headers[.contentSecurityPolicy])
            #expect(csp.contains("script-src 'sha256-"))
            #expect(csp.contains("form-action https://app.example.com"))
        }
    }

    @Test(
        "bad token requests get JSON errors with no-store",
        arguments: [
            ("text/plain", "grant_type=authorization_code", 400, "invalid_request"),
            ("application/x-www-form-urlencoded", "grant_type=authorization_code&code=%G0", 400, "invalid_request"),
            ("application/x-www-form-urlencoded", "grant_type=magic", 400, "unsupported_grant_type"),
            ("application/x-www-form-urlencoded", "", 400, "invalid_request"),
            ("application/x-www-form-urlencoded", "grant_type=authorization_code&code=x", 401, "invalid_client"),
        ])
    func badTokenRequests(_ type: String, _ body: String, _ status: Int, _ error: String) async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            var headers = HTTPFields()
            headers[.contentType] = type
            let response = try await client.execute(
                uri: "/token", method: .post, headers: headers, body: ByteBuffer(string: body))
            #expect(response.status.code == status)
            #expect(response.json["error"] as? String == error)
            #expect(response.headers[.cacheControl] == "no-store")
            #expect(response.headers[.contentType] == "application/json")
        }
    }

    @Test("oversized bodies are refused with 413; GET /token is 405; OPTIONS is a CORS preflight")
    func limits() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            let (headers, _) = form("")
            let big = ByteBuffer(string: "grant_type=authorization_code&pad=" + String(repeating: "a", count: 100_000))
            let response = try await client.execute(uri: "/token", method: .post, headers: headers, body: big)
            #expect(response.status == .contentTooLarge)
            #expect(try await client.execute(uri: "/token", method: .get).status == .methodNotAllowed)
            let preflight = try await client.execute(uri: "/token", method: .options)
            #expect(preflight.status == .noContent)
            #expect(preflight.headers[.accessControlAllowMethods] == "POST, OPTIONS")
        }
    }

    @Test("userinfo: missing token 401 with challenge, wrong scheme 400, unknown token 401")
    func userinfoErrors() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            let none = try await client.execute(uri: "/userinfo", method: .get)
            #expect(none.status == .unauthorized)
            #expect(none.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            var scheme = HTTPFields()
            scheme[.authorization] = "Token abc"
            let wrong = try await client.execute(uri: "/userinfo", method: .get, headers: scheme)
            #expect(wrong.status == .badRequest)
            #expect(wrong.json["error"] as? String == "invalid_request")
            var unknown = HTTPFields()
            unknown[.authorization] = "Bearer nope"
            let invalid = try await client.execute(uri: "/userinfo", method: .get, headers: unknown)
            #expect(invalid.status == .unauthorized)
            #expect(invalid.headers[.wwwAuthenticate]?.contains("invalid_token") == true)
        }
    }
}

@Suite("HTTP: clients API and registration")
struct ClientsHTTPTests {
    @Test("a failed store write answers 503 temporarily_unavailable on every endpoint that writes")
    func failedWrites() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let (headers, body) = form("name=Grafana&redirect_uri=https%3A%2F%2Fgrafana.example.com%2Fcb")
            harness.faults.failAllWrites = true
            let created = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(created.status == .serviceUnavailable)
            #expect(created.json["error"] as? String == "temporarily_unavailable")
            var json = HTTPFields()
            json[.contentType] = "application/json"
            let registration = try await client.execute(
                uri: "/register", method: .post, headers: json,
                body: ByteBuffer(string: #"{"redirect_uris":["https://a.example.com/cb"]}"#))
            #expect(registration.status == .serviceUnavailable)
            #expect(registration.json["error"] as? String == "temporarily_unavailable")
            let kid = harness.provider.keys.signingKey.kid
            let rotation = try await client.execute(uri: "/keys/rotate", method: .post)
            #expect(rotation.status == .serviceUnavailable)
            #expect(harness.provider.keys.signingKey.kid == kid)
            #expect(await harness.provider.clients.all().isEmpty)
            harness.faults.failAllWrites = false
            let retried = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(retried.status == .ok)
            let id = try #require(retried.json["client_id"] as? String)
            harness.faults.failAllWrites = true
            let deleted = try await client.execute(uri: "/clients/\(id)", method: .delete)
            #expect(deleted.status == .serviceUnavailable)
            harness.faults.failAllWrites = false
            #expect(try await client.execute(uri: "/clients/\(id)", method: .get).status == .ok)
        }
    }

    @Test("an admin creates, reads, updates, regenerates and deletes a client")
    func lifecycle() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let (headers, body) = form(
                "name=Grafana&redirect_uri=https%3A%2F%2Fgrafana.example.com%2Fa%0Ahttps%3A%2F%2Fgrafana.example.com%2Fb"
            )
            let created = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(created.status == .ok)
            let id = try #require(created.json["client_id"] as? String)
            let secret = try #require(created.json["client_secret"] as? String)
            #expect(
                created.json["redirect_uris"] as? [String] == [
                    "https://grafana.example.com/a", "https://grafana.example.com/b",
                ])
            let list = try await client.execute(uri: "/clients/", method: .get)
            #expect(!list.text.contains(secret))
            #expect(list.text.contains(id))
            let one = try await client.execute(uri: "/clients/\(id)", method: .get)
            #expect(one.json["client_secret"] == nil)
            let (putHeaders, putBody) = form("name=Grafana2&redirect_uri=https%3A%2F%2Fgrafana.example.com%2Fc")
            let updated = try await client.execute(
                uri: "/clients/\(id)", method: .put, headers: putHeaders, body: putBody)
            #expect(updated.json["client_name"] as? String == "Grafana2")
            let regenerated = try await client.execute(uri: "/clients/\(id)/regenerate-secret", method: .post)
            let newSecret = try #require(regenerated.json["client_secret"] as? String)
            #expect(newSecret != secret)
            #expect(await harness.provider.clients.client(id)?.secretMatches(newSecret) == true)
            #expect(try await client.execute(uri: "/clients/\(id)", method: .delete).status == .noContent)
            #expect(try await client.execute(uri: "/clients/\(id)", method: .get).status == .notFound)
            #expect(!harness.capture.text.contains(secret))
            #expect(!harness.capture.text.contains(newSecret))
        }
    }

    @Test(
        "bad client input is refused",
        arguments: [
            "name=&redirect_uri=https%3A%2F%2Fa.example.com",
            "name=x",
            "name=x&redirect_uri=javascript%3Aalert(1)",
            "name=x&redirect_uri=https%3A%2F%2Fa.example.com%23frag",
        ])
    func badInput(_ text: String) async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let (headers, body) = form(text)
            let response = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(response.status == .badRequest)
            #expect(await harness.provider.clients.all().isEmpty)
        }
    }

    @Test("without the allow_admin_ui grant the API is forbidden; the local listener needs no grant")
    func permissions() async throws {
        try await Harness.run(rules: []) { (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/clients/", method: .get).status == .forbidden)
            let (headers, body) = form("name=x&redirect_uri=https%3A%2F%2Fa.example.com")
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body).status
                    == .forbidden)
            var json = HTTPFields()
            json[.contentType] = "application/json"
            let registration = try await client.execute(
                uri: "/register", method: .post, headers: json,
                body: ByteBuffer(string: #"{"redirect_uris":["https://a.example.com"]}"#))
            #expect(registration.status == .forbidden)
        }
        try await Harness.run(rules: [], listener: .local) {
            (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/clients/", method: .get).status == .ok)
        }
        try await Harness.run(rules: [.string("not an object")]) {
            (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/clients/", method: .get).status == .forbidden)
        }
    }

    @Test("cross-site requests to the clients API are refused (CSRF); Funnel gets 401")
    func csrf() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let (base, body) = form("name=x&redirect_uri=https%3A%2F%2Fa.example.com")
            var crossSite = base
            crossSite[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: crossSite, body: body).status
                    == .forbidden)
            var evil = base
            evil[.origin] = "https://evil.example.com"
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: evil, body: body).status
                    == .forbidden)
            var same = base
            same[.origin] = "http://localhost:8080"
            same[HTTPField.Name("Sec-Fetch-Site")!] = "same-origin"
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: same, body: body).status == .ok)
            var funnel = base
            funnel[funnelHeader] = "?1"
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: funnel, body: body).status
                    == .unauthorized)
            #expect(await harness.provider.clients.all().count == 1)
        }
    }

    @Test("DNS rebinding: a foreign Host or Origin cannot reach the admin API")
    func rebinding() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            for (authority, allowed) in [
                ("evil.example:8080", false), ("localhost:8080", true), ("127.0.0.1:9", true), ("[::1]:8080", true),
                ("LOCALHOST", true), ("localhost.evil.example", false),
            ] {
                let request = Request(
                    head: HTTPRequest(method: .get, scheme: "http", authority: authority, path: "/clients/"),
                    body: .init(buffer: ByteBuffer()))
                let passed = (try? IDPServer.checkHost(request, issuer: "http://localhost:8080")) != nil
                #expect(passed == allowed, "\(authority)")
            }
            let (base, body) = form("name=x&redirect_uri=https%3A%2F%2Fa.example.com")
            var sameSiteLie = base
            sameSiteLie[.origin] = "http://evil.example:8080"
            sameSiteLie[HTTPField.Name("Sec-Fetch-Site")!] = "same-origin"
            #expect(
                try await client.execute(uri: "/clients/new", method: .post, headers: sameSiteLie, body: body).status
                    == .forbidden)
            var json = HTTPFields()
            json[.contentType] = "application/json"
            json[.origin] = "https://evil.example"
            let registration = try await client.execute(
                uri: "/register", method: .post, headers: json,
                body: ByteBuffer(string: #"{"redirect_uris":["https://evil.example/cb"]}"#))
            #expect(registration.status == .forbidden)
            #expect(registration.headers[.accessControlAllowOrigin] == nil)
            #expect(await harness.provider.clients.all().isEmpty)
        }
    }

    @Test("dynamic client registration (RFC 7591)")
    func registration() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            var json = HTTPFields()
            json[.contentType] = "application/json"
            let ok = try await client.execute(
                uri: "/register", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"redirect_uris":["https://mcp.example.com/cb"],"client_name":"MCP","token_endpoint_auth_method":"none"}"#
                ))
            #expect(ok.status == .created)
            #expect(ok.headers[.cacheControl] == "no-store")
            #expect(ok.json["client_secret"] == nil)
            #expect(ok.json["token_endpoint_auth_method"] as? String == "none")
            let id = try #require(ok.json["client_id"] as? String)
            #expect(await harness.provider.clients.client(id)?.dynamicallyRegistered == true)

            for (body, error) in [
                ("{not json", "invalid_client_metadata"),
                (#"{"client_name":"x"}"#, "invalid_client_metadata"),
                (#"{"redirect_uris":[]}"#, "invalid_client_metadata"),
                (#"{"redirect_uris":["https://a.example.com/cb#x"]}"#, "invalid_redirect_uri"),
                (
                    #"{"redirect_uris":["https://a.example.com/cb"],"grant_types":["client_credentials"]}"#,
                    "invalid_client_metadata"
                ),
                (
                    #"{"redirect_uris":["https://a.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
                    "invalid_client_metadata"
                ),
                (#"{"redirect_uris":"https://a.example.com/cb"}"#, "invalid_client_metadata"),
            ] {
                let response = try await client.execute(
                    uri: "/register", method: .post, headers: json, body: ByteBuffer(string: body))
                #expect(response.status == .badRequest, "\(body)")
                #expect(response.json["error"] as? String == error, "\(body)")
            }
            #expect(await harness.provider.clients.all().count == 1)
        }
    }
}

@Suite("HTTP: logs never carry secrets")
struct LoggingHTTPTests {
    @Test("--debug-all-requests never prints bodies it cannot redact")
    func debugDumpOpaqueBodies() async throws {
        try await Harness.run(debugAllRequests: true) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            var headers = HTTPFields()
            headers[.contentType] = "multipart/form-data; boundary=x"
            headers[.referer] = "https://app.example.com/cb?code=refcode123"
            let body =
                "--x\r\nContent-Disposition: form-data; name=\"client_secret\"\r\n\r\nsupersecret123\r\n--x--\r\n"
            _ = try await client.execute(uri: "/token", method: .post, headers: headers, body: ByteBuffer(string: body))
            #expect(!harness.capture.text.contains("supersecret123"))
            #expect(!harness.capture.text.contains("refcode123"))
        }
    }

    @Test("--debug-all-requests dumps requests and responses with every secret redacted")
    func debugDumpRedacts() async throws {
        try await Harness.run(debugAllRequests: true) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let authorize = try await client.execute(
                uri:
                    "/authorize?client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid&state=statevalue123&nonce=noncevalue123",
                method: .get)
            let location = try #require(authorize.headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            var headers = HTTPFields()
            headers[.contentType] = "application/x-www-form-urlencoded"
            let token = try await client.execute(
                uri: "/token", method: .post, headers: headers,
                body: ByteBuffer(
                    string:
                        "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&client_id=\(registered.id)&client_secret=\(registered.secret)"
                ))
            let access = try #require(token.json["access_token"] as? String)
            let refresh = try #require(token.json["refresh_token"] as? String)
            let idToken = try #require(token.json["id_token"] as? String)
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(access)"
            _ = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
            let log = harness.capture.text
            #expect(log.contains("/token"))
            #expect(log.contains("[redacted]"))
            for secret in [code, registered.secret, access, refresh, idToken, "statevalue123", "noncevalue123"] {
                #expect(!log.contains(secret), "a secret reached the log")
            }
        }
    }
}

@Suite("Caller identity")
struct CallerIdentityTests {
    @Test("tsidp's own node and answers without IDs are no identity")
    func excluded() async throws {
        let directory = NSTemporaryDirectory() + "/tsidp-self-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var anonymous = Harness.identity(login: "", rules: [])
        anonymous.node.id = 0
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/s.sock",
            identities: [Harness.identity(login: "alice@example.com", rules: []), anonymous])
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let app = tailnet.application(logger: Logger(label: "sim")) { readyContinuation.yield() }
        func attempt(_ caller: CallerIdentity, _ address: String) async -> String? {
            do {
                return try await caller.identify(address: address).loginName
            } catch {
                return nil
            }
        }
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            for await _ in ready { break }
            let localAPI = LocalAPIClient(socketPath: tailnet.socketPath, timeout: .seconds(5))
            let normal = CallerIdentity(localAPI: localAPI, capabilityName: "tailscale.com/cap/tsidp")
            #expect(await attempt(normal, "127.0.0.1:5000") == "alice@example.com")
            #expect(await attempt(normal, "127.0.0.2:5000") == nil)
            let selfExcluded = CallerIdentity(
                localAPI: localAPI, capabilityName: "tailscale.com/cap/tsidp", excludedNodeStableIDs: ["nA"])
            #expect(await attempt(selfExcluded, "127.0.0.1:5000") == nil)
            group.cancelAll()
        }
    }
}

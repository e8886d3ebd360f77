import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import Tailnet
import Testing

@testable import IDPServer

/// Requests as the admin UI's pages send them, and the steps of a relying party's login.
enum UIRequests {
    static let issuerOrigin = "http://localhost:8080"
    static let redirect = "https://app.example.com/cb"

    /// Headers of a form the browser sends from tsidp's own page.
    static func formHeaders(origin: String? = issuerOrigin, fetchSite: String? = nil) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        if let origin { headers[.origin] = origin }
        if let fetchSite { headers[HTTPField.Name("Sec-Fetch-Site")!] = fetchSite }
        return headers
    }

    static func encode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    static func body(_ fields: [(String, String)]) -> ByteBuffer {
        ByteBuffer(string: fields.map { "\($0.0)=\(encode($0.1))" }.joined(separator: "&"))
    }

    static func post(
        _ client: any TestClientProtocol, _ path: String, _ fields: [(String, String)],
        headers: HTTPFields = formHeaders()
    ) async throws -> TestResponse {
        try await client.execute(uri: path, method: .post, headers: headers, body: body(fields))
    }

    /// The value of an element `<code id="…">` in `html`.
    static func code(_ id: String, in html: String) -> String? {
        guard let start = html.range(of: "<code id=\"\(id)\">") else { return nil }
        guard let end = html[start.upperBound...].range(of: "</code>") else { return nil }
        return String(html[start.upperBound..<end.lowerBound])
    }

    /// The hidden fields of the form posting to `action` (the first one).
    static func fields(ofFormPostingTo action: String, in html: String) -> [String: String] {
        guard let start = html.range(of: "action=\"\(action)\"") else { return [:] }
        let rest = html[start.upperBound...]
        let form = rest[..<(rest.range(of: "</form>")?.lowerBound ?? rest.endIndex)]
        var fields: [String: String] = [:]
        for name in ["csrf_token", "login", "client_id"] {
            if let value = ConsentHTTPTests.field(name, in: String(form)) { fields[name] = value }
        }
        return fields
    }

    /// Signs alice in to the client and returns its refresh token.
    static func login(_ client: any TestClientProtocol, id: String, secret: String) async throws -> String {
        let query =
            "client_id=\(id)&redirect_uri=\(encode(redirect))&response_type=code&scope=openid%20email&state=s"
        let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
        let location = try #require(authorize.headers[.location])
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        let token = try await tokenRequest(
            client, id: id, secret: secret,
            [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect)])
        #expect(token.status == .ok)
        return try #require(token.json["refresh_token"] as? String)
    }

    static func tokenRequest(
        _ client: any TestClientProtocol, id: String, secret: String, _ fields: [(String, String)]
    ) async throws -> TestResponse {
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        headers[.authorization] = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
        return try await client.execute(uri: "/token", method: .post, headers: headers, body: body(fields))
    }

    static func refresh(
        _ client: any TestClientProtocol, id: String, secret: String, token: String
    ) async throws -> TestResponse {
        try await tokenRequest(
            client, id: id, secret: secret, [("grant_type", "refresh_token"), ("refresh_token", token)])
    }

    static func bob() -> WhoIsResponse {
        WhoIsResponse(
            node: Node(
                id: 1002, stableID: "nB", name: "bob-desktop.example-tailnet.ts.net.", user: 2002, key: "nodekey:bb",
                addresses: ["100.64.0.2/32"]),
            userProfile: UserProfile(id: 2002, loginName: "bob@example.com", displayName: "Bob Example"),
            capMap: [:])
    }
}

@Suite("HTTP: admin UI")
struct AdminUIHTTPTests {
    @Test("the client list shows every client escaped, the endpoint URLs and the version; CSP allows no inline code")
    func list() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let hostile = try await harness.provider.clients.register(
                .init(name: "<script>alert(1)</script>", redirectURIs: ["https://evil.example.com/cb?a=\"x\""]))
            let page = try await client.execute(uri: "/", method: .get)
            #expect(page.status == .ok)
            #expect(!page.text.contains("<script>alert(1)"))
            #expect(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(page.text.contains("https://evil.example.com/cb?a=&quot;x&quot;"))
            #expect(page.text.contains(hostile.client.clientID))
            #expect(page.text.contains("/edit/\(hostile.client.clientID)"))
            #expect(page.text.contains("Active"))
            for url in [
                "http://localhost:8080/.well-known/openid-configuration", "http://localhost:8080/authorize",
                "http://localhost:8080/token", "http://localhost:8080/userinfo",
                "http://localhost:8080/.well-known/jwks.json",
            ] {
                #expect(page.text.contains("<code id=\"endpoint-") && page.text.contains(url), "\(url)")
            }
            #expect(page.text.contains("tsidp \(TsidpVersion.current)"))
            let csp = try #require(page.headers[.contentSecurityPolicy])
            #expect(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"))
            #expect(csp.contains("frame-ancestors 'none'"))
            #expect(page.headers[.cacheControl] == "no-store")
            #expect(page.headers[HTTPField.Name("Referrer-Policy")!] == "same-origin")
            let style = try await client.execute(uri: "/style.css", method: .get)
            #expect(style.status == .ok && style.headers[.contentType]?.hasPrefix("text/css") == true)
            let script = try await client.execute(uri: "/ui.js", method: .get)
            #expect(script.status == .ok && script.text.contains("clipboard"))
        }
    }

    @Test("creating a client shows its secret once; bad input shows the form again with a message and a 400")
    func create() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let form = try await client.execute(uri: "/new", method: .get)
            #expect(form.status == .ok)
            let token = try #require(UIRequests.fields(ofFormPostingTo: "/new", in: form.text)["csrf_token"])

            for (fields, message) in [
                ([("name", "Grafana"), ("redirect_uri", "")], "Enter at least one redirect URI."),
                ([("name", "Grafana"), ("redirect_uri", "javascript:alert(1)")], "javascript"),
                (
                    [
                        ("name", "Grafana"), ("redirect_uri", UIRequests.redirect),
                        ("logo_uri", "http://x.example/a.png"),
                    ],
                    "The logo URI must be an https URL."
                ),
                (
                    [
                        ("name", "Grafana"), ("redirect_uri", UIRequests.redirect),
                        ("id_token_signed_response_alg", "HS256"),
                    ], "id_token_signed_response_alg"
                ),
            ] {
                let refused = try await UIRequests.post(client, "/new", fields + [("csrf_token", token)])
                #expect(refused.status == .badRequest, "\(fields)")
                #expect(refused.text.contains("id=\"form-error\""), "\(fields)")
                #expect(refused.text.contains(message), "\(fields): \(refused.text)")
                #expect(refused.text.contains("action=\"/new\""))
                #expect(refused.text.contains("value=\"Grafana\""), "the form keeps what was typed")
            }
            #expect(await harness.provider.clients.all().isEmpty)

            let created = try await UIRequests.post(
                client, "/new",
                [
                    ("name", "Grafana"),
                    ("redirect_uri", "https://grafana.example.com/a\r\nhttps://grafana.example.com/b"),
                    ("logo_uri", "https://grafana.example.com/logo.png"), ("scope", "grafana:read"),
                    ("token_endpoint_auth_method", "client_secret_post"), ("id_token_signed_response_alg", "ES256"),
                    ("access_token_format", "jwt"), ("consent_required", "true"),
                    ("resources", "https://grafana.example.com/api\r\nhttp://127.0.0.1:3000/api"),
                    ("csrf_token", token),
                ])
            #expect(created.status == .ok)
            #expect(created.headers[.cacheControl] == "no-store")
            let id = try #require(UIRequests.code("client-id", in: created.text))
            let secret = try #require(UIRequests.code("client-secret", in: created.text))
            let stored = try #require(await harness.provider.clients.client(id))
            #expect(stored.secretMatches(secret))
            #expect(stored.redirectURIs == ["https://grafana.example.com/a", "https://grafana.example.com/b"])
            #expect(stored.logoURI == "https://grafana.example.com/logo.png")
            #expect(stored.scope == "grafana:read" && stored.tokenEndpointAuthMethod == "client_secret_post")
            #expect(stored.idTokenSignedResponseAlg == .es256 && stored.accessTokenFormat == "jwt")
            #expect(stored.consentRequired)
            #expect(stored.resources == ["https://grafana.example.com/api", "http://127.0.0.1:3000/api"])
            let edit = try await client.execute(uri: "/edit/\(id)", method: .get)
            #expect(edit.text.contains("<code>https://grafana.example.com/api</code>"))
            #expect(!harness.capture.text.contains(secret))

            // The secret is not shown again.
            #expect(!(try await client.execute(uri: "/", method: .get)).text.contains(secret))
            #expect(!(try await client.execute(uri: "/edit/\(id)", method: .get)).text.contains(secret))
        }
    }

    @Test("editing changes the name and redirect URIs (post, then redirect); bad URIs change nothing")
    func edit() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let path = "/edit/\(registered.id)"
            let page = try await client.execute(uri: path, method: .get)
            #expect(page.status == .ok)
            let token = try #require(UIRequests.fields(ofFormPostingTo: path, in: page.text)["csrf_token"])

            let refused = try await UIRequests.post(
                client, path, [("name", "Renamed"), ("redirect_uri", "ftp://a.example.com/cb"), ("csrf_token", token)])
            #expect(refused.status == .badRequest)
            #expect(refused.text.contains("id=\"form-error\""))
            #expect(await harness.provider.clients.client(registered.id)?.name == "App")

            let saved = try await UIRequests.post(
                client, path,
                [
                    ("name", "Renamed"), ("redirect_uri", "https://new.example.com/cb\nhttps://new.example.com/cb2"),
                    ("csrf_token", token),
                ])
            #expect(saved.status == .seeOther)
            #expect(saved.headers[.location] == path + "?saved=1")
            let stored = try #require(await harness.provider.clients.client(registered.id))
            #expect(stored.name == "Renamed")
            #expect(stored.redirectURIs == ["https://new.example.com/cb", "https://new.example.com/cb2"])
            let after = try await client.execute(uri: path + "?saved=1", method: .get)
            #expect(after.text.contains("Saved."))

            let missing = try await client.execute(uri: "/edit/0123456789abcdef", method: .get)
            #expect(missing.status == .notFound)
            #expect(missing.headers[.contentType]?.hasPrefix("text/html") == true)
        }
    }

    @Test("regenerating the secret: the old one is refused at /token, the new one accepted")
    func regenerate() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let refreshToken = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let path = "/edit/\(registered.id)"
            let page = try await client.execute(uri: path, method: .get)
            let token = try #require(UIRequests.fields(ofFormPostingTo: path + "/secret", in: page.text)["csrf_token"])
            let answer = try await UIRequests.post(client, path + "/secret", [("csrf_token", token)])
            #expect(answer.status == .ok)
            #expect(answer.headers[.cacheControl] == "no-store")
            let secret = try #require(UIRequests.code("client-secret", in: answer.text))
            #expect(secret != registered.secret)

            let old = try await UIRequests.refresh(
                client, id: registered.id, secret: registered.secret, token: refreshToken)
            #expect(old.status == .unauthorized)
            #expect(old.json["error"] as? String == "invalid_client")
            let new = try await UIRequests.refresh(client, id: registered.id, secret: secret, token: refreshToken)
            #expect(new.status == .ok)
            #expect(!harness.capture.text.contains(secret))
        }
    }

    @Test("deleting asks for confirmation, then removes the client; its refresh token stops working")
    func delete() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let refreshToken = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let path = "/edit/\(registered.id)/delete"
            let confirm = try await client.execute(uri: path, method: .get)
            #expect(confirm.status == .ok)
            #expect(confirm.text.contains("1 live login(s)"))
            let token = try #require(UIRequests.fields(ofFormPostingTo: path, in: confirm.text)["csrf_token"])
            // A token of another form is not this form's token.
            let edit = try await client.execute(uri: "/edit/\(registered.id)", method: .get)
            let editToken = try #require(
                UIRequests.fields(ofFormPostingTo: "/edit/\(registered.id)", in: edit.text)["csrf_token"])
            #expect(try await UIRequests.post(client, path, [("csrf_token", editToken)]).status == .forbidden)
            #expect(await harness.provider.clients.client(registered.id) != nil)

            let deleted = try await UIRequests.post(client, path, [("csrf_token", token)])
            #expect(deleted.status == .seeOther)
            #expect(deleted.headers[.location] == "/?deleted=1")
            #expect(await harness.provider.clients.client(registered.id) == nil)
            #expect(harness.provider.grantCounts.families == 0)
            let refused = try await UIRequests.refresh(
                client, id: registered.id, secret: registered.secret, token: refreshToken)
            #expect(refused.status != .ok)
            #expect(try await client.execute(uri: "/?deleted=1", method: .get).text.contains("The client was deleted."))
            #expect(try await UIRequests.post(client, path, [("csrf_token", token)]).status == .notFound)
        }
    }

    @Test("a user without allow_admin_ui gets a 403 page naming the grant, with a policy snippet")
    func notGranted() async throws {
        try await Harness.run(rules: []) { (harness: Harness, client: any TestClientProtocol) async throws in
            for path in ["/", "/new", "/edit/abc", "/edit/abc/delete"] {
                let page = try await client.execute(uri: path, method: .get)
                #expect(page.status == .forbidden, "\(path)")
                #expect(page.headers[.contentType]?.hasPrefix("text/html") == true)
                #expect(page.text.contains("Admin access not granted"))
                #expect(page.text.contains("&quot;allow_admin_ui&quot;: true"))
                #expect(page.text.contains("&quot;tailscale.com/cap/tsidp&quot;"))
                #expect(page.text.contains("&quot;alice@example.com&quot;"))
                #expect(page.text.contains("&quot;grants&quot;"))
            }
            let refused = try await UIRequests.post(
                client, "/new", [("name", "x"), ("redirect_uri", UIRequests.redirect), ("csrf_token", "x")])
            #expect(refused.status == .forbidden)
            #expect(await harness.provider.clients.all().isEmpty)
            // Their own page needs no grant.
            let me = try await client.execute(uri: "/me", method: .get)
            #expect(me.status == .ok)
            #expect(me.text.contains("Admin UI: <strong>not granted</strong>"))
        }
    }

    @Test("over Funnel the UI and the user page are unreachable")
    func funnelDenied() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            for (path, method) in [
                ("/", HTTPRequest.Method.get), ("/new", .get), ("/new", .post), ("/me", .get),
                ("/me/logins/end", .post),
                ("/style.css", .get),
            ] {
                var headers = UIRequests.formHeaders()
                headers[funnelHeader] = "?1"
                let response = try await client.execute(uri: path, method: method, headers: headers)
                #expect(response.status == .unauthorized, "\(method) \(path)")
            }
        }
    }

    @Test("the operator's local listener needs no grant; the user page is not there")
    func localListener() async throws {
        try await Harness.run(rules: [], listener: .local) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            let page = try await client.execute(uri: "/new", method: .get)
            #expect(page.status == .ok)
            let token = try #require(UIRequests.fields(ofFormPostingTo: "/new", in: page.text)["csrf_token"])
            let port = try #require(client.port)
            let created = try await UIRequests.post(
                client, "/new", [("name", "Local"), ("redirect_uri", UIRequests.redirect), ("csrf_token", token)],
                headers: UIRequests.formHeaders(origin: "http://127.0.0.1:\(port)"))
            #expect(created.status == .ok)
            #expect(await harness.provider.clients.all().count == 1)
            #expect(try await client.execute(uri: "/me", method: .get).status == .forbidden)
        }
    }

    @Test(
        "CSRF: a form post without its token, from another origin, cross-site or without any origin is refused",
        arguments: [
            ("no token", nil, UIRequests.issuerOrigin, nil),
            ("wrong token", "AAAA", UIRequests.issuerOrigin, nil),
            ("other origin", "valid", "http://evil.example.com", nil),
            ("other port", "valid", "http://localhost:9", nil),
            ("null origin", "valid", "null", nil),
            ("cross-site", "valid", UIRequests.issuerOrigin, "cross-site"),
            ("same-site", "valid", nil, "same-site"),
            ("no origin", "valid", nil, nil),
        ] as [(String, String?, String?, String?)])
    func csrf(_ label: String, _ token: String?, _ origin: String?, _ fetchSite: String?) async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let refreshToken = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let edit = try await client.execute(uri: "/edit/\(registered.id)", method: .get)
            let me = try await client.execute(uri: "/me", method: .get)
            let newPage = try await client.execute(uri: "/new", method: .get)
            let headers = UIRequests.formHeaders(origin: origin, fetchSite: fetchSite)
            let posts: [(String, [(String, String)], String)] = [
                ("/new", [("name", "Evil"), ("redirect_uri", "https://evil.example.com/cb")], newPage.text),
                (
                    "/edit/\(registered.id)", [("name", "Evil"), ("redirect_uri", "https://evil.example.com/cb")],
                    edit.text
                ),
                ("/edit/\(registered.id)/secret", [], edit.text),
                ("/edit/\(registered.id)/delete", [], ""),
                ("/me/logins/end", [], me.text),
            ]
            for (path, fields, page) in posts {
                var fields = fields
                var sent = token
                if token == "valid" {
                    var valid = UIRequests.fields(ofFormPostingTo: path, in: page)
                    if path.hasSuffix("/delete") {
                        let confirm = try await client.execute(uri: path, method: .get)
                        valid = UIRequests.fields(ofFormPostingTo: path, in: confirm.text)
                    }
                    sent = valid["csrf_token"]
                    #expect(sent != nil, "no form token on the page of \(path)")
                    if let login = valid["login"] { fields.append(("login", login)) }
                }
                if let sent { fields.append(("csrf_token", sent)) }
                let response = try await UIRequests.post(client, path, fields, headers: headers)
                #expect(response.status == .forbidden, "\(label): \(path)")
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
            }
            // Nothing changed.
            let stored = try #require(await harness.provider.clients.client(registered.id))
            #expect(stored.name == "App" && stored.secretMatches(registered.secret))
            #expect(await harness.provider.clients.all().count == 1)
            #expect(await harness.provider.logins(userID: 2001).count == 1)
            let refreshed = try await UIRequests.refresh(
                client, id: registered.id, secret: registered.secret, token: refreshToken)
            #expect(refreshed.status == .ok)
        }
    }

    @Test("when the store cannot be written, the UI answers 503 and nothing changes")
    func failedWrites() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let refreshToken = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let newPage = try await client.execute(uri: "/new", method: .get)
            let newToken = try #require(UIRequests.fields(ofFormPostingTo: "/new", in: newPage.text)["csrf_token"])
            let edit = try await client.execute(uri: "/edit/\(registered.id)", method: .get)
            let secretToken = try #require(
                UIRequests.fields(ofFormPostingTo: "/edit/\(registered.id)/secret", in: edit.text)["csrf_token"])
            let me = try await client.execute(uri: "/me", method: .get)
            let endForm = UIRequests.fields(ofFormPostingTo: "/me/logins/end", in: me.text)

            harness.faults.failAllWrites = true
            let created = try await UIRequests.post(
                client, "/new", [("name", "New"), ("redirect_uri", UIRequests.redirect), ("csrf_token", newToken)])
            #expect(created.status == .serviceUnavailable)
            #expect(created.text.contains("id=\"form-error\""))
            let regenerated = try await UIRequests.post(
                client, "/edit/\(registered.id)/secret", [("csrf_token", secretToken)])
            #expect(regenerated.status == .serviceUnavailable)
            let ended = try await UIRequests.post(
                client, "/me/logins/end",
                [("login", try #require(endForm["login"])), ("csrf_token", try #require(endForm["csrf_token"]))])
            #expect(ended.status == .serviceUnavailable)
            harness.faults.failAllWrites = false

            #expect(await harness.provider.clients.all().count == 1)
            #expect(await harness.provider.clients.client(registered.id)?.secretMatches(registered.secret) == true)
            let refreshed = try await UIRequests.refresh(
                client, id: registered.id, secret: registered.secret, token: refreshToken)
            #expect(refreshed.status == .ok)
        }
    }

    @Test("without Origin, Sec-Fetch-Site: same-origin and the token are enough")
    func sameOriginWithoutOrigin() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let page = try await client.execute(uri: "/new", method: .get)
            let token = try #require(UIRequests.fields(ofFormPostingTo: "/new", in: page.text)["csrf_token"])
            let created = try await UIRequests.post(
                client, "/new", [("name", "A"), ("redirect_uri", UIRequests.redirect), ("csrf_token", token)],
                headers: UIRequests.formHeaders(origin: nil, fetchSite: "same-origin"))
            #expect(created.status == .ok)
            #expect(await harness.provider.clients.all().count == 1)
        }
    }
}

@Suite("HTTP: the user's own page")
struct UserPageHTTPTests {
    @Test("/me shows the caller's identity and parsed grants, and every live login, escaped")
    func whoami() async throws {
        let rule: JSONValue = .object([
            "allow_admin_ui": .bool(true), "users": .array([.string("*")]),
            "resources": .array([.string("https://mcp.example.com")]),
            "extraClaims": .object(["team": .string("<b>ops</b>")]),
        ])
        try await Harness.run(rules: [rule]) { (harness: Harness, client: any TestClientProtocol) async throws in
            let created = try await harness.provider.clients.register(
                .init(name: "<img src=x>Wiki", redirectURIs: [UIRequests.redirect]))
            _ = try await UIRequests.login(client, id: created.client.clientID, secret: created.secret!)
            let page = try await client.execute(uri: "/me", method: .get)
            #expect(page.status == .ok)
            #expect(page.headers[.cacheControl] == "no-store")
            let text = page.text
            for expected in [
                "alice@example.com", "Alice Example", "alice-laptop.example-tailnet.ts.net.", "100.64.0.1/32",
                "userid:2001", "Admin UI: <strong>allowed</strong>", "https://mcp.example.com",
                "\\u003cb\\u003eops", "&lt;img src=x&gt;Wiki", "tsidp \(TsidpVersion.current)",
            ] {
                #expect(text.contains(expected), "\(expected)")
            }
            #expect(!text.contains("<img src=x>") && !text.contains("<b>ops</b>"))
            let handle = try #require(UIRequests.fields(ofFormPostingTo: "/me/logins/end", in: text)["login"])
            #expect(await harness.provider.logins(userID: 2001).map(\.handle) == [handle])
        }
    }

    @Test("ending a login revokes its refresh token; another user cannot end it, even with its handle")
    func endLogin() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let first = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let second = try await UIRequests.login(client, id: registered.id, secret: registered.secret)
            let alicePage = try await client.execute(uri: "/me", method: .get)
            let aliceForm = UIRequests.fields(ofFormPostingTo: "/me/logins/end", in: alicePage.text)
            let aliceToken = try #require(aliceForm["csrf_token"])
            let logins = await harness.provider.logins(userID: 2001)
            #expect(logins.count == 2)
            #expect(!logins.contains { $0.handle.isEmpty || first.contains($0.handle) || second.contains($0.handle) })

            // Bob, on his own device, with alice's handle and with his own form token.
            harness.tailnet.setIdentities([UIRequests.bob()])
            let bobPage = try await client.execute(uri: "/me", method: .get)
            #expect(bobPage.status == .ok)
            #expect(bobPage.text.contains("bob@example.com") && !bobPage.text.contains("alice@example.com"))
            #expect(bobPage.text.contains("No live logins."))
            // The token bob's page gives its forms (he has no login, so the page shows no form).
            let bobToken = harness.server.pageFormToken(
                "end-login", visitor: .user(harness.server.identity.convert(UIRequests.bob())))
            for login in logins {
                let refused = try await UIRequests.post(
                    client, "/me/logins/end", [("login", login.handle), ("csrf_token", bobToken)])
                #expect(refused.status == .notFound)
                // Alice's form token is not bob's.
                let forged = try await UIRequests.post(
                    client, "/me/logins/end", [("login", login.handle), ("csrf_token", aliceToken)])
                #expect(forged.status == .forbidden)
            }
            #expect(await harness.provider.logins(userID: 2001).count == 2)

            // Alice ends one of her logins: that refresh token stops working, the other does not.
            harness.tailnet.setIdentities([Harness.identity(login: "alice@example.com", rules: [Harness.adminRule])])
            let target = try #require(logins.first)
            let ended = try await UIRequests.post(
                client, "/me/logins/end", [("login", target.handle), ("csrf_token", aliceToken)])
            #expect(ended.status == .seeOther)
            #expect(ended.headers[.location] == "/me?ended=1")
            let remaining = await harness.provider.logins(userID: 2001)
            #expect(remaining.count == 1 && remaining.first?.handle != target.handle)
            let results = [
                try await UIRequests.refresh(client, id: registered.id, secret: registered.secret, token: first).status,
                try await UIRequests.refresh(client, id: registered.id, secret: registered.secret, token: second)
                    .status,
            ]
            #expect(results.filter { $0 == .ok }.count == 1)
            #expect(results.filter { $0 == .badRequest }.count == 1)
            let again = try await UIRequests.post(
                client, "/me/logins/end", [("login", target.handle), ("csrf_token", aliceToken)])
            #expect(again.status == .notFound)
        }
    }

    @Test("consents can be taken back from /me")
    func consents() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            var registration = ClientRegistry.Registration(name: "Notes", redirectURIs: [UIRequests.redirect])
            registration.consentRequired = true
            let created = try await harness.provider.clients.register(registration)
            let id = created.client.clientID
            let consent = try await client.execute(
                uri: "/authorize?client_id=\(id)&redirect_uri=\(UIRequests.encode(UIRequests.redirect))"
                    + "&response_type=code&scope=openid",
                method: .get)
            let request = try #require(ConsentHTTPTests.field("request", in: consent.text))
            let csrf = try #require(ConsentHTTPTests.field("csrf_token", in: consent.text))
            let allowed = try await UIRequests.post(
                client, "/consent", [("request", request), ("csrf_token", csrf), ("decision", "allow")])
            #expect(allowed.status == .seeOther)
            let page = try await client.execute(uri: "/me", method: .get)
            #expect(page.text.contains("Notes"))
            let fields = UIRequests.fields(ofFormPostingTo: "/me/consents/revoke", in: page.text)
            let revoked = try await UIRequests.post(
                client, "/me/consents/revoke",
                [("client_id", try #require(fields["client_id"])), ("csrf_token", try #require(fields["csrf_token"]))])
            #expect(revoked.status == .seeOther)
            #expect(await harness.provider.consents(userID: 2001).isEmpty)
        }
    }
}

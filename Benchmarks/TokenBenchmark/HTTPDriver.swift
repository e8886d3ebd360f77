import AsyncHTTPClient
import Foundation
import NIOCore
import OIDCProvider

/// Speaks to the in-process tsidp over loopback HTTP as a relying party would.
struct HTTPDriver: Sendable {
    let http: HTTPClient
    let base: String
    let server: TestServer
    private let authorizePrefix: String
    private let authorizeSuffix: String
    private let tokenBodyPrefix: String
    private let tokenBodySuffix: String

    /// A client with a connection pool of `connections` to the one host, never following redirects.
    init(server: TestServer, connections: Int) {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(
            idleTimeout: .seconds(120), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        self.http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        self.server = server
        self.base = "http://127.0.0.1:\(server.port)"
        let redirect = OAuthParameters.escape(server.redirectURI)
        self.authorizePrefix = "\(base)/authorize?response_type=code&client_id="
        self.authorizeSuffix = "&redirect_uri=\(redirect)&scope=openid%20profile%20email"
        self.tokenBodyPrefix = "grant_type=authorization_code&code="
        self.tokenBodySuffix = "&redirect_uri=\(redirect)"
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    /// GET /authorize for `client` (state and nonce random); returns the code from the 302
    /// `Location`.
    func authorize(client: ClientCredentials) async -> Result<String, Failure> {
        let state = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let nonce = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        var request = HTTPClientRequest(
            url: authorizePrefix + client.id + authorizeSuffix + "&state=\(state)&nonce=\(nonce)")
        request.method = .GET
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code == 302, let location = response.headers.first(name: "location") else {
                return .failure(Failure("GET /authorize", Int(response.status.code), body))
            }
            guard let code = Self.queryValue("code", in: location) else {
                return .failure(Failure("GET /authorize: no code in Location \(location.prefix(200))"))
            }
            return .success(code)
        } catch {
            return .failure(Failure("GET /authorize: \(error)"))
        }
    }

    /// POST /token (authorization_code, client_secret_basic); returns the access and ID tokens.
    func token(code: String, client: ClientCredentials) async -> Result<(accessToken: String, idToken: String), Failure>
    {
        var request = HTTPClientRequest(url: base + "/token")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Authorization", value: client.basicAuthorization)
        request.body = .bytes(ByteBuffer(string: tokenBodyPrefix + OAuthParameters.escape(code) + tokenBodySuffix))
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code == 200 else {
                return .failure(Failure("POST /token", Int(response.status.code), body))
            }
            let text = String(buffer: body)
            guard let access = Self.jsonString("access_token", in: text), let id = Self.jsonString("id_token", in: text)
            else {
                return .failure(Failure("POST /token: 200 without access_token and id_token: \(text.prefix(200))"))
            }
            return .success((access, id))
        } catch {
            return .failure(Failure("POST /token: \(error)"))
        }
    }

    /// POST /token with `body` (client_secret_basic); returns the refresh token of the answer.
    func refreshToken(body: String, client: ClientCredentials) async -> Result<String, Failure> {
        var request = HTTPClientRequest(url: base + "/token")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Authorization", value: client.basicAuthorization)
        request.body = .bytes(ByteBuffer(string: body))
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let answer = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code == 200 else {
                return .failure(Failure("POST /token", Int(response.status.code), answer))
            }
            let text = String(buffer: answer)
            guard let refresh = Self.jsonString("refresh_token", in: text) else {
                return .failure(Failure("POST /token: 200 without refresh_token: \(text.prefix(200))"))
            }
            return .success(refresh)
        } catch {
            return .failure(Failure("POST /token: \(error)"))
        }
    }

    /// Signs in (GET /authorize, then POST /token) and returns the refresh token.
    func login(client: ClientCredentials) async -> Result<String, Failure> {
        switch await authorize(client: client) {
        case .success(let code):
            return await refreshToken(
                body: tokenBodyPrefix + OAuthParameters.escape(code) + tokenBodySuffix, client: client)
        case .failure(let failure):
            return .failure(failure)
        }
    }

    /// POST /token with grant_type=refresh_token; returns the next refresh token.
    func refresh(_ token: String, client: ClientCredentials) async -> Result<String, Failure> {
        await refreshToken(
            body: "grant_type=refresh_token&refresh_token=" + OAuthParameters.escape(token), client: client)
    }

    /// GET /userinfo with the access token as a bearer token.
    func userInfo(accessToken: String) async -> Failure? {
        var request = HTTPClientRequest(url: base + "/userinfo")
        request.method = .GET
        request.headers.add(name: "Authorization", value: "Bearer " + accessToken)
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code == 200 else { return Failure("GET /userinfo", Int(response.status.code), body) }
            return nil
        } catch {
            return Failure("GET /userinfo: \(error)")
        }
    }

    /// GET `path`; nil when it answered 200.
    func get(_ path: String) async -> Failure? {
        var request = HTTPClientRequest(url: base + path)
        request.method = .GET
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code == 200 else { return Failure("GET \(path)", Int(response.status.code), body) }
            return nil
        } catch {
            return Failure("GET \(path): \(error)")
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
        init(_ what: String, _ status: Int, _ body: ByteBuffer) {
            description = "\(what): HTTP \(status) \(String(buffer: body).prefix(200))"
        }
    }

    /// The (percent-decoded) value of `name` in the query of `url`.
    static func queryValue(_ name: String, in url: String) -> String? {
        guard let question = url.firstIndex(of: "?") else { return nil }
        for pair in url[url.index(after: question)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == name[...] {
                return String(parts[1]).removingPercentEncoding
            }
        }
        return nil
    }

    /// The value of a top-level string member `"name":"…"` of compact JSON whose strings hold no
    /// escapes (token values are base64url), without a full JSON parse on the client's share of
    /// the CPU.
    static func jsonString(_ name: String, in json: String) -> String? {
        guard let key = json.range(of: "\"\(name)\":") else { return nil }
        var index = key.upperBound
        while index < json.endIndex, json[index] == " " { index = json.index(after: index) }
        guard index < json.endIndex, json[index] == "\"" else { return nil }
        let start = json.index(after: index)
        guard let close = json[start...].firstIndex(of: "\"") else { return nil }
        return String(json[start..<close])
    }
}

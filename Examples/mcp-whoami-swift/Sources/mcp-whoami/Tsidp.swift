import Foundation
import JWTKit

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What this server asks tsidp: its metadata, its signing keys (cached), introspection and userinfo.
actor Tsidp {
    struct Metadata: Decodable {
        let issuer: String
        let jwksURI: URL
        let introspectionEndpoint: URL?
        let userinfoEndpoint: URL?

        enum CodingKeys: String, CodingKey {
            case issuer
            case jwksURI = "jwks_uri"
            case introspectionEndpoint = "introspection_endpoint"
            case userinfoEndpoint = "userinfo_endpoint"
        }
    }

    /// RFC 7662 answer; `aud` may be a string or a list.
    struct Introspection: Decodable {
        let active: Bool
        let iss: String?
        let sub: String?
        let aud: AudienceClaim?
        let exp: Double?
        let email: String?
        let username: String?
    }

    private let issuer: String
    private var metadata: Metadata?
    private var keys = JWTKeyCollection()
    private var kids: Set<String> = []
    private var keysFetched: ContinuousClock.Instant?
    private var names: [String: String] = [:]

    init(issuer: String) {
        self.issuer = issuer
    }

    /// The keys, with the key `kid` among them. They are kept for five minutes, then fetched again
    /// so that a key tsidp retired is soon forgotten. tsidp rotates its keys, so an unknown `kid`
    /// also makes this fetch the JWKS again, but at most every 10 seconds: tokens with made-up key
    /// IDs must not turn into a stream of requests to tsidp.
    func keys(containing kid: String) async throws -> JWTKeyCollection {
        let age = keysFetched.map { ContinuousClock.now - $0 }
        if kids.contains(kid), let age, age < .seconds(300) { return keys }
        if !kids.contains(kid), let age, age < .seconds(10) { throw InvalidToken("signed with an unknown key") }
        do {
            let jwks = try await get(JWKS.self, from: try await discover().jwksURI)
            let fresh = JWTKeyCollection()
            try await fresh.add(jwks: jwks)
            keys = fresh
            kids = Set(jwks.keys.compactMap { $0.keyIdentifier?.string })
            keysFetched = .now
        } catch  where kids.contains(kid) {
            return keys  // tsidp is out of reach for now: the keys it published a moment ago still hold
        }
        guard kids.contains(kid) else { throw InvalidToken("signed with an unknown key") }
        return keys
    }

    func introspect(_ token: String, clientID: String, clientSecret: String) async throws -> Introspection {
        guard let endpoint = try await discover().introspectionEndpoint else {
            throw TsidpError("tsidp's metadata names no introspection endpoint")
        }
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        let credentials = "\(formEncoded(clientID)):\(formEncoded(clientSecret))"
        request.setValue("Basic " + Data(credentials.utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
        request.httpBody = Data("token=\(formEncoded(token))".utf8)
        return try await send(request, decoding: Introspection.self)
    }

    /// The email or login name of `subject` from tsidp's /userinfo, asked with the caller's own
    /// token once per user and remembered.
    func userName(subject: String, token: String) async -> String? {
        if let name = names[subject] { return name }
        struct UserInfo: Decodable {
            let sub: String
            let email: String?
            let username: String?
        }
        guard let endpoint = try? await discover().userinfoEndpoint else { return nil }
        var request = URLRequest(url: endpoint)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        guard let info = try? await send(request, decoding: UserInfo.self), info.sub == subject,
            let name = info.email ?? info.username
        else { return nil }
        names[subject] = name
        return name
    }

    /// tsidp's metadata (RFC 8414 / OpenID discovery), fetched once.
    private func discover() async throws -> Metadata {
        if let metadata { return metadata }
        let url = URL(string: issuer + "/.well-known/openid-configuration")!
        let fetched = try await get(Metadata.self, from: url)
        guard fetched.issuer == issuer else { throw TsidpError("tsidp's metadata names another issuer") }
        metadata = fetched
        return fetched
    }

    private func get<T: Decodable>(_ type: T.Type, from url: URL) async throws -> T {
        try await send(URLRequest(url: url), decoding: type)
    }

    private func send<T: Decodable>(_ request: URLRequest, decoding type: T.Type) async throws -> T {
        var request = request
        request.timeoutInterval = 10
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw TsidpError("tsidp answered \(status) at \(request.url?.path ?? "?")")
        }
        return try JSONDecoder().decode(type, from: data)
    }

    /// application/x-www-form-urlencoded, as RFC 6749 2.3.1 asks for client credentials too.
    private func formEncoded(_ value: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._*")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

/// tsidp could not be asked: a configuration or network problem, not a bad token.
struct TsidpError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

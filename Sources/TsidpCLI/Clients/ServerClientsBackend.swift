import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// `tsidp clients --server`: a running tsidp's `--local-port` listener and its `/clients` API,
/// where the server itself ends a deleted client's tokens.
struct ServerClientsBackend: ClientsBackend {
    let base: String
    let http: HTTPClient

    /// Checks `url`: plain `http` to a loopback host with a port, as the local listener serves.
    static func baseURL(_ url: String, source: String) throws -> String {
        var text = url
        while text.hasSuffix("/") { text.removeLast() }
        guard let components = URLComponents(string: text), components.scheme?.lowercased() == "http",
            let host = components.host?.lowercased(), components.port != nil,
            components.path.isEmpty, components.query == nil, components.fragment == nil
        else {
            throw UsageError(
                "\(source) \"\(url)\" is not the local listener's address: use http://127.0.0.1:PORT (tsidp's --local-port)"
            )
        }
        guard ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) || host.hasPrefix("127.") else {
            throw UsageError(
                "\(source) \"\(url)\" is not on this machine: the local listener serves 127.0.0.1 only")
        }
        return text
    }

    init(base: String) {
        self.base = base
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        configuration.redirectConfiguration = .disallow
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func close() async {
        try? await http.shutdown()
    }

    private static func formBody(_ fields: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
    }

    private static func escapedID(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
    }

    /// Sends one request; a non-2xx answer becomes a ``ClientsFailure`` with the server's
    /// `error_description`.
    private func send(_ method: HTTPMethod, _ path: String, form: [(String, String)]? = nil) async throws -> ByteBuffer
    {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: Self.formBody(form)))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(30))
        } catch {
            throw ClientsFailure(
                "cannot reach tsidp at \(base): \(Self.describe(error)) (is it running with --local-port?)")
        }
        let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            let document = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any]
            let reason =
                document?["error_description"] as? String ?? document?["error"] as? String
                ?? "HTTP \(response.status.code)"
            throw ClientsFailure(reason)
        }
        return body
    }

    private static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("connectTimeout") { return "connection timed out" }
        if text.lowercased().contains("connection refused") || text.contains("ECONNREFUSED") {
            return "connection refused"
        }
        return text
    }

    private func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(buffer: body))
        } catch {
            throw ClientsFailure("tsidp at \(base) answered with something other than the clients API's JSON")
        }
    }

    func list() async throws -> [ClientRecord] {
        try decode([ClientRecord].self, try await send(.GET, "/clients"))
    }

    func add(name: String, redirectURIs: [String], resources: [String], isPublic: Bool, pairwise: Bool) async throws
        -> ClientRecord
    {
        var form = [("name", name), ("redirect_uri", redirectURIs.joined(separator: "\n"))]
        if !resources.isEmpty { form.append(("resources", resources.joined(separator: "\n"))) }
        if isPublic { form.append(("token_endpoint_auth_method", "none")) }
        if pairwise { form.append(("subject_type", "pairwise")) }
        return try decode(ClientRecord.self, try await send(.POST, "/clients/new", form: form))
    }

    func show(_ id: String) async throws -> ClientRecord {
        try decode(ClientRecord.self, try await send(.GET, "/clients/\(Self.escapedID(id))"))
    }

    func update(_ id: String, name: String?, redirectURIs: [String]?, resources: [String]?) async throws
        -> ClientRecord
    {
        let current = try await show(id)
        var form = [
            ("name", name ?? current.clientName),
            ("redirect_uri", (redirectURIs ?? current.redirectURIs).joined(separator: "\n")),
        ]
        if let resources { form.append(("resources", resources.joined(separator: "\n"))) }
        return try decode(ClientRecord.self, try await send(.PUT, "/clients/\(Self.escapedID(id))", form: form))
    }

    func regenerateSecret(_ id: String) async throws -> ClientRecord {
        try decode(ClientRecord.self, try await send(.POST, "/clients/\(Self.escapedID(id))/regenerate-secret"))
    }

    func delete(_ id: String) async throws {
        _ = try await send(.DELETE, "/clients/\(Self.escapedID(id))")
    }
}

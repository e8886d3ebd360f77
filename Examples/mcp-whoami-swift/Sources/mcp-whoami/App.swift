// An MCP server with one tool, `whoami`, whose users sign in with tsidp.
//
// Run: TSIDP_ISSUER=... MCP_URL=... [MCP_CLIENT_ID=... MCP_CLIENT_SECRET=...] mcp-whoami

import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP

@main
struct App {
    static func main() async throws {
        let logger = Logger(label: "mcp-whoami")
        let configuration: Configuration
        do {
            configuration = try Configuration.fromEnvironment()
        } catch {
            logger.critical("\(error)")
            exit(2)
        }
        let endpoint = MCPEndpoint(
            configuration: configuration,
            verifier: TokenVerifier(configuration: configuration, tsidp: Tsidp(issuer: configuration.issuer)),
            sessions: Sessions(configuration: configuration),
            logger: logger
        )

        let router = Router()
        router.get(RouterPath(configuration.metadataPath)) { _, _ in
            try endpoint.protectedResourceMetadata()
        }
        // Streamable HTTP: POST for messages, GET for the server's own stream, DELETE to end a session.
        let mcpPath = RouterPath(configuration.mcpPath)
        router.post(mcpPath) { request, _ in try await endpoint.handle(request) }
        router.get(mcpPath) { request, _ in try await endpoint.handle(request) }
        router.delete(mcpPath) { request, _ in try await endpoint.handle(request) }

        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
            logger: logger
        )
        try await app.runService()
    }
}

/// The HTTP side: the protected-resource metadata, the bearer token check, and the hand-over to
/// the MCP sessions.
struct MCPEndpoint: Sendable {
    let configuration: Configuration
    let verifier: TokenVerifier
    let sessions: Sessions
    let logger: Logger

    /// RFC 9728: where MCP clients learn which authorization server to sign in at, for what resource.
    func protectedResourceMetadata() throws -> Response {
        let metadata = OAuthProtectedResourceServerMetadata(
            resource: configuration.mcpURL,
            authorizationServers: [URL(string: configuration.issuer)!],
            scopesSupported: ["openid", "email"]
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(metadata))))
    }

    /// A request to the MCP endpoint: no valid token, no MCP.
    func handle(_ request: Request) async throws -> Response {
        guard let token = Self.bearerToken(request) else {
            return unauthorized(nil)
        }
        let caller: Caller
        do {
            caller = try await verifier.verify(token)
        } catch let refused as InvalidToken {
            logger.info("refused a token", metadata: ["reason": "\(refused)"])
            return unauthorized(refused)
        } catch {
            logger.error("could not check a token", metadata: ["error": "\(error)"])
            return Response(status: .serviceUnavailable)
        }

        let body = try await request.body.collect(upTo: 4 << 20)
        // The transport checks Host and Origin against this server's address (DNS rebinding);
        // Hummingbird keeps Host apart from the other headers.
        var headers = ["Host": request.head.authority ?? ""]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { "\($0), \(field.value)" } ?? field.value
        }
        let answer = await sessions.handle(
            MCP.HTTPRequest(
                method: request.method.rawValue, headers: headers, body: Data(body.readableBytesView),
                path: request.uri.path),
            from: caller)
        return Self.response(answer)
    }

    /// 401 with the RFC 6750 challenge that sends an MCP client to the protected-resource metadata.
    private func unauthorized(_ refused: InvalidToken?) -> Response {
        var challenge = "Bearer resource_metadata=\"\(configuration.metadataURL)\""
        if let refused {
            challenge += ", error=\"invalid_token\", error_description=\"\(refused.description)\""
        }
        return Response(status: .unauthorized, headers: [.wwwAuthenticate: challenge])
    }

    /// The token of an `Authorization: Bearer …` header.
    private static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// The transport's answer as a Hummingbird response; an SSE stream is passed on as it comes.
    private static func response(_ answer: MCP.HTTPResponse) -> Response {
        var headers = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { headers[name] = value }
        }
        guard case .stream(let events, _) = answer else {
            let body = ByteBuffer(bytes: answer.bodyData ?? Data())
            return Response(status: .init(code: answer.statusCode), headers: headers, body: .init(byteBuffer: body))
        }
        return Response(
            status: .init(code: answer.statusCode), headers: headers,
            body: ResponseBody { writer in
                for try await event in events {
                    try await writer.write(ByteBuffer(bytes: event))
                }
                try await writer.finish(nil)
            })
    }
}

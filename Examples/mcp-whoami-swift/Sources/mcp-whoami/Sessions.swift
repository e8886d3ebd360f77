import Foundation
import MCP

/// The MCP sessions: each has its own MCP `Server` and Streamable HTTP transport, and belongs to
/// the person who opened it.
actor Sessions {
    private struct Session {
        let owner: String
        let server: Server
        let transport: StatefulHTTPServerTransport
        var lastUsed: ContinuousClock.Instant
    }

    /// Each new session gets the ID that its transport hands out.
    private struct FixedSessionID: SessionIDGenerator {
        let id: String
        func generateSessionID() -> String { id }
    }

    private var sessions: [String: Session] = [:]
    private let validation: any HTTPRequestValidationPipeline
    private let idleLimit = Duration.seconds(3600)

    init(configuration: Configuration) {
        validation = StandardValidationPipeline(validators: [
            // DNS rebinding protection (Host and Origin), for this server's own address.
            OriginValidator(allowedHosts: [configuration.authority], allowedOrigins: [configuration.origin]),
            AcceptHeaderValidator(mode: .sseRequired),
            ContentTypeValidator(),
            ProtocolVersionValidator(),
            SessionValidator(),
        ])
    }

    /// Handles one request to the MCP endpoint from `caller`, whose token has been checked.
    func handle(_ request: HTTPRequest, from caller: Caller) async -> HTTPResponse {
        if let id = request.header(HTTPHeaderName.sessionID) {
            // Someone else's token does not reach a session, even with its ID.
            guard var session = sessions[id], session.owner == caller.subject else {
                return .error(statusCode: 404, .invalidRequest("Not Found: Session not found or expired"))
            }
            session.lastUsed = .now
            sessions[id] = session
            let response = await session.transport.handleRequest(request)
            if request.method == "DELETE" && response.statusCode == 200 {
                await close(id)
            }
            return response
        }
        guard request.method == "POST", Self.isInitialize(request.body) else {
            return .error(
                statusCode: 400, .invalidRequest("Bad Request: Missing \(HTTPHeaderName.sessionID) header"))
        }
        return await open(request, for: caller)
    }

    private func open(_ request: HTTPRequest, for caller: Caller) async -> HTTPResponse {
        for (id, session) in sessions where ContinuousClock.now - session.lastUsed > idleLimit {
            await close(id)
        }
        let id = UUID().uuidString
        let transport = StatefulHTTPServerTransport(
            sessionIDGenerator: FixedSessionID(id: id), validationPipeline: validation)
        let server = await Self.whoamiServer(for: caller)
        do {
            try await server.start(transport: transport)
        } catch {
            return .error(statusCode: 500, .internalError("Could not start the session"))
        }
        let response = await transport.handleRequest(request)
        if case .error = response {
            await server.stop()
            return response
        }
        sessions[id] = Session(owner: caller.subject, server: server, transport: transport, lastUsed: .now)
        return response
    }

    private func close(_ id: String) async {
        guard let session = sessions.removeValue(forKey: id) else { return }
        await session.server.stop()
    }

    /// The MCP server of one session: one tool, `whoami`, that answers who opened the session.
    private static func whoamiServer(for caller: Caller) async -> Server {
        let server = Server(name: "whoami", version: "1.0.0", capabilities: .init(tools: .init()))
        await server.withMethodHandler(ListTools.self) { _ in
            let noArguments: Value = ["type": "object", "properties": [:]]
            return .init(tools: [
                Tool(name: "whoami", description: "The tailnet user who called this tool.", inputSchema: noArguments)
            ])
        }
        await server.withMethodHandler(CallTool.self) { call in
            guard call.name == "whoami" else {
                return .init(
                    content: [.text(text: "Unknown tool: \(call.name)", annotations: nil, _meta: nil)], isError: true)
            }
            return .init(content: [.text(text: caller.name, annotations: nil, _meta: nil)])
        }
        return server
    }

    private static func isInitialize(_ body: Data?) -> Bool {
        guard let body, let message = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            return false
        }
        return message["method"] as? String == "initialize"
    }
}

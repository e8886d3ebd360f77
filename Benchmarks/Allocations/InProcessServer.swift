import Foundation
import HTTPTypes
import Hummingbird
import IDPServer
import Logging
import NIOCore
import NIOEmbedded
import OIDCProvider
import StateStore
import Tailnet
import Telemetry

/// tsidp's tailnet listener as `tsidp --dev` wires it (`Runner.runDevelopment()`), answered in
/// this process without sockets: requests go straight to the responder of
/// `IDPServer.router(for: .tailnet)`, so routing, every middleware, the handlers, the provider
/// and the durable writes of the state directory are all on the measured path, and only the
/// HTTP/1 parsing and socket I/O of the listener are not.
///
/// Differences from `tsidp --dev`: the state directory is a fresh temporary one; WhoIs (asked on
/// every refresh) is answered by a closure with the built-in identity instead of the simulated
/// tailnet's LocalAPI socket; logging is off; there is no sweep service.
struct InProcessServer: Sendable {
    static let redirectURI = "http://rp.localhost:9999/oauth/callback"

    let provider: Provider
    let responder: RouterResponder<IDPRequestContext>
    let user: UserIdentity
    let clientID: String
    let basicAuthorization: String
    let stateDirectory: String
    /// The connection every request arrives on: from 127.0.0.1, as from a local relying party.
    let channel: NIOAsyncTestingChannel
    let logger: Logger

    static func start() async throws -> InProcessServer {
        let logger = Logger(label: "tsidp") { _ in SwiftLogNoOpLogHandler() }
        let stateDirectory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("tsidp-alloc-" + UUID().uuidString).path
        try FileManager.default.createDirectory(
            atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let store = try DirectoryStateStore(path: stateDirectory, logger: logger, exclusive: true)
        let metrics = TsidpMetrics(version: TsidpVersion.current)
        let writer = StateWriter(store: store, logger: logger, metrics: metrics)

        // The LocalAPI socket is never dialled: WhoIs is answered by `reidentify` below.
        let caller = CallerIdentity(
            localAPI: LocalAPIClient(socketPath: stateDirectory + "/no-tailscaled.sock"),
            capabilityName: DevIdentities.tsidpCapability, metrics: metrics)
        guard let whois = DevIdentities.builtIn.first ?? nil else {
            throw InProcessServerError("tsidp has no built-in development identity")
        }
        let user = caller.convert(whois)

        let clients = try await ClientRegistry.load(from: writer)
        await clients.setPlainHTTPRedirects(.anyHost)
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: "http://localhost:8080", idpHost: "localhost"),
            keys: try await KeyRing.load(from: writer), clients: clients, writer: writer,
            reidentify: { (_: UserIdentity) async throws(IdentityFailure) -> UserIdentity in user },
            logger: logger, metrics: metrics)
        try await provider.restoreGrants()
        let server = IDPServer(provider: provider, identity: caller, logger: logger)

        let (client, secret) = try await provider.clients.register(
            .init(name: "Allocations", redirectURIs: [redirectURI]))
        guard let secret else { throw InProcessServerError("the client was registered without a secret") }

        let channel = NIOAsyncTestingChannel()
        channel.localAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 8080)
        channel.remoteAddress = try SocketAddress(ipAddress: "127.0.0.1", port: 50_000)
        return InProcessServer(
            provider: provider, responder: server.router(for: .tailnet).buildResponder(), user: user,
            clientID: client.clientID,
            basicAuthorization: "Basic " + Data("\(client.clientID):\(secret)".utf8).base64EncodedString(),
            stateDirectory: stateDirectory, channel: channel, logger: logger)
    }

    func stop() {
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    /// An authorization code for the benchmark client, issued by the provider directly (as
    /// `/authorize` would once WhoIs named the user).
    func mintCode() async throws -> String {
        let answer = await provider.authorize(
            OAuthParameters([
                ("response_type", "code"), ("client_id", clientID), ("redirect_uri", Self.redirectURI),
                ("scope", "openid profile email"), ("state", "s1"), ("nonce", "n1"),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in user }
        guard case .redirect(let location) = answer,
            let code = URLComponents(string: location)?.queryItems?.first(where: { $0.name == "code" })?.value
        else {
            throw InProcessServerError("authorize did not redirect with a code: \(answer)")
        }
        return code
    }

    /// One request through the router; the answer's status and body.
    func send(
        _ method: HTTPRequest.Method, _ path: String, form: String? = nil, authorization: String? = nil
    ) async throws -> (status: HTTPResponse.Status, body: ByteBuffer) {
        var headers = HTTPFields()
        if let authorization { headers[.authorization] = authorization }
        var body = ByteBuffer()
        if let form {
            body = ByteBuffer(string: form)
            headers[.contentType] = "application/x-www-form-urlencoded"
            headers[.contentLength] = String(body.readableBytes)
        }
        let request = Request(
            head: HTTPRequest(
                method: method, scheme: "http", authority: "localhost:8080", path: path, headerFields: headers),
            body: RequestBody(buffer: body))
        let context = IDPRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        let response = try await responder.respond(to: request, context: context)
        let collected = CollectedBody()
        try await response.body.write(collected)
        return (response.status, collected.buffer)
    }

    /// `POST /token` with a form, as the benchmark client (`client_secret_basic`).
    func token(_ form: String) async throws -> (status: HTTPResponse.Status, body: ByteBuffer) {
        try await send(.post, "/token", form: form, authorization: basicAuthorization)
    }

    static func formEncoded(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    /// A string member of a JSON object answer.
    static func member(_ name: String, of body: ByteBuffer) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        return object?[name] as? String
    }
}

/// Collects a response body.
final class CollectedBody: ResponseBodyWriter {
    var buffer = ByteBuffer()

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        self.buffer.writeBuffer(&buffer)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

struct InProcessServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import IDPServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OIDCProvider
import StateStore
import StateStoreTesting
import Tailnet
import Telemetry

/// Collects log lines so tests can check what reaches the log.
final class LogCapture: Sendable {
    let lines = NIOLockedValueBox<[String]>([])

    var text: String { lines.withLockedValue { $0.joined(separator: "\n") } }

    /// A logger into this capture; with `escaping`, through ``EscapingLogHandler`` as the
    /// program's own logger is.
    func logger(level: Logger.Level = .debug, escaping: Bool = false) -> Logger {
        var logger = Logger(label: "test") { _ in
            escaping
                ? EscapingLogHandler(wrapping: CapturingHandler(capture: self)) as any LogHandler
                : CapturingHandler(capture: self)
        }
        logger.logLevel = level
        return logger
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        /// As the program installs it: lines logged while a request is answered name it.
        var metadataProvider: Logger.MetadataProvider? = RequestLog.metadataProvider
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var merged = metadata.merging(metadataProvider?.get() ?? [:]) { $1 }
            merged.merge(event.metadata ?? [:]) { $1 }
            capture.lines.withLockedValue { $0.append("\(event.level) \(event.message) \(merged)") }
        }
    }
}

/// A provider, a simulated tailnet on a private socket and the HTTP routes, for one test.
struct Harness {
    static let adminRule: JSONValue = .object(["allow_admin_ui": .bool(true), "allow_dcr": .bool(true)])

    let provider: Provider
    let server: IDPServer
    let store: MemoryStateStore
    /// The store the provider writes through; faults planned here hit the provider's writes.
    let faults: FaultInjectingStateStore
    let capture: LogCapture
    let socketDirectory: String
    /// The simulated tailnet; ``SimulatedTailnet/setIdentities(_:)`` changes who the caller is.
    let tailnet: SimulatedTailnet
    /// The series the provider, the writer and WhoIs report to.
    let metrics: TsidpMetrics

    static func identity(
        login: String, rules: [JSONValue], profilePicURL: String = "", grantedUnder: String = "tailscale.com/cap/tsidp"
    ) -> WhoIsResponse {
        WhoIsResponse(
            node: Node(
                id: 1001, stableID: "nA", name: "alice-laptop.example-tailnet.ts.net.", user: 2001, key: "nodekey:aa",
                addresses: ["100.64.0.1/32"]),
            userProfile: UserProfile(
                id: 2001, loginName: login, displayName: "Alice Example", profilePicURL: profilePicURL),
            capMap: [grantedUnder: rules])
    }

    /// Runs `body` against the live HTTP server; the caller (127.0.0.1) is identity 1, whose
    /// `rules` are granted under `grantedUnder`; the server reads grants under `capabilityName`.
    static func run(
        rules: [JSONValue] = [adminRule], listener: Listener = .tailnet, debugAllRequests: Bool = false,
        escapeLogs: Bool = false, profilePicURL: String = "", forwardedTrust: ForwardedTrust = .nobody,
        capabilityName: String = "tailscale.com/cap/tsidp", grantedUnder: String = "tailscale.com/cap/tsidp",
        store reused: MemoryStateStore? = nil,
        _ body: @Sendable (Harness, any TestClientProtocol) async throws -> Void
    ) async throws {
        let directory = NSTemporaryDirectory() + "/tsidp-srv-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/s.sock",
            identities: [
                identity(
                    login: "alice@example.com", rules: rules, profilePicURL: profilePicURL, grantedUnder: grantedUnder)
            ])
        let capture = LogCapture()
        // A store handed in from an earlier run is a restart: everything is loaded from it.
        let store = reused ?? MemoryStateStore()
        let faults = FaultInjectingStateStore(wrapping: store)
        let metrics = TsidpMetrics(version: "test")
        let writer = StateWriter(store: faults, metrics: metrics)
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: "http://localhost:8080", idpHost: "localhost"),
            keys: try await KeyRing.load(from: writer), clients: try await ClientRegistry.load(from: writer),
            writer: writer, logger: capture.logger(escaping: escapeLogs), metrics: metrics)
        var options = IDPServer.Options()
        options.debugAllRequests = debugAllRequests
        let server = IDPServer(
            provider: provider,
            identity: CallerIdentity(
                localAPI: LocalAPIClient(socketPath: tailnet.socketPath, timeout: .seconds(5)),
                capabilityName: capabilityName, metrics: metrics),
            options: options, logger: capture.logger(escaping: escapeLogs))
        let harness = Harness(
            provider: provider, server: server, store: store, faults: faults, capture: capture,
            socketDirectory: directory, tailnet: tailnet, metrics: metrics)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: Logger(label: "sim")) { readyContinuation.yield() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await simulated.run() }
            for await _ in ready { break }
            let app = Application(
                router: server.router(for: listener, forwardedTrust: forwardedTrust),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                logger: Logger(label: "app"))
            try await app.test(.live) { client in
                try await body(harness, client)
            }
            group.cancelAll()
        }
    }

    /// Registers a client directly and returns its ID and secret.
    func client(redirect: String = "https://app.example.com/cb") async throws -> (id: String, secret: String) {
        let created = try await provider.clients.register(.init(name: "App", redirectURIs: [redirect]))
        return (created.client.clientID, created.secret!)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:] }
}

func form(_ text: String) -> (HTTPFields, ByteBuffer) {
    var headers = HTTPFields()
    headers[.contentType] = "application/x-www-form-urlencoded"
    return (headers, ByteBuffer(string: text))
}

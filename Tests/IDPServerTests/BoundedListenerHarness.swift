import Hummingbird
import IDPServer
import Logging
import OIDCProvider
import ServiceLifecycle
import StateStore
import Tailnet

/// A live tsidp listener on 127.0.0.1 (ephemeral port) built the way the program builds every
/// listener (``HTTPServerBuilder/bounded(_:counter:logger:transportSecurity:)``), with limits a
/// test chooses. No tailnet answers: the tests here need only `/healthz/live` and `/token`.
struct BoundedListenerHarness {
    let port: Int
    let counter: ConnectionCounter
    let capture: LogCapture

    struct NoPort: Error {}

    /// One provider for every run: these tests are about connections, and generating signing
    /// keys for each would only slow the suite down.
    static let sharedProvider = Task {
        let store = MemoryStateStore()
        return Provider(
            configuration: ProviderConfiguration(issuer: "http://localhost:8080", idpHost: "localhost"),
            keys: try await KeyRing.load(from: StateWriter(store: store)),
            clients: try await ClientRegistry.load(from: StateWriter(store: store)))
    }

    static func run(
        limits: ListenerLimits, _ body: @Sendable (BoundedListenerHarness) async throws -> Void
    ) async throws {
        let provider = try await sharedProvider.value
        let capture = LogCapture()
        let server = IDPServer(
            provider: provider,
            identity: CallerIdentity(
                localAPI: LocalAPIClient(socketPath: "/nonexistent/tsidp-test.sock", timeout: .seconds(1)),
                capabilityName: "tailscale.com/cap/tsidp"),
            logger: capture.logger())
        let counter = ConnectionCounter(limits: limits)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let app = Application(
            router: server.router(for: .tailnet),
            server: .bounded(limits, counter: counter, logger: capture.logger()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: quiet)
        let services = ServiceGroup(configuration: .init(services: [app], logger: quiet))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            var iterator = ports.makeAsyncIterator()
            defer { group.cancelAll() }
            guard let port = await iterator.next(), port > 0 else { throw NoPort() }
            try await body(BoundedListenerHarness(port: port, counter: counter, capture: capture))
        }
    }

    /// Opens `count` connections from `source`, their events also signalled on `shared`.
    func open(_ count: Int, from source: String = "127.0.0.1", shared: EventSignal? = nil) async throws
        -> [RawConnection]
    {
        var connections: [RawConnection] = []
        for _ in 0..<count {
            connections.append(try await RawConnection.open(port: port, from: source, shared: shared))
        }
        return connections
    }

    /// A complete `GET /healthz/live` from `source` on a new connection; returns its status line.
    func healthCheck(from source: String) async throws -> String? {
        let connection = try await RawConnection.open(port: port, from: source)
        defer { Task { await connection.close() } }
        try await connection.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return await connection.statusLine()
    }
}

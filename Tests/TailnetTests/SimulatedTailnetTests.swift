import AnyJSON
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Tailnet
import Testing

/// Runs `body` with a simulated tailnet serving on a fresh socket.
func withSimulatedTailnet<T: Sendable>(
    identities: [WhoIsResponse], _ body: @Sendable (SimulatedTailnet, LocalAPIClient) async throws -> T
) async throws -> T {
    let directory = NSTemporaryDirectory() + "/tsidp-sim-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let tailnet = SimulatedTailnet(socketPath: directory + "/s.sock", identities: identities)
    return try await withUnixServer({ tailnet.application(logger: Logger(label: "test"), onRunning: $0) }) {
        try await body(tailnet, LocalAPIClient(socketPath: tailnet.socketPath, timeout: .seconds(5)))
    }
}

/// Runs an application until `body` finishes.
func withUnixServer<T: Sendable, App: ApplicationProtocol>(
    _ makeApp: (@escaping @Sendable () async -> Void) -> App, body: @Sendable () async throws -> T
) async throws -> T {
    let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
    let app = makeApp { readyContinuation.yield() }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await app.run()
            return nil
        }
        for await _ in ready { break }
        let result = try await body()
        group.cancelAll()
        return result
    }
}

func identity(_ n: Int, login: String, tags: [String] = []) -> WhoIsResponse {
    WhoIsResponse(
        node: Node(
            id: Int64(1000 + n), stableID: "n\(n)", name: "node\(n).example-tailnet.ts.net.", user: Int64(2000 + n),
            key: "nodekey:\(n)", addresses: ["100.64.0.\(n)/32"], tags: tags),
        userProfile: UserProfile(id: Int64(2000 + n), loginName: login, displayName: login))
}

@Suite("Simulated tailnet and LocalAPI client")
struct SimulatedTailnetTests {
    @Test("127.0.0.N maps to identity N, other loopback to the first, node addresses to their owner")
    func mapping() async throws {
        let tailnet = SimulatedTailnet(
            socketPath: "/unused",
            identities: [identity(1, login: "alice@example.com"), identity(2, login: "bob@example.com")])
        #expect(tailnet.resolve(address: "127.0.0.1:5000")?.userProfile.loginName == "alice@example.com")
        #expect(tailnet.resolve(address: "127.0.0.2:5000")?.userProfile.loginName == "bob@example.com")
        #expect(tailnet.resolve(address: "127.0.0.9:5000")?.userProfile.loginName == "alice@example.com")
        #expect(tailnet.resolve(address: "127.5.0.2:5000")?.userProfile.loginName == "alice@example.com")
        #expect(tailnet.resolve(address: "[::1]:5000")?.userProfile.loginName == "alice@example.com")
        #expect(tailnet.resolve(address: "::ffff:127.0.0.2")?.userProfile.loginName == "bob@example.com")
        #expect(tailnet.resolve(address: "100.64.0.2:443")?.userProfile.loginName == "bob@example.com")
        #expect(tailnet.resolve(address: "100.64.0.3:443") == nil)
        #expect(tailnet.resolve(address: "192.0.2.1:443") == nil)
        #expect(tailnet.resolve(address: "garbage") == nil)
    }

    @Test("WhoIs over the socket returns the identity; unknown peers are peerNotFound")
    func whoisOverSocket() async throws {
        try await withSimulatedTailnet(identities: [
            identity(1, login: "alice@example.com"), identity(2, login: "bob@example.com"),
        ]) {
            tailnet, client in
            #expect(try await client.whoIs(address: "127.0.0.2:41000").userProfile.loginName == "bob@example.com")
            #expect(try await client.whoIs(address: "[::1]:41000").userProfile.loginName == "alice@example.com")
            await #expect(throws: LocalAPIError.peerNotFound) { try await client.whoIs(address: "198.51.100.7:443") }
            await #expect(throws: LocalAPIError.self) { try await client.whoIs(address: "not-an-address") }
            tailnet.setIdentities([])
            await #expect(throws: LocalAPIError.peerNotFound) { try await client.whoIs(address: "127.0.0.1:1") }
            let status = try await client.status()
            #expect(status.backendState == "Running")
            #expect(status.selfDNSName == "idp.example-tailnet.ts.net")
        }
    }

    @Test("a missing socket is a transport error")
    func missingSocket() async throws {
        let client = LocalAPIClient(socketPath: "/nonexistent/tailscaled.sock", timeout: .seconds(2))
        await #expect(throws: LocalAPIError.self) { try await client.whoIs(address: "127.0.0.1:1") }
        do {
            _ = try await client.status()
        } catch let error as LocalAPIError {
            guard case .transport = error else {
                Issue.record("expected a transport error, got \(error)")
                return
            }
        }
    }
}

@Suite("LocalAPI client against a misbehaving tailscaled")
struct MisbehavingLocalAPITests {
    /// A stand-in that answers every request with the given status and body, and records the
    /// request headers it saw.
    final class Recorder: Sendable {
        let headers = NIOLockedValueBox<[String: String]>([:])
    }

    func withServer(
        status: HTTPResponse.Status, body: String, _ test: @Sendable (LocalAPIClient, Recorder) async throws -> Void
    ) async throws {
        let directory = NSTemporaryDirectory() + "/tsidp-bad-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/s.sock"
        let recorder = Recorder()
        let router = Router()
        router.get("/localapi/v0/{what}") { request, _ -> Response in
            var seen: [String: String] = [:]
            for field in request.headers { seen[field.name.canonicalName] = field.value }
            seen[":authority"] = request.head.authority ?? ""
            recorder.headers.withLockedValue { $0 = seen }
            return Response(status: status, body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        try await withUnixServer({ ready in
            Application(
                router: router, configuration: .init(address: .unixDomainSocket(path: socket)),
                onServerRunning: { _ in await ready() }, logger: Logger(label: "bad"))
        }) {
            try await test(LocalAPIClient(socketPath: socket, timeout: .seconds(5)), recorder)
        }
    }

    @Test("requests carry Host local-tailscaled.sock and no Origin or Referer")
    func headers() async throws {
        try await withServer(status: .ok, body: WireFormatTests.whoisExample) { client, recorder in
            _ = try await client.whoIs(address: "127.0.0.1:4000")
            let seen = recorder.headers.withLockedValue { $0 }
            #expect(seen[":authority"] == "local-tailscaled.sock")
            #expect(seen["origin"] == nil)
            #expect(seen["referer"] == nil)
        }
    }

    @Test("garbage JSON is malformedResponse, not a crash")
    func garbage() async throws {
        try await withServer(status: .ok, body: "{\"Node\": [") { client, _ in
            await #expect(throws: LocalAPIError.self) { try await client.whoIs(address: "127.0.0.1:4000") }
        }
    }

    @Test("error bodies become readable messages; 403 is accessDenied")
    func errors() async throws {
        try await withServer(status: .internalServerError, body: "{\"error\":\"netMap is nil\"}") { client, _ in
            await #expect(throws: LocalAPIError.http(status: 500, message: "netMap is nil")) {
                try await client.status()
            }
        }
        try await withServer(status: .forbidden, body: "whois access denied\n") { client, _ in
            await #expect(throws: LocalAPIError.accessDenied("whois access denied")) {
                try await client.whoIs(address: "127.0.0.1:4000")
            }
        }
    }
}

@Suite("LocalAPI client logging")
struct LocalAPILoggingTests {
    final class Lines: @unchecked Sendable {
        let lock = NIOLock()
        var lines: [String] = []
    }

    struct Handler: LogHandler {
        let sink: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.lock.withLock { sink.lines.append("\(event.message) \(event.metadata ?? [:])") }
        }
    }

    @Test("with a logger (--debug-tailscaled) every call is reported, without its query")
    func logsCalls() async throws {
        let sink = Lines()
        try await withSimulatedTailnet(identities: [identity(1, login: "alice@example.com")]) { tailnet, _ in
            var logger = Logger(label: "tailnet") { _ in Handler(sink: sink) }
            logger.logLevel = .debug
            let client = LocalAPIClient(socketPath: tailnet.socketPath, timeout: .seconds(5), logger: logger)
            _ = try await client.whoIs(address: "127.0.0.1:4000")
            _ = try? await client.whoIs(address: "198.51.100.7:1")
        }
        let lines = sink.lock.withLock { sink.lines }
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.contains("/localapi/v0/whois") && !$0.contains("addr=") })
        #expect(lines.last?.contains("404") == true)
    }
}

import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Tailnet
import Testing

@testable import TsidpCLI

/// The limits apply to every listener the program opens: the `--use-local-tailscaled` HTTPS
/// listeners and the `--local-port` listener (the `--dev` listener is covered end to end).
@Suite("Every listener is bounded")
struct EveryListenerBoundedTests {
    /// Runs `LocalTailscaledRunner` against a stand-in tailscaled with `flags`, and `body` with
    /// the HTTPS and local ports once both accept connections.
    func withRunner(_ flags: [String], _ body: @Sendable (_ https: Int, _ local: Int) async throws -> Void)
        async throws
    {
        let directory = NSTemporaryDirectory() + "/tsidp-bounded-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard let pair = try LocalTailscaledModeTests.certificatePair(directory: directory) else {
            if ProcessInfo.processInfo.environment["TSIDP_REQUIRE_INTEROP"] == "1" {
                Issue.record("openssl is needed to make a test certificate")
            }
            return
        }
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/tailscaled.sock", identities: DevIdentities.builtIn, certificatePair: pair)
        let https = try LocalTailscaledModeTests.freePort()
        var local = try LocalTailscaledModeTests.freePort()
        while local == https { local = try LocalTailscaledModeTests.freePort() }
        guard
            case .run(let configuration) = TsidpMain.parse(
                arguments: [
                    "--use-local-tailscaled", "--socket", tailnet.socketPath, "--port", "\(https)", "--local-port",
                    "\(local)", "--dir", directory + "/state",
                ] + flags,
                environment: ["TAILSCALE_USE_WIP_CODE": "1"])
        else {
            Issue.record("arguments should parse")
            return
        }
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: logger) { readyContinuation.yield() }
        let failure = NIOLockedValueBox<String?>(nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await simulated.run() }
            for await _ in ready { break }
            group.addTask {
                do {
                    try await LocalTailscaledRunner(configuration: configuration, logger: logger).run()
                } catch {
                    failure.withLockedValue { $0 = "\(error)" }
                    throw error
                }
            }
            defer { group.cancelAll() }
            // Start-up has no ready signal of its own: try to connect until both ports accept
            // (bounded; generating the signing keys takes a while on a busy machine).
            for port in [https, local] {
                var accepting = false
                var attempts = 0
                while !accepting && attempts < 600 {
                    attempts += 1
                    if let failed = failure.withLockedValue({ $0 }) {
                        Issue.record("tsidp stopped: \(failed)")
                        return
                    }
                    if let channel = try? await Self.connect(port: port, from: "127.0.0.9") {
                        accepting = true
                        try? await channel.close()
                    } else {
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                try #require(accepting, "port \(port) never accepted a connection")
            }
            try await body(https, local)
        }
    }

    static func connect(port: Int, from source: String) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Opens `count` connections from `source` and waits (bounded) for the first of them to be
    /// closed by the server; returns whether one was.
    static func oneCloses(of count: Int, port: Int, from source: String) async throws -> (Bool, [any Channel]) {
        let (closes, closed) = AsyncStream.makeStream(of: Void.self)
        var channels: [any Channel] = []
        for _ in 0..<count {
            let channel = try await connect(port: port, from: source)
            channel.closeFuture.whenComplete { _ in closed.yield() }
            channels.append(channel)
        }
        let sawClose = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in closes { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        return (sawClose, channels)
    }

    @Test("the HTTPS and local listeners close connections beyond the per-peer cap")
    func perPeerCap() async throws {
        try await withRunner(["--max-connections-per-peer", "2"]) { https, local in
            for port in [https, local] {
                let (closed, channels) = try await Self.oneCloses(of: 3, port: port, from: "127.0.0.2")
                #expect(closed, "no surplus connection was closed on port \(port)")
                for channel in channels { try? await channel.close() }
            }
        }
    }

    @Test("the HTTPS and local listeners close idle connections")
    func idle() async throws {
        try await withRunner(["--idle-timeout", "300ms"]) { https, local in
            for port in [https, local] {
                let (closed, channels) = try await Self.oneCloses(of: 1, port: port, from: "127.0.0.3")
                #expect(closed, "the idle connection on port \(port) stayed open")
                for channel in channels { try? await channel.close() }
            }
        }
    }
}

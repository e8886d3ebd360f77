import Foundation
import Logging
import NIOCore
import NIOPosix
import Tailnet
import Testing

@testable import TsidpCLI

/// Start-up problems an operator meets on a first try: each is one `UsageError` (one line,
/// exit 2) that names what failed.
@Suite("Start-up failures name what failed", .timeLimit(.minutes(2)))
struct StartupFailureTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// A port on 127.0.0.1 held by a listening socket for the whole of `body`.
    static func withPortInUse(_ body: (Int) async throws -> Void) async throws {
        let holder = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(holder.localAddress?.port)
        do {
            try await body(port)
        } catch {
            try? await holder.close()
            throw error
        }
        try await holder.close()
    }

    static func scratchDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "tsidp-startup-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    static func configuration(_ arguments: [String]) throws -> Configuration {
        switch TsidpMain.parse(arguments: arguments, environment: ["TAILSCALE_USE_WIP_CODE": "1"]) {
        case .run(let configuration): return configuration
        case .exit(let status, let output, _): throw UsageError("exit \(status): \(output)")
        }
    }

    /// The one-line message `body` stops with, or nil if it stopped some other way.
    static func usageMessage(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as UsageError {
            return error.message
        } catch {
            Issue.record("expected a one-line start-up error, got \(type(of: error)): \(error)")
            return nil
        }
    }

    @Test("the --dev listener's port in use: the address, the port and the flag, in one line")
    func devPortInUse() async throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withPortInUse { port in
            let configuration = try Self.configuration(["--dev", "--port", "\(port)", "--dir", directory + "/state"])
            let message = await Self.usageMessage {
                try await Runner(configuration: configuration, logger: Self.quiet).run()
            }
            #expect(
                message
                    == "cannot listen on 127.0.0.1:\(port): the port is already in use (another tsidp, or another server?); stop it or choose another --port"
            )
        }
    }

    @Test("the --local-port listener's port in use names that address and flag")
    func localPortInUse() async throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let devPort = try LocalTailscaledModeTests.freePort()
        try await Self.withPortInUse { port in
            let configuration = try Self.configuration([
                "--dev", "--port", "\(devPort)", "--local-port", "\(port)", "--dir", directory + "/state",
            ])
            let message = await Self.usageMessage {
                try await Runner(configuration: configuration, logger: Self.quiet).run()
            }
            #expect(message?.hasPrefix("cannot listen on 127.0.0.1:\(port): the port is already in use") == true)
            #expect(message?.hasSuffix("choose another --local-port") == true, "\(message ?? "nil")")
        }
    }

    @Test("an HTTPS listener of --use-local-tailscaled whose port is in use names its address")
    func tailnetPortInUse() async throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard let pair = try LocalTailscaledModeTests.certificatePair(directory: directory) else {
            if ProcessInfo.processInfo.environment["TSIDP_REQUIRE_INTEROP"] == "1" {
                Issue.record("openssl is needed to make a test certificate")
            }
            return
        }
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/tailscaled.sock", identities: DevIdentities.builtIn, certificatePair: pair)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: Self.quiet) { readyContinuation.yield() }
        try await Self.withPortInUse { port in
            let configuration = try Self.configuration([
                "--use-local-tailscaled", "--socket", tailnet.socketPath, "--port", "\(port)", "--dir",
                directory + "/state",
            ])
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await simulated.run() }
                for await _ in ready { break }
                let message = await Self.usageMessage {
                    try await LocalTailscaledRunner(configuration: configuration, logger: Self.quiet).run()
                }
                #expect(message?.hasPrefix("cannot listen on 127.0.0.1:\(port): the port is already in use") == true)
                group.cancelAll()
            }
        }
    }

    @Test("a missing tailscaled socket fails at once, in one line naming it")
    func missingSocket() async throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/absent/tailscaled.sock"
        let configuration = try Self.configuration([
            "--use-local-tailscaled", "--socket", socket, "--dir", directory + "/state",
        ])
        let started = ContinuousClock.now
        let message = await Self.usageMessage {
            try await LocalTailscaledRunner(configuration: configuration, logger: Self.quiet).run()
        }
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(
            message
                == "tailscaled's socket \(socket) does not exist: start tailscaled, or pass --socket with the path of its socket"
        )
    }

    @Test("a socket nobody listens on (tailscaled stopped) fails at once, naming it")
    func refusedSocket() async throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // What a stopped tailscaled can leave behind: a file where the socket was.
        let socket = directory + "/tailscaled.sock"
        try Data().write(to: URL(fileURLWithPath: socket))
        let configuration = try Self.configuration([
            "--use-local-tailscaled", "--socket", socket, "--dir", directory + "/state",
        ])
        let started = ContinuousClock.now
        let message = await Self.usageMessage {
            try await LocalTailscaledRunner(configuration: configuration, logger: Self.quiet).run()
        }
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(
            message
                == "nothing accepts connections on tailscaled's socket \(socket): start tailscaled, or pass --socket with the path of its socket"
        )
    }
}

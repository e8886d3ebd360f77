import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Tailnet
import Testing

@testable import TsidpCLI

/// `--use-local-tailscaled` against a stand-in tailscaled (the simulated tailnet with a
/// certificate): status, certificate and WhoIs all go through the LocalAPI socket.
@Suite("Host tailscaled mode")
struct LocalTailscaledModeTests {
    /// A self-signed certificate for the node name, made with the openssl command.
    static func certificatePair(directory: String) throws -> String? {
        let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let openssl else { return nil }
        func run(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: openssl)
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw UsageError("openssl \(arguments.first ?? "") failed") }
        }
        try run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", directory + "/key.pem"])
        try run([
            "req", "-new", "-x509", "-key", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "1",
            "-subj", "/CN=idp.example-tailnet.ts.net",
        ])
        return try String(contentsOfFile: directory + "/key.pem", encoding: .utf8)
            + String(contentsOfFile: directory + "/cert.pem", encoding: .utf8)
    }

    /// A port free on 127.0.0.1 now, for a listener started later. Taken below the kernel's
    /// ephemeral range when possible: a port from that range can be handed to some other test's
    /// outgoing connection before the listener binds it.
    static func freePort() throws -> Int {
        for _ in 0..<50 {
            let candidate = Int.random(in: 20000..<32000)
            if let channel = try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(
                host: "127.0.0.1", port: candidate
            ).wait() {
                try channel.close().wait()
                return candidate
            }
        }
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0)
            .wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    @Test("serves HTTPS with tailscaled's certificate, issuer from the node name, identities from WhoIs")
    func servesHTTPS() async throws {
        let directory = NSTemporaryDirectory() + "/tsidp-local-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard let pair = try Self.certificatePair(directory: directory) else {
            if ProcessInfo.processInfo.environment["TSIDP_REQUIRE_INTEROP"] == "1" {
                Issue.record("openssl is needed to make a test certificate")
            }
            return
        }
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/tailscaled.sock", identities: DevIdentities.builtIn, certificatePair: pair)
        let port = try Self.freePort()
        let configuration = try #require(
            {
                if case .run(let configuration) = TsidpMain.parse(
                    arguments: [
                        "--use-local-tailscaled", "--socket", tailnet.socketPath, "--port", "\(port)", "--dir",
                        directory + "/state",
                    ],
                    environment: ["TAILSCALE_USE_WIP_CODE": "1"])
                {
                    return configuration
                }
                return nil
            }())
        let logger: Logger = {
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            return logger
        }()
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: logger) { readyContinuation.yield() }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let client = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: .init(tlsConfiguration: tls))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await simulated.run() }
            for await _ in ready { break }
            group.addTask { try await LocalTailscaledRunner(configuration: configuration, logger: logger).run() }
            var discovery: [String: Any] = [:]
            // Bounded, and generous: generating the signing keys takes a while on a busy machine.
            for _ in 0..<600 {
                if let response = try? await client.execute(
                    HTTPClientRequest(url: "https://127.0.0.1:\(port)/.well-known/openid-configuration"),
                    timeout: .seconds(2)),
                    response.status == .ok
                {
                    let body = try await response.body.collect(upTo: 1 << 20)
                    discovery =
                        (try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]) ?? [:]
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(discovery["issuer"] as? String == "https://idp.example-tailnet.ts.net:\(port)")
            var request = HTTPClientRequest(url: "https://127.0.0.1:\(port)/clients/")
            request.method = .GET
            let clients = try await client.execute(request, timeout: .seconds(5))
            // 127.0.0.1 is the built-in admin identity on the stand-in tailnet.
            #expect(clients.status == .ok)
            group.cancelAll()
        }
        try await client.shutdown()
    }

    @Test("a tailscaled without HTTPS certificates is refused with a reason")
    func noHTTPS() async throws {
        let directory = NSTemporaryDirectory() + "/tsidp-local-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tailnet = SimulatedTailnet(socketPath: directory + "/tailscaled.sock", identities: DevIdentities.builtIn)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: Logger(label: "test")) { readyContinuation.yield() }
        guard
            case .run(let configuration) = TsidpMain.parse(
                arguments: ["--use-local-tailscaled", "--socket", tailnet.socketPath, "--dir", directory + "/state"],
                environment: ["TAILSCALE_USE_WIP_CODE": "1"])
        else {
            Issue.record("arguments should parse")
            return
        }
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await simulated.run() }
            for await _ in ready { break }
            await #expect(throws: UsageError.self) {
                try await LocalTailscaledRunner(configuration: configuration, logger: Logger(label: "test")).run()
            }
            group.cancelAll()
        }
        let missing = LocalTailscaledRunner(
            configuration: {
                var c = configuration; c.socketPath = directory + "/absent.sock"; return c
            }(), logger: Logger(label: "test"))
        await #expect(throws: UsageError.self) { try await missing.run() }
    }
}

import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Tailnet
import Testing

@testable import TsidpCLI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `--use-local-tailscaled` behind a proxy on the same host: `--server-url`, `--unix-socket` and
/// `--trusted-proxy unix`, against a stand-in tailscaled (the simulated tailnet, whose alice
/// owns 100.64.0.1 and fd7a:115c:a1e0::1).
@Suite("Host tailscaled mode behind a reverse proxy", .timeLimit(.minutes(3)))
struct ReverseProxyModeTests {
    static let issuer = "https://id.example.com"

    /// Sends a request over the unix socket at `path` as a proxy would.
    static func send(
        _ client: HTTPClient, path: String, _ target: String, forwardedFor: String? = nil, form: String? = nil
    ) async throws -> HTTPClientResponse {
        let socket = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
        var request = HTTPClientRequest(url: "http+unix://\(socket)\(target)")
        request.headers.replaceOrAdd(name: "Host", value: "id.example.com")
        if let forwardedFor { request.headers.add(name: "X-Forwarded-For", value: forwardedFor) }
        if let form {
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form))
        }
        return try await client.execute(request, timeout: .seconds(15))
    }

    static func text(_ response: HTTPClientResponse) async throws -> String {
        String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    @Test("the issuer is --server-url, the proxy's X-Forwarded-For names the caller, and the socket goes at the end")
    func unixSocketBehindProxy() async throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard let pair = try LocalTailscaledModeTests.certificatePair(directory: directory) else {
            if ProcessInfo.processInfo.environment["TSIDP_REQUIRE_INTEROP"] == "1" {
                Issue.record("openssl is needed to make a test certificate")
            }
            return
        }
        let tailnet = SimulatedTailnet(
            socketPath: directory + "/tailscaled.sock", identities: DevIdentities.builtIn, certificatePair: pair)
        let socketPath = directory + "/tsidp.sock"
        guard
            case .run(let configuration) = TsidpMain.parse(
                arguments: [
                    "--use-local-tailscaled", "--socket", tailnet.socketPath, "--port",
                    "\(try LocalTailscaledModeTests.freePort())", "--dir", directory + "/state", "--server-url",
                    Self.issuer + "/", "--unix-socket", socketPath, "--trusted-proxy", "unix",
                ],
                environment: ["TAILSCALE_USE_WIP_CODE": "1"])
        else {
            Issue.record("arguments should parse")
            return
        }
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let simulated = tailnet.application(logger: logger) { readyContinuation.yield() }
        let failure = NIOLockedValueBox<String?>(nil)
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        do {
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
                // No ready signal of its own: wait (bounded) until the socket accepts.
                var attempts = 0
                while UnixSocketFile.probe(socketPath) != 0 && attempts < 600 {
                    if let failed = failure.withLockedValue({ $0 }) {
                        Issue.record("tsidp stopped: \(failed)")
                        return
                    }
                    attempts += 1
                    try await Task.sleep(for: .milliseconds(100))
                }
                try #require(UnixSocketFile.probe(socketPath) == 0, "the unix socket never accepted a connection")
                var info = stat()
                #expect(lstat(socketPath, &info) == 0 && info.st_mode & 0o777 == 0o660)

                let discovery = try await Self.send(client, path: socketPath, "/.well-known/openid-configuration")
                let document =
                    try JSONSerialization.jsonObject(with: Data(try await Self.text(discovery).utf8)) as? [String: Any]
                #expect(document?["issuer"] as? String == Self.issuer)
                #expect(document?["token_endpoint"] as? String == Self.issuer + "/token")

                // alice (an admin) registers a client through the proxy.
                let created = try await Self.send(
                    client, path: socketPath, "/clients/new", forwardedFor: "100.64.0.1",
                    form: "name=App&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb")
                let createdText = try await Self.text(created)
                try #require(created.status == .ok, "\(createdText)")
                let registered =
                    try JSONSerialization.jsonObject(with: Data(createdText.utf8)) as? [String: Any]
                let clientID = try #require(registered?["client_id"] as? String)

                func authorize(_ forwardedFor: String?) async throws -> [URLQueryItem] {
                    let answer = try await Self.send(
                        client, path: socketPath,
                        "/authorize?client_id=\(clientID)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
                            + "&response_type=code&scope=openid&state=s",
                        forwardedFor: forwardedFor)
                    #expect(answer.status == .found)
                    let location = answer.headers.first(name: "Location") ?? ""
                    let query = URLComponents(string: location)?.queryItems ?? []
                    #expect(query.first { $0.name == "iss" }?.value == Self.issuer)
                    return query
                }
                #expect(try await authorize("fd7a:115c:a1e0::1").contains { $0.name == "code" })
                #expect(try await authorize("100.64.0.9, 100.64.0.1").contains { $0.name == "code" })
                for unknown in ["100.64.0.9", "100.64.0.1, 100.64.0.9", nil] {
                    let query = try await authorize(unknown)
                    #expect(query.first { $0.name == "error" }?.value == "access_denied", "\(unknown ?? "no header")")
                    #expect(!query.contains { $0.name == "code" })
                }
            }
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
        #expect(!FileManager.default.fileExists(atPath: socketPath), "tsidp left its socket file behind")
    }
}

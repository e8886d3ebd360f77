import AnyJSON
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Testing

/// The stand-in Kubernetes API server (`Tests/StandIns/kube-apiserver`), run as a child process
/// with a folder of its own, and its control endpoints (`/fake/v1/…`).
final class KubeAPIServerStandIn: Sendable {
    /// The folder holding its CA, service-account files, admin token and `url`.
    let directory: String
    /// Its base URL, `https://127.0.0.1:<port>`.
    let url: String
    private let process: Process
    private let adminToken: String
    private let tls: TLSConfiguration

    /// The environment a store needs to reach it (the two override variables), plus `extra`.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        [
            "TSIDP_KUBE_API_URL": url,
            "TSIDP_KUBE_SERVICEACCOUNT_DIR": directory + "/serviceaccount",
        ].merging(extra) { $1 }
    }

    /// The script: `TSIDP_KUBE_APISERVER` when set, else the one beside these tests.
    static var scriptPath: String {
        if let path = ProcessInfo.processInfo.environment["TSIDP_KUBE_APISERVER"], !path.isEmpty { return path }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("StandIns/kube-apiserver").path
    }

    /// Why the stand-in cannot run here, or nil when it can.
    static var unavailableReason: String? {
        guard FileManager.default.isExecutableFile(atPath: scriptPath) else {
            return "the stand-in Kubernetes API server \(scriptPath) is missing"
        }
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for tool in ["python3", "openssl"] {
            let found = searchPath.split(separator: ":").contains {
                FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
            }
            if !found { return "\(tool) is not on PATH; the stand-in Kubernetes API server needs it" }
        }
        return nil
    }

    /// Runs `body` against a fresh stand-in, stopping it afterwards. When the stand-in cannot run
    /// here, `body` is not run: the test records why, as a warning, or as a failure when
    /// `TSIDP_REQUIRE_INTEROP=1`.
    static func with(
        namespace: String = "default", _ body: (KubeAPIServerStandIn) async throws -> Void
    ) async throws {
        if let reason = unavailableReason {
            if ProcessInfo.processInfo.environment["TSIDP_REQUIRE_INTEROP"] == "1" {
                Issue.record("\(reason) (TSIDP_REQUIRE_INTEROP=1)")
            } else {
                Issue.record("skipped: \(reason)", severity: .warning)
            }
            return
        }
        let server = try await start(namespace: namespace)
        do {
            try await body(server)
        } catch {
            server.stop()
            throw error
        }
        server.stop()
    }

    private init(directory: String, url: String, process: Process, adminToken: String, tls: TLSConfiguration) {
        self.directory = directory
        self.url = url
        self.process = process
        self.adminToken = adminToken
        self.tls = tls
    }

    private static func start(namespace: String) async throws -> KubeAPIServerStandIn {
        let directory = NSTemporaryDirectory() + "/tsidp-kube-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: scriptPath)
        process.arguments = ["--dir", directory, "--listen", "127.0.0.1:0", "--namespace", namespace]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = log
        process.standardError = FileHandle(
            forWritingAtPath: { () -> String in
                let path = directory + "/stderr.log"
                _ = FileManager.default.createFile(atPath: path, contents: nil)
                return path
            }())
        try process.run()
        // `url` is written last: it is the readiness signal. Bounded wait, not a timing assertion.
        let urlPath = directory + "/url"
        var url: String?
        for _ in 0..<3000 {
            if let text = try? String(contentsOfFile: urlPath, encoding: .utf8), text.hasSuffix("\n") {
                url = text.trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard let url else {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            let output = (try? String(contentsOfFile: directory + "/stderr.log", encoding: .utf8)) ?? ""
            throw StandInError("the stand-in Kubernetes API server did not start: \(output)")
        }
        let adminToken = try String(contentsOfFile: directory + "/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(directory + "/ca.crt"))
        return KubeAPIServerStandIn(directory: directory, url: url, process: process, adminToken: adminToken, tls: tls)
    }

    /// Kills the stand-in and removes its folder. SIGKILL, because a child of the test process
    /// inherits the signal mask of the thread that spawned it, where SIGTERM may be blocked.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Control endpoints

    /// One fault (`/fake/v1/config`'s `faults`).
    struct Fault: Encodable {
        var method: String
        var path: String
        var times: Int? = 1
        var status: Int?
        var delay_seconds: Double?
        var drop: Bool?
        var message: String?
    }

    private struct Config: Encodable {
        var rbac: [String: Bool]?
        var faults: [Fault]?
    }

    /// Denies or allows verbs (`"secrets/patch": false`) and replaces the planned faults.
    func configure(rbac: [String: Bool]? = nil, faults: [Fault]? = nil) async throws {
        _ = try await control(
            "POST", "/fake/v1/config", body: try JSONEncoder().encode(Config(rbac: rbac, faults: faults)))
    }

    /// One entry of the request log.
    struct LoggedRequest: Decodable, CustomStringConvertible {
        var method: String
        var path: String
        var query: String?
        var content_type: String?
        var status: Int?
        var body: String?

        var description: String { "\(method) \(path) \(status.map(String.init) ?? "-")" }
    }

    /// The API requests received so far (control requests aside); `clear` empties the log.
    func requests(clear: Bool = false) async throws -> [LoggedRequest] {
        try JSONDecoder().decode(
            [LoggedRequest].self, from: try await control("GET", "/fake/v1/requests" + (clear ? "?clear=1" : "")))
    }

    /// Every object the stand-in holds, as JSON.
    func objects() async throws -> [[String: JSONValue]] {
        try JSONDecoder().decode([[String: JSONValue]].self, from: try await control("GET", "/fake/v1/objects"))
    }

    /// The named Secret's data, decoded, or nil when it does not exist.
    func secretData(_ name: String) async throws -> [String: Data]? {
        for object in try await objects() where object["kind"]?.stringValue == "Secret" {
            guard object["metadata"]?.objectValue?["name"]?.stringValue == name else { continue }
            let data = object["data"]?.objectValue ?? [:]
            return data.compactMapValues { $0.stringValue.flatMap { Data(base64Encoded: $0) } }
        }
        return nil
    }

    /// The Events the stand-in holds.
    func events() async throws -> [[String: JSONValue]] {
        try await objects().filter { $0["kind"]?.stringValue == "Event" }
    }

    /// Replaces the service account's token (as the kubelet does: a new file renamed over the old).
    func rotateToken() throws -> String {
        let token = "rotated-" + UUID().uuidString
        let path = directory + "/serviceaccount/token"
        try Data(token.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        return token
    }

    private func control(_ method: String, _ path: String, body: Data? = nil) async throws -> Data {
        var request = HTTPClientRequest(url: url + path)
        request.method = .RAW(value: method)
        request.tlsConfiguration = tls
        request.headers.add(name: "Authorization", value: "Bearer \(adminToken)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        guard response.status.code == 200 else {
            throw StandInError("\(method) \(path): \(response.status.code) \(String(buffer: bytes))")
        }
        return Data(bytes.readableBytesView)
    }
}

struct StandInError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

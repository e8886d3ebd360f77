import Crypto
import CryptoExtras
import Foundation
import OIDCProvider

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `openssl speed` results (signatures per second), or why there are none.
struct OpenSSLBaseline: Codable, Sendable {
    var available: Bool
    var version: String?
    var rsa2048SignPerSecond: Double?
    var ecdsaP256SignPerSecond: Double?
    var rsa2048SignPerSecondMulti: Double?
    var multi: Int
    var commands: [String]
    /// Share of all cores other processes kept busy while each command ran.
    var otherProcessesCPUUtilization: [Double?] = []
    var note: String?
}

/// One Swift signing loop: `tasks` concurrent tasks signing the same input with one shared key.
struct SigningLoop: Codable, Sendable {
    /// `swift-crypto` (the primitive called directly) or `tsidp SigningKey` (`SigningKey.sign`,
    /// exactly as the provider signs an ID token, whatever library that uses).
    var implementation: String
    var algorithm: String
    var tasks: Int
    var seconds: Double
    var signatures: Int
    var signaturesPerSecond: Double
    var signingInputBytes: Int
    /// Share of all cores other processes kept busy during the loop.
    var otherProcessesCPUUtilization: Double?
}

enum Baselines {
    /// Runs `openssl speed` twice: single-process RSA-2048 and P-256, then RSA-2048 with `-multi`.
    static func openSSL(seconds: Int, multi: Int) -> OpenSSLBaseline {
        let single = ["speed", "-seconds", "\(seconds)", "rsa2048", "ecdsap256"]
        let parallel = ["speed", "-multi", "\(multi)", "-seconds", "\(seconds)", "rsa2048"]
        var result = OpenSSLBaseline(
            available: false, multi: multi,
            commands: ["openssl " + single.joined(separator: " "), "openssl " + parallel.joined(separator: " ")])
        guard let openssl = SystemInfo.which("openssl") else {
            result.note = "openssl is not installed (not on PATH); the openssl baselines are missing"
            return result
        }
        result.available = true
        result.version = (try? run(openssl, ["version"], timeout: 30))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let clock = ContinuousClock()
        func measured(_ arguments: [String]) throws -> String {
            let before = CPUCounters.now()
            let began = clock.now
            defer {
                result.otherProcessesCPUUtilization.append(
                    before.otherUtilization(until: CPUCounters.now(), wall: (clock.now - began).seconds))
            }
            return try run(openssl, arguments, timeout: Double(seconds * 8 + 60))
        }
        do {
            let output = try measured(single)
            result.rsa2048SignPerSecond = signRate(in: output, row: "rsa 2048 bits")
            result.ecdsaP256SignPerSecond = signRate(in: output, row: "ecdsa (nistp256)")
        } catch {
            result.note = "openssl speed failed: \(error)"
        }
        do {
            let output = try measured(parallel)
            result.rsa2048SignPerSecondMulti = signRate(in: output, row: "rsa 2048 bits")
        } catch {
            result.note = (result.note.map { $0 + "; " } ?? "") + "openssl speed -multi failed: \(error)"
        }
        if result.rsa2048SignPerSecond == nil || result.rsa2048SignPerSecondMulti == nil {
            result.note = (result.note.map { $0 + "; " } ?? "") + "could not parse every sign/s figure"
        }
        return result
    }

    /// The `sign/s` column of the summary row containing `row`: the row ends with
    /// `sign verify sign/s verify/s`.
    static func signRate(in output: String, row: String) -> Double? {
        for line in output.split(separator: "\n").reversed() where line.contains(row) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 4 else { continue }
            if let rate = Double(fields[fields.count - 2]) { return rate }
        }
        return nil
    }

    /// Runs a program to completion and returns its standard output; kills it after `timeout`
    /// seconds.
    ///
    /// Spawned with an empty signal mask and default signal handling: `openssl speed` stops each
    /// test with `alarm()`. Started through Foundation's `Process` from this process, it never
    /// stopped and ignored SIGTERM too, so SIGALRM was evidently blocked or ignored in the child.
    static func run(_ path: String, _ arguments: [String], timeout: Double) throws -> String {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw BenchmarkError("pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGALRM, SIGINT, SIGTERM, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        close(fds[1])
        guard spawned == 0 else {
            close(fds[0])
            throw BenchmarkError("cannot start \(path): \(String(cString: strerror(spawned)))")
        }
        let finished = Counter()
        let child = pid
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            if finished.next() == 0 { kill(child, SIGKILL) }
        }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if count > 0 {
                output += buffer[0..<count]
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let killedByWatchdog = finished.next() != 0
        let signal = status & 0x7f
        let exitCode = (status >> 8) & 0xff
        if killedByWatchdog && signal == SIGKILL {
            throw BenchmarkError(
                "\(path) \(arguments.joined(separator: " ")) did not finish within \(Int(timeout)) s and was killed")
        }
        guard signal == 0, exitCode == 0 else {
            throw BenchmarkError(
                "\(path) \(arguments.joined(separator: " ")) ended with \(signal != 0 ? "signal \(signal)" : "exit status \(exitCode)")"
            )
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// A JWS signing input shaped like a tsidp ID token for the built-in dev user (header with a
    /// 19-digit kid, openid profile email claims), about 800 bytes.
    static func idTokenSigningInput(algorithm: String) -> Data {
        let header = #"{"alg":"\#(algorithm)","kid":"8734019283746501928","typ":"JWT"}"#
        return Data((base64URL(Data(header.utf8)) + "." + base64URL(Data(idTokenPayload.utf8))).utf8)
    }

    /// ID token claims of the built-in dev user, as tsidp issues them for `openid profile email`.
    static var idTokenPayload: String {
        let now = Int(Date().timeIntervalSince1970)
        let payload =
            #"{"iss":"http://localhost:39123","sub":"userid:2001","aud":"9f2c4e1a7b3d5f60819a2b3c4d5e6f70","#
            + #""exp":\#(now + 300),"iat":\#(now),"nbf":\#(now),"jti":"Qm9vdHN0cmFwLWp0aS12YWx1ZQ","#
            + #""auth_time":\#(now),"nonce":"n-0S6_WzA2Mj","at_hash":"77QmUPtjPfzWtF2AnpK9RQ","#
            + #""key":"nodekey:\#(String(repeating: "a1", count: 32))","#
            + #""addresses":["100.64.0.1/32","fd7a:115c:a1e0::1/128"],"nid":1001,"#
            + #""node":"alice-laptop.example-tailnet.ts.net.","tailnet":"example-tailnet.ts.net","uid":2001,"#
            + #""email":"alice@example.com","name":"Alice Example","preferred_username":"alice","#
            + #""username":"alice","email_verified":true}"#
        return payload
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// RS256 (RSA-2048, PKCS#1 v1.5, SHA-256) signing rate with swift-crypto.
    static func rs256(tasks: Int, seconds: Double) async throws -> SigningLoop {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let input = idTokenSigningInput(algorithm: "RS256")
        _ = try key.signature(for: input, padding: .insecurePKCS1v1_5)
        let (count, elapsed, others) = try await loop(tasks: tasks, seconds: seconds) {
            try key.signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation.count
        }
        return SigningLoop(
            implementation: "swift-crypto", algorithm: "RS256", tasks: tasks, seconds: elapsed, signatures: count,
            signaturesPerSecond: Double(count) / elapsed, signingInputBytes: input.count,
            otherProcessesCPUUtilization: others)
    }

    /// ES256 (P-256 ECDSA, SHA-256) signing rate with swift-crypto.
    static func es256(tasks: Int, seconds: Double) async throws -> SigningLoop {
        let key = P256.Signing.PrivateKey()
        let input = idTokenSigningInput(algorithm: "ES256")
        _ = try key.signature(for: input)
        let (count, elapsed, others) = try await loop(tasks: tasks, seconds: seconds) {
            try key.signature(for: input).rawRepresentation.count
        }
        return SigningLoop(
            implementation: "swift-crypto", algorithm: "ES256", tasks: tasks, seconds: elapsed, signatures: count,
            signaturesPerSecond: Double(count) / elapsed, signingInputBytes: input.count,
            otherProcessesCPUUtilization: others)
    }

    /// RS256 through tsidp's own `SigningKey.sign(payload:)`: what the provider pays per ID token.
    static func tsidpRS256(tasks: Int, seconds: Double) async throws -> SigningLoop {
        let key = try SigningKey.generate(.rs256)
        let payload = idTokenPayload
        let sample = try key.sign(payload: payload)
        let inputBytes = sample.utf8.count - (sample.split(separator: ".").last?.utf8.count ?? 0) - 1
        let (count, elapsed, others) = try await loop(tasks: tasks, seconds: seconds) {
            try key.sign(payload: payload).utf8.count
        }
        return SigningLoop(
            implementation: "tsidp SigningKey", algorithm: "RS256", tasks: tasks, seconds: elapsed, signatures: count,
            signaturesPerSecond: Double(count) / elapsed, signingInputBytes: inputBytes,
            otherProcessesCPUUtilization: others)
    }

    /// Runs `sign` on `tasks` concurrent tasks until `seconds` have passed; returns the number of
    /// signatures, the wall time from the start to the last task's end, and the share of the cores
    /// other processes used meanwhile.
    static func loop(tasks: Int, seconds: Double, _ sign: @escaping @Sendable () throws -> Int) async throws
        -> (Int, Double, Double?)
    {
        let clock = ContinuousClock()
        let counters = CPUCounters.now()
        let start = clock.now
        let deadline = start + .milliseconds(Int64(seconds * 1000))
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    var count = 0
                    var sink = 0
                    while clock.now < deadline {
                        sink &+= try sign()
                        count += 1
                    }
                    precondition(sink != 1, "a signature cannot be one byte long")
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = (clock.now - start).seconds
        return (total, elapsed, counters.otherUtilization(until: CPUCounters.now(), wall: elapsed))
    }
}

import Foundation
import IDPServer
import Logging
import Testing

@testable import TsidpCLI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sockets for the tests: made with the system calls a service manager uses.
enum TestSockets {
    static var streamType: CInt { SocketActivation.streamSocketType }

    /// A TCP socket bound to 127.0.0.1 on a free port; listening unless `listen` is false.
    static func tcp(listen listening: Bool = true) throws -> CInt {
        let descriptor = socket(AF_INET, streamType, 0)
        try #require(descriptor >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0)
        if listening { try #require(listen(descriptor, 8) == 0) }
        return descriptor
    }

    /// A unix-domain stream socket bound at `path`; listening unless `listen` is false.
    static func unix(at path: String, listen listening: Bool = true) throws -> CInt {
        let descriptor = socket(AF_UNIX, streamType, 0)
        try #require(descriptor >= 0)
        let bound = UnixSocketFile.withAddress(path) { bind(descriptor, $0, $1) }
        try #require(bound == 0)
        if listening { try #require(listen(descriptor, 8) == 0) }
        return descriptor
    }

    /// The port a socket is bound to.
    static func port(of descriptor: CInt) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return named == 0 ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    static func scratchDirectory() throws -> String {
        // Short: a unix socket path holds at most 107 bytes.
        let directory = "/tmp/tsidp-sock-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }
}

@Suite("Socket activation: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES")
struct SocketActivationTests {
    @Test("descriptors from 3 on, only for the process LISTEN_PID names")
    func passed() throws {
        #expect(try SocketActivation.passed(environment: [:], processID: 42).isEmpty)
        #expect(
            try SocketActivation.passed(environment: ["LISTEN_PID": "41", "LISTEN_FDS": "2"], processID: 42).isEmpty)
        let two = try SocketActivation.passed(
            environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:proxy"], processID: 42)
        #expect(two.map(\.descriptor) == [3, 4])
        #expect(two.map(\.name) == ["web", "proxy"])
        // Names that do not match the count are not guessed at.
        let unnamed = try SocketActivation.passed(
            environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"], processID: 42)
        #expect(unnamed.map(\.name) == [nil, nil])
        #expect(
            try SocketActivation.passed(environment: ["LISTEN_PID": "42", "LISTEN_FDS": "0"], processID: 42).isEmpty)
    }

    @Test(
        "values that cannot be meant are one-line errors",
        arguments: [
            (["LISTEN_PID": "me", "LISTEN_FDS": "1"], "LISTEN_PID \"me\" is not a process ID"),
            (["LISTEN_PID": "42"], "LISTEN_PID names this process but LISTEN_FDS is not set"),
            (["LISTEN_PID": "42", "LISTEN_FDS": "two"], "LISTEN_FDS \"two\" is not a number"),
            (["LISTEN_PID": "42", "LISTEN_FDS": "-1"], "LISTEN_FDS \"-1\" is not a number"),
            (["LISTEN_PID": "42", "LISTEN_FDS": "1000"], "LISTEN_FDS \"1000\" is not a number"),
        ])
    func badValues(environment: [String: String], message: String) {
        do {
            _ = try SocketActivation.passed(environment: environment, processID: 42)
            Issue.record("accepted \(environment)")
        } catch {
            #expect(error.message.hasPrefix(message), "\(error.message)")
        }
    }

    @Test("a listening TCP or unix stream socket is served; anything else is refused, naming the descriptor")
    func inspect() throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tcp = try TestSockets.tcp()
        defer { close(tcp) }
        let port = try #require(TestSockets.port(of: tcp))
        let inspected = try SocketActivation.inspect(tcp, name: "web")
        #expect(inspected.address == .ip(IPAddress(parsing: "127.0.0.1")!, port: port))
        #expect(inspected.description == "socket \(tcp) (web) on 127.0.0.1:\(port)")
        #expect(inspected.isLocalOnly)

        let unix = try TestSockets.unix(at: directory + "/a.sock")
        defer { close(unix) }
        #expect(try SocketActivation.inspect(unix).address == .unix(path: directory + "/a.sock"))

        func refusal(_ descriptor: CInt) -> String {
            do {
                _ = try SocketActivation.inspect(descriptor)
                return "accepted"
            } catch {
                return error.message
            }
        }
        let idle = try TestSockets.tcp(listen: false)
        defer { close(idle) }
        #expect(
            refusal(idle)
                == "cannot serve socket \(idle) passed by the service manager: it is not listening (use Accept=no)")
        let datagram = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
        defer { close(datagram) }
        #expect(refusal(datagram).hasSuffix("it is not a stream socket (use ListenStream=)"))
        var pipeEnds: [CInt] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        #expect(refusal(pipeEnds[0]).hasSuffix("it is not a socket"))
        let closed = try TestSockets.tcp()
        close(closed)
        #expect(refusal(closed).hasSuffix("the descriptor is not open"))
    }

    @Test("claiming removes the variables, so that a child process does not take the sockets")
    func claimUnsets() throws {
        // Variables meant for another process: nothing is taken, and they are gone all the same.
        setenv("LISTEN_PID", "\(getpid() + 1)", 1)
        setenv("LISTEN_FDS", "1", 1)
        setenv("LISTEN_FDNAMES", "web", 1)
        #expect(try SocketActivation.claim().isEmpty)
        for variable in SocketActivation.variables {
            #expect(getenv(variable) == nil, "\(variable)")
            #expect(ProcessInfo.processInfo.environment[variable] == nil, "\(variable)")
        }
    }

    @Test(
        "--dev refuses a passed socket that listens beyond this machine, before it serves anything",
        .timeLimit(.minutes(1)))
    func devServesLoopbackOnly() async throws {
        let directory = try TestSockets.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard
            case .run(var configuration) = TsidpMain.parse(
                arguments: ["--dev", "--dir", directory + "/state"], environment: [:])
        else {
            Issue.record("--dev should parse")
            return
        }
        configuration.reverseProxy.inheritedSockets = [
            InheritedSocket(descriptor: 7, name: "web", address: .ip(IPAddress(parsing: "0.0.0.0")!, port: 8443)),
            InheritedSocket(descriptor: 8, name: nil, address: .unix(path: "/run/tsidp.sock")),
        ]
        let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        do {
            try await Runner(configuration: configuration, logger: quiet).run()
            Issue.record("--dev served a socket on 0.0.0.0")
        } catch let error as UsageError {
            #expect(
                error.message
                    == "--dev serves this machine only, but socket 7 (web) on 0.0.0.0:8443 passed by the service manager is not a loopback address"
            )
        }
    }
}

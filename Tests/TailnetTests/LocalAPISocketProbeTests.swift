import Foundation
import Tailnet
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `probeSocket()`: whether anything accepts connections on tailscaled's socket, answered at
/// once instead of after the HTTP client's timeout.
@Suite("LocalAPI socket probe")
struct LocalAPISocketProbeTests {
    static func scratchDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "tsidp-probe-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Binds a unix socket at `path` and closes it without listening: the file a server that
    /// died leaves behind (a server that stops cleanly removes it).
    static func leaveSocketFile(at path: String) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
    }

    static func probe(_ path: String) -> LocalAPISocketProblem? {
        do {
            try LocalAPIClient(socketPath: path).probeSocket()
            return nil
        } catch {
            return error
        }
    }

    @Test("a listening socket passes")
    func listening() async throws {
        try await withSimulatedTailnet(identities: []) { tailnet, client in
            #expect(Self.probe(tailnet.socketPath) == nil)
            // The probe's connection does not disturb the next call.
            _ = try await client.status()
        }
    }

    @Test("no file at the path, or no parent directory: missing")
    func missing() throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(Self.probe(directory + "/tailscaled.sock") == .missing)
        #expect(Self.probe(directory + "/no/tailscaled.sock") == .missing)
    }

    @Test("a socket left behind by a stopped server, or a plain file: refused")
    func refused() throws {
        let directory = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stale = directory + "/stale.sock"
        try Self.leaveSocketFile(at: stale)
        #expect(FileManager.default.fileExists(atPath: stale))
        #expect(Self.probe(stale) == .refused)
        let file = directory + "/file.sock"
        try Data().write(to: URL(fileURLWithPath: file))
        #expect(Self.probe(file) == .refused)
    }

    @Test("a path longer than a socket address holds")
    func tooLong() {
        #expect(Self.probe("/tmp/" + String(repeating: "s", count: 200)) == .pathTooLong)
    }
}

import Foundation
import IDPServer

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// systemd socket activation: the service manager opens the listening sockets and passes them
/// as descriptors 3, 4, … with `LISTEN_PID` (the process they are meant for), `LISTEN_FDS` (how
/// many) and optionally `LISTEN_FDNAMES` (colon-separated names).
public enum SocketActivation {
    /// The first passed descriptor.
    public static let firstDescriptor: CInt = 3
    /// The most descriptors tsidp takes.
    public static let maximumSockets = 64
    /// The variables of the protocol, removed from the environment once read.
    public static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]

    /// The descriptors (and their names) that `environment` passes to the process `processID`;
    /// none when the variables are absent or name another process.
    ///
    /// - Throws: ``UsageError`` for values that cannot be meant seriously (not numbers, too many).
    public static func passed(environment: [String: String], processID: Int32) throws(UsageError) -> [(
        descriptor: CInt, name: String?
    )] {
        guard let pidText = environment["LISTEN_PID"], !pidText.isEmpty else { return [] }
        guard let pid = Int32(pidText), pid > 0 else {
            throw UsageError("LISTEN_PID \"\(LogEscape.escape(pidText))\" is not a process ID (socket activation)")
        }
        guard pid == processID else { return [] }
        guard let countText = environment["LISTEN_FDS"], !countText.isEmpty else {
            throw UsageError("LISTEN_PID names this process but LISTEN_FDS is not set (socket activation)")
        }
        guard let count = Int(countText), (0...maximumSockets).contains(count) else {
            throw UsageError(
                "LISTEN_FDS \"\(LogEscape.escape(countText))\" is not a number of sockets from 0 to \(maximumSockets) (socket activation)"
            )
        }
        let names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false)
        return (0..<count).map { index in
            let name = names.count == count && !names[index].isEmpty ? String(names[index]) : nil
            return (firstDescriptor + CInt(index), name)
        }
    }

    /// Takes the sockets passed to this process: reads the variables, removes them from the
    /// environment (so that a process tsidp starts, such as tailscaled, does not take the
    /// sockets for its own), checks that each descriptor is a listening stream socket, and marks
    /// it close-on-exec.
    ///
    /// - Throws: ``UsageError`` naming the descriptor that cannot be served.
    public static func claim() throws(UsageError) -> [InheritedSocket] {
        let environment = ProcessInfo.processInfo.environment
        for variable in variables { unsetenv(variable) }
        return try passed(environment: environment, processID: getpid()).map {
            (passed) throws(UsageError) -> InheritedSocket in
            let socket = try inspect(passed.descriptor, name: passed.name)
            _ = fcntl(passed.descriptor, F_SETFD, FD_CLOEXEC)
            return socket
        }
    }

    /// What the passed descriptor is, if tsidp can serve it: a listening stream socket on an IP
    /// address or a unix-domain path.
    public static func inspect(_ descriptor: CInt, name: String? = nil) throws(UsageError) -> InheritedSocket {
        let label = "socket \(descriptor)" + (name.map { " (\(LogEscape.escape($0)))" } ?? "")
        func refused(_ reason: String) -> UsageError {
            UsageError("cannot serve \(label) passed by the service manager: \(reason)")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw refused("the descriptor is not open") }
        guard info.st_mode & S_IFMT == S_IFSOCK else { throw refused("it is not a socket") }
        guard intOption(descriptor, SO_TYPE) == streamSocketType else {
            throw refused("it is not a stream socket (use ListenStream=)")
        }
        guard intOption(descriptor, SO_ACCEPTCONN) == 1 else {
            throw refused("it is not listening (use Accept=no)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw refused("its address cannot be read") }
        let address: InheritedSocket.Address
        switch CInt(storage.ss_family) {
        case AF_INET:
            var ip = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            let bytes = withUnsafeBytes(of: &ip.sin_addr) { Array($0) }
            address = .ip(IPAddress(bytes: bytes)!, port: Int(UInt16(bigEndian: ip.sin_port)))
        case AF_INET6:
            var ip = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            let bytes = withUnsafeBytes(of: &ip.sin6_addr) { Array($0) }
            address = .ip(IPAddress(bytes: bytes)!, port: Int(UInt16(bigEndian: ip.sin6_port)))
        case AF_UNIX:
            var unix = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_un.self) }
            let path = withUnsafeBytes(of: &unix.sun_path) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            address = .unix(path: path)
        default:
            throw refused("it is neither a TCP nor a unix-domain socket")
        }
        return InheritedSocket(descriptor: descriptor, name: name, address: address)
    }

    static func intOption(_ descriptor: CInt, _ option: CInt) -> CInt? {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(descriptor, SOL_SOCKET, option, &value, &length) == 0 else { return nil }
        return value
    }

    static var streamSocketType: CInt {
        #if os(Linux)
            CInt(SOCK_STREAM.rawValue)
        #else
            SOCK_STREAM
        #endif
    }
}

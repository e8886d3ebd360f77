import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension LocalAPIClient {
    /// Connects to the socket once and closes the connection, so that a missing socket or a
    /// tailscaled that is not running is reported at once rather than after ``timeout``.
    ///
    /// A unix socket's `connect(2)` answers immediately: it either reaches a listener or fails.
    public func probeSocket() throws(LocalAPISocketProblem) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else { throw .pathTooLong }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: pathBytes)
        }
        // Non-blocking, so that a listener with a full backlog answers EAGAIN instead of holding
        // the caller.
        #if canImport(Darwin)
            let descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
            if descriptor >= 0 { _ = fcntl(descriptor, F_SETFL, O_NONBLOCK) }
        #else
            let descriptor = socket(
                AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        #endif
        guard descriptor >= 0 else { throw .other(Self.systemText(errno)) }
        defer { close(descriptor) }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let code = errno
        guard result != 0 else { return }
        switch code {
        case EAGAIN, EINPROGRESS: return  // a listener is there, only busy
        case ENOENT, ENOTDIR: throw .missing
        case ECONNREFUSED, ENOTSOCK: throw .refused
        case EACCES, EPERM: throw .permissionDenied
        default: throw .other(Self.systemText(code))
        }
    }

    private static func systemText(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }
}

extension LocalAPIClient {
    /// The user ID tailscaled runs as: the peer credentials of a connection to its socket (Linux
    /// `SO_PEERCRED`); nil where the system does not tell.
    public func serverUID() -> UInt32? {
        #if os(Linux)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let pathBytes = Array(socketPath.utf8)
            guard !pathBytes.isEmpty, pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
            let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            guard connected == 0 else { return nil }
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
            var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
            var length = socklen_t(MemoryLayout.size(ofValue: credentials))
            let peerCredentials: Int32 = 17  // SO_PEERCRED
            guard getsockopt(descriptor, SOL_SOCKET, peerCredentials, &credentials, &length) == 0 else { return nil }
            return credentials.1
        #else
            return nil
        #endif
    }
}

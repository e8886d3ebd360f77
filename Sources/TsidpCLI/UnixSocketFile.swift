import Foundation
import IDPServer
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `--unix-socket` file: created bound with its mode already set (before it listens, so no
/// connection ever arrives while it is more open than intended), and removed when tsidp stops.
struct UnixSocketFile {
    /// The mode of the socket file: the owner and the owner's group may connect (connecting to a
    /// unix socket needs write permission), nobody else.
    static let mode: mode_t = 0o660

    let path: String
    /// The bound socket, not yet listening.
    let descriptor: CInt
    /// The file as `stat` saw it once created, to recognise it at exit: device, inode (which a
    /// file created in its place may reuse) and modification time (which a chmod leaves alone).
    private let identity: [Int]

    /// Binds a new socket at `path`. A socket file left behind by a process that has stopped
    /// (nothing accepts connections on it) is removed first; a socket something listens on, or
    /// a file that is not a socket, is left alone and refused.
    static func create(path: String, flag: String = "--unix-socket") throws(UsageError) -> UnixSocketFile {
        func refused(_ reason: String) -> UsageError {
            UsageError("cannot listen on unix socket \(LogEscape.escape(path)): \(reason)")
        }
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard existing.st_mode & S_IFMT == S_IFSOCK else {
                throw refused("the file exists and is not a socket; remove it or choose another \(flag)")
            }
            switch probe(path) {
            case 0:
                throw refused("another program is listening on it; stop it or choose another \(flag)")
            case ECONNREFUSED:
                // Left behind: nothing listens on it.
                guard unlink(path) == 0 || errno == ENOENT else {
                    throw refused("a stale socket file is in the way and cannot be removed: \(errorText(errno))")
                }
            case let code:
                throw refused("the existing socket file cannot be checked: \(errorText(code))")
            }
        }
        let descriptor = socket(AF_UNIX, streamType, 0)
        guard descriptor >= 0 else { throw refused(errorText(errno)) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        let bound = withAddress(path) { address, length in bind(descriptor, address, length) }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            switch code {
            case ENOENT, ENOTDIR:
                throw refused("its directory does not exist; create it first")
            case EADDRINUSE:
                throw refused("another program created it just now; choose another \(flag)")
            default:
                throw refused(errorText(code))
            }
        }
        var created = stat()
        guard chmod(path, mode) == 0, stat(path, &created) == 0 else {
            let code = errno
            close(descriptor)
            unlink(path)
            throw refused("its mode cannot be set: \(errorText(code))")
        }
        return UnixSocketFile(path: path, descriptor: descriptor, identity: Self.identity(created))
    }

    static func identity(_ info: stat) -> [Int] {
        #if os(Linux)
            [Int(info.st_dev), Int(info.st_ino), Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec)]
        #else
            [Int(info.st_dev), Int(info.st_ino), Int(info.st_mtimespec.tv_sec), Int(info.st_mtimespec.tv_nsec)]
        #endif
    }

    /// Removes the socket file, if it is still the one ``create(path:flag:)`` made.
    func remove(logger: Logger) {
        var current = stat()
        guard lstat(path, &current) == 0, Self.identity(current) == identity else {
            return
        }
        if unlink(path) != 0 {
            logger.warning(
                "the unix socket file could not be removed",
                metadata: ["path": "\(path)", "error": "\(Self.errorText(errno))"])
        }
    }

    /// 0 when something accepts a connection at `path`, otherwise the `connect` error.
    static func probe(_ path: String) -> CInt {
        let descriptor = socket(AF_UNIX, streamType, 0)
        guard descriptor >= 0 else { return errno }
        defer { close(descriptor) }
        let connected = withAddress(path) { address, length in connect(descriptor, address, length) }
        return connected == 0 ? 0 : errno
    }

    static func withAddress<Result>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    static func errorText(_ code: CInt) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }

    static var streamType: CInt { SocketActivation.streamSocketType }
}

/// Serves the `--unix-socket` listener: creates the socket file when it starts and removes it
/// when it stops.
struct UnixSocketService: Service {
    let path: String
    let logger: Logger
    /// The server for the bound socket.
    let serve: @Sendable (CInt) -> any Service

    func run() async throws {
        let file = try UnixSocketFile.create(path: path)
        defer { file.remove(logger: logger) }
        try await serve(file.descriptor).run()
    }
}

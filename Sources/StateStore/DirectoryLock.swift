import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An advisory lock on a state directory (`flock` on `<dir>/.tsidp.lock`), held by a running
/// tsidp for its whole life and taken by `tsidp clients --dir` for the length of one command, so
/// that the command never changes files under a server that would not see the change.
///
/// The lock goes with the process: the kernel releases it when the holder exits, however it
/// exits, so a crash never leaves a stale lock behind. The file name starts with a dot, so it is
/// never taken for a state key.
public final class DirectoryLock: Sendable {
    /// The lock file's name inside the state directory.
    public static let fileName = ".tsidp.lock"

    /// The directory is locked by another process (or another lock in this one).
    public struct Busy: Error, CustomStringConvertible, Sendable {
        public var directory: String
        public var description: String { "state directory \(directory) is in use by a running tsidp" }
    }

    private let descriptor: Int32

    /// Takes the lock of `directory` without waiting.
    ///
    /// - Throws: ``Busy`` when another holder has it; ``StateStoreError`` when the lock file
    ///   cannot be opened.
    public init(directory: String) throws {
        let path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateStoreError(
                .configuration, "cannot open the lock file \(path): \(DirectoryStateStore.describe(errno))")
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            close(fd)
            if code == EWOULDBLOCK { throw Busy(directory: directory) }
            throw StateStoreError(.configuration, "cannot lock \(path): \(DirectoryStateStore.describe(code))")
        }
        descriptor = fd
    }

    deinit {
        close(descriptor)
    }
}

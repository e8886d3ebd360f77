import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A state store that keeps one file per key in a directory, as the Go tsidp does
/// (`oidc-key.json`, `oidc-funnel-clients.json` stay readable by it).
///
/// - Important: Every file is written to a temporary file in the same directory, flushed with
///   `fsync`, renamed over the old one and the directory is flushed, so a crash leaves either the
///   old or the new content, never a torn file. Files are created 0600, and a directory tsidp creates
///   0700; an existing directory's mode is never changed.
public final class DirectoryStateStore: StateStore, @unchecked Sendable {
    /// The directory holding the files.
    public let directory: URL
    /// `directory`'s path with a trailing slash, to which a validated key is appended as is.
    private let prefix: String
    // Serializes writers and keeps blocking file I/O off the concurrency pool; readers see whole
    // files thanks to rename.
    private let queue = DispatchQueue(label: "tsidp.state.directory")
    /// The directory's lock, held as long as the store lives, when it was opened `exclusive`.
    private let lock: DirectoryLock?

    /// Opens the directory at `path`, creating it (and any missing parent) with mode 0700 if it
    /// does not exist.
    ///
    /// An existing directory's mode is left as the operator set it; when other users may enter
    /// or read it, a warning naming the path and its mode goes to `logger`.
    ///
    /// With `exclusive`, the store holds the directory's ``DirectoryLock`` for as long as it
    /// lives: a running server opens its store so, and `tsidp clients --dir` too.
    ///
    /// - Throws: ``StateStoreError/Kind/configuration`` with a one-line reason naming the path
    ///   (an empty path, a path through a regular file, no permission); ``DirectoryLock/Busy``
    ///   when `exclusive` and another process holds the directory.
    public init(path: String, logger: Logger? = nil, exclusive: Bool = false) throws {
        guard !path.isEmpty else {
            throw StateStoreError(.configuration, "the state directory path is empty")
        }
        let url = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        if let mode = try Self.openOrCreate(url.path), mode & 0o077 != 0 {
            logger?.warning(
                "state directory \(url.path) has mode \(Self.octal(mode)), which gives other users access to it; run chmod 700 \(url.path) (tsidp does not change the mode of a directory it did not create)"
            )
        }
        guard access(url.path, W_OK | R_OK | X_OK) == 0 else {
            throw StateStoreError(.configuration, "state directory \(url.path) is not writable: \(Self.errnoText())")
        }
        // The lock first: another holder may be writing, and its temporary files are not leftovers.
        self.lock = exclusive ? try DirectoryLock(directory: url.path) : nil
        try Self.removeLeftovers(in: url)
        self.directory = url
        self.prefix = url.path.hasSuffix("/") ? url.path : url.path + "/"
    }

    /// The permission bits of the existing directory at `path`, or nil after creating it (0700)
    /// together with every missing parent (0700 too).
    private static func openOrCreate(_ path: String) throws -> mode_t? {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR) else {
                throw StateStoreError(.configuration, "state directory \(path) exists and is not a directory")
            }
            return info.st_mode & 0o7777
        }
        let code = errno
        guard code == ENOENT || code == ENOTDIR else {
            throw StateStoreError(.configuration, "cannot use state directory \(path): \(describe(code))")
        }
        // Walk down from the root: the first component that is missing is created, and one that
        // is a file is named, which `mkdir -p`'s "Not a directory" would not do.
        var prefix = ""
        for component in path.split(separator: "/") {
            let parent = prefix.isEmpty ? "/" : prefix
            prefix += "/" + component
            if stat(prefix, &info) == 0 {
                guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR) else {
                    throw StateStoreError(
                        .configuration, "cannot create state directory \(path): \(prefix) is not a directory")
                }
                continue
            }
            guard errno == ENOENT else {
                throw StateStoreError(
                    .configuration, "cannot create state directory \(path): \(prefix): \(describe(errno))")
            }
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                let reason = errno == EACCES ? "permission denied in \(parent)" : "\(prefix): \(describe(errno))"
                throw StateStoreError(.configuration, "cannot create state directory \(path): \(reason)")
            }
        }
        return nil
    }

    /// `0755`-style text of a mode's permission bits.
    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    public var description: String { "dir:\(directory.path)" }

    public func read(_ key: String) async throws -> Data? {
        try StateKey.validate(key)
        let path = prefix + key
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StateStoreError(.io, "cannot read \(path): \(Self.errnoText())")
        }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress!, $0.count) }
            if count == 0 { return data }
            if count < 0 {
                if errno == EINTR { continue }
                throw StateStoreError(.io, "cannot read \(path): \(Self.errnoText())")
            }
            data.append(contentsOf: buffer[0..<count])
        }
    }

    public func write(_ entries: [String: Data?]) async throws {
        for key in entries.keys { try StateKey.validate(key) }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                do {
                    try self.writeBatch(entries)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func writeBatch(_ entries: [String: Data?]) throws {
        for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
            if let value {
                try writeFile(key, value)
            } else {
                let path = prefix + key
                if unlink(path) != 0 && errno != ENOENT {
                    throw StateStoreError(.io, "cannot delete \(path): \(Self.errnoText())")
                }
            }
        }
        try syncDirectory()
    }

    /// - Important: A directory that cannot be listed is an error, never "no state".
    public func keys() async throws -> [String] {
        let names: [String]
        do {
            names = try Self.names(in: directory.path)
        } catch {
            throw StateStoreError(.io, "cannot list \(directory.path): \(Self.describe(error.code))")
        }
        return names.filter { StateKey.isValid($0) && !$0.contains(".tmp-") }.filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(
                atPath: directory.appendingPathComponent($0).path, isDirectory: &isDir)
                && !isDir.boolValue
        }.sorted()
    }

    /// Removes temporary files a write interrupted by a crash left behind (`.<key>.tmp-<n>`);
    /// they were never renamed into place, so they hold nothing anyone acknowledged.
    private static func removeLeftovers(in directory: URL) throws {
        let entries: [String]
        do {
            entries = try names(in: directory.path)
        } catch {
            throw StateStoreError(
                .configuration, "cannot list state directory \(directory.path): \(describe(error.code))")
        }
        for name in entries where name.hasPrefix(".") && name.contains(".tmp-") {
            let path = directory.appendingPathComponent(name).path
            if unlink(path) != 0 && errno != ENOENT {
                throw StateStoreError(
                    .configuration, "cannot remove the leftover temporary file \(path): \(errnoText())")
            }
        }
    }

    private func writeFile(_ key: String, _ value: Data) throws {
        let finalPath = prefix + key
        let tempPath = prefix + ".\(key).tmp-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateStoreError(.io, "cannot create \(tempPath): \(Self.errnoText())")
        }
        var ok = false
        defer {
            if !ok { unlink(tempPath) }
        }
        let written = value.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc_write(fd, buffer.baseAddress!.advanced(by: offset), buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        guard written else {
            let text = Self.errnoText()
            close(fd)
            throw StateStoreError(.io, "cannot write \(tempPath): \(text)")
        }
        guard fsync(fd) == 0 else {
            let text = Self.errnoText()
            close(fd)
            throw StateStoreError(.io, "cannot flush \(tempPath): \(text)")
        }
        close(fd)
        guard rename(tempPath, finalPath) == 0 else {
            throw StateStoreError(.io, "cannot replace \(finalPath): \(Self.errnoText())")
        }
        ok = true
    }

    private func syncDirectory() throws {
        let fd = open(prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StateStoreError(.io, "cannot open \(directory.path): \(Self.errnoText())") }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {
            throw StateStoreError(.io, "cannot flush \(directory.path): \(Self.errnoText())")
        }
    }

    private static func errnoText() -> String { describe(errno) }

    /// The system's text for `code`, starting lowercase to read well after a colon
    /// ("not a directory", "permission denied").
    static func describe(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }

    /// The names in the directory at `path`, without `.` and `..`.
    private static func names(in path: String) throws(SystemError) -> [String] {
        guard let stream = opendir(path) else { throw SystemError(code: errno) }
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw SystemError(code: errno) }
                return names
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    /// An `errno` value.
    private struct SystemError: Error {
        var code: Int32
    }
}

@inline(__always)
private func systemRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Darwin)
        return Darwin.read(fd, buf, count)
    #elseif canImport(Musl)
        return Musl.read(fd, buf, count)
    #else
        return Glibc.read(fd, buf, count)
    #endif
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Darwin)
        return Darwin.write(fd, buf, count)
    #elseif canImport(Musl)
        return Musl.write(fd, buf, count)
    #else
        return Glibc.write(fd, buf, count)
    #endif
}

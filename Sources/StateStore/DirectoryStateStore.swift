import Foundation

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
///   old or the new content, never a torn file. Files are created 0600 and the directory 0700.
public final class DirectoryStateStore: StateStore, @unchecked Sendable {
    /// The directory holding the files.
    public let directory: URL
    // Serializes writers and keeps blocking file I/O off the concurrency pool; readers see whole
    // files thanks to rename.
    private let queue = DispatchQueue(label: "tsidp.state.directory")

    /// Opens (creating if needed) the directory at `path` and restricts it to the owner.
    public init(path: String) throws {
        let url = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw StateStoreError(.configuration, "state directory \(url.path) exists and is not a directory")
            }
        } else {
            do {
                try FileManager.default.createDirectory(
                    at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw StateStoreError(
                    .configuration, "cannot create state directory \(url.path): \(Self.reason(error))")
            }
        }
        if chmod(url.path, 0o700) != 0 {
            throw StateStoreError(.configuration, "cannot restrict state directory \(url.path): \(Self.errnoText())")
        }
        guard access(url.path, W_OK | R_OK | X_OK) == 0 else {
            throw StateStoreError(.configuration, "state directory \(url.path) is not writable: \(Self.errnoText())")
        }
        try Self.removeLeftovers(in: url)
        self.directory = url
    }

    public var description: String { "dir:\(directory.path)" }

    public func read(_ key: String) async throws -> Data? {
        try StateKey.validate(key)
        let path = directory.appendingPathComponent(key).path
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw StateStoreError(.io, "cannot read \(path): \(Self.reason(error))")
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
                let path = directory.appendingPathComponent(key).path
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
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw StateStoreError(.io, "cannot list \(directory.path): \(Self.reason(error))")
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
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw StateStoreError(.configuration, "cannot list state directory \(directory.path): \(reason(error))")
        }
        for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
            let path = directory.appendingPathComponent(name).path
            if unlink(path) != 0 && errno != ENOENT {
                throw StateStoreError(
                    .configuration, "cannot remove the leftover temporary file \(path): \(errnoText())")
            }
        }
    }

    private func writeFile(_ key: String, _ value: Data) throws {
        let finalPath = directory.appendingPathComponent(key).path
        let tempPath = directory.appendingPathComponent(".\(key).tmp-\(UInt32.random(in: 0...UInt32.max))").path
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
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StateStoreError(.io, "cannot open \(directory.path): \(Self.errnoText())") }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {
            throw StateStoreError(.io, "cannot flush \(directory.path): \(Self.errnoText())")
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    private static func reason(_ error: any Error) -> String {
        (error as NSError).localizedDescription
    }
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

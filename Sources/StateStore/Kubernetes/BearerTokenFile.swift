import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The service account's bearer token, read from its file again whenever the file changes.
///
/// The kubelet rotates projected tokens by swapping the file (a new inode behind the `..data`
/// link), so the file's identity, size and modification time are checked before every request
/// and the token is read again when any of them moved.
///
/// - Important: The token is a credential: it is never logged and never part of an error message.
final class BearerTokenFile: Sendable {
    /// What identifies one version of the file.
    private struct Stamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int
    }

    let path: String
    private let cached = Mutex<(stamp: Stamp, token: String)?>(nil)

    init(path: String) {
        self.path = path
    }

    /// The current token.
    ///
    /// - Throws: ``StateStoreError/Kind/configuration`` when the file cannot be read or is empty.
    func current() throws -> String {
        guard let stamp = Self.stamp(path) else {
            throw StateStoreError(
                .configuration, "cannot read the service account token \(path): \(Self.errnoText())")
        }
        if let hit = cached.withLock({ $0 }), hit.stamp == stamp { return hit.token }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw StateStoreError(.configuration, "cannot read the service account token \(path)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else {
            throw StateStoreError(.configuration, "the service account token \(path) is empty")
        }
        cached.withLock { $0 = (stamp, token) }
        return token
    }

    /// Forgets the cached token (after a 401) and tells whether the file now holds another one.
    func reload() -> Bool {
        let old = cached.withLock { value -> String? in
            let token = value?.token
            value = nil
            return token
        }
        guard let new = try? current() else { return false }
        return new != old
    }

    private static func stamp(_ path: String) -> Stamp? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        #if canImport(Darwin)
            let modified = info.st_mtimespec
        #else
            let modified = info.st_mtim
        #endif
        return Stamp(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            seconds: Int(modified.tv_sec), nanoseconds: Int(modified.tv_nsec))
    }

    private static func errnoText() -> String {
        let text = String(cString: strerror(errno))
        return text.prefix(1).lowercased() + text.dropFirst()
    }
}

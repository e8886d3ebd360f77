import Foundation

/// A durable key → bytes store that holds everything tsidp must remember across restarts:
/// signing keys, the client registry and grant state.
///
/// Keys are short names such as `oidc-key.json`; values are opaque bytes. A call to ``write(_:)``
/// with several entries is one batch: back ends that can apply it atomically do so, and every
/// back end makes all of it durable before returning.
///
/// - Important: Callers send an HTTP response that depends on a write only after ``write(_:)``
///   has returned. Back ends must therefore not return before the data is on stable storage.
public protocol StateStore: Sendable {
    /// The bytes stored under `key`, or `nil` when there are none.
    func read(_ key: String) async throws -> Data?
    /// Stores every entry of `entries`; a `nil` value deletes that key.
    func write(_ entries: [String: Data?]) async throws
    /// Every key that currently holds a value, sorted.
    func keys() async throws -> [String]
    /// A short description for logs and error messages, e.g. `dir:/var/lib/tsidp`.
    var description: String { get }
}

extension StateStore {
    /// Stores `value` under `key`.
    public func write(_ key: String, _ value: Data) async throws {
        try await write([key: .some(value)])
    }

    /// Deletes `key`; deleting a missing key is not an error.
    public func delete(_ key: String) async throws {
        try await write([key: .none])
    }
}

/// Why a state store operation failed.
public struct StateStoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The key contains characters that no back end accepts.
        case invalidKey
        /// The underlying storage failed (disk, permissions, API).
        case io
        /// The configuration names a back end or location that cannot be used.
        case configuration
        /// The store has no room for the write: a Kubernetes Secret holds at most 1 MiB. Nothing
        /// was written; writes that delete or shrink still go through.
        case full
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Validates state keys: 1–200 characters from `[A-Za-z0-9._-]`, not starting with a dot.
///
/// The same rule as tailscaled's Kubernetes store sanitizer accepts unchanged, so every key can
/// be a file name and a Secret data key without translation.
public enum StateKey {
    /// Whether `key` is a valid state key.
    public static func isValid(_ key: String) -> Bool {
        (try? validate(key)) != nil
    }

    /// Throws ``StateStoreError/Kind/invalidKey`` unless `key` is valid.
    public static func validate(_ key: String) throws {
        guard !key.isEmpty, key.utf8.count <= 200, key.first != "." else {
            throw StateStoreError(.invalidKey, "invalid state key \"\(key)\"")
        }
        for byte in key.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                continue
            default:
                throw StateStoreError(.invalidKey, "invalid state key \"\(key)\"")
            }
        }
    }
}

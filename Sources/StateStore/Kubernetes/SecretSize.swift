import Foundation

/// The size of a Secret as the API server counts it against its 1 MiB limit: every data key plus
/// its decoded value, in bytes.
public enum SecretSize {
    /// What Kubernetes accepts at most (`MaxSecretSize`).
    public static let kubernetesLimit = 1 << 20

    /// The bytes `data` counts for.
    public static func bytes(of data: [String: Data]) -> Int {
        data.reduce(0) { $0 + $1.key.utf8.count + $1.value.count }
    }

    /// `data` after `changes` (data key → new bytes, or nil to remove).
    public static func applying(_ changes: [String: Data?], to data: [String: Data]) -> [String: Data] {
        var result = data
        for (key, value) in changes { result[key] = value }
        return result
    }

    /// Whether a write taking a Secret from `current` to `size` bytes may be sent when tsidp
    /// keeps it under `limit`: never past what Kubernetes accepts, and past `limit` only when it
    /// does not grow (a delete or a smaller value still goes through on a full Secret).
    public static func admits(_ size: Int, from current: Int, limit: Int) -> Bool {
        size <= kubernetesLimit && (size <= limit || size <= current)
    }
}

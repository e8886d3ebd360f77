import AnyJSON
import Foundation

/// The one patch request that applies a batch to a Secret's data.
public enum SecretPatch: Sendable, Equatable {
    /// Nothing changes: every value is already stored and every removed key already absent.
    case none
    /// A JSON patch (RFC 6902): `add` per value (which replaces a value that exists) and
    /// `remove` per key that exists, in key order. The API server applies it whole or not at all,
    /// and other keys (tailscaled's) are left as they are, whatever they became meanwhile.
    case json([JSONPatchOperation])
    /// A merge patch (RFC 7386) `{"data": {…}}`, for a Secret that has no `data` map yet: a JSON
    /// patch would have to add the whole `/data` member, which would wipe keys another writer
    /// added since the Secret was read; a merge patch adds only its own.
    case merge(JSONValue)

    /// The patch taking `current` (a Secret's data as last read; nil when it has no data map) to
    /// `current` with `changes` (data key → bytes, nil to remove).
    public static func make(current: [String: Data]?, changes: [String: Data?]) -> SecretPatch {
        guard let current else {
            var members: [String: JSONValue] = [:]
            for (key, value) in changes {
                if let value { members[key] = .string(value.base64EncodedString()) }
            }
            return members.isEmpty ? .none : .merge(.object(["data": .object(members)]))
        }
        var operations: [JSONPatchOperation] = []
        for (key, value) in changes.sorted(by: { $0.key < $1.key }) {
            let path = JSONPatchOperation.pointer("data", key)
            if let value {
                if current[key] != value { operations.append(.add(path, .string(value.base64EncodedString()))) }
            } else if current[key] != nil {
                operations.append(.remove(path))
            }
        }
        return operations.isEmpty ? .none : .json(operations)
    }
}

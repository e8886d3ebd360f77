import AnyJSON

/// One operation of an RFC 6902 JSON patch (`application/json-patch+json`).
///
/// The API server applies a whole patch or none of it, so a patch is an atomic batch.
public struct JSONPatchOperation: Sendable, Equatable, Encodable {
    public var op: String
    public var path: String
    /// The value of `add`, `replace` and `test`; absent for `remove`.
    public var value: JSONValue?

    /// Adds the member at `path`, or replaces it when it exists.
    public static func add(_ path: String, _ value: JSONValue) -> JSONPatchOperation {
        JSONPatchOperation(op: "add", path: path, value: value)
    }

    /// Replaces the member at `path`, which must exist.
    public static func replace(_ path: String, _ value: JSONValue) -> JSONPatchOperation {
        JSONPatchOperation(op: "replace", path: path, value: value)
    }

    /// Removes the member at `path`, which must exist.
    public static func remove(_ path: String) -> JSONPatchOperation {
        JSONPatchOperation(op: "remove", path: path, value: nil)
    }

    /// The JSON pointer (RFC 6901) naming `tokens`, one member name per level: `/data/<key>`.
    public static func pointer(_ tokens: String...) -> String {
        tokens.map { "/" + $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }
            .joined()
    }

    private enum CodingKeys: String, CodingKey {
        case op, path, value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(op, forKey: .op)
        try container.encode(path, forKey: .path)
        try container.encodeIfPresent(value, forKey: .value)
    }
}

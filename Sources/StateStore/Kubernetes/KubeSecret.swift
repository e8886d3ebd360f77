import AnyJSON
import Foundation

/// A core/v1 Secret as the API server sent it, with its `data` decoded.
///
/// Every field the server sent is kept and sent back unchanged by a replace (PUT), so labels,
/// owner references, finalizers, `type` and fields this code does not know survive a write.
public struct KubeSecret: Sendable, Equatable, Codable {
    /// Every top-level field but `data`, as received.
    public var fields: [String: JSONValue]
    /// The decoded `data` map: data key → bytes.
    public var data: [String: Data]
    /// Whether the object carries a `data` map at all (a Secret created empty has none).
    public var hasDataMap: Bool

    /// A new Secret to create.
    public init(name: String, namespace: String, data: [String: Data]) {
        fields = [
            "apiVersion": .string("v1"), "kind": .string("Secret"), "type": .string("Opaque"),
            "metadata": .object(["name": .string(name), "namespace": .string(namespace)]),
        ]
        self.data = data
        hasDataMap = true
    }

    /// `metadata.name`.
    public var name: String? { fields["metadata"]?.objectValue?["name"]?.stringValue }

    /// `metadata.resourceVersion`: a replace carries it, so that it fails with 409 when the Secret
    /// changed since it was read.
    public var resourceVersion: String? { fields["metadata"]?.objectValue?["resourceVersion"]?.stringValue }

    public init(from decoder: any Decoder) throws {
        var fields = try [String: JSONValue](from: decoder)
        let encoded = fields.removeValue(forKey: "data")
        var data: [String: Data] = [:]
        switch encoded {
        case nil, .null?:
            hasDataMap = false
        case .object(let members)?:
            hasDataMap = true
            for (key, value) in members {
                guard let text = value.stringValue, let bytes = Data(base64Encoded: text) else {
                    throw DecodingError.dataCorrupted(
                        .init(
                            codingPath: decoder.codingPath,
                            debugDescription: "data key \(KubeError.printable(key)) is not base64"))
                }
                data[key] = bytes
            }
        default:
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "data is not an object"))
        }
        self.fields = fields
        self.data = data
    }

    public func encode(to encoder: any Encoder) throws {
        var object = fields
        if !data.isEmpty {
            object["data"] = .object(data.mapValues { .string($0.base64EncodedString()) })
        }
        try object.encode(to: encoder)
    }
}

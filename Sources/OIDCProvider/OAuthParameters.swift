import Foundation

/// Request parameters from a query string or an `application/x-www-form-urlencoded` body, in
/// their order, with repeated names kept (RFC 8707 `resource` repeats).
public struct OAuthParameters: Sendable, Equatable {
    public private(set) var pairs: [(name: String, value: String)]

    public init(_ pairs: [(String, String)] = []) {
        self.pairs = pairs.map { (name: $0.0, value: $0.1) }
    }

    public static func == (lhs: OAuthParameters, rhs: OAuthParameters) -> Bool {
        lhs.pairs.map { [$0.name, $0.value] } == rhs.pairs.map { [$0.name, $0.value] }
    }

    /// Parses `a=1&b=2` form encoding. `+` is a space; a malformed percent escape or invalid UTF-8
    /// is an `invalid_request` error rather than a silently altered value.
    public static func parse(formEncoded text: String) throws -> OAuthParameters {
        var result: [(String, String)] = []
        for piece in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = piece.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try decodeComponent(parts[0])
            let value = parts.count > 1 ? try decodeComponent(parts[1]) : ""
            if name.isEmpty { continue }
            result.append((name, value))
        }
        return OAuthParameters(result)
    }

    static func decodeComponent(_ text: Substring) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw OAuthError(.invalidRequest, "malformed percent-encoding in request parameters")
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw OAuthError(.invalidRequest, "request parameters are not valid UTF-8")
        }
        return string
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The only value of `name`; `nil` when absent or empty. Repeating a parameter that must not
    /// repeat is an `invalid_request` error (RFC 6749 §3.1).
    public func single(_ name: String) throws -> String? {
        var found: String?
        for pair in pairs where pair.name == name {
            if found != nil {
                throw OAuthError(.invalidRequest, "parameter \(name) is repeated")
            }
            found = pair.value
        }
        guard let found, !found.isEmpty else { return nil }
        return found
    }

    /// The first value of `name` without the repetition check, for echoing values such as `state`.
    public func first(_ name: String) -> String? {
        pairs.first { $0.name == name }.map(\.value).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Every non-empty value of `name`, in order.
    public func all(_ name: String) -> [String] {
        pairs.filter { $0.name == name && !$0.value.isEmpty }.map(\.value)
    }

    /// Appends the pairs of `other` (query then body, as `/authorize` via POST merges them).
    public mutating func append(contentsOf other: OAuthParameters) {
        pairs.append(contentsOf: other.pairs)
    }

    /// Form-encodes `pairs` (for redirects and form bodies).
    public static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    static let unreserved: CharacterSet = {
        var set = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        set.insert(charactersIn: "-._~")
        return set
    }()

    /// Percent-encodes everything outside the unreserved set.
    public static func escape(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }
}

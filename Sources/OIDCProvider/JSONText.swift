import AnyJSON
import Foundation

/// Small helpers that write JSON text directly, for hot paths where an encoder's overhead shows
/// (token responses, JWT payloads) and where member order must be stable.
///
/// Everything is written as UTF-8 bytes into one growing buffer (``Writer``); strings are
/// escaped byte by byte on their UTF-8 view, with a run of bytes that need no escape copied at
/// once.
public enum JSONText {
    /// JSON text under construction, as UTF-8 bytes.
    public struct Writer: Sendable {
        public private(set) var bytes: [UInt8] = []

        public init(capacity: Int = 256) {
            bytes.reserveCapacity(capacity)
        }

        /// Appends `text` as it is (it must already be JSON).
        public mutating func raw(_ text: StaticString) {
            text.withUTF8Buffer { bytes.append(contentsOf: $0) }
        }

        /// Appends `text` as it is (it must already be JSON).
        public mutating func raw(_ text: String) {
            bytes.append(contentsOf: text.utf8)
        }

        /// Appends `value` as a JSON string literal. `<`, `>` and `&` are escaped too, and so
        /// are U+2028 and U+2029, so the text is safe inside HTML and JavaScript.
        public mutating func quote(_ value: String) {
            bytes.append(UInt8(ascii: "\""))
            var value = value
            value.withUTF8 { utf8 in
                var start = 0
                var index = 0
                while index < utf8.count {
                    let byte = utf8[index]
                    let escape: StaticString?
                    var width = 1
                    switch byte {
                    case UInt8(ascii: "\""): escape = "\\\""
                    case UInt8(ascii: "\\"): escape = "\\\\"
                    case UInt8(ascii: "\n"): escape = "\\n"
                    case UInt8(ascii: "\r"): escape = "\\r"
                    case UInt8(ascii: "\t"): escape = "\\t"
                    case UInt8(ascii: "<"): escape = "\\u003c"
                    case UInt8(ascii: ">"): escape = "\\u003e"
                    case UInt8(ascii: "&"): escape = "\\u0026"
                    case 0xE2 where index + 2 < utf8.count && utf8[index + 1] == 0x80 && utf8[index + 2] == 0xA8:
                        escape = "\\u2028"
                        width = 3
                    case 0xE2 where index + 2 < utf8.count && utf8[index + 1] == 0x80 && utf8[index + 2] == 0xA9:
                        escape = "\\u2029"
                        width = 3
                    case 0..<0x20: escape = nil
                    default:
                        index += 1
                        continue
                    }
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                    if let escape {
                        escape.withUTF8Buffer { bytes.append(contentsOf: $0) }
                    } else {
                        // Another control character: \u00XX, lowercase hex.
                        let hex: [UInt8] = Array("0123456789abcdef".utf8)
                        bytes.append(contentsOf: [
                            UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                            hex[Int(byte >> 4)], hex[Int(byte & 0x0F)],
                        ])
                    }
                    index += width
                    start = index
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<utf8.count]))
            }
            bytes.append(UInt8(ascii: "\""))
        }

        /// Appends a JSON object written in the order of `members`.
        public mutating func object(_ members: [(String, JSONValue)]) {
            bytes.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in members {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                quote(key)
                bytes.append(UInt8(ascii: ":"))
                self.value(value)
            }
            bytes.append(UInt8(ascii: "}"))
        }

        /// Appends `value`; object members are sorted for stable output.
        public mutating func value(_ value: JSONValue) {
            switch value {
            case .null: raw("null")
            case .bool(let b): b ? raw("true") : raw("false")
            case .int(let i): raw(String(i))
            case .double(let d):
                if d.isFinite, d == d.rounded(), abs(d) < 1e15 {
                    raw(String(Int64(d)))
                } else if d.isFinite {
                    raw("\(d)")
                } else {
                    raw("null")
                }
            case .string(let s): quote(s)
            case .array(let values):
                bytes.append(UInt8(ascii: "["))
                for (index, element) in values.enumerated() {
                    if index > 0 { bytes.append(UInt8(ascii: ",")) }
                    self.value(element)
                }
                bytes.append(UInt8(ascii: "]"))
            case .object(let members):
                object(members.keys.sorted().map { ($0, members[$0]!) })
            }
        }
    }

    /// `value` as a JSON string literal.
    public static func quote(_ value: String) -> String {
        var writer = Writer(capacity: value.utf8.count + 2)
        writer.quote(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// A JSON object written in the order of `members`.
    public static func object(_ members: [(String, JSONValue)]) -> String {
        String(decoding: objectBytes(members), as: UTF8.self)
    }

    /// A JSON object written in the order of `members`, as UTF-8 bytes.
    public static func objectBytes(_ members: [(String, JSONValue)]) -> [UInt8] {
        var writer = Writer()
        writer.object(members)
        return writer.bytes
    }

    /// `value` as JSON text; object members are sorted for stable output.
    public static func encode(_ value: JSONValue) -> String {
        var writer = Writer()
        writer.value(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

import AnyJSON
import Foundation

/// Small helpers that write JSON text directly, for hot paths where an encoder's overhead shows
/// (token responses, JWT payloads) and where member order must be stable.
public enum JSONText {
    /// `value` as a JSON string literal.
    public static func quote(_ value: String) -> String {
        var out = "\""
        out.reserveCapacity(value.utf8.count + 2)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<": out += "\\u003c"
            case ">": out += "\\u003e"
            case "&": out += "\\u0026"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }

    /// A JSON object written in the order of `members`.
    public static func object(_ members: [(String, JSONValue)]) -> String {
        var out = "{"
        var first = true
        for (key, value) in members {
            if !first { out += "," }
            first = false
            out += quote(key)
            out += ":"
            out += encode(value)
        }
        out += "}"
        return out
    }

    /// `value` as JSON text; object members are sorted for stable output.
    public static func encode(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return d.isFinite ? "\(d)" : "null"
        case .string(let s): return quote(s)
        case .array(let values): return "[" + values.map(encode).joined(separator: ",") + "]"
        case .object(let members):
            return object(members.keys.sorted().map { ($0, members[$0]!) })
        }
    }
}

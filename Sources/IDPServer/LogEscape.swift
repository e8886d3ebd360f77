import Logging

/// Makes any text safe to place in one log line.
///
/// - Important: Values that reach a log line come from requests (client names, URIs, form
///   bodies, header values), from grants and from tailscaled's answers. A newline in such a value
///   would forge a log line of the attacker's choosing; an escape sequence could rewrite the
///   operator's terminal. ``EscapingLogHandler`` passes the message and every metadata value of
///   every log line tsidp writes through ``escape(_:)``.
public enum LogEscape {
    /// `text` with backslashes doubled and every control or otherwise non-printing character
    /// written as an escape: `\n`, `\r`, `\t`, or `\u{XXXX}` (its code point in hex).
    ///
    /// Printable text, including letters of any script, comes out unchanged, and the result
    /// always reads back to the original.
    public static func escape(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\\") }) { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if isPrintable(scalar) {
                    out.unicodeScalars.append(scalar)
                } else {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                }
            }
        }
        return out
    }

    /// Whether `scalar` shows as itself: not a control, format (bidirectional overrides,
    /// zero-width characters), line or paragraph separator, private-use, surrogate or unassigned
    /// code point, and not a space other than U+0020.
    static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.value >= 0x20 && scalar.value < 0x7F { return true }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned,
            .spaceSeparator:
            return false
        default:
            return true
        }
    }

    /// A metadata value with every string in it escaped, nested lists and dictionaries included.
    public static func escape(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): return .string(escape(text))
        case .stringConvertible(let convertible): return .string(escape(convertible.description))
        case .array(let items): return .array(items.map(escape))
        case .dictionary(let members):
            var escaped: Logger.Metadata = [:]
            for (key, member) in members { escaped[escape(key)] = escape(member) }
            return .dictionary(escaped)
        }
    }
}

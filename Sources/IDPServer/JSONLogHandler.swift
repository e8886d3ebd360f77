import Foundation
import Logging
import NIOConcurrencyHelpers

/// Writes each log line as one JSON object (`--log-format json`), for log collectors that parse
/// fields rather than text:
///
/// ```
/// {"time":"2026-11-30T05:12:09.416Z","level":"info","logger":"tsidp","message":"…","request_id":"…"}
/// ```
///
/// `time` (UTC, milliseconds), `level`, `logger` and `message` come first; every metadata value
/// follows as a member of its own (its key prefixed with `_` if it would take one of those four
/// names), nested lists and dictionaries as JSON arrays and objects. An error attached to the line
/// becomes `error.message` and `error.type`. Strings are escaped so that no value can end the line
/// or the object early: control characters and characters that do not print (bidirectional
/// overrides, zero-width characters) become `\u` escapes.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let output: JSONLogOutput

    /// A handler writing to `output` (standard error unless a test captures the lines).
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, output: JSONLogOutput = .standardError)
    {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = LogEventMetadata.merged(metadata, provider: metadataProvider, event: event)
        var line = "{\"time\":\"" + Self.timestamp(Date()) + "\",\"level\":" + Self.quote(event.level.rawValue)
        line += ",\"logger\":" + Self.quote(label) + ",\"message\":" + Self.quote(event.message.description)
        for key in merged.keys.sorted() {
            let name = ["time", "level", "logger", "message"].contains(key) ? "_" + key : key
            line += "," + Self.quote(name) + ":"
            Self.append(merged[key]!, to: &line)
        }
        line += "}\n"
        output.write(line)
    }

    static func append(_ value: Logger.Metadata.Value, to line: inout String) {
        switch value {
        case .string(let text): line += quote(text)
        case .stringConvertible(let convertible): line += quote(convertible.description)
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                append(element, to: &line)
            }
            line += "]"
        case .dictionary(let members):
            line += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                line += quote(key) + ":"
                append(members[key]!, to: &line)
            }
            line += "}"
        }
    }

    /// `text` as a JSON string whose every character prints.
    static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if LogEscape.isPrintable(scalar) {
                    out.unicodeScalars.append(scalar)
                } else if scalar.value > 0xFFFF {
                    for unit in String(scalar).utf16 { out += hex(unit) }
                } else {
                    out += hex(UInt16(scalar.value))
                }
            }
        }
        return out + "\""
    }

    private static func hex(_ unit: UInt16) -> String {
        let digits = String(unit, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
    }

    /// `date` as `2026-11-30T05:12:09.416Z`.
    static func timestamp(_ date: Date) -> String {
        let total = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(total.quotientAndRemainder(dividingBy: 1000).quotient)
        let milliseconds = Int(total - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis =
            milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)Z"
    }
}

/// Where ``JSONLogHandler`` writes: whole lines, one at a time.
public struct JSONLogOutput: Sendable {
    let write: @Sendable (String) -> Void

    /// Lines handed to `write` (tests).
    public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }

    /// Standard error, each line in one locked write so that lines from different threads never
    /// interleave.
    public static let standardError: JSONLogOutput = {
        let lock = NIOLock()
        return JSONLogOutput { line in
            lock.withLock {
                var bytes = Array(line.utf8)
                var offset = 0
                while offset < bytes.count {
                    let written = bytes.withUnsafeMutableBytes { buffer in
                        Foundation.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    }
                    if written <= 0 {
                        if written < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }()
}

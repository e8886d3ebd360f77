/// Durations written the way Go's `time.ParseDuration` reads them (`30s`, `1m30s`, `1.5s`,
/// `500ms`, `2h`), so that timeouts are spelled alike on the command line and in the
/// environment; a bare number counts seconds.
public enum GoDuration {
    private static let units: [(suffix: String, nanoseconds: Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]

    /// The duration `text` names, or nil when it is not one.
    public static func parse(_ text: String) -> Duration? {
        guard !text.isEmpty else { return nil }
        if let seconds = Double(text), seconds.isFinite, text.allSatisfy({ $0.isNumber || $0 == "." }) {
            return .nanoseconds(Int64((seconds * 1e9).rounded()))
        }
        var rest = Substring(text)
        var negative = false
        if let sign = rest.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            rest = rest.dropFirst()
        }
        guard !rest.isEmpty else { return nil }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number != ".", let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            // Longest suffix first: "ms" before "m", "ns" before "s".
            guard
                let unit = units.sorted(by: { $0.suffix.count > $1.suffix.count }).first(where: {
                    rest.hasPrefix($0.suffix)
                })
            else { return nil }
            rest = rest.dropFirst(unit.suffix.count)
            total += value * unit.nanoseconds
        }
        guard total.isFinite, total < 9.2e18 else { return nil }
        let nanoseconds = Int64(total.rounded())
        return .nanoseconds(negative ? -nanoseconds : nanoseconds)
    }
}

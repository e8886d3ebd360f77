/// Rewrites Go `flag`-package spellings into the ones the argument parser reads, so that Go
/// tsidp command lines work unchanged: `-port 443`, `-port=443`, `--funnel=false`, `-dev`.
public enum GoFlags {
    /// Flags that take no value; Go accepts `-flag`, `-flag=true` and `-flag=false` for them.
    public static let booleanFlags: Set<String> = [
        "verbose", "use-local-tailscaled", "funnel", "enable-sts", "allow-insecure-registration",
        "debug-all-requests", "debug-tailscaled", "debug-tsnet", "dev",
    ]

    /// Go's `strconv.ParseBool` values.
    public static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": return true
        case "0", "f", "F", "false", "FALSE", "False": return false
        default: return nil
        }
    }

    /// The normalized argument list, or a one-line error.
    public static func normalize(_ arguments: [String]) throws(UsageError) -> [String] {
        var result: [String] = []
        var passthrough = false
        for argument in arguments {
            if passthrough || argument == "--" {
                passthrough = true
                result.append(argument)
                continue
            }
            var arg = argument
            // Go accepts one or two dashes for every long flag.
            if arg.hasPrefix("-"), !arg.hasPrefix("--"), arg.count > 2, arg.dropFirst().first?.isLetter == true {
                arg = "-" + arg
            }
            guard arg.hasPrefix("--"), let equals = arg.firstIndex(of: "=") else {
                result.append(arg)
                continue
            }
            let name = String(arg[arg.index(arg.startIndex, offsetBy: 2)..<equals])
            let value = String(arg[arg.index(after: equals)...])
            guard booleanFlags.contains(name) else {
                // Go reads `-dir=` as an empty value; the parser would call the value missing.
                result += value.isEmpty ? ["--\(name)", ""] : [arg]
                continue
            }
            guard let flag = parseBool(value) else {
                throw UsageError("invalid boolean value \"\(value)\" for --\(name): use true or false")
            }
            result.append(flag ? "--\(name)" : "--no-\(name)")
        }
        return result
    }
}

/// A command-line mistake: printed as one line, exit status 2.
public struct UsageError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

import Foundation
import IDPServer
import Logging

/// Everything tsidp needs to start, resolved from flags, environment and defaults.
///
/// - Important: Its description hides the auth key (values like this one reach debug logs).
public struct Configuration: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Mode: Sendable, Equatable {
        /// Simulated tailnet, plain HTTP on 127.0.0.1.
        case development
        /// The host's tailscaled at a socket.
        case localTailscaled
        /// tsidp supervises its own tailscaled.
        case embedded
    }

    public var mode: Mode
    public var port: Int
    public var localPort: Int?
    public var socketPath: String
    public var hostname: String
    public var stateDirectory: String?
    public var state: String?
    public var funnel: Bool
    public var enableSTS: Bool
    public var logLevel: Logger.Level
    /// `--log-format`: how log lines are written.
    public var logFormat: LogFormat = .text
    public var allowInsecureRegistration: Bool
    public var debugAllRequests: Bool
    public var debugTailscaled: Bool
    public var devIdentitiesPath: String?
    /// Idle and read timeouts and connection caps of every listener.
    public var listenerLimits: ListenerLimits
    /// Embedded mode: the `tailscaled` to run (`--tailscaled`, `TSIDP_TAILSCALED`); nil finds it on `PATH`.
    public var tailscaledPath: String? = nil
    /// Embedded mode: the auth key (`TS_AUTHKEY`, `TS_AUTH_KEY`, or `TS_AUTHKEY_FILE`'s content).
    public var authKey: String? = nil
    /// Embedded mode: `TS_ADVERTISE_TAGS` (comma-separated `tag:` names).
    public var advertiseTags: [String]? = nil
    /// Embedded mode: `TSNET_FORCE_LOGIN=1`.
    public var forceLogin: Bool = false
    /// Embedded mode: `TS_TAILSCALED_EXTRA_ARGS`, added to tailscaled's command line.
    public var tailscaledExtraArguments: [String] = []
    /// `TSIDP_GRANT_JOURNAL_ENTRIES`: the most journal entries before the grant journal is folded
    /// into its bucket files (`nil`: the default, 16,384).
    public var grantJournalEntries: Int? = nil
    /// `--server-url`, `--trusted-proxy`, `--unix-socket` and sockets passed by systemd.
    public var reverseProxy = ReverseProxySettings()
    /// `--cap-name` (`TSIDP_CAP_NAME`): the application capability under which grants are read
    /// from WhoIs, in every mode.
    public var capabilityName: String = Configuration.defaultCapabilityName

    public static let defaultSocket = "/var/run/tailscale/tailscaled.sock"
    /// The Go tsidp's capability name.
    public static let defaultCapabilityName = "tailscale.com/cap/tsidp"

    public var description: String {
        "Configuration(mode: \(mode), port: \(port), localPort: \(localPort.map(String.init) ?? "off"), "
            + "dir: \(stateDirectory ?? "none"), authKey: \(authKey == nil ? "none" : "[redacted]"))"
    }

    public var debugDescription: String { description }

    /// Resolves `command` against `environment`: a flag on the command line wins over its
    /// environment variable, which wins over the default.
    ///
    /// - Throws: ``UsageError`` with a one-line message for bad values and impossible combinations.
    public static func resolve(_ command: TsidpCommand, environment: [String: String]) throws -> Configuration {
        func envBool(_ name: String) throws -> Bool? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = GoFlags.parseBool(text) else {
                throw UsageError("invalid boolean value \"\(text)\" in \(name): use true or false")
            }
            return value
        }
        func envInt(_ name: String) throws -> Int? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int(text) else { throw UsageError("invalid number \"\(text)\" in \(name)") }
            return value
        }
        func envString(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }

        let dev = command.dev ?? false
        let useLocal = try command.useLocalTailscaled ?? envBool("TSIDP_USE_LOCAL_TAILSCALED") ?? false
        let funnel = try command.funnel ?? envBool("TSIDP_USE_FUNNEL") ?? false
        let port = try command.port ?? envInt("TSIDP_PORT") ?? (dev ? 8080 : 443)
        guard (1...65535).contains(port) else {
            throw UsageError("--port \(port) is out of range: use 1 to 65535")
        }
        let localPortValue = try command.localPort ?? envInt("TSIDP_LOCAL_PORT") ?? -1
        guard localPortValue == -1 || (1...65535).contains(localPortValue) else {
            throw UsageError("--local-port \(localPortValue) is out of range: use 1 to 65535, or -1 for off")
        }
        if localPortValue == port {
            throw UsageError("--local-port must differ from --port (both are \(port))")
        }
        let verbose = command.verbose ?? false
        let levelText = command.log ?? envString("TSIDP_LOG") ?? (verbose ? "debug" : "info")
        let level: Logger.Level
        switch levelText.lowercased() {
        case "debug": level = .debug
        case "info": level = .info
        case "warn", "warning": level = .warning
        case "error": level = .error
        default: throw UsageError("invalid --log level \"\(levelText)\": use debug, info, warn or error")
        }
        let formatText = command.logFormat ?? envString("TSIDP_LOG_FORMAT") ?? "text"
        guard let logFormat = LogFormat(rawValue: formatText.lowercased()) else {
            throw UsageError("invalid --log-format \"\(formatText)\": use text or json")
        }
        let hostname = command.hostname ?? envString("TS_HOSTNAME") ?? "idp"
        guard !hostname.isEmpty, hostname.count <= 63,
            hostname.allSatisfy({ $0.isLetter && $0.isASCII || $0.isNumber || $0 == "-" }),
            !hostname.hasPrefix("-"), !hostname.hasSuffix("-")
        else {
            throw UsageError("invalid --hostname \"\(hostname)\": use letters, digits and '-' (at most 63)")
        }
        func duration(_ value: String?, flag: String, variable: String, default fallback: Duration) throws
            -> Duration
        {
            guard let text = value ?? envString(variable) else { return fallback }
            let source = value == nil ? variable : "--\(flag)"
            guard let parsed = GoDuration.parse(text) else {
                throw UsageError("invalid duration \"\(text)\" in \(source): use a duration such as 30s, 1m or 500ms")
            }
            guard parsed > .zero, parsed <= .seconds(24 * 3600) else {
                throw UsageError("\(source) \(text) is out of range: use more than 0s and at most 24h")
            }
            return parsed
        }
        func count(_ value: Int?, flag: String, variable: String, default fallback: Int) throws -> Int {
            let number = try value ?? envInt(variable) ?? fallback
            guard (1...1_000_000).contains(number) else {
                throw UsageError(
                    "\(value == nil ? variable : "--\(flag)") \(number) is out of range: use 1 to 1000000")
            }
            return number
        }
        let defaults = ListenerLimits.defaults
        let limits = ListenerLimits(
            idleTimeout: try duration(
                command.idleTimeout, flag: "idle-timeout", variable: "TSIDP_IDLE_TIMEOUT",
                default: defaults.idleTimeout),
            headerTimeout: try duration(
                command.readHeaderTimeout, flag: "read-header-timeout", variable: "TSIDP_READ_HEADER_TIMEOUT",
                default: defaults.headerTimeout),
            bodyTimeout: try duration(
                command.readBodyTimeout, flag: "read-body-timeout", variable: "TSIDP_READ_BODY_TIMEOUT",
                default: defaults.bodyTimeout),
            maxConnectionsPerPeer: try count(
                command.maxConnectionsPerPeer, flag: "max-connections-per-peer",
                variable: "TSIDP_MAX_CONNECTIONS_PER_PEER", default: defaults.maxConnectionsPerPeer),
            maxConnections: try count(
                command.maxConnections, flag: "max-connections", variable: "TSIDP_MAX_CONNECTIONS",
                default: defaults.maxConnections))

        // An empty path would put the signing key and clients in the working directory.
        if command.dir == "" {
            throw UsageError("--dir is empty: name the state directory, e.g. --dir /var/lib/tsidp")
        }
        if command.dir == nil, environment["TS_STATE_DIR"] == "" {
            throw UsageError("TS_STATE_DIR is set but empty: set it to the state directory, or unset it")
        }

        let socket = command.socket ?? defaultSocket
        guard !socket.isEmpty else { throw UsageError("--socket must not be empty") }

        if !dev && command.devIdentities != nil {
            throw UsageError("--dev-identities only works together with --dev")
        }
        if dev && useLocal {
            throw UsageError("--dev and --use-local-tailscaled cannot be combined: --dev simulates the tailnet")
        }
        if dev && funnel {
            throw UsageError("--dev and --funnel cannot be combined: --dev never leaves this machine")
        }
        if !dev && environment["TAILSCALE_USE_WIP_CODE"] != "1" && environment["TAILSCALE_USE_WIP_CODE"] != "true" {
            throw UsageError(
                "tsidp is work in progress: set TAILSCALE_USE_WIP_CODE=1 to run it (or try --dev, which needs nothing)")
        }

        let journalEntries = try envInt("TSIDP_GRANT_JOURNAL_ENTRIES")
        if let journalEntries, !(1...100_000).contains(journalEntries) {
            throw UsageError("TSIDP_GRANT_JOURNAL_ENTRIES \(journalEntries) is out of range: use 1 to 100000")
        }

        var resolved = Configuration(
            mode: dev ? .development : (useLocal ? .localTailscaled : .embedded),
            port: port,
            localPort: localPortValue == -1 ? nil : localPortValue,
            socketPath: socket,
            hostname: hostname,
            stateDirectory: command.dir ?? envString("TS_STATE_DIR"),
            state: command.state ?? envString("TS_STATE"),
            funnel: funnel,
            enableSTS: try command.enableSTS ?? envBool("TSIDP_ENABLE_STS") ?? false,
            logLevel: level,
            allowInsecureRegistration: command.allowInsecureRegistration ?? false,
            debugAllRequests: try command.debugAllRequests ?? envBool("TSIDP_DEBUG_ALL_REQUESTS") ?? false,
            debugTailscaled: try command.debugTailscaled ?? envBool("TSIDP_DEBUG_TSNET") ?? false,
            devIdentitiesPath: command.devIdentities,
            listenerLimits: limits)
        resolved.grantJournalEntries = journalEntries
        resolved.logFormat = logFormat
        resolved.capabilityName = try capabilityName(command.capName, environment: environment)
        if resolved.mode == .embedded {
            try resolved.resolveEmbedded(command, environment: environment)
        }
        resolved.reverseProxy = try ReverseProxySettings.resolve(
            command, environment: environment, dev: dev, embedded: resolved.mode == .embedded)
        return resolved
    }

    /// The `--cap-name` (or `TSIDP_CAP_NAME`) value, checked: a Tailscale capability name is one
    /// token such as `example.com/cap/tsidp`.
    static func capabilityName(_ flag: String?, environment: [String: String]) throws -> String {
        let source = flag == nil ? "TSIDP_CAP_NAME" : "--cap-name"
        let fromEnvironment = environment["TSIDP_CAP_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        guard let name = flag ?? fromEnvironment else { return defaultCapabilityName }
        guard !name.isEmpty else {
            throw UsageError("\(source) is empty: name the capability, e.g. example.com/cap/tsidp, or leave it out")
        }
        guard name.utf8.count <= 256 else {
            throw UsageError("\(source) is too long (\(name.utf8.count) bytes): use at most 256")
        }
        guard
            !name.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F })
        else {
            throw UsageError("\(source) \"\(name)\" contains white space or control characters")
        }
        guard let slash = name.firstIndex(of: "/"), slash != name.startIndex, name.last != "/" else {
            throw UsageError(
                "\(source) \"\(name)\" is not a capability name: use a domain you control and a path, e.g. example.com/cap/tsidp"
            )
        }
        return name
    }

    /// Features that are parsed but not built yet, as a one-line refusal.
    public var unsupportedFeature: String? {
        if let state, !state.hasPrefix("kube:"), mode != .embedded {
            return
                "--state with a file names the embedded node's state; with --use-local-tailscaled or --dev only kube:<secret> is used (tsidp's own state, in a Kubernetes Secret)"
        }
        return nil
    }

    /// The embedded node's settings: tailscaled, auth key, tags, forced login.
    mutating func resolveEmbedded(_ command: TsidpCommand, environment: [String: String]) throws {
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        if let path = command.tailscaled ?? value("TSIDP_TAILSCALED") {
            guard !path.isEmpty else { throw UsageError("--tailscaled is empty: name the tailscaled program") }
            tailscaledPath = path
        }
        let first = value("TS_AUTHKEY")
        let second = value("TS_AUTH_KEY")
        if let first, let second, first != second {
            throw UsageError("TS_AUTHKEY and TS_AUTH_KEY are both set, to different keys: set only one")
        }
        var key = (first ?? second)?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let file = value("TS_AUTHKEY_FILE") {
            if key != nil {
                throw UsageError("TS_AUTHKEY_FILE and TS_AUTHKEY (or TS_AUTH_KEY) are both set: set only one")
            }
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
                throw UsageError(
                    "cannot read TS_AUTHKEY_FILE \(file): it is a directory; name the file holding the key")
            }
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                throw UsageError("cannot read TS_AUTHKEY_FILE \(file): \(Self.reason(error))")
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { throw UsageError("TS_AUTHKEY_FILE \(file) is empty: put the auth key in it") }
            key = text
        }
        if let key {
            guard !key.isEmpty, !key.contains(where: { $0.isWhitespace || $0.isNewline }) else {
                throw UsageError("the auth key contains spaces or line breaks: check TS_AUTHKEY / TS_AUTHKEY_FILE")
            }
        }
        authKey = key
        if let text = value("TS_ADVERTISE_TAGS") {
            let tags = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for tag in tags where !tag.hasPrefix("tag:") || tag.count < 5 {
                throw UsageError("TS_ADVERTISE_TAGS: \"\(tag)\" is not a tag; tags look like tag:idp")
            }
            advertiseTags = tags
        }
        if let text = value("TSNET_FORCE_LOGIN") {
            guard let flag = GoFlags.parseBool(text) else {
                throw UsageError("invalid boolean value \"\(text)\" in TSNET_FORCE_LOGIN: use 1 or 0")
            }
            forceLogin = flag
        }
        if let text = value("TS_TAILSCALED_EXTRA_ARGS") {
            tailscaledExtraArguments = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
        if let state, state.isEmpty {
            throw UsageError("--state is empty: name a state file or kube:<secret>, or leave it out")
        }
    }

    static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(nsError.code))) }
        if nsError.code == NSFileReadNoSuchFileError { return "no such file" }
        if nsError.code == NSFileReadNoPermissionError { return "permission denied" }
        return nsError.localizedDescription
    }
}

/// `--log-format`: how log lines are written to standard error.
public enum LogFormat: String, Sendable, Equatable {
    /// `timestamp level label: key=value message`, every value escaped.
    case text
    /// One JSON object per line (``JSONLogHandler``).
    case json
}

import AnyJSON
import Foundation

/// The backend states of `ipn.State`, as the bus numbers them and `/status` names them.
public enum BackendState: Int, Sendable, Equatable, CustomStringConvertible {
    case noState = 0, inUseOtherUser, needsLogin, needsMachineAuth, stopped, starting, running

    /// The state `/status` names `text` (`Running`, `NeedsLogin`, …); nil for names it does not know.
    public init?(name text: String) {
        let names: [String: BackendState] = [
            "NoState": .noState, "InUseOtherUser": .inUseOtherUser, "NeedsLogin": .needsLogin,
            "NeedsMachineAuth": .needsMachineAuth, "Stopped": .stopped, "Starting": .starting, "Running": .running,
        ]
        guard let state = names[text] else { return nil }
        self = state
    }

    public var description: String {
        switch self {
        case .noState: return "NoState"
        case .inUseOtherUser: return "InUseOtherUser"
        case .needsLogin: return "NeedsLogin"
        case .needsMachineAuth: return "NeedsMachineAuth"
        case .stopped: return "Stopped"
        case .starting: return "Starting"
        case .running: return "Running"
        }
    }
}

/// One notification of the IPN bus (`ipn.Notify`): the fields tsidp acts on.
public struct IPNNotify: Sendable, Decodable, Equatable {
    public var sessionID: String = ""
    public var errorMessage: String?
    /// True when this notification says a login finished.
    public var loginFinished = false
    public var state: BackendState?
    /// An interactive login URL for a person to open.
    public var browseToURL: String?

    enum CodingKeys: String, CodingKey {
        case sessionID = "SessionID", errorMessage = "ErrMessage", loginFinished = "LoginFinished"
        case state = "State", browseToURL = "BrowseToURL"
    }

    public init(
        sessionID: String = "", errorMessage: String? = nil, loginFinished: Bool = false, state: BackendState? = nil,
        browseToURL: String? = nil
    ) {
        self.sessionID = sessionID
        self.errorMessage = errorMessage
        self.loginFinished = loginFinished
        self.state = state
        self.browseToURL = browseToURL
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sessionID = try c.decodeIfPresent(String.self, forKey: .sessionID) ?? ""
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        loginFinished = try c.decodeIfPresent(JSONValue.self, forKey: .loginFinished).map { $0 != .null } ?? false
        // A state number this version does not know is left out rather than refused.
        state = try c.decodeIfPresent(Int.self, forKey: .state).flatMap(BackendState.init(rawValue:))
        browseToURL = try c.decodeIfPresent(String.self, forKey: .browseToURL).flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// `ipn.Prefs` as a JSON object: tsidp changes the few fields it owns and sends every other one
/// back as it came, so nothing an operator set is lost by a field this version does not know.
public struct Prefs: JSONObjectDocument {
    public var fields: [String: JSONValue]

    public init(fields: [String: JSONValue] = [:]) {
        self.fields = fields
    }

    /// The defaults of a new node (`ipn.NewPrefs()`), used for every field tailscaled's answer
    /// leaves out, because `/start` replaces the whole prefs and a missing field would become
    /// Go's zero value.
    public static let newNodeDefaults: [String: JSONValue] = [
        "ControlURL": .string("https://controlplane.tailscale.com"),
        "RouteAll": .bool(false),
        "CorpDNS": .bool(true),
        "WantRunning": .bool(false),
        "LoggedOut": .bool(false),
        "ShieldsUp": .bool(false),
        "RunSSH": .bool(false),
        "RunWebClient": .bool(false),
        "NoSNAT": .bool(false),
        "NoStatefulFiltering": .bool(true),
        "NetfilterMode": .int(2),
        "AutoUpdate": .object(["Check": .bool(true), "Apply": .null]),
        "AppConnector": .object(["Advertise": .bool(false)]),
        "PostureChecking": .bool(false),
    ]

    /// The prefs to send with `/start` for tsidp's node: the current ones completed with the
    /// defaults, then running, with `hostname` and `tags` (nil leaves the tags as they are).
    public func forStart(hostname: String, tags: [String]?) -> Prefs {
        var result = fields
        for (key, value) in Self.newNodeDefaults where result[key] == nil || result[key] == .null {
            result[key] = value
        }
        if case .string(let url)? = result["ControlURL"], url.isEmpty {
            result["ControlURL"] = Self.newNodeDefaults["ControlURL"]
        }
        // The persisted login: tailscaled ignores it on `/start`; it is not tsidp's to send.
        result["Config"] = nil
        result["WantRunning"] = .bool(true)
        result["LoggedOut"] = .bool(false)
        result["Hostname"] = .string(hostname)
        if let tags { result["AdvertiseTags"] = tags.isEmpty ? .null : .array(tags.map(JSONValue.string)) }
        return Prefs(fields: result)
    }
}

/// The body of `POST /localapi/v0/start` (`ipn.Options`).
public struct StartOptions: Sendable, Encodable {
    public var updatePrefs: Prefs
    public var authKey: String

    public init(updatePrefs: Prefs, authKey: String) {
        self.updatePrefs = updatePrefs
        self.authKey = authKey
    }

    enum CodingKeys: String, CodingKey {
        case frontendLogID = "FrontendLogID", updatePrefs = "UpdatePrefs", authKey = "AuthKey"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("", forKey: .frontendLogID)
        try c.encode(updatePrefs, forKey: .updatePrefs)
        try c.encode(authKey, forKey: .authKey)
    }
}

/// `ipn.ServeConfig` as a JSON object, so that entries tsidp does not own (other services, other
/// ports, other sessions' foreground configs) go back exactly as they were read.
public struct ServeConfig: JSONObjectDocument {
    public var fields: [String: JSONValue]

    public init(fields: [String: JSONValue] = [:]) {
        self.fields = fields
    }

    /// The config of a foreground session (`Foreground[sessionID]`), which tailscaled removes by
    /// itself when that session's bus stream ends.
    public func foreground(_ sessionID: String) -> ServeConfig? {
        guard case .object(let sessions)? = fields["Foreground"], case .object(let config)? = sessions[sessionID]
        else { return nil }
        return ServeConfig(fields: config)
    }

    /// Sets (or, with nil, removes) the foreground config of `sessionID`.
    public mutating func setForeground(_ sessionID: String, _ config: ServeConfig?) {
        var sessions: [String: JSONValue] = [:]
        if case .object(let existing)? = fields["Foreground"] { sessions = existing }
        sessions[sessionID] = config.map { .object($0.fields) }
        fields["Foreground"] = sessions.isEmpty ? nil : .object(sessions)
    }

    /// Whether any config (the main one or another session's) already serves `hostPort`
    /// (`name:port`) or claims TCP `port`.
    public func claims(port: Int, hostPort: String, exceptSession: String) -> Bool {
        func claimsIn(_ config: [String: JSONValue]) -> Bool {
            if case .object(let tcp)? = config["TCP"], tcp[String(port)] != nil { return true }
            if case .object(let web)? = config["Web"], web[hostPort] != nil { return true }
            return false
        }
        if claimsIn(fields) { return true }
        if case .object(let sessions)? = fields["Foreground"] {
            for (session, value) in sessions where session != exceptSession {
                if case .object(let config) = value, claimsIn(config) { return true }
            }
        }
        return false
    }

    /// A config that terminates HTTPS for `hostPort` on `port`, proxies every path to `target`,
    /// and, with `funnel`, lets Funnel traffic in.
    public static func proxy(port: Int, hostPort: String, target: String, funnel: Bool) -> ServeConfig {
        var fields: [String: JSONValue] = [
            "TCP": .object([String(port): .object(["HTTPS": .bool(true)])]),
            "Web": .object([hostPort: .object(["Handlers": .object(["/": .object(["Proxy": .string(target)])])])]),
        ]
        if funnel { fields["AllowFunnel"] = .object([hostPort: .bool(true)]) }
        return ServeConfig(fields: fields)
    }
}

/// A LocalAPI document kept as a JSON object (`null` reads as empty), so that fields tsidp does
/// not know go back exactly as they came.
public protocol JSONObjectDocument: Sendable, Codable, Equatable {
    var fields: [String: JSONValue] { get set }
    init(fields: [String: JSONValue])
}

extension JSONObjectDocument {
    public init(from decoder: any Decoder) throws {
        switch try JSONValue(from: decoder) {
        case .object(let object): self.init(fields: object)
        case .null: self.init(fields: [:])
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an object"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try JSONValue.object(fields).encode(to: encoder)
    }
}

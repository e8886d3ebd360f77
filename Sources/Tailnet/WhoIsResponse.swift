import AnyJSON
import Foundation

/// The answer of LocalAPI `GET /localapi/v0/whois`: who owns the device behind an address.
///
/// Field names keep the Go spelling of `apitype.WhoIsResponse`. Decoding is tolerant: `null` or
/// missing fields become empty values, because tailscaled omits zero values and emits `null` for
/// nil slices and maps.
public struct WhoIsResponse: Sendable, Codable, Equatable {
    public var node: Node
    public var userProfile: UserProfile
    /// Peer capabilities granted to the caller, keyed by capability name; each value is the list of
    /// raw JSON values taken from the tailnet policy grants.
    public var capMap: [String: [JSONValue]]

    enum CodingKeys: String, CodingKey {
        case node = "Node"
        case userProfile = "UserProfile"
        case capMap = "CapMap"
    }

    public init(node: Node, userProfile: UserProfile, capMap: [String: [JSONValue]] = [:]) {
        self.node = node
        self.userProfile = userProfile
        self.capMap = capMap
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let node = try c.decodeIfPresent(Node.self, forKey: .node) else {
            throw DecodingError.valueNotFound(
                Node.self, .init(codingPath: [CodingKeys.node], debugDescription: "WhoIs answer has no Node"))
        }
        guard let profile = try c.decodeIfPresent(UserProfile.self, forKey: .userProfile) else {
            throw DecodingError.valueNotFound(
                UserProfile.self,
                .init(codingPath: [CodingKeys.userProfile], debugDescription: "WhoIs answer has no UserProfile"))
        }
        self.node = node
        self.userProfile = profile
        let raw = try c.decodeIfPresent([String: JSONValue].self, forKey: .capMap) ?? [:]
        var caps: [String: [JSONValue]] = [:]
        for (name, value) in raw {
            switch value {
            case .array(let values): caps[name] = values
            case .null: caps[name] = []
            default:
                throw DecodingError.dataCorrupted(
                    .init(codingPath: [CodingKeys.capMap], debugDescription: "CapMap[\(name)] is not a list"))
            }
        }
        self.capMap = caps
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(node, forKey: .node)
        try c.encode(userProfile, forKey: .userProfile)
        try c.encode(capMap, forKey: .capMap)
    }
}

/// The subset of `tailcfg.Node` that identity decisions use.
public struct Node: Sendable, Codable, Equatable {
    public var id: Int64
    public var stableID: String
    /// The node's MagicDNS name with its trailing dot, e.g. `alice-laptop.tail1234.ts.net.`.
    public var name: String
    /// The owning user's ID (the "tagged-devices" user for tagged nodes).
    public var user: Int64
    public var key: String
    /// The node's Tailscale addresses as prefixes, e.g. `100.101.102.103/32`.
    public var addresses: [String]
    /// Non-empty when the node is tagged; tagged nodes have no user identity.
    public var tags: [String]
    public var computedName: String
    public var hostinfo: Hostinfo

    enum CodingKeys: String, CodingKey {
        case id = "ID", stableID = "StableID", name = "Name", user = "User", key = "Key"
        case addresses = "Addresses", tags = "Tags", computedName = "ComputedName", hostinfo = "Hostinfo"
    }

    public init(
        id: Int64, stableID: String, name: String, user: Int64, key: String, addresses: [String],
        tags: [String] = [], computedName: String = "", hostinfo: Hostinfo = Hostinfo()
    ) {
        self.id = id
        self.stableID = stableID
        self.name = name
        self.user = user
        self.key = key
        self.addresses = addresses
        self.tags = tags
        self.computedName = computedName
        self.hostinfo = hostinfo
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(Int64.self, forKey: .id) ?? 0
        stableID = try c.decodeIfPresent(String.self, forKey: .stableID) ?? ""
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        user = try c.decodeIfPresent(Int64.self, forKey: .user) ?? 0
        key = try c.decodeIfPresent(String.self, forKey: .key) ?? ""
        addresses = try c.decodeIfPresent([String].self, forKey: .addresses) ?? []
        tags = try c.decodeIfPresent([String].self, forKey: .tags) ?? []
        computedName = try c.decodeIfPresent(String.self, forKey: .computedName) ?? ""
        hostinfo = try c.decodeIfPresent(Hostinfo.self, forKey: .hostinfo) ?? Hostinfo()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(stableID, forKey: .stableID)
        try c.encode(name, forKey: .name)
        try c.encode(user, forKey: .user)
        try c.encode(key, forKey: .key)
        try c.encode(addresses, forKey: .addresses)
        if !tags.isEmpty { try c.encode(tags, forKey: .tags) }
        if !computedName.isEmpty { try c.encode(computedName, forKey: .computedName) }
        if hostinfo != Hostinfo() { try c.encode(hostinfo, forKey: .hostinfo) }
    }

    /// Whether the node is tagged (and so has no user identity).
    public var isTagged: Bool { !tags.isEmpty }
}

/// The parts of `tailcfg.Hostinfo` shown to operators.
public struct Hostinfo: Sendable, Codable, Equatable {
    public var os: String
    public var hostname: String

    enum CodingKeys: String, CodingKey {
        case os = "OS", hostname = "Hostname"
    }

    public init(os: String = "", hostname: String = "") {
        self.os = os
        self.hostname = hostname
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        os = try c.decodeIfPresent(String.self, forKey: .os) ?? ""
        hostname = try c.decodeIfPresent(String.self, forKey: .hostname) ?? ""
    }
}

/// `tailcfg.UserProfile`: the person who owns a node.
public struct UserProfile: Sendable, Codable, Equatable {
    public var id: Int64
    public var loginName: String
    public var displayName: String
    public var profilePicURL: String
    /// Groups the control plane chose to reveal, sorted.
    public var groups: [String]

    enum CodingKeys: String, CodingKey {
        case id = "ID", loginName = "LoginName", displayName = "DisplayName"
        case profilePicURL = "ProfilePicURL", groups = "Groups"
    }

    public init(id: Int64, loginName: String, displayName: String, profilePicURL: String = "", groups: [String] = []) {
        self.id = id
        self.loginName = loginName
        self.displayName = displayName
        self.profilePicURL = profilePicURL
        self.groups = groups
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(Int64.self, forKey: .id) ?? 0
        loginName = try c.decodeIfPresent(String.self, forKey: .loginName) ?? ""
        displayName = try c.decodeIfPresent(String.self, forKey: .displayName) ?? ""
        profilePicURL = try c.decodeIfPresent(String.self, forKey: .profilePicURL) ?? ""
        groups = try c.decodeIfPresent([String].self, forKey: .groups) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(loginName, forKey: .loginName)
        try c.encode(displayName, forKey: .displayName)
        if !profilePicURL.isEmpty { try c.encode(profilePicURL, forKey: .profilePicURL) }
        if !groups.isEmpty { try c.encode(groups, forKey: .groups) }
    }
}

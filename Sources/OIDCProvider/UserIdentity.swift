import AnyJSON
import Foundation

/// Who a request belongs to, as the tailnet said at the time: the user, their device, and the
/// policy grants that apply. Built from a WhoIs answer by the server; this module knows nothing
/// of how it was obtained.
public struct UserIdentity: Sendable, Equatable, Codable {
    public var userID: Int64
    public var loginName: String
    public var displayName: String
    public var profilePicURL: String
    public var groups: [String]
    public var nodeID: Int64
    public var nodeStableID: String
    /// The node's FQDN with trailing dot, e.g. `alice-laptop.tail1234.ts.net.`.
    public var nodeName: String
    public var nodeKey: String
    /// The node's Tailscale addresses as prefixes.
    public var addresses: [String]
    public var tags: [String]
    /// The raw values granted under the tsidp capability name.
    public var capabilityValues: [JSONValue]

    public init(
        userID: Int64, loginName: String, displayName: String, profilePicURL: String = "", groups: [String] = [],
        nodeID: Int64, nodeStableID: String = "", nodeName: String, nodeKey: String = "", addresses: [String] = [],
        tags: [String] = [], capabilityValues: [JSONValue] = []
    ) {
        self.userID = userID
        self.loginName = loginName
        self.displayName = displayName
        self.profilePicURL = profilePicURL
        self.groups = groups
        self.nodeID = nodeID
        self.nodeStableID = nodeStableID
        self.nodeName = nodeName
        self.nodeKey = nodeKey
        self.addresses = addresses
        self.tags = tags
        self.capabilityValues = capabilityValues
    }

    // Short member names keep the grant file (and a Kubernetes Secret holding it) compact.
    enum CodingKeys: String, CodingKey {
        case userID = "u", loginName = "l", displayName = "d", profilePicURL = "p", groups = "g", nodeID = "n"
        case nodeStableID = "ns", nodeName = "nn", nodeKey = "nk", addresses = "a", tags = "t", capabilityValues = "c"
    }

    /// The profile picture URL as the `picture` claim may carry it: only an absolute `https` URL.
    ///
    /// - Important: The URL comes from the tailnet's user profile and ends up in relying parties'
    ///   pages; `javascript:`, `data:` and plain `http:` URLs are dropped, never passed on.
    public var pictureURL: String? {
        guard let url = URLComponents(string: profilePicURL), url.scheme?.lowercased() == "https",
            let host = url.host, !host.isEmpty
        else { return nil }
        return profilePicURL
    }

    /// Whether the device is tagged: tagged devices have no user identity.
    public var isTagged: Bool { !tags.isEmpty }

    /// The policy rules granted to this identity; a malformed grant is an error.
    public func rules() throws -> [CapabilityRule] {
        try CapabilityRule.parse(capabilityValues)
    }

    /// The login name before `@` (the Go tsidp's `username`).
    public var username: String {
        String(loginName.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    /// The tailnet part of the node name, after the first label (`tail1234.ts.net.`).
    public var tailnet: String {
        guard let dot = nodeName.firstIndex(of: ".") else { return "" }
        return String(nodeName[nodeName.index(after: dot)...])
    }

    /// Whether the login name is an email address the tailnet's identity provider vouched for:
    /// `email_verified` is true for it. Login names without a domain dot (`alice@github`,
    /// `alice@passkey`), whose "realish" address tsidp invents, are not.
    public var emailIsVerified: Bool {
        guard let at = loginName.firstIndex(of: "@"), at != loginName.startIndex else { return false }
        let domain = loginName[loginName.index(after: at)...]
        return domain.contains(".") && !domain.hasPrefix(".") && !domain.hasSuffix(".")
    }

    /// An email address relying parties accept: login names such as `alice@github` (no domain
    /// dot) become `alice@github.<idp host>`, as the Go tsidp does.
    public func realishEmail(idpHost: String) -> String {
        guard let at = loginName.firstIndex(of: "@") else { return loginName }
        let domain = loginName[loginName.index(after: at)...]
        if domain == "github" || domain == "passkey" || !domain.contains(".") {
            return idpHost.isEmpty ? loginName : "\(loginName).\(idpHost)"
        }
        return loginName
    }
}

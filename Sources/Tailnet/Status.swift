import AnyJSON
import Foundation

/// The parts of LocalAPI `GET /localapi/v0/status` (`ipnstate.Status`) tsidp needs.
public struct Status: Sendable, Codable, Equatable {
    /// `NoState`, `NeedsLogin`, `Starting`, `Running`, …
    public var backendState: String
    public var version: String
    public var tailscaleIPs: [String]
    public var selfNode: SelfStatus?
    /// Names `/cert/` will serve, without trailing dot; empty when HTTPS is off for the tailnet.
    public var certDomains: [String]
    public var magicDNSSuffix: String
    /// The interactive login URL while the node waits for one; empty otherwise.
    public var authURL: String = ""
    /// Health warnings, as tailscaled words them.
    public var health: [String] = []
    /// Whether MagicDNS is on for the tailnet (`CurrentTailnet.MagicDNSEnabled`); nil before login.
    public var magicDNSEnabled: Bool? = nil

    enum CodingKeys: String, CodingKey {
        case backendState = "BackendState", version = "Version", tailscaleIPs = "TailscaleIPs"
        case selfNode = "Self", certDomains = "CertDomains", magicDNSSuffix = "MagicDNSSuffix"
        case authURL = "AuthURL", health = "Health", currentTailnet = "CurrentTailnet"
    }

    struct CurrentTailnet: Codable {
        var magicDNSEnabled: Bool?
        enum CodingKeys: String, CodingKey { case magicDNSEnabled = "MagicDNSEnabled" }
    }

    public init(
        backendState: String, version: String = "", tailscaleIPs: [String] = [], selfNode: SelfStatus? = nil,
        certDomains: [String] = [], magicDNSSuffix: String = ""
    ) {
        self.backendState = backendState
        self.version = version
        self.tailscaleIPs = tailscaleIPs
        self.selfNode = selfNode
        self.certDomains = certDomains
        self.magicDNSSuffix = magicDNSSuffix
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        backendState = try c.decodeIfPresent(String.self, forKey: .backendState) ?? ""
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
        tailscaleIPs = try c.decodeIfPresent([String].self, forKey: .tailscaleIPs) ?? []
        selfNode = try c.decodeIfPresent(SelfStatus.self, forKey: .selfNode)
        certDomains = try c.decodeIfPresent([String].self, forKey: .certDomains) ?? []
        magicDNSSuffix = try c.decodeIfPresent(String.self, forKey: .magicDNSSuffix) ?? ""
        authURL = try c.decodeIfPresent(String.self, forKey: .authURL) ?? ""
        health = try c.decodeIfPresent([String].self, forKey: .health) ?? []
        magicDNSEnabled = try c.decodeIfPresent(CurrentTailnet.self, forKey: .currentTailnet)?.magicDNSEnabled
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(backendState, forKey: .backendState)
        try c.encode(version, forKey: .version)
        try c.encode(tailscaleIPs, forKey: .tailscaleIPs)
        try c.encodeIfPresent(selfNode, forKey: .selfNode)
        try c.encode(certDomains, forKey: .certDomains)
        try c.encode(magicDNSSuffix, forKey: .magicDNSSuffix)
        try c.encode(authURL, forKey: .authURL)
        try c.encode(health, forKey: .health)
        if let magicDNSEnabled {
            try c.encode(CurrentTailnet(magicDNSEnabled: magicDNSEnabled), forKey: .currentTailnet)
        }
    }

    /// This node's MagicDNS name without the trailing dot, if known.
    public var selfDNSName: String? {
        guard let name = selfNode?.dnsName, !name.isEmpty else { return certDomains.first }
        return name.hasSuffix(".") ? String(name.dropLast()) : name
    }
}

/// `ipnstate.PeerStatus` for the node itself.
public struct SelfStatus: Sendable, Codable, Equatable {
    public var id: String
    public var hostName: String
    /// FQDN with trailing dot.
    public var dnsName: String
    public var tailscaleIPs: [String]
    /// The names of the node's attributes (`Self.CapMap`): `https`, `funnel`,
    /// `https://tailscale.com/cap/funnel-ports?ports=443,8443`, …
    public var capabilities: [String] = []

    enum CodingKeys: String, CodingKey {
        case id = "ID", hostName = "HostName", dnsName = "DNSName", tailscaleIPs = "TailscaleIPs"
        case capMap = "CapMap"
    }

    public init(id: String, hostName: String, dnsName: String, tailscaleIPs: [String], capabilities: [String] = []) {
        self.id = id
        self.hostName = hostName
        self.dnsName = dnsName
        self.tailscaleIPs = tailscaleIPs
        self.capabilities = capabilities
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(hostName, forKey: .hostName)
        try c.encode(dnsName, forKey: .dnsName)
        try c.encode(tailscaleIPs, forKey: .tailscaleIPs)
        try c.encode(Dictionary(uniqueKeysWithValues: capabilities.map { ($0, [String]()) }), forKey: .capMap)
    }

    /// Whether the node may take Funnel traffic on `port` (tailscaled's own check): the `https`
    /// and `funnel` attributes, and a `funnel-ports` attribute whose `ports` list names the port
    /// (single ports and `a-b` ranges, comma-separated).
    public func funnelRefusal(port: Int) -> String? {
        guard capabilities.contains("https") else {
            return "HTTPS is not enabled for the tailnet (admin console, DNS page)"
        }
        guard capabilities.contains("funnel") else {
            return "the tailnet policy does not allow this node to use Funnel (add a \"funnel\" node attribute for it)"
        }
        let prefix = "https://tailscale.com/cap/funnel-ports?ports="
        let lists = capabilities.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        guard !lists.isEmpty else { return "the node has no Funnel ports (no funnel-ports attribute)" }
        for list in lists {
            for item in list.split(separator: ",") {
                let bounds = item.split(separator: "-", maxSplits: 1).map {
                    Int($0.trimmingCharacters(in: .whitespaces))
                }
                if bounds.count == 1, let only = bounds[0], only == port { return nil }
                if bounds.count == 2, let low = bounds[0], let high = bounds[1], low <= port, port <= high {
                    return nil
                }
            }
        }
        let allowed = lists.joined(separator: ",")
        return "Funnel is not allowed on port \(port); this node may use Funnel on ports \(allowed)"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
        hostName = try c.decodeIfPresent(String.self, forKey: .hostName) ?? ""
        dnsName = try c.decodeIfPresent(String.self, forKey: .dnsName) ?? ""
        tailscaleIPs = try c.decodeIfPresent([String].self, forKey: .tailscaleIPs) ?? []
        let capMap = try c.decodeIfPresent([String: JSONValue].self, forKey: .capMap) ?? [:]
        capabilities = capMap.keys.sorted()
    }
}

/// A TLS certificate and key from LocalAPI `cert/<domain>?type=pair`.
public struct CertPair: Sendable, Equatable {
    /// PEM of the private key (`EC PRIVATE KEY`).
    public var keyPEM: String
    /// PEM of the certificate chain, leaf first.
    public var certificatePEM: String

    /// Splits a `type=pair` body the way the Go client does: at the first `--\n--`.
    public init(pairBody: Data) throws {
        let bytes = Array(pairBody)
        let marker = Array("--\n--".utf8)
        var split: Int?
        if bytes.count >= marker.count {
            for i in 0...(bytes.count - marker.count) where Array(bytes[i..<(i + marker.count)]) == marker {
                split = i + 3
                break
            }
        }
        guard let split else {
            throw LocalAPIError.malformedResponse("certificate pair has no key/certificate boundary")
        }
        let key = String(decoding: bytes[..<split], as: UTF8.self)
        let cert = String(decoding: bytes[split...], as: UTF8.self)
        guard key.contains("PRIVATE KEY-----"), cert.contains("BEGIN CERTIFICATE"),
            !cert.contains(" PRIVATE KEY-----")
        else {
            throw LocalAPIError.malformedResponse("certificate pair is not a key followed by certificates")
        }
        self.keyPEM = key
        self.certificatePEM = cert
    }
}

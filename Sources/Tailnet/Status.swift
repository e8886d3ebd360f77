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

    enum CodingKeys: String, CodingKey {
        case backendState = "BackendState", version = "Version", tailscaleIPs = "TailscaleIPs"
        case selfNode = "Self", certDomains = "CertDomains", magicDNSSuffix = "MagicDNSSuffix"
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

    enum CodingKeys: String, CodingKey {
        case id = "ID", hostName = "HostName", dnsName = "DNSName", tailscaleIPs = "TailscaleIPs"
    }

    public init(id: String, hostName: String, dnsName: String, tailscaleIPs: [String]) {
        self.id = id
        self.hostName = hostName
        self.dnsName = dnsName
        self.tailscaleIPs = tailscaleIPs
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
        hostName = try c.decodeIfPresent(String.self, forKey: .hostName) ?? ""
        dnsName = try c.decodeIfPresent(String.self, forKey: .dnsName) ?? ""
        tailscaleIPs = try c.decodeIfPresent([String].self, forKey: .tailscaleIPs) ?? []
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

import HTTPTypes
import NIOCore

/// The address whose owner a request's caller is, as WhoIs is asked about it: the connection's
/// peer, or, on a connection from a trusted reverse proxy, the address that proxy forwarded.
///
/// This is the only place that decides between the two. The rule:
///
/// - A connection that ``ForwardedTrust`` does not trust: `X-Forwarded-For` is ignored
///   entirely; the caller is the TCP peer (a unix-domain peer has no address: no caller).
/// - A trusted connection: the caller is the **last** element of the **last** `X-Forwarded-For`
///   field, trimmed of spaces and tabs. A proxy appends the address it saw, so every element
///   before it is whatever the client claimed. That element must be exactly one IP address
///   (IPv6 with or without brackets, no port; see ``IPAddress/init(parsing:)``).
///
/// - Important: A trusted connection whose last element is missing, empty or anything but an
///   IP address has no caller: never the proxy's own address instead, which would make every
///   request through a misconfigured proxy the proxy's (or its node's) user.
///   `Forwarded`, `X-Real-IP`, `X-Forwarded-Host` and `X-Forwarded-Proto` are never read; the
///   issuer comes from configuration only.
public enum CallerAddress: Sendable, Equatable, CustomStringConvertible {
    /// The connection's own peer, as `IP:port` (`[IPv6]:port`).
    case peer(String)
    /// The address a trusted proxy forwarded (no port).
    case forwarded(IPAddress)
    /// No address to ask about; the text says why, for logs and error pages.
    case unknown(String)

    /// The `X-Forwarded-For` field name.
    public static let forwardedForField = HTTPField.Name("X-Forwarded-For")!

    /// The caller of a request on a connection from `peer` that carried `headers`.
    public static func resolve(
        peer: SocketAddress?, local: SocketAddress? = nil, headers: HTTPFields, trust: ForwardedTrust
    ) -> CallerAddress {
        guard trust.trusts(peer, local: local) else { return connectionPeer(peer) }
        return forwarded(headers[values: forwardedForField])
    }

    /// The caller named by the `X-Forwarded-For` field values of a request from a trusted proxy,
    /// in the order they arrived.
    public static func forwarded(_ values: [String]) -> CallerAddress {
        guard let lastField = values.last else {
            return .unknown("the proxy sent no X-Forwarded-For header")
        }
        let lastElement = lastField.split(separator: ",", omittingEmptySubsequences: false).last ?? ""
        let trimmed = lastElement.trimmingSpacesAndTabs
        guard !trimmed.isEmpty else {
            return .unknown("the proxy's X-Forwarded-For header ends in an empty element")
        }
        guard let address = IPAddress(parsing: String(trimmed)) else {
            return .unknown("the proxy's X-Forwarded-For header does not end in an IP address")
        }
        return .forwarded(address)
    }

    /// The caller of a connection nobody forwards for: its peer, if it has an IP address.
    public static func connectionPeer(_ peer: SocketAddress?) -> CallerAddress {
        guard let peer, let ip = peer.ipAddress, let port = peer.port else {
            return .unknown("the connection has no peer address")
        }
        return .peer(ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)")
    }

    /// What WhoIs is asked about (`IP:port`, or a bare IP for a forwarded caller), or nil.
    public var whoIsAddress: String? {
        switch self {
        case .peer(let address): address
        case .forwarded(let address): address.description
        case .unknown: nil
        }
    }

    /// Whether a proxy named the caller.
    public var isForwarded: Bool {
        if case .forwarded = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .peer(let address): address
        case .forwarded(let address): "\(address) (forwarded)"
        case .unknown(let reason): "none: \(reason)"
        }
    }
}

extension Substring {
    /// The text without leading and trailing spaces and tabs (HTTP's optional whitespace).
    fileprivate var trimmingSpacesAndTabs: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}

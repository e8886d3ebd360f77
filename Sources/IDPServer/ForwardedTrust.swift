import NIOConcurrencyHelpers
import NIOCore

/// Which connections come from a reverse proxy whose `X-Forwarded-For` tsidp believes: peers
/// inside configured IP ranges (`--trusted-proxy 127.0.0.1/32`), any peer of a unix-domain
/// socket (`--trusted-proxy unix`), or every connection of a listener that only a trusted
/// proxy can reach.
///
/// - Important: Trusting a peer hands it the choice of every caller's identity: whatever
///   address it names is asked about with WhoIs. Only a proxy that appends the address it saw
///   (and that callers cannot reach around) may be trusted. See ``CallerAddress``.
public struct ForwardedTrust: Sendable, Equatable, CustomStringConvertible {
    private enum Rule: Sendable, Equatable {
        case peers(networks: [IPNetwork], unixSockets: Bool)
        case everyConnection
        case loopbackOwner(uid: UInt32)
    }

    private let rule: Rule

    private init(_ rule: Rule) { self.rule = rule }

    /// Trusts the peers whose address is in one of `networks`, and with `unixSocketPeers` every
    /// peer of a unix-domain socket.
    public init(networks: [IPNetwork], unixSocketPeers: Bool) {
        self.init(.peers(networks: networks, unixSockets: unixSocketPeers))
    }

    /// No proxy: `X-Forwarded-For` is ignored and every caller is the connection's peer.
    public static let nobody = ForwardedTrust(networks: [], unixSocketPeers: false)

    /// Every connection of the listener is a trusted proxy (a listener that only the proxy can
    /// reach, such as tailscaled's serve proxy's).
    public static let everyConnection = ForwardedTrust(.everyConnection)

    /// The loopback connections whose connecting socket belongs to user `uid` (tailscaled's serve
    /// proxy: tailscaled's user is the only thing that tells its connections from another local
    /// program's). Where the system does not say who owns a connection, nothing is trusted.
    public static func loopbackOwner(uid: UInt32) -> ForwardedTrust { ForwardedTrust(.loopbackOwner(uid: uid)) }

    /// Called once per accepted connection: for a rule that asks the kernel who owns the
    /// connection, the answer is looked up now and remembered until `channel` closes, so that the
    /// requests on it do not each read the socket table.
    public func connectionOpened(_ channel: any Channel) {
        guard case .loopbackOwner = rule, let peer = channel.remoteAddress, let local = channel.localAddress,
            let address = IPAddress(peer), address.isLoopback,
            let owner = LoopbackPeerOwner.uid(peer: peer, local: local)
        else { return }
        LoopbackConnectionOwners.shared.remember(owner, peer: peer, local: local)
        channel.closeFuture.whenComplete { _ in
            LoopbackConnectionOwners.shared.forget(peer: peer, local: local)
        }
    }

    /// The ranges trusted by address.
    public var networks: [IPNetwork] {
        if case .peers(let networks, _) = rule { return networks }
        return []
    }

    /// Whether peers of unix-domain sockets are trusted.
    public var trustsUnixSocketPeers: Bool {
        switch rule {
        case .peers(_, let unixSockets): unixSockets
        case .everyConnection: true
        case .loopbackOwner: false
        }
    }

    /// Whether no connection at all is trusted.
    public var trustsNobody: Bool { self == .nobody }

    /// Whether the connection from `peer` is a trusted proxy. A connection without a peer
    /// address is not.
    public func trusts(_ peer: SocketAddress?, local: SocketAddress? = nil) -> Bool {
        switch rule {
        case .everyConnection:
            return true
        case .loopbackOwner(let uid):
            guard let peer, let address = IPAddress(peer), address.isLoopback else { return false }
            if let known = LoopbackConnectionOwners.shared.owner(peer: peer, local: local) { return known == uid }
            return LoopbackPeerOwner.uid(peer: peer, local: local) == uid
        case .peers(let networks, let unixSockets):
            guard let peer else { return false }
            if case .unixDomainSocket = peer { return unixSockets }
            guard let address = IPAddress(peer) else { return false }
            return networks.contains { $0.contains(address) }
        }
    }

    /// The setting as an operator writes it: `127.0.0.1/32,unix`, `every connection`, `none`.
    public var description: String {
        switch rule {
        case .everyConnection:
            return "every connection"
        case .loopbackOwner(let uid):
            return "loopback connections of uid \(uid)"
        case .peers(let networks, let unixSockets):
            let parts = networks.map(\.description) + (unixSockets ? ["unix"] : [])
            return parts.isEmpty ? "none" : parts.joined(separator: ",")
        }
    }
}

/// The owners of the loopback connections a `loopbackOwner` listener has open, by their two
/// addresses; an entry lives exactly as long as its connection, so a later connection from the
/// same port never inherits it.
final class LoopbackConnectionOwners: Sendable {
    static let shared = LoopbackConnectionOwners()
    private let owners = NIOLockedValueBox<[String: UInt32]>([:])

    private static func key(_ peer: SocketAddress, _ local: SocketAddress?) -> String? {
        guard let local, let peerIP = peer.ipAddress, let peerPort = peer.port, let localIP = local.ipAddress,
            let localPort = local.port
        else { return nil }
        return "\(peerIP):\(peerPort)>\(localIP):\(localPort)"
    }

    func remember(_ owner: UInt32, peer: SocketAddress, local: SocketAddress) {
        guard let key = Self.key(peer, local) else { return }
        owners.withLockedValue { $0[key] = owner }
    }

    func forget(peer: SocketAddress, local: SocketAddress) {
        guard let key = Self.key(peer, local) else { return }
        _ = owners.withLockedValue { $0.removeValue(forKey: key) }
    }

    func owner(peer: SocketAddress, local: SocketAddress?) -> UInt32? {
        guard let key = Self.key(peer, local) else { return nil }
        return owners.withLockedValue { $0[key] }
    }
}

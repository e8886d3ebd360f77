import HTTPTypes
import Hummingbird
import NIOCore

/// The request context of every tsidp listener: Hummingbird's core storage plus the TCP peer.
public struct IDPRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection's peer, the only source of caller identity (WhoIs is asked about it).
    public let remoteAddress: SocketAddress?
    /// The listener's own address, as the connection arrived at it.
    public let localAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.localAddress = source.channel.localAddress
    }

    /// Bodies tsidp accepts are forms and small JSON documents.
    public var maxUploadSize: Int { 64 * 1024 }

    /// The peer as `IP:port` (`[v6]:port`), the form LocalAPI WhoIs takes.
    public var peerAddressText: String? {
        guard let remoteAddress, let ip = remoteAddress.ipAddress, let port = remoteAddress.port else { return nil }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

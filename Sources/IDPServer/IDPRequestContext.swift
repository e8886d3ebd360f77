import HTTPTypes
import Hummingbird
import NIOCore

/// The request context of every tsidp listener: Hummingbird's core storage plus the TCP peer.
public struct IDPRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection's peer: the caller, unless the connection comes from a trusted proxy.
    public let remoteAddress: SocketAddress?
    /// The listener's own address, as the connection arrived at it.
    public let localAddress: SocketAddress?
    /// The address WhoIs is asked about for this request, the only source of caller identity:
    /// the connection's peer, unless ``CallerAddressMiddleware`` found a trusted proxy's
    /// forwarded address (or found that a trusted proxy named no caller).
    public internal(set) var callerAddress: CallerAddress
    /// Who is using a page of the admin UI or the user's own page, once ``PageGate`` let them in.
    public internal(set) var pageVisitor: PageVisitor?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.localAddress = source.channel.localAddress
        self.callerAddress = .connectionPeer(source.channel.remoteAddress)
    }

    /// Bodies tsidp accepts are forms and small JSON documents.
    public var maxUploadSize: Int { 64 * 1024 }

    /// The connection's peer for log lines: `IP:port`, or `unix socket`.
    var peerDescription: String {
        switch remoteAddress {
        case .none: "-"
        case .unixDomainSocket: "unix socket"
        case .some(let address):
            CallerAddress.connectionPeer(address).whoIsAddress ?? "-"
        }
    }
}

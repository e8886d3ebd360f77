import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// HTTP/1.1 under ``ListenerLimits``: a connection beyond the per-peer or total cap is closed as
/// soon as it is accepted, and every admitted connection is watched by
/// ``RequestDeadlineHandler`` for idleness and slow requests. The per-peer cap applies to peers
/// with an IP address that are not trusted proxies: a proxy, and the peers of a unix-domain
/// socket (which have no address to tell them apart), are held to the total cap only.
///
/// - Important: Admission is decided before any TLS handshake or parsing, so a flood costs one
///   accept and one close per connection.
public struct BoundedHTTPChannel: ServerChildChannel {
    /// The connection as HTTP/1.1 serves it.
    public typealias Value = HTTP1Channel.Value

    /// Thrown from ``setup(channel:logger:)`` for a connection that was refused and closed.
    struct Refused: Error {}

    let base: HTTP1Channel
    let counter: ConnectionCounter
    let logger: Logger
    let transportSecurity: (@Sendable (any Channel) throws -> Void)?
    let forwardedTrust: ForwardedTrust

    /// A channel answering with `responder`.
    ///
    /// - Parameters:
    ///   - transportSecurity: adds the TLS handler to a new connection's pipeline (nil for plain
    ///     HTTP); it runs after admission and before the HTTP handlers.
    ///   - forwardedTrust: the trusted proxies, which the per-peer cap does not hold.
    public init(
        responder: @escaping HTTPChannelHandler.Responder, limits: ListenerLimits, counter: ConnectionCounter,
        logger: Logger, transportSecurity: (@Sendable (any Channel) throws -> Void)? = nil,
        forwardedTrust: ForwardedTrust = .nobody
    ) {
        self.base = HTTP1Channel(
            responder: responder,
            configuration: .init(
                additionalChannelHandlers: [RequestDeadlineHandler(limits: limits, logger: logger)], idleTimeout: nil))
        self.counter = counter
        self.logger = logger
        self.transportSecurity = transportSecurity
        self.forwardedTrust = forwardedTrust
    }

    /// Admits (or refuses and closes) the connection, then sets up TLS and HTTP/1.1.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        // Who owns a loopback connection is asked of the kernel once, here, not per request.
        forwardedTrust.connectionOpened(channel)
        let address = channel.remoteAddress?.ipAddress
        let peer = address ?? "local"
        let perPeerCap = address != nil && !forwardedTrust.trusts(channel.remoteAddress, local: channel.localAddress)
        switch counter.admit(peer, perPeerCap: perPeerCap) {
        case .admitted:
            break
        case .refusedPeerLimit(let first):
            self.logger.log(
                level: first ? .warning : .debug, "refusing connections: this peer holds the most allowed",
                metadata: ["peer": "\(peer)", "limit": "\(counter.maxPerPeer)"])
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        case .refusedTotalLimit(let first):
            self.logger.log(
                level: first ? .warning : .debug, "refusing connections: the listener holds the most allowed",
                metadata: ["peer": "\(peer)", "limit": "\(counter.maxTotal)"])
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        let counter = self.counter
        channel.closeFuture.whenComplete { _ in counter.release(peer) }
        let base = self.base
        let transportSecurity = self.transportSecurity
        return channel.eventLoop.makeCompletedFuture {
            try transportSecurity?(channel)
            try channel.pipeline.syncOperations.addHandler(RequestBytesProbe())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }.flatMapThrowing { value in
            // HTTP/1.0 requests end their connection unless they ask to keep it; the HTTP/1.1
            // handler only closes on `Connection: close`, which this adds for them.
            let codec = try channel.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)
            try channel.pipeline.syncOperations.addHandler(HTTP10ConnectionHandler(), position: .before(codec))
            return value
        }.flatMapErrorThrowing { error in
            channel.close(promise: nil)
            throw error
        }
    }

    /// Serves the connection's requests.
    public func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Marks an HTTP/1.0 request that does not ask for keep-alive with `Connection: close`, so that
/// the connection ends after its answer as HTTP/1.0 clients (health probes, `ab`) expect, instead
/// of waiting for the idle timeout.
final class HTTP10ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var part = unwrapInboundIn(data)
        if case .head(var head) = part, head.version.major == 1, head.version.minor == 0, !head.isKeepAlive {
            head.headers.replaceOrAdd(name: "connection", value: "close")
            part = .head(head)
        }
        context.fireChannelRead(wrapInboundOut(part))
    }
}

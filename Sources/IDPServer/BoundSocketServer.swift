import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle

/// An HTTP server on a listening socket that already exists: one inherited from the service
/// manager (systemd socket activation), or a unix-domain socket tsidp bound itself so that its
/// mode is set before the first connection can arrive. Hummingbird's own server binds only
/// addresses it is given by name.
///
/// Connections are set up by `childChannel` (``BoundedHTTPChannel``: the same caps and
/// deadlines as every other listener). On graceful shutdown the socket stops accepting and each
/// open connection closes once its request in progress is answered.
public struct BoundSocketServer<ChildChannel: ServerChildChannel>: Service {
    let socket: NIOBSDSocket.Handle
    let childChannel: ChildChannel
    let logger: Logger
    let onRunning: @Sendable () async -> Void

    /// A server for `socket`, which must be a bound stream socket; it is closed when the server
    /// stops.
    ///
    /// - Parameter onRunning: runs once the socket is registered and accepts connections.
    public init(
        socket: NIOBSDSocket.Handle, childChannel: ChildChannel, logger: Logger,
        onRunning: @escaping @Sendable () async -> Void = {}
    ) {
        self.socket = socket
        self.childChannel = childChannel
        self.logger = logger
        self.onRunning = onRunning
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiescing = ServerQuiescingHelper(group: group)
        let childChannel = self.childChannel
        let logger = self.logger
        let server = try await ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(socket) { channel in childChannel.setup(channel: channel, logger: logger) }
        await withGracefulShutdownHandler {
            await onRunning()
            await withDiscardingTaskGroup { connections in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            connections.addTask { await childChannel.handle(value: connection, logger: logger) }
                        }
                    }
                } catch {
                    logger.error("a listening socket failed", metadata: ["error": "\(error)"])
                }
            }
        } onGracefulShutdown: {
            quiescing.initiateShutdown(promise: nil)
        }
    }
}

extension BoundSocketServer where ChildChannel == BoundedHTTPChannel {
    /// Answers each request with `responder`, as Hummingbird's `Application` does on the
    /// listeners it binds itself: a logger with a request ID, a context built from the
    /// connection, `500` for an error no middleware turned into an answer, and a `Date` header.
    public static func responder<Responder: HTTPResponder>(_ responder: Responder, logger: Logger)
        -> HTTPChannelHandler.Responder
    where Responder.Context == IDPRequestContext {
        { request, writer, channel in
            var requestLogger = logger
            requestLogger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
            let context = IDPRequestContext(source: .init(channel: channel, logger: requestLogger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                requestLogger.debug("request failed", metadata: ["error": "\(type(of: error))"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = HTTPDate.now()
            try await writer.write(response: response.head, body: response.body)
        }
    }
}

/// The `Date` header's format (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
enum HTTPDate {
    static func now() -> String {
        var seconds = time(nil)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

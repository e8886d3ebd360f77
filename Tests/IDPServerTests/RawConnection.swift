import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A plain TCP connection to a test server from a chosen loopback address, recording what it
/// receives and when it is closed, so that tests can await those events (with a bound) instead
/// of sleeping.
final class RawConnection: Sendable {
    fileprivate struct State {
        var received: [UInt8] = []
        var closed = false
    }

    /// Feeds the connection's events into its state.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let connection: RawConnection
        let greeting: String?

        init(_ connection: RawConnection, greeting: String?) {
            self.connection = connection
            self.greeting = greeting
        }

        func channelActive(context: ChannelHandlerContext) {
            if let greeting {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: greeting)), promise: nil)
            }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            connection.update { $0.received += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            connection.update { $0.closed = true }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private let state = NIOLockedValueBox(State())
    private let channelBox = NIOLockedValueBox<(any Channel)?>(nil)
    /// This connection's events.
    let events = EventSignal()
    /// Events of a group of connections this one belongs to, if any.
    private let shared: EventSignal?

    private init(shared: EventSignal?) { self.shared = shared }

    /// Connects to `127.0.0.1:port` from `source` (a loopback address such as 127.0.0.2);
    /// its events are also signalled on `shared`. `greeting` is sent the moment the connection
    /// is up, before the server can have started any timer on it.
    static func open(
        port: Int, from source: String = "127.0.0.1", shared: EventSignal? = nil, sending greeting: String? = nil
    ) async throws -> RawConnection {
        let connection = RawConnection(shared: shared)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Recorder(connection, greeting: greeting))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        connection.channelBox.withLockedValue { $0 = channel }
        return connection
    }

    private var channel: any Channel { channelBox.withLockedValue { $0! } }

    fileprivate func update(_ change: (inout State) -> Void) {
        state.withLockedValue { change(&$0) }
        events.notify()
        shared?.notify()
    }

    /// What the server sent so far, as text.
    var text: String { state.withLockedValue { String(decoding: $0.received, as: UTF8.self) } }

    /// Whether the server closed the connection (or it failed).
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Sends `text` as it is.
    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Closes the connection from this side.
    func close() async {
        try? await channel.close()
    }

    /// Waits until `condition` holds of (received text, closed), or `limit` has passed.
    ///
    /// - Returns: whether the condition holds.
    func wait(within limit: Duration = .seconds(10), until condition: (String, Bool) -> Bool) async -> Bool {
        await events.wait(within: limit) { condition(text, isClosed) }
    }

    /// Waits until the server closes the connection (bounded).
    func waitForClose(within limit: Duration = .seconds(10)) async -> Bool {
        await events.wait(within: limit) { isClosed }
    }

    /// Waits until a complete response head has arrived, or the connection closed (bounded);
    /// returns the status line, or nil.
    func statusLine(within limit: Duration = .seconds(10)) async -> String? {
        _ = await wait(within: limit) { text, closed in closed || text.contains("\r\n\r\n") }
        let text = self.text
        guard text.contains("\r\n\r\n") else { return nil }
        return text.components(separatedBy: "\r\n").first
    }
}

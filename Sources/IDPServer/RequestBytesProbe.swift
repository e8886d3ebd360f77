import NIOCore

/// Announces every arrival of request bytes to ``RequestDeadlineHandler``, which sits after the
/// HTTP decoder and so cannot see a request head that is still incomplete.
///
/// Placed after TLS (it sees plaintext) and before the HTTP decoder; it forwards everything
/// unchanged, preceded by a ``BytesArrived`` user event.
final class RequestBytesProbe: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The user event sent ahead of each read.
    struct BytesArrived {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(BytesArrived())
        context.fireChannelRead(data)
    }
}

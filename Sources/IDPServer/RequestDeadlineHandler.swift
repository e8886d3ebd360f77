import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// Enforces ``ListenerLimits``' idle, header and body timeouts on one HTTP/1.1 connection:
/// closes a connection that sits idle, and answers `408 Request Timeout` (then closes) to a
/// client that sends its request too slowly.
///
/// Sits right after the HTTP codec, where it sees request and response parts; the bytes of a
/// head still being received are announced by ``RequestBytesProbe``. The decisions are
/// ``RequestDeadlines``'; this handler only keeps one timer set to its next deadline.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ListenerLimits
    private let logger: Logger
    private var deadlines: RequestDeadlines
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var finished = false

    init(limits: ListenerLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
        self.deadlines = RequestDeadlines(limits: limits, now: .now())
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadlines = RequestDeadlines(limits: limits, now: .now())
        schedule(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is RequestBytesProbe.BytesArrived else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        deadlines.bytesArrived(at: .now())
        schedule(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadlines.headRead(at: .now())
        case .body: break
        case .end: deadlines.endRead()
        }
        schedule(context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: deadlines.responseHeadWritten()
        case .body: break
        case .end: deadlines.responseEndWritten(at: .now())
        }
        schedule(context)
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        deadlines.writabilityChanged(isWritable: context.channel.isWritable, at: .now())
        schedule(context)
        context.fireChannelWritabilityChanged()
    }

    /// Keeps the timer at or before the next deadline; a timer that fires early just looks again.
    private func schedule(_ context: ChannelHandlerContext) {
        guard !finished, let next = deadlines.nextDeadline else { return }
        if timer != nil, let timerDeadline, timerDeadline <= next { return }
        timer?.cancel()
        timerDeadline = next
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: next) { [self] in
            self.timer = nil
            self.timerDeadline = nil
            self.check(context)
        }
    }

    private func check(_ context: ChannelHandlerContext) {
        guard !finished else { return }
        let peer = context.channel.remoteAddress?.ipAddress ?? "-"
        switch deadlines.verdict(at: .now()) {
        case .keepOpen:
            schedule(context)
        case .close:
            finish()
            logger.debug("closing a connection that is idle or too slow", metadata: ["peer": "\(peer)"])
            context.close(promise: nil)
        case .requestTimeout:
            finish()
            logger.debug("request not received in time; answering 408", metadata: ["peer": "\(peer)"])
            var fields = HTTPFields()
            fields[.connection] = "close"
            fields[.contentLength] = "0"
            context.write(
                wrapOutboundOut(.head(HTTPResponse(status: .requestTimeout, headerFields: fields))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            context.close(promise: nil)
        }
    }

    private func finish() {
        finished = true
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }
}

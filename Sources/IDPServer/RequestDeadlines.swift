import NIOCore

/// The idle and read deadlines of one HTTP/1.1 connection, as a state machine over what the
/// connection sees: bytes arriving, request heads and ends decoded, response heads and ends
/// written, and the socket refusing more output. ``RequestDeadlineHandler`` feeds it and acts on
/// its ``Verdict``; it holds no clock of its own, so tests drive it with made-up instants.
///
/// The rules:
/// - no request in progress (nothing unanswered, no bytes of a next request): close after the
///   idle timeout, counted from the connection's opening or its last response;
/// - bytes of a request head arrived: the head must be complete within the header timeout of
///   the first of them, however slowly the rest trickles in;
/// - a head was read: its body must be complete within the body timeout of the head;
/// - the peer stopped reading what tsidp writes: close after the idle timeout.
///
/// Time spent by tsidp's own handlers on a fully read request is not limited here.
struct RequestDeadlines {
    /// What to do with the connection now.
    enum Verdict: Equatable {
        case keepOpen
        /// Close without a word.
        case close
        /// Answer `408 Request Timeout` (with `Connection: close`), then close.
        case requestTimeout
    }

    let idleTimeout: TimeAmount
    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount

    /// When the connection last became idle (opened, or answered its last request).
    private var idleSince: NIODeadline
    /// When the first byte of a request head arrived, while the head is incomplete.
    private var headStartedAt: NIODeadline?
    /// When the head of the request being read arrived, while its body is incomplete.
    private var bodyStartedAt: NIODeadline?
    /// Whether a response began while the current request's body was still being read.
    private var answeringBeforeBodyEnd = false
    /// Requests whose head was read and whose response has not ended.
    private var unanswered = 0
    /// When the socket stopped accepting output, while it does.
    private var blockedSince: NIODeadline?

    init(limits: ListenerLimits, now: NIODeadline) {
        self.idleTimeout = TimeAmount(limits.idleTimeout)
        self.headerTimeout = TimeAmount(limits.headerTimeout)
        self.bodyTimeout = TimeAmount(limits.bodyTimeout)
        self.idleSince = now
    }

    /// Bytes arrived from the peer (before they are decoded).
    mutating func bytesArrived(at now: NIODeadline) {
        if bodyStartedAt == nil, headStartedAt == nil { headStartedAt = now }
    }

    /// A request head was decoded.
    mutating func headRead(at now: NIODeadline) {
        headStartedAt = nil
        bodyStartedAt = now
        answeringBeforeBodyEnd = false
        unanswered += 1
    }

    /// The end of a request (its body complete) was decoded.
    mutating func endRead() {
        bodyStartedAt = nil
        answeringBeforeBodyEnd = false
    }

    /// A response head is being written.
    mutating func responseHeadWritten() {
        if bodyStartedAt != nil { answeringBeforeBodyEnd = true }
    }

    /// A response ended.
    mutating func responseEndWritten(at now: NIODeadline) {
        unanswered = max(0, unanswered - 1)
        if unanswered == 0 { idleSince = now }
    }

    /// The socket started or stopped accepting output.
    mutating func writabilityChanged(isWritable: Bool, at now: NIODeadline) {
        if isWritable {
            blockedSince = nil
        } else if blockedSince == nil {
            blockedSince = now
        }
    }

    private var isIdle: Bool { unanswered == 0 && headStartedAt == nil && bodyStartedAt == nil }

    /// The earliest instant at which ``verdict(at:)`` may change, or nil while nothing is timed.
    var nextDeadline: NIODeadline? {
        [
            bodyStartedAt.map { $0 + bodyTimeout },
            headStartedAt.map { $0 + headerTimeout },
            blockedSince.map { $0 + idleTimeout },
            isIdle ? idleSince + idleTimeout : nil,
        ].compactMap { $0 }.min()
    }

    /// What to do with the connection at `now`.
    func verdict(at now: NIODeadline) -> Verdict {
        if let start = bodyStartedAt, now >= start + bodyTimeout {
            return answeringBeforeBodyEnd ? .close : .requestTimeout
        }
        if let start = headStartedAt, now >= start + headerTimeout {
            // With a response still under way a 408 would interleave with it: just close.
            return unanswered == 0 ? .requestTimeout : .close
        }
        if let start = blockedSince, now >= start + idleTimeout { return .close }
        if isIdle, now >= idleSince + idleTimeout { return .close }
        return .keepOpen
    }
}

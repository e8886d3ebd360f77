import NIOCore
import Testing

@testable import IDPServer

/// The connection deadline state machine, driven with made-up instants.
@Suite("Request deadlines")
struct RequestDeadlinesTests {
    static let limits = ListenerLimits(
        idleTimeout: .seconds(30), headerTimeout: .seconds(10), bodyTimeout: .seconds(5), maxConnectionsPerPeer: 1,
        maxConnections: 1)
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func at(_ seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    @Test("a connection that sends nothing is closed after the idle timeout")
    func idleFromOpening() {
        let deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        #expect(deadlines.nextDeadline == Self.at(30))
        #expect(deadlines.verdict(at: Self.at(29)) == .keepOpen)
        #expect(deadlines.verdict(at: Self.at(30)) == .close)
    }

    @Test("after a response the idle timeout counts again from its end")
    func idleAfterResponse() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.bytesArrived(at: Self.at(20))
        deadlines.headRead(at: Self.at(20))
        deadlines.endRead()
        #expect(deadlines.nextDeadline == nil, "tsidp's own work on a read request is not timed here")
        #expect(deadlines.verdict(at: Self.at(100)) == .keepOpen)
        deadlines.responseHeadWritten()
        deadlines.responseEndWritten(at: Self.at(101))
        #expect(deadlines.nextDeadline == Self.at(131))
        #expect(deadlines.verdict(at: Self.at(130)) == .keepOpen)
        #expect(deadlines.verdict(at: Self.at(131)) == .close)
    }

    @Test("a head must be complete within the header timeout of its first byte, however it trickles")
    func headerTimeout() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.bytesArrived(at: Self.at(1))
        for second in 2...10 { deadlines.bytesArrived(at: Self.at(Int64(second))) }
        #expect(deadlines.nextDeadline == Self.at(11))
        #expect(deadlines.verdict(at: Self.at(10)) == .keepOpen)
        #expect(deadlines.verdict(at: Self.at(11)) == .requestTimeout)
    }

    @Test("a complete head stops the header clock and starts the body clock")
    func bodyTimeout() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.bytesArrived(at: Self.at(1))
        deadlines.headRead(at: Self.at(2))
        deadlines.bytesArrived(at: Self.at(3))
        #expect(deadlines.nextDeadline == Self.at(7))
        #expect(deadlines.verdict(at: Self.at(6)) == .keepOpen)
        #expect(deadlines.verdict(at: Self.at(7)) == .requestTimeout)
        deadlines.endRead()
        #expect(deadlines.verdict(at: Self.at(7)) == .keepOpen)
    }

    @Test("once a response has begun, a late body ends in a close, not a second answer")
    func bodyAfterResponseBegan() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.headRead(at: Self.at(0))
        deadlines.responseHeadWritten()
        deadlines.responseEndWritten(at: Self.at(1))
        #expect(deadlines.verdict(at: Self.at(5)) == .close)
    }

    @Test("bytes of a next request while a response is under way end in a close, not a 408")
    func pipelined() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.headRead(at: Self.at(0))
        deadlines.endRead()
        deadlines.bytesArrived(at: Self.at(1))
        #expect(deadlines.verdict(at: Self.at(11)) == .close)
    }

    @Test("a peer that stops reading responses is closed after the idle timeout")
    func blockedWriter() {
        var deadlines = RequestDeadlines(limits: Self.limits, now: Self.start)
        deadlines.headRead(at: Self.at(0))
        deadlines.endRead()
        deadlines.responseHeadWritten()
        deadlines.writabilityChanged(isWritable: false, at: Self.at(1))
        deadlines.writabilityChanged(isWritable: false, at: Self.at(20))
        #expect(deadlines.nextDeadline == Self.at(31))
        #expect(deadlines.verdict(at: Self.at(31)) == .close)
        deadlines.writabilityChanged(isWritable: true, at: Self.at(25))
        #expect(deadlines.verdict(at: Self.at(31)) == .keepOpen)
    }
}

import IDPServer
import Testing

/// Hostile peers against a live listener: idle, half-sent and surplus connections are closed,
/// and a second peer is still served. Every wait is for an event (a close, a response), with a
/// bound; nothing is asserted about how long anything took.
@Suite("Listener limits on a live server")
struct ListenerLimitsTests {
    /// Long enough that it never fires during a test: closes seen within a bounded wait come
    /// from the limit under test.
    static let never: Duration = .seconds(600)

    static func limits(
        idle: Duration = never, header: Duration = never, body: Duration = never, perPeer: Int = 100,
        total: Int = 1000
    ) -> ListenerLimits {
        ListenerLimits(
            idleTimeout: idle, headerTimeout: header, bodyTimeout: body, maxConnectionsPerPeer: perPeer,
            maxConnections: total)
    }

    @Test("connections beyond the per-peer cap are closed at once; the admitted ones keep working")
    func perPeerCap() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(perPeer: 4)) { harness in
            let events = EventSignal()
            let connections = try await harness.open(7, shared: events)
            // Admission order is the server's, not ours: wait for three closes, whichever they are.
            #expect(await events.wait { connections.filter(\.isClosed).count >= 3 })
            let closed = connections.filter(\.isClosed)
            #expect(closed.count == 3)
            #expect(closed.allSatisfy { $0.text.isEmpty }, "a refused connection gets no answer")
            let admitted = connections.filter { connection in !closed.contains { $0 === connection } }
            #expect(admitted.count == 4)
            for connection in admitted {
                try await connection.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
                #expect(await connection.statusLine() == "HTTP/1.1 200 OK")
                #expect(!connection.isClosed)
            }
            #expect(harness.counter.connections(from: "127.0.0.1") == 4)
            // A flood is a warning once, not once per refused connection.
            let warnings = harness.capture.text.components(separatedBy: "warning refusing connections").count - 1
            #expect(warnings == 1)
            for connection in connections { await connection.close() }
        }
    }

    @Test("an HTTP/1.0 request without keep-alive ends its connection; with keep-alive, or HTTP/1.1, it stays")
    func http10() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(perPeer: 8)) { harness in
            let plain = try await RawConnection.open(port: harness.port, from: "127.0.0.1")
            try await plain.send("GET /healthz/live HTTP/1.0\r\nHost: localhost\r\n\r\n")
            #expect(await plain.statusLine() == "HTTP/1.1 200 OK")
            #expect(await plain.waitForClose(), "an HTTP/1.0 connection stayed open after its answer")
            let kept = try await RawConnection.open(port: harness.port, from: "127.0.0.1")
            try await kept.send("GET /healthz/live HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            #expect(await kept.statusLine() == "HTTP/1.1 200 OK")
            let modern = try await RawConnection.open(port: harness.port, from: "127.0.0.1")
            try await modern.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await modern.statusLine() == "HTTP/1.1 200 OK")
            // Both still answer a second request on the same connection.
            try await kept.send("GET /healthz/live HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            try await modern.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await kept.wait { text, _ in text.components(separatedBy: "HTTP/1.1 200 OK").count == 3 })
            #expect(await modern.wait { text, _ in text.components(separatedBy: "HTTP/1.1 200 OK").count == 3 })
            #expect(!kept.isClosed && !modern.isClosed)
            await kept.close()
            await modern.close()
        }
    }

    @Test("a normal request from another address succeeds while one peer exhausts its cap")
    func otherPeerServed() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(perPeer: 3)) { harness in
            let hog = try await harness.open(3, from: "127.0.0.1")
            let surplus = try await RawConnection.open(port: harness.port, from: "127.0.0.1")
            #expect(await surplus.waitForClose())
            #expect(try await harness.healthCheck(from: "127.0.0.2") == "HTTP/1.1 200 OK")
            #expect(hog.allSatisfy { !$0.isClosed })
            for connection in hog { await connection.close() }
        }
    }

    @Test("connections beyond the total cap are closed, whichever peer opens them")
    func totalCap() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(perPeer: 3, total: 4)) { harness in
            let first = try await harness.open(3, from: "127.0.0.1")
            let second = try await RawConnection.open(port: harness.port, from: "127.0.0.2")
            try await second.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await second.statusLine() == "HTTP/1.1 200 OK")
            let third = try await RawConnection.open(port: harness.port, from: "127.0.0.3")
            #expect(await third.waitForClose())
            #expect(third.text.isEmpty)
            for connection in first + [second] { await connection.close() }
        }
    }

    @Test("an idle connection is closed after the idle timeout, before and after a request")
    func idle() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(idle: .milliseconds(300))) { harness in
            let silent = try await RawConnection.open(port: harness.port)
            #expect(await silent.waitForClose())
            #expect(silent.text.isEmpty)

            let served = try await RawConnection.open(
                port: harness.port, sending: "GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await served.statusLine() == "HTTP/1.1 200 OK")
            #expect(await served.waitForClose())
        }
    }

    @Test("a half-sent request head is answered 408 and closed after the header timeout")
    func halfSentHead() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(header: .milliseconds(300))) { harness in
            let connection = try await RawConnection.open(port: harness.port)
            try await connection.send("GET /healthz/live HTTP/1.1\r\nHost: loc")
            #expect(await connection.waitForClose())
            #expect(connection.text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        }
    }

    @Test("a head trickled in byte by byte is still cut off by the header timeout")
    func trickledHead() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(header: .milliseconds(500))) { harness in
            let connection = try await RawConnection.open(port: harness.port)
            // Each byte is progress; the deadline counts from the first one regardless.
            for byte in "GET /healthz/live HTTP/1.1\r\nX-Slow: " + String(repeating: "a", count: 400) {
                guard !connection.isClosed else { break }
                try? await connection.send(String(byte))
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(await connection.waitForClose())
            #expect(connection.text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        }
    }

    @Test("a half-sent request body is answered 408 and closed after the body timeout")
    func halfSentBody() async throws {
        try await BoundedListenerHarness.run(limits: Self.limits(body: .milliseconds(300))) { harness in
            let connection = try await RawConnection.open(port: harness.port)
            try await connection.send(
                "POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    + "Content-Length: 100\r\n\r\ngrant_type=")
            #expect(await connection.waitForClose())
            #expect(connection.text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        }
    }

    @Test("requests that arrive in time are served on a kept-alive connection")
    func keepAlive() async throws {
        try await BoundedListenerHarness.run(
            limits: Self.limits(idle: .seconds(30), header: .seconds(30), body: .seconds(30))
        ) { harness in
            let connection = try await RawConnection.open(port: harness.port)
            for round in 1...3 {
                try await connection.send("GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
                #expect(
                    await connection.wait { text, _ in
                        text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == round
                    })
            }
            #expect(!connection.isClosed)
            await connection.close()
        }
    }
}

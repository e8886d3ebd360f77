import IDPServer
import Testing

@Suite("Connection counter")
struct ConnectionCounterTests {
    @Test("a peer gets at most its cap; other peers are counted apart")
    func perPeer() {
        let counter = ConnectionCounter(maxPerPeer: 2, maxTotal: 10)
        #expect(counter.admit("100.64.0.1") == .admitted)
        #expect(counter.admit("100.64.0.1") == .admitted)
        #expect(counter.admit("100.64.0.1") == .refusedPeerLimit(firstRefusal: true))
        #expect(counter.admit("100.64.0.1") == .refusedPeerLimit(firstRefusal: false))
        #expect(counter.admit("100.64.0.2") == .admitted)
        #expect(counter.connections(from: "100.64.0.1") == 2)
        #expect(counter.connections(from: "100.64.0.2") == 1)
        #expect(counter.total == 3)
    }

    @Test("the total cap refuses every peer once reached")
    func total() {
        let counter = ConnectionCounter(maxPerPeer: 5, maxTotal: 3)
        for peer in ["a", "b", "c"] { #expect(counter.admit(peer) == .admitted) }
        #expect(counter.admit("d") == .refusedTotalLimit(firstRefusal: true))
        #expect(counter.admit("a") == .refusedTotalLimit(firstRefusal: false))
        #expect(counter.total == 3)
        #expect(counter.connections(from: "d") == 0)
    }

    @Test("a release makes room again, and the next refusal is reported as a first one")
    func release() {
        let counter = ConnectionCounter(maxPerPeer: 1, maxTotal: 2)
        #expect(counter.admit("a") == .admitted)
        #expect(counter.admit("a") == .refusedPeerLimit(firstRefusal: true))
        counter.release("a")
        #expect(counter.connections(from: "a") == 0)
        #expect(counter.admit("a") == .admitted)
        #expect(counter.admit("a") == .refusedPeerLimit(firstRefusal: true))
        #expect(counter.admit("b") == .admitted)
        #expect(counter.admit("c") == .refusedTotalLimit(firstRefusal: true))
        counter.release("b")
        #expect(counter.admit("c") == .admitted)
        #expect(counter.admit("d") == .refusedTotalLimit(firstRefusal: true))
    }

    @Test("releasing a peer that holds nothing changes nothing")
    func strayRelease() {
        let counter = ConnectionCounter(maxPerPeer: 1, maxTotal: 1)
        counter.release("nobody")
        #expect(counter.total == 0)
        #expect(counter.admit("a") == .admitted)
        counter.release("nobody")
        #expect(counter.total == 1)
    }

    @Test("caps come from the listener limits and are at least one")
    func fromLimits() {
        var limits = ListenerLimits.defaults
        limits.maxConnectionsPerPeer = 7
        limits.maxConnections = 9
        let counter = ConnectionCounter(limits: limits)
        #expect(counter.maxPerPeer == 7)
        #expect(counter.maxTotal == 9)
        let clamped = ConnectionCounter(maxPerPeer: 0, maxTotal: -3)
        #expect(clamped.maxPerPeer == 1 && clamped.maxTotal == 1)
    }

    @Test("concurrent admissions from many tasks never exceed the caps")
    func concurrent() async {
        let counter = ConnectionCounter(maxPerPeer: 8, maxTotal: 20)
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<400 {
                group.addTask { counter.admit("peer-\(index % 4)") == .admitted }
            }
            var count = 0
            for await ok in group where ok { count += 1 }
            return count
        }
        #expect(admitted == 20)
        #expect(counter.total == 20)
        for peer in 0..<4 { #expect(counter.connections(from: "peer-\(peer)") <= 8) }
        await withTaskGroup(of: Void.self) { group in
            for peer in 0..<4 {
                let held = counter.connections(from: "peer-\(peer)")
                for _ in 0..<held { group.addTask { counter.release("peer-\(peer)") } }
            }
        }
        #expect(counter.total == 0)
    }
}

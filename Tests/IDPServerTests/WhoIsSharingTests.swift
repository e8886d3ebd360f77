import AnyJSON
import Synchronization
import Tailnet
import Testing

@testable import IDPServer

@Suite("WhoIs answers shared between requests")
struct WhoIsSharingTests {
    static let answer = Harness.identity(login: "alice@example.com", rules: [])

    /// Counts LocalAPI requests; each waits for `gate` when one is set.
    final class FakeLocalAPI: Sendable {
        let asked = Mutex(0)
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let started = EventSignal()
        let failNext = Mutex(false)

        func ask(wait: Bool) async throws -> WhoIsResponse {
            asked.withLock { $0 += 1 }
            if wait {
                await withCheckedContinuation { continuation in
                    gate.withLock { $0 = continuation }
                    started.notify()
                }
            }
            if failNext.withLock({ value in
                defer { value = false }; return value
            }) {
                throw LocalAPIError.peerNotFound
            }
            return WhoIsSharingTests.answer
        }

        func release() {
            gate.withLock {
                $0?.resume(); $0 = nil
            }
        }
        var count: Int { asked.withLock { $0 } }
    }

    @Test("questions about one address asked while a request is under way share it")
    func concurrent() async throws {
        let joined = EventSignal()
        let sharing = WhoIsSharing(reuse: .zero) { joined.notify() }
        let api = FakeLocalAPI()
        try await withThrowingTaskGroup(of: WhoIsResponse.self) { group in
            for _ in 0..<10 {
                group.addTask {
                    try await sharing.answer(for: "100.64.0.1", allowReuse: false) { try await api.ask(wait: true) }
                }
            }
            let allJoined = await joined.wait { sharing.sharers(of: "100.64.0.1") == 10 }
            #expect(allJoined)
            #expect(await api.started.wait { api.gate.withLock { $0 != nil } })
            api.release()
            for try await answer in group { #expect(answer == Self.answer) }
        }
        #expect(api.count == 1)
        // Once answered and without reuse, the next question asks again.
        _ = try await sharing.answer(for: "100.64.0.1", allowReuse: false) { try await api.ask(wait: false) }
        #expect(api.count == 2)
    }

    @Test("a refresh may reuse an answer within the bound; other questions and other addresses ask")
    func reuse() async throws {
        let sharing = WhoIsSharing(reuse: .seconds(3600))
        let api = FakeLocalAPI()
        for _ in 0..<3 {
            _ = try await sharing.answer(for: "100.64.0.1", allowReuse: true) { try await api.ask(wait: false) }
        }
        #expect(api.count == 1)
        _ = try await sharing.answer(for: "100.64.0.1", allowReuse: false) { try await api.ask(wait: false) }
        #expect(api.count == 2)
        _ = try await sharing.answer(for: "100.64.0.2", allowReuse: true) { try await api.ask(wait: false) }
        #expect(api.count == 3)
        // A reload of the tailnet's identities forgets everything.
        sharing.forgetAll()
        _ = try await sharing.answer(for: "100.64.0.1", allowReuse: true) { try await api.ask(wait: false) }
        #expect(api.count == 4)
        // A zero bound never reuses.
        let strict = WhoIsSharing(reuse: .zero)
        for _ in 0..<2 {
            _ = try await strict.answer(for: "100.64.0.1", allowReuse: true) { try await api.ask(wait: false) }
        }
        #expect(api.count == 6)
    }

    @Test("a failed question is never reused: the device that left is asked about again")
    func failuresAreNotReused() async throws {
        let sharing = WhoIsSharing(reuse: .seconds(3600))
        let api = FakeLocalAPI()
        api.failNext.withLock { $0 = true }
        await #expect(throws: LocalAPIError.self) {
            _ = try await sharing.answer(for: "100.64.0.1", allowReuse: true) { try await api.ask(wait: false) }
        }
        let answer = try await sharing.answer(for: "100.64.0.1", allowReuse: true) { try await api.ask(wait: false) }
        #expect(answer == Self.answer)
        #expect(api.count == 2)
    }
}

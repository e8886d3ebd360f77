import Synchronization
import Tailnet

/// Shares WhoIs answers between requests: questions about one address asked while a LocalAPI
/// request for it is under way wait for that request instead of sending their own, and a
/// successful answer may be reused by callers that accept an answer up to ``reuse`` old (the
/// refresh path). Failures are never reused: the next question asks again.
public final class WhoIsSharing: Sendable {
    /// How old an answer a caller that accepts reuse may get. Bounds how long after a device
    /// leaves the tailnet (or changes hands) a refresh can still succeed.
    public let reuse: Duration

    private struct Entry {
        var task: Task<WhoIsResponse, any Error>
        /// When the answer arrived; `nil` while the request is under way.
        var answeredAt: ContinuousClock.Instant?
        /// Callers given this entry's answer (the tests' view of the sharing).
        var sharers = 1
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// The most addresses remembered; past it, answers older than ``reuse`` are dropped.
    static let capacity = 4_096

    /// Called after a caller joins an entry (tests await it).
    private let joined: (@Sendable () -> Void)?

    public init(reuse: Duration = .seconds(2)) {
        self.reuse = reuse
        self.joined = nil
    }

    init(reuse: Duration, joined: @escaping @Sendable () -> Void) {
        self.reuse = reuse
        self.joined = joined
    }

    /// The WhoIs answer for `address`: the one under way, an answer at most ``reuse`` old when
    /// `allowReuse`, or a new one from `ask`.
    public func answer(
        for address: String, allowReuse: Bool, ask: @escaping @Sendable () async throws -> WhoIsResponse
    ) async throws -> WhoIsResponse {
        let now = ContinuousClock.now
        let reuse = self.reuse
        let task = entries.withLock { entries -> Task<WhoIsResponse, any Error> in
            if let entry = entries[address] {
                if entry.answeredAt == nil || (allowReuse && now - entry.answeredAt! < reuse) {
                    entries[address]?.sharers += 1
                    return entry.task
                }
            }
            if entries.count >= Self.capacity {
                entries = entries.filter { _, entry in entry.answeredAt.map { now - $0 < reuse } ?? true }
            }
            let task = Task { try await ask() }
            entries[address] = Entry(task: task, answeredAt: nil)
            return task
        }
        joined?()
        do {
            let answer = try await task.value
            entries.withLock { entries in
                if entries[address]?.task == task, entries[address]?.answeredAt == nil {
                    entries[address]?.answeredAt = ContinuousClock.now
                }
            }
            return answer
        } catch {
            entries.withLock { entries in
                if entries[address]?.task == task { entries[address] = nil }
            }
            throw error
        }
    }

    /// How many callers the current entry for `address` has answered or is answering.
    func sharers(of address: String) -> Int {
        entries.withLock { $0[address]?.sharers ?? 0 }
    }

    /// Forgets every answer, and every request under way for later callers (the tailnet
    /// changed: `--dev` reloaded its identities).
    public func forgetAll() {
        entries.withLock { $0.removeAll() }
    }
}

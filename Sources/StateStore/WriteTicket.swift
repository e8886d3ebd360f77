import Synchronization

/// A one-shot promise that a change made in memory has reached the store (or could not).
///
/// Whoever makes a change creates a ticket, hands it to the part that writes, and awaits
/// ``wait()``. The writer calls ``resolve(_:)`` exactly once; resolving before anyone waits is
/// fine, the outcome is kept for the waiter.
public final class WriteTicket: Sendable {
    private enum Phase {
        case pending
        case waiting(CheckedContinuation<Void, any Error>)
        case done((any Error)?)
    }

    private let phase = Mutex(Phase.pending)

    public init() {}

    /// Returns once the change is durable; throws the store's error when it is not.
    public func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome: (any Error)?? = phase.withLock { phase in
                switch phase {
                case .pending:
                    phase = .waiting(continuation)
                    return nil
                case .done(let error):
                    return .some(error)
                case .waiting:
                    preconditionFailure("a write ticket is awaited once")
                }
            }
            guard let outcome else { return }
            if let error = outcome {
                continuation.resume(throwing: error)
            } else {
                continuation.resume()
            }
        }
    }

    /// Reports the outcome: `nil` when the change is durable. Later calls are ignored.
    public func resolve(_ error: (any Error)?) {
        let waiter: CheckedContinuation<Void, any Error>? = phase.withLock { phase in
            switch phase {
            case .pending:
                phase = .done(error)
                return nil
            case .waiting(let continuation):
                phase = .done(error)
                return continuation
            case .done:
                return nil
            }
        }
        guard let waiter else { return }
        if let error {
            waiter.resume(throwing: error)
        } else {
            waiter.resume()
        }
    }

}

import NIOConcurrencyHelpers

/// Counts the open connections of a listener (or of listeners that share it), per peer address
/// and in total, and refuses a connection that would exceed either cap.
///
/// Every channel of the listener asks ``admit(_:)`` when it is accepted and, if admitted, calls
/// ``release(_:)`` exactly once when it closes.
public final class ConnectionCounter: Sendable {
    /// The answer to one connection's request to be counted.
    public enum Admission: Sendable, Equatable {
        /// Counted; the caller must ``ConnectionCounter/release(_:)`` it when the connection closes.
        case admitted
        /// Refused: the peer already holds ``ConnectionCounter/maxPerPeer`` connections.
        /// `firstRefusal` is true for the first refusal since the peer last had room (worth a log line).
        case refusedPeerLimit(firstRefusal: Bool)
        /// Refused: ``ConnectionCounter/maxTotal`` connections are open.
        /// `firstRefusal` is true for the first refusal since the listener last had room.
        case refusedTotalLimit(firstRefusal: Bool)
    }

    private struct State {
        var perPeer: [String: Int] = [:]
        var total = 0
        /// Peers refused since they last had room, so that a flood is logged once, not per connection.
        var saturatedPeers: Set<String> = []
        var totalSaturated = false
    }

    /// The most connections one peer address may hold.
    public let maxPerPeer: Int
    /// The most connections open at once.
    public let maxTotal: Int
    private let state = NIOLockedValueBox(State())

    /// A counter with the given caps (each at least 1).
    public init(maxPerPeer: Int, maxTotal: Int) {
        self.maxPerPeer = max(1, maxPerPeer)
        self.maxTotal = max(1, maxTotal)
    }

    /// A counter with the caps of `limits`.
    public convenience init(limits: ListenerLimits) {
        self.init(maxPerPeer: limits.maxConnectionsPerPeer, maxTotal: limits.maxConnections)
    }

    /// Counts a new connection from `peer` (an IP address), or refuses it.
    ///
    /// - Parameter perPeerCap: whether ``maxPerPeer`` applies. A trusted proxy or a unix-socket
    ///   peer carries many callers' connections and is held to ``maxTotal`` only; it is still
    ///   counted under `peer`, and released the same way.
    public func admit(_ peer: String, perPeerCap: Bool = true) -> Admission {
        state.withLockedValue { state in
            if state.total >= maxTotal {
                defer { state.totalSaturated = true }
                return .refusedTotalLimit(firstRefusal: !state.totalSaturated)
            }
            let held = state.perPeer[peer, default: 0]
            if perPeerCap, held >= maxPerPeer {
                return .refusedPeerLimit(firstRefusal: state.saturatedPeers.insert(peer).inserted)
            }
            state.perPeer[peer] = held + 1
            state.total += 1
            return .admitted
        }
    }

    /// Forgets one admitted connection from `peer`.
    public func release(_ peer: String) {
        state.withLockedValue { state in
            guard let held = state.perPeer[peer], held > 0 else { return }
            state.perPeer[peer] = held == 1 ? nil : held - 1
            state.total -= 1
            if held - 1 < maxPerPeer { state.saturatedPeers.remove(peer) }
            if state.total < maxTotal { state.totalSaturated = false }
        }
    }

    /// Connections open now.
    public var total: Int { state.withLockedValue { $0.total } }

    /// Connections `peer` holds now.
    public func connections(from peer: String) -> Int {
        state.withLockedValue { $0.perPeer[peer, default: 0] }
    }
}

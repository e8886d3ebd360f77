/// Why a LocalAPI call failed.
public enum LocalAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// WhoIs answered 404: the address belongs to no known peer.
    case peerNotFound
    /// 403: this process may not make that call (read-only socket, no cert permission).
    case accessDenied(String)
    /// Any other non-200 answer, with its status and message.
    case http(status: Int, message: String)
    /// 412: a conditional write (`If-Match`) lost a race with another writer.
    case preconditionFailed(String)
    /// The socket could not be reached, or the call timed out.
    case transport(String)
    /// The answer was not what the protocol promises.
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .peerNotFound: return "no tailnet peer matches that address"
        case .accessDenied(let message): return "LocalAPI access denied: \(message)"
        case .http(let status, let message): return "LocalAPI answered \(status): \(message)"
        case .preconditionFailed(let message): return "LocalAPI refused a conditional write: \(message)"
        case .transport(let message): return "cannot reach tailscaled: \(message)"
        case .malformedResponse(let message): return "unexpected LocalAPI answer: \(message)"
        }
    }
}

/// Why nothing answers on tailscaled's LocalAPI socket, found by one `connect(2)` that fails or
/// succeeds at once (an HTTP client would keep retrying until its timeout).
public enum LocalAPISocketProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// No file at the path (`ENOENT`, or a missing parent directory).
    case missing
    /// A file is there but nothing accepts connections on it (`ECONNREFUSED`): tailscaled is not
    /// running and left its socket behind, or the path is not a socket.
    case refused
    /// This process may not connect to it (`EACCES`, `EPERM`).
    case permissionDenied
    /// The path is longer than a unix socket address holds.
    case pathTooLong
    /// Any other system error, with its text.
    case other(String)

    public var description: String {
        switch self {
        case .missing: return "no such file"
        case .refused: return "connection refused"
        case .permissionDenied: return "permission denied"
        case .pathTooLong: return "the path is too long for a unix socket"
        case .other(let text): return text
        }
    }
}

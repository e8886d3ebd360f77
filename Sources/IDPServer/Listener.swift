/// Which door a request came through. Trust is decided by the listener, never by an address.
public enum Listener: Sendable, Equatable {
    /// The tailnet listener (or the `--dev` listener): callers are whoever WhoIs says they are.
    case tailnet
    /// The `--local-port` listener on localhost: the operator's door, with admin and DCR rights.
    case local
}

/// The bounds every tsidp listener puts on its connections: how long a connection may sit idle,
/// how long a client may take to send a request, and how many connections stay open.
///
/// - Important: These limits are what keeps idle, slow and half-sent connections from one peer
///   from exhausting tsidp's file descriptors and starving everyone else (THREATS: Availability).
///   Every listener the program opens is built with ``HTTPServerBuilder/bounded(_:counter:logger:transportSecurity:)``.
public struct ListenerLimits: Sendable, Equatable {
    /// A connection with no request in progress is closed after this long.
    public var idleTimeout: Duration
    /// A request's head (request line and header fields) must be complete this long after its
    /// first byte arrived; otherwise the client gets `408 Request Timeout` and the connection closes.
    public var headerTimeout: Duration
    /// A request's body must be complete this long after its head; otherwise `408` (or, when a
    /// response has already begun, just a close).
    public var bodyTimeout: Duration
    /// Open connections one peer address may hold; a connection beyond this is closed at once.
    public var maxConnectionsPerPeer: Int
    /// Open connections in total; a connection beyond this is closed at once.
    public var maxConnections: Int

    /// The limits tsidp runs with unless told otherwise.
    public static let defaults = ListenerLimits(
        idleTimeout: .seconds(30), headerTimeout: .seconds(10), bodyTimeout: .seconds(10), maxConnectionsPerPeer: 64,
        maxConnections: 4096)

    /// Limits with the given values.
    public init(
        idleTimeout: Duration, headerTimeout: Duration, bodyTimeout: Duration, maxConnectionsPerPeer: Int,
        maxConnections: Int
    ) {
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.maxConnectionsPerPeer = maxConnectionsPerPeer
        self.maxConnections = maxConnections
    }
}

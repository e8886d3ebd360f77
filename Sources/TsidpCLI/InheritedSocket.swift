import IDPServer

/// A listening socket tsidp's service manager opened and passed to it (systemd socket
/// activation, `LISTEN_FDS`), served like `--unix-socket`.
public struct InheritedSocket: Sendable, Equatable, CustomStringConvertible {
    /// What the socket is bound to.
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        /// A TCP socket on an IP address and port.
        case ip(IPAddress, port: Int)
        /// A unix-domain stream socket (its path, empty when it has none).
        case unix(path: String)

        public var description: String {
            switch self {
            case .ip(let address, let port): address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
            case .unix(let path): path.isEmpty ? "an unnamed unix socket" : "unix socket \(path)"
            }
        }
    }

    /// The file descriptor (3, 4, …).
    public var descriptor: CInt
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`), if given.
    public var name: String?
    /// What it is bound to.
    public var address: Address

    public init(descriptor: CInt, name: String?, address: Address) {
        self.descriptor = descriptor
        self.name = name
        self.address = address
    }

    /// `socket 3 (tsidp.socket) on 127.0.0.1:8443`.
    public var description: String {
        "socket \(descriptor)" + (name.map { " (\($0))" } ?? "") + " on \(address)"
    }

    /// Whether only this machine can connect: a unix socket, or a TCP socket on a loopback address.
    var isLocalOnly: Bool {
        switch address {
        case .unix: true
        case .ip(let address, _): ReverseProxySettings.isLoopback(host: "", address: address)
        }
    }
}

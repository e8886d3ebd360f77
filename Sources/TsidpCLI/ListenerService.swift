import Foundation
import NIOCore
import ServiceLifecycle

/// One of tsidp's listening sockets (the `--dev` listener, the `--local-port` listener, an HTTPS
/// listener of `--use-local-tailscaled`, the `--unix-socket` listener, a socket passed by systemd)
/// as a service: a listener that cannot open its socket
/// stops start-up with a one-line ``UsageError`` naming the address and port, instead of the
/// system call's text.
///
/// - Important: Only a failure before the listener is running is reported this way. The
///   application marks ``started`` from its `onServerRunning` callback, which runs on the same
///   task after the socket is bound; once it is set, errors pass through unchanged.
struct ListenerService: Service {
    /// The address as an operator writes it: `127.0.0.1:8080`, `[fd7a:115c:a1e0::1]:443`.
    let address: String
    /// The flag that chose the port, named in the advice when the port is taken.
    let portFlag: String
    /// Set once the listener's socket is bound and it accepts connections.
    let started: StartFlag
    /// The Hummingbird application that serves the socket.
    let application: any Service

    init(host: String, port: Int, portFlag: String, started: StartFlag, application: any Service) {
        self.init(
            address: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", portFlag: portFlag, started: started,
            application: application)
    }

    /// A listener named by `address` as a whole (`unix socket /run/tsidp.sock`, `socket 3 on …`).
    init(address: String, portFlag: String, started: StartFlag, application: any Service) {
        self.address = address
        self.portFlag = portFlag
        self.started = started
        self.application = application
    }

    func run() async throws {
        do {
            try await application.run()
        } catch let error as IOError where !started.isSet {
            throw UsageError("cannot listen on \(address): \(Self.reason(error.errnoCode, portFlag: portFlag))")
        }
    }

    /// Why a socket could not be opened, with what to do about it.
    static func reason(_ code: CInt, portFlag: String) -> String {
        switch code {
        case EADDRINUSE:
            return
                "the port is already in use (another tsidp, or another server?); stop it or choose another \(portFlag)"
        case EACCES:
            return "permission denied (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)"
        case EADDRNOTAVAIL:
            return "this machine has no such address"
        default:
            let text = String(cString: strerror(code))
            return text.prefix(1).lowercased() + text.dropFirst()
        }
    }
}

import Hummingbird
import HummingbirdCore
import IDPServer
import Logging
import NIOCore
import NIOSSL

extension Configuration {
    /// The server of one listener, bounded by ``listenerLimits``.
    ///
    /// - Parameters:
    ///   - counter: the connection counter the listener shares with others (the tailnet
    ///     listeners of one host share one); nil gives the listener a counter of its own.
    ///   - tls: the TLS context of an HTTPS listener; nil serves plain HTTP.
    ///   - forwardedTrust: the trusted proxies among the listener's peers, which the per-peer cap
    ///     does not hold (see ``BoundedHTTPChannel``).
    func boundedServer(
        logger: Logger, counter: ConnectionCounter? = nil, tls: NIOSSLContext? = nil,
        forwardedTrust: ForwardedTrust = .nobody
    ) -> HTTPServerBuilder {
        var transportSecurity: (@Sendable (any Channel) throws -> Void)?
        if let tls {
            transportSecurity = { channel in
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
            }
        }
        return .bounded(
            listenerLimits, counter: counter ?? ConnectionCounter(limits: listenerLimits), logger: logger,
            transportSecurity: transportSecurity, forwardedTrust: forwardedTrust)
    }

    /// A listener on `host:port` serving `router`, bounded like ``boundedServer(logger:counter:tls:)``,
    /// whose failure to open its socket names the address (see ``ListenerService``).
    ///
    /// - Parameters:
    ///   - portFlag: the flag that chose the port, for the advice when it is taken.
    ///   - beforeStart: runs before the socket is opened (the `--dev` listener waits for the
    ///     simulated tailnet).
    ///   - onBound: runs with the port the socket got (for port 0: the one the system chose).
    ///   - onRunning: runs once the socket accepts connections.
    func listener(
        _ router: Router<IDPRequestContext>, host: String, port: Int, portFlag: String, logger: Logger,
        counter: ConnectionCounter? = nil, tls: NIOSSLContext? = nil, forwardedTrust: ForwardedTrust = .nobody,
        beforeStart: (@Sendable () async throws -> Void)? = nil,
        onBound: (@Sendable (Int) async -> Void)? = nil,
        onRunning: @escaping @Sendable () async -> Void = {}
    ) -> ListenerService {
        let started = StartFlag()
        var application = Application(
            router: router,
            server: boundedServer(logger: logger, counter: counter, tls: tls, forwardedTrust: forwardedTrust),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                started.set()
                if let onBound, let bound = channel.localAddress?.port { await onBound(bound) }
                await onRunning()
            },
            logger: logger)
        if let beforeStart { application.beforeServerStarts(perform: beforeStart) }
        return ListenerService(
            host: host, port: port, portFlag: portFlag, started: started, application: application)
    }

    /// The listeners a reverse proxy on this host connects to, serving `router` in plain HTTP:
    /// the `--unix-socket` listener and each socket passed by systemd. They share one connection
    /// count, apart from the tailnet listeners' and the `--local-port` listener's, and the caps
    /// and deadlines of every listener.
    ///
    /// - Parameter onRunning: runs as each of them accepts connections.
    func proxyListeners(
        _ router: Router<IDPRequestContext>, logger: Logger, onRunning: @escaping @Sendable () async -> Void = {}
    ) -> [ListenerService] {
        guard reverseProxy.listenerCount > 0 else { return [] }
        let counter = ConnectionCounter(limits: listenerLimits)
        let channel = BoundedHTTPChannel(
            responder: BoundSocketServer.responder(router.buildResponder(), logger: logger), limits: listenerLimits,
            counter: counter, logger: logger, forwardedTrust: forwardedTrust)
        var listeners: [ListenerService] = []
        if let path = reverseProxy.unixSocketPath {
            let started = StartFlag()
            listeners.append(
                ListenerService(
                    address: "unix socket \(path)", portFlag: "--unix-socket", started: started,
                    application: UnixSocketService(path: path, logger: logger) { socket in
                        BoundSocketServer(socket: socket, childChannel: channel, logger: logger) {
                            started.set()
                            logger.info("listening on a unix socket", metadata: ["path": "\(path)"])
                            await onRunning()
                        }
                    }))
        }
        for inherited in reverseProxy.inheritedSockets {
            let started = StartFlag()
            listeners.append(
                ListenerService(
                    address: inherited.description, portFlag: "ListenStream=", started: started,
                    application: BoundSocketServer(socket: inherited.descriptor, childChannel: channel, logger: logger)
                    {
                        started.set()
                        logger.info(
                            "listening on a socket passed by the service manager", metadata: ["socket": "\(inherited)"])
                        await onRunning()
                    }))
        }
        return listeners
    }

    /// How many listeners, besides the tailnet side's, report to the runner's ``AllRunning``:
    /// the `--local-port` listener and those of ``proxyListeners(_:logger:onRunning:)``.
    var commonListenerCount: Int { (localPort == nil ? 0 : 1) + reverseProxy.listenerCount }

    /// How many connection counters the listeners use: one for the tailnet side (or the `--dev`
    /// listener), one for the `--local-port` listener, one for the listeners a proxy connects to.
    var connectionCounterGroups: Int {
        1 + (localPort == nil ? 0 : 1) + (reverseProxy.listenerCount == 0 ? 0 : 1)
    }

    /// The configuration with ``ListenerLimits/maxConnections`` lowered, if needed, so that every
    /// listener's connections fit in `openFiles` descriptors. When it is lowered, one peer may
    /// hold at most a quarter of it, so that a single peer cannot take the whole budget.
    func fitting(openFiles: UInt64) -> Configuration {
        let total = FileDescriptorLimit.connectionBudget(
            configured: listenerLimits.maxConnections, openFiles: openFiles, groups: connectionCounterGroups)
        guard total < listenerLimits.maxConnections else { return self }
        var fitted = self
        fitted.listenerLimits.maxConnections = total
        fitted.listenerLimits.maxConnectionsPerPeer = min(listenerLimits.maxConnectionsPerPeer, max(1, total / 4))
        return fitted
    }
}

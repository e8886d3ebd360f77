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
    func boundedServer(logger: Logger, counter: ConnectionCounter? = nil, tls: NIOSSLContext? = nil)
        -> HTTPServerBuilder
    {
        var transportSecurity: (@Sendable (any Channel) throws -> Void)?
        if let tls {
            transportSecurity = { channel in
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
            }
        }
        return .bounded(
            listenerLimits, counter: counter ?? ConnectionCounter(limits: listenerLimits), logger: logger,
            transportSecurity: transportSecurity)
    }

    /// A listener on `host:port` serving `router`, bounded like ``boundedServer(logger:counter:tls:)``,
    /// whose failure to open its socket names the address (see ``ListenerService``).
    ///
    /// - Parameters:
    ///   - portFlag: the flag that chose the port, for the advice when it is taken.
    ///   - beforeStart: runs before the socket is opened (the `--dev` listener waits for the
    ///     simulated tailnet).
    ///   - onRunning: runs once the socket accepts connections.
    func listener(
        _ router: Router<IDPRequestContext>, host: String, port: Int, portFlag: String, logger: Logger,
        counter: ConnectionCounter? = nil, tls: NIOSSLContext? = nil,
        beforeStart: (@Sendable () async throws -> Void)? = nil,
        onRunning: @escaping @Sendable () async -> Void = {}
    ) -> ListenerService {
        let started = StartFlag()
        var application = Application(
            router: router,
            server: boundedServer(logger: logger, counter: counter, tls: tls),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { _ in
                started.set()
                await onRunning()
            },
            logger: logger)
        if let beforeStart { application.beforeServerStarts(perform: beforeStart) }
        return ListenerService(
            host: host, port: port, portFlag: portFlag, started: started, application: application)
    }

    /// How many connection counters the listeners use: one for the tailnet side (or the `--dev`
    /// listener), one for the `--local-port` listener.
    var connectionCounterGroups: Int { localPort == nil ? 1 : 2 }

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

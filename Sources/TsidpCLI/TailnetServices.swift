import IDPServer
import Logging
import NIOSSL
import ServiceLifecycle
import Tailnet

extension Configuration {
    /// The services of a tailnet mode without Funnel: an HTTPS listener on each of `hosts` (one
    /// connection count and one TLS context, whose certificate follows tailscaled's renewals), the
    /// common listeners and the sweep, and the certificate refresh. `announce` runs once every
    /// listener accepts connections.
    func httpsServices(
        server: IDPServer, hosts: [String], certificates: CertificateSource, logger: Logger,
        announce: @escaping @Sendable () -> Void
    ) throws -> [any Service] {
        let counter = ConnectionCounter(limits: listenerLimits)
        let tls = try NIOSSLContext(configuration: certificates.tlsConfiguration())
        let allRunning = AllRunning(count: hosts.count + commonListenerCount, action: announce)
        var services: [any Service] = hosts.map { host in
            listener(
                server.router(for: .tailnet, forwardedTrust: forwardedTrust), host: host, port: port,
                portFlag: "--port", logger: logger, counter: counter, tls: tls, forwardedTrust: forwardedTrust,
                onRunning: { allRunning.arrive() })
        }
        services += Runner.commonServices(server: server, configuration: self, logger: logger, allRunning: allRunning)
        services.append(CertificateRefreshService(source: certificates, logger: logger))
        return services
    }

    /// The services of a tailnet mode with Funnel: the common listeners and the sweep, the
    /// serve-proxy listener and the serve-config publisher (last, so it stops first). `announce`
    /// runs once every listener accepts connections and the serve config points at tsidp.
    func funnelModeServices(
        server: IDPServer, localAPI: LocalAPIClient, dnsName: String, tailscaledUID: UInt32,
        nodeRunning: @escaping @Sendable () async -> Void, logger: Logger, announce: @escaping @Sendable () -> Void
    ) -> [any Service] {
        let allRunning = AllRunning(count: 2 + commonListenerCount, action: announce)
        return Runner.commonServices(server: server, configuration: self, logger: logger, allRunning: allRunning)
            + funnelServices(
                server: server, localAPI: localAPI, dnsName: dnsName, tailscaledUID: tailscaledUID,
                nodeRunning: nodeRunning, logger: logger, onRunning: { allRunning.arrive() })
    }
}

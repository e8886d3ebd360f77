import Foundation
import Hummingbird
import IDPServer
import Logging
import NIOCore
import NIOSSL
import OIDCProvider
import ServiceLifecycle
import StateStore
import Tailnet
import Telemetry

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The embedded mode (the default): tsidp runs its own `tailscaled` in userspace networking,
/// logs it in, and serves HTTPS on loopback, where tailscaled delivers the node's tailnet
/// connections. WhoIs resolves the loopback peer through tailscaled's proxy map.
struct EmbeddedRunner {
    let configuration: Configuration
    let logger: Logger
    var metrics = TsidpMetrics(version: TsidpVersion.current)

    func run() async throws {
        let executable = try Self.findTailscaled(configuration.tailscaledPath)
        let directory = configuration.stateDirectory ?? Self.defaultStateDirectory()
        if configuration.stateDirectory == nil {
            logger.info("no --dir given; keeping state where the Go tsidp keeps it", metadata: ["dir": "\(directory)"])
        }
        let store = try await Runner.openStateStore(configuration, directory: directory, logger: logger)
        let writer = StateWriter(store: store, logger: logger, metrics: metrics)
        let socketPath = try Self.socketPath(in: directory)
        let localAPI = LocalAPIClient(socketPath: socketPath, logger: Runner.tailnetLogger(configuration, logger))

        var arguments = ["--tun=userspace-networking", "--socket=\(socketPath)", "--statedir=\(directory)"]
        if let state = configuration.state { arguments.append("--state=\(state)") }
        arguments += configuration.tailscaledExtraArguments
        let node = EmbeddedNode()
        let tell: @Sendable (String) -> Void = { message in
            FileHandle.standardError.write(Data("tsidp: \(message)\n".utf8))
        }
        let supervisor = TailscaledSupervisor(
            executable: executable, arguments: arguments, environment: Self.childEnvironment(),
            localAPI: localAPI,
            settings: NodeSettings(
                hostname: configuration.hostname, authKey: configuration.authKey,
                advertiseTags: configuration.advertiseTags, forceLogin: configuration.forceLogin),
            node: node, pidFile: directory + "/tailscaled.pid", logger: logger,
            outputLevel: configuration.debugTailscaled ? .info : .debug, tell: tell)
        let serving = EmbeddedServing(
            configuration: configuration, node: node, localAPI: localAPI, writer: writer, logger: logger,
            metrics: metrics, tell: tell)

        // Services stop in reverse order: the listeners drain first, then tailscaled stops, and the
        // writer finishes last.
        let services: [(any Service, ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior)] = [
            (writer, .cancelGroup), (supervisor, .gracefullyShutdownGroup), (serving, .gracefullyShutdownGroup),
        ]
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map {
                .init(service: $0.0, successTerminationBehavior: $0.1, failureTerminationBehavior: $0.1)
            },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = Runner.shutdownBound
        let group = ServiceGroup(configuration: groupConfiguration)
        try await Runner.run(group, thenFlush: store)
    }

    /// `tailscaled` at `configured`, or the first one on `PATH`.
    static func findTailscaled(_ configured: String?) throws -> String {
        let advice =
            "install Tailscale (https://tailscale.com/download, e.g. `apt install tailscale`), pass --tailscaled PATH, or use --use-local-tailscaled with the host's tailscaled (or --dev to try tsidp without a tailnet)"
        if let configured {
            guard FileManager.default.isExecutableFile(atPath: configured) else {
                throw UsageError("--tailscaled \(configured) is not an executable file: \(advice)")
            }
            return configured
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/tailscaled"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        for directory in ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
            let candidate = "\(directory)/tailscaled"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw UsageError("tailscaled was not found on PATH; the embedded node needs it: \(advice)")
    }

    /// Where the Go tsidp (tsnet) keeps its state when no directory is given:
    /// `$XDG_CONFIG_HOME/tsnet-tsidp`, or `~/.config/tsnet-tsidp`.
    static func defaultStateDirectory() -> String {
        let environment = ProcessInfo.processInfo.environment
        if let config = environment["XDG_CONFIG_HOME"], config.hasPrefix("/") { return config + "/tsnet-tsidp" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.config/tsnet-tsidp"
    }

    /// `<dir>/tailscaled.sock`, or a private directory when that path is too long for a socket.
    static func socketPath(in directory: String) throws -> String {
        let preferred = (directory.hasSuffix("/") ? directory : directory + "/") + "tailscaled.sock"
        if preferred.utf8.count < 100 { return preferred }
        var template = Array("/tmp/tsidp-node-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw UsageError("cannot create a directory for tailscaled's socket in /tmp")
        }
        return String(cString: created) + "/tailscaled.sock"
    }

    /// tsidp's environment without what is only tsidp's: the auth key goes to tailscaled through
    /// the LocalAPI, never through its environment or command line.
    static func childEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for name in [
            "TS_AUTHKEY", "TS_AUTH_KEY", "TS_AUTHKEY_FILE", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
        ] {
            environment[name] = nil
        }
        return environment
    }

    /// Whether this host has an IPv6 loopback address to listen on.
    static func hasIPv6Loopback() -> Bool {
        #if canImport(Glibc)
            let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let descriptor = socket(AF_INET6, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        address.sin6_port = 0
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
        return result == 0
    }
}

/// The part of the embedded mode that waits for the node and then serves: provider, HTTPS
/// listeners on loopback, the operator listener, the sweep and the certificate refresh.
struct EmbeddedServing: Service, CustomStringConvertible {
    let configuration: Configuration
    let node: EmbeddedNode
    let localAPI: LocalAPIClient
    let writer: StateWriter
    let logger: Logger
    let metrics: TsidpMetrics
    let tell: @Sendable (String) -> Void

    /// Names the service only: ServiceLifecycle logs every service at debug level, and the
    /// configuration holds the auth key.
    var description: String { "EmbeddedServing(port: \(configuration.port))" }

    func run() async throws {
        let pending = self.node
        let waited = try? await cancelWhenGracefulShutdown {
            try Task.checkCancellation()
            return await pending.firstRunning()
        }
        guard let status = waited ?? nil, !Task.isShuttingDownGracefully else { return }
        guard let dnsName = status.selfDNSName, !dnsName.isEmpty else {
            throw NodeLoginFailure(
                message: "tailscaled reports no MagicDNS name for this node; enable MagicDNS for the tailnet")
        }
        if status.magicDNSEnabled == false {
            throw NodeLoginFailure(
                message: "MagicDNS is off for this tailnet; turn it on in the admin console (DNS page)")
        }
        guard !status.certDomains.isEmpty else {
            throw NodeLoginFailure(
                message:
                    "HTTPS certificates are not enabled for this tailnet; turn them on in the admin console (DNS page)")
        }
        let certificates: CertificateSource
        do {
            certificates = try await CertificateSource.load(localAPI: localAPI, domain: dnsName)
        } catch let error as UsageError {
            throw NodeLoginFailure(message: error.message)
        }
        let issuer = configuration.issuer(
            default: "https://\(dnsName)" + (configuration.port == 443 ? "" : ":\(configuration.port)"))
        let caller = CallerIdentity(
            localAPI: localAPI, capabilityName: DevIdentities.tsidpCapability,
            excludedNodeStableIDs: Set([status.selfNode?.id].compactMap { $0 }.filter { !$0.isEmpty }),
            metrics: metrics)
        let provider = try await Runner.makeProvider(
            writer: writer, issuer: issuer, idpHost: dnsName, identity: caller, options: configuration, logger: logger,
            metrics: metrics)
        var options = IDPServer.Options()
        options.debugAllRequests = configuration.debugAllRequests
        let node = self.node
        let localAPI = self.localAPI
        let server = IDPServer(
            provider: provider, identity: caller, options: options, logger: logger,
            readiness: {
                guard await node.isRunning else { return false }
                return (try? await localAPI.status())?.backendState == "Running"
            })

        let tell = self.tell
        let logger = self.logger
        let services: [any Service]
        if configuration.funnel {
            // tailscaled terminates HTTPS for the port and proxies every request, tailnet and
            // Funnel alike, to the serve-proxy listener; tsidp's loopback HTTPS is not used.
            services = configuration.funnelModeServices(
                server: server, localAPI: localAPI, dnsName: dnsName, tailscaledUID: getuid(),
                nodeRunning: {
                    while !(await node.isRunning) {
                        guard (try? await Task.sleep(for: .milliseconds(200))) != nil else { return }
                    }
                },
                logger: logger,
                announce: {
                    tell("serving \(issuer) through tailscaled's proxy, with Funnel")
                    logger.info("tsidp is serving", metadata: ["issuer": "\(issuer)", "funnel": "on"])
                })
        } else {
            // tailscaled hands IPv4 tailnet connections to 127.0.0.1 and IPv6 ones to ::1.
            let hosts = EmbeddedRunner.hasIPv6Loopback() ? ["127.0.0.1", "::1"] : ["127.0.0.1"]
            services = try configuration.httpsServices(
                server: server, hosts: hosts, certificates: certificates, logger: logger,
                announce: {
                    tell("serving \(issuer) (the issuer relying parties use)")
                    logger.info("tsidp is serving", metadata: ["issuer": "\(issuer)"])
                })
        }
        try await Runner.serviceGroup(services, logger: logger, signals: []).run()
    }
}

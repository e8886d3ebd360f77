import Foundation
import Hummingbird
import IDPServer
import Logging
import OIDCProvider
import ServiceLifecycle
import StateStore
import Tailnet
import Telemetry
import UnixSignals

/// Builds the provider and its listeners from a ``Configuration`` and runs them until SIGTERM
/// or SIGINT.
struct Runner {
    let configuration: Configuration
    let logger: Logger
    /// The series `/metrics` reports, shared by every part of this run.
    var metrics = TsidpMetrics(version: TsidpVersion.current)

    func run() async throws {
        switch configuration.mode {
        case .development:
            try await runDevelopment()
        case .localTailscaled:
            try await LocalTailscaledRunner(configuration: configuration, logger: logger, metrics: metrics).run()
        case .embedded:
            try await EmbeddedRunner(configuration: configuration, logger: logger, metrics: metrics).run()
        }
    }

    /// The store of tsidp's own state: the Secret named by `--state kube:<name>`, else the state
    /// directory. With a Secret the directory still holds what is not state (the embedded node's
    /// socket and pid file), so it is created too, but nothing of tsidp's is written there.
    static func openStateStore(_ configuration: Configuration, directory: String, logger: Logger) async throws
        -> any StateStore
    {
        guard let state = configuration.state, state.hasPrefix("kube:") else {
            return try openStore(directory, logger: logger)
        }
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw UsageError("cannot create \(directory): \(Configuration.reason(error))")
        }
        do {
            let store = try await SecretStateStore.open(secretName: String(state.dropFirst(5)), logger: logger)
            logger.info("state is kept in a Kubernetes Secret", metadata: ["store": "\(store.description)"])
            return store
        } catch let error as StateStoreError {
            throw UsageError(error.message)
        }
    }

    /// Runs `group` to its end, then hands the store's pending Kubernetes Events (if any) to the
    /// API server, whether the group ended well or not.
    static func run(_ group: ServiceGroup, thenFlush store: any StateStore) async throws {
        do {
            try await group.run()
        } catch {
            await flush(store)
            throw error
        }
        await flush(store)
    }

    static func flush(_ store: any StateStore) async {
        if let secret = store as? SecretStateStore { await secret.flushEvents() }
    }

    /// Opens the state directory, printing a one-line reason when it cannot be used.
    static func openStore(_ path: String, logger: Logger) throws -> DirectoryStateStore {
        do {
            return try DirectoryStateStore(path: path, logger: logger, exclusive: true)
        } catch let error as StateStoreError {
            throw UsageError(error.message)
        } catch let busy as DirectoryLock.Busy {
            throw UsageError("\(busy.description) (it holds \(DirectoryLock.fileName)); stop it first")
        }
    }

    /// Loads keys and clients and builds the provider.
    static func makeProvider(
        writer: StateWriter, issuer: String, idpHost: String, identity: CallerIdentity, options: Configuration,
        logger: Logger, metrics: TsidpMetrics
    ) async throws -> Provider {
        let keys: KeyRing
        let clients: ClientRegistry
        do {
            keys = try await KeyRing.load(from: writer)
            clients = try await ClientRegistry.load(from: writer)
        } catch let error as KeyFileError {
            throw UsageError(error.message)
        } catch let error as StateStoreError {
            throw UsageError(error.message)
        }
        await clients.setDocumentFetcher(ClientDocumentFetcher.fetch)
        if options.mode == .development {
            // --dev never serves beyond this machine: an application under test may use any host.
            await clients.setPlainHTTPRedirects(.anyHost)
        }
        var settings = ProviderConfiguration(issuer: issuer, idpHost: idpHost)
        settings.enableTokenExchange = options.enableSTS
        settings.allowInsecureRegistration = options.allowInsecureRegistration
        if let entries = options.grantJournalEntries { settings.grantJournalMaximumEntries = entries }
        if let state = options.state, state.hasPrefix("kube:") {
            // A Secret holds 1 MiB in all: keep the journal, which repeats what the buckets will
            // hold, small.
            settings.grantJournalMaximumBytes = 64 * 1024
        }
        if let secret = writer.store as? SecretStateStore {
            settings.storeReserve = { open in
                if open { await secret.openReserve() } else { await secret.closeReserve() }
            }
        }
        if options.allowInsecureRegistration {
            logger.warning(
                "--allow-insecure-registration is on: any application on the tailnet can sign users in without registering"
            )
        }
        let provider = Provider(
            configuration: settings, keys: keys, clients: clients,
            writer: writer,
            reidentify: { (grant: UserIdentity) async throws(IdentityFailure) -> UserIdentity in
                try await identity.reidentify(grant)
            },
            logger: logger, metrics: metrics)
        do {
            try await provider.restoreGrants()
        } catch let error as KeyFileError {
            throw UsageError(error.message)
        } catch let error as StateStoreError {
            throw UsageError(error.message)
        }
        return provider
    }

    func runDevelopment() async throws {
        // --dev never serves beyond this machine, whoever opened the socket.
        for socket in configuration.reverseProxy.inheritedSockets where !socket.isLocalOnly {
            throw UsageError(
                "--dev serves this machine only, but \(socket) passed by the service manager is not a loopback address")
        }
        let identities: [WhoIsResponse?]
        if let path = configuration.devIdentitiesPath {
            do {
                identities = try DevIdentities.load(path: path)
            } catch let error as DevIdentitiesError {
                throw UsageError("--dev-identities \(error.message)")
            }
        } else {
            identities = DevIdentities.builtIn(capabilityName: configuration.capabilityName)
        }
        let stateDirectory = configuration.stateDirectory ?? "tsidp-dev-state"
        let store = try await Self.openStateStore(configuration, directory: stateDirectory, logger: logger)
        let writer = StateWriter(store: store, logger: logger, metrics: metrics)

        // The simulated tailnet's socket lives in a private directory of its own.
        var template = Array(
            ((NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/")
                + "tsidp-dev-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else {
            throw UsageError("cannot create a private directory for the simulated tailnet")
        }
        let socketDirectory = String(cString: created)
        defer {
            // The simulated tailnet's private socket directory, not state: a failure is only noise.
            do {
                try FileManager.default.removeItem(atPath: socketDirectory)
            } catch {
                logger.debug("could not remove \(socketDirectory): \(error)")
            }
        }
        let socketPath = socketDirectory + "/tailscaled.sock"
        let tailnet = SimulatedTailnet(socketPath: socketPath, identities: identities)
        let simulatedReady = ReadySignal()
        let simulated = tailnet.application(logger: logger) { await simulatedReady.fire() }

        let issuer = configuration.issuer(default: "http://localhost:\(configuration.port)")
        let localAPI = LocalAPIClient(
            socketPath: socketPath, timeout: .seconds(5), logger: Self.tailnetLogger(configuration, logger))
        let caller = CallerIdentity(
            localAPI: localAPI, capabilityName: configuration.capabilityName, metrics: metrics)
        let provider = try await Self.makeProvider(
            writer: writer, issuer: issuer, idpHost: "localhost", identity: caller, options: configuration,
            logger: logger, metrics: metrics)
        var options = IDPServer.Options()
        options.debugAllRequests = configuration.debugAllRequests
        let server = IDPServer(
            provider: provider,
            identity: caller,
            options: options, logger: logger,
            readiness: { (try? await localAPI.status()) != nil })

        // The writer first: services stop in reverse order, so it drains after every listener.
        var services: [any Service] = [writer, simulated]
        let port = configuration.port
        let banner = Self.devBanner(
            issuer: issuer, identities: identities, stateDirectory: stateDirectory, localPort: configuration.localPort,
            proxyListeners: configuration.reverseProxy)
        // The banner comes once every listener is open, the `--local-port` one included.
        let allRunning = AllRunning(count: 1 + configuration.commonListenerCount) {
            FileHandle.standardError.write(Data(banner.utf8))
        }
        services.append(
            configuration.listener(
                server.router(for: .tailnet, forwardedTrust: configuration.forwardedTrust), host: "127.0.0.1",
                port: port, portFlag: "--port", logger: logger, forwardedTrust: configuration.forwardedTrust,
                beforeStart: { await simulatedReady.wait() },
                onRunning: { allRunning.arrive() }))
        services += Runner.commonServices(
            server: server, configuration: configuration, logger: logger, allRunning: allRunning)
        if let path = configuration.devIdentitiesPath {
            services.append(
                IdentityReloadService(path: path, tailnet: tailnet, sharing: caller.sharing, logger: logger))
        }
        try await Self.run(Self.serviceGroup(services, logger: logger), thenFlush: store)
    }

    /// The group that runs every service until SIGTERM or SIGINT. A listener that cannot open its
    /// socket shuts the others down gracefully (cancelling them would log each one's
    /// cancellation as an error next to the one line that says what went wrong).
    static func serviceGroup(
        _ services: [any Service], logger: Logger, signals: [UnixSignal] = [.sigterm, .sigint]
    ) -> ServiceGroup {
        let configurations = services.map { service in
            ServiceGroupConfiguration.ServiceConfiguration(
                service: service,
                failureTerminationBehavior: service is ListenerService || service is ServePublisher
                    ? .gracefullyShutdownGroup : .cancelGroup)
        }
        var configuration = ServiceGroupConfiguration(
            services: configurations, gracefulShutdownSignals: signals, logger: logger)
        configuration.maximumGracefulShutdownDuration = shutdownBound
        return ServiceGroup(configuration: configuration)
    }

    /// How long SIGTERM waits for requests in progress (and, embedded, for tailscaled) before the
    /// rest is cancelled: within Kubernetes' default 30 s grace period. Requests are bounded well
    /// inside it (read timeouts, 5 s LocalAPI calls), so it is a backstop, not a schedule.
    static let shutdownBound: Duration = .seconds(25)

    /// `--debug-tailscaled`: the tailnet layer's calls logged at debug level, whatever `--log` says.
    static func tailnetLogger(_ configuration: Configuration, _ logger: Logger) -> Logger? {
        guard configuration.debugTailscaled else { return nil }
        var tailnet = logger
        tailnet.logLevel = .debug
        tailnet[metadataKey: "component"] = "tailnet"
        return tailnet
    }

    /// What every mode runs besides its tailnet listeners: the `--local-port` listener (the
    /// operator's door) and the listeners a reverse proxy on this host connects to
    /// (`--unix-socket`, sockets passed by systemd), which report to `allRunning` once open
    /// (``Configuration/commonListenerCount`` of them), and the once-a-minute sweep.
    static func commonServices(
        server: IDPServer, configuration: Configuration, logger: Logger, allRunning: AllRunning
    ) -> [any Service] {
        var services: [any Service] = []
        if let localPort = configuration.localPort {
            services.append(
                configuration.listener(
                    server.router(for: .local), host: "127.0.0.1", port: localPort, portFlag: "--local-port",
                    logger: logger, onRunning: { allRunning.arrive() }))
        }
        configuration.reverseProxy.logTrust(logger: logger)
        services += configuration.proxyListeners(
            server.router(for: .tailnet, forwardedTrust: configuration.forwardedTrust), logger: logger,
            onRunning: { allRunning.arrive() })
        services.append(SweepService(provider: server.provider, logger: logger))
        services.append(DrainNotice(metrics: server.provider.metrics, logger: logger))
        return services
    }

    static func devBanner(
        issuer: String, identities: [WhoIsResponse?], stateDirectory: String, localPort: Int?,
        proxyListeners: ReverseProxySettings = ReverseProxySettings()
    ) -> String {
        var lines = [
            "",
            "  tsidp --dev: FOR DEVELOPMENT ONLY. No Tailscale; a simulated tailnet answers who each caller is.",
            "  Plain HTTP on 127.0.0.1 only. Never use this mode to protect real applications.",
            "",
            "  Issuer:       \(issuer)",
            "  Discovery:    \(issuer)/.well-known/openid-configuration",
            "  Clients API:  POST \(issuer)/clients/new  (form fields name, redirect_uri)",
        ]
        if let localPort { lines.append("  Operator:     http://127.0.0.1:\(localPort) (local listener)") }
        if let path = proxyListeners.unixSocketPath { lines.append("  Unix socket:  \(path)") }
        for socket in proxyListeners.inheritedSockets { lines.append("  Passed in:    \(socket)") }
        if !proxyListeners.forwardedTrust.trustsNobody {
            lines.append("  Proxies:      X-Forwarded-For believed from \(proxyListeners.forwardedTrust)")
        }
        lines.append("  State:        \(stateDirectory)")
        lines.append("  Identities:")
        for (index, entry) in identities.enumerated() {
            guard let identity = entry else {
                lines.append("    127.0.0.\(index + 1)  (not on the tailnet)")
                continue
            }
            let who =
                identity.node.isTagged
                ? "tagged \(identity.node.tags.joined(separator: ","))" : identity.userProfile.loginName
            lines.append("    127.0.0.\(index + 1)  \(who) on \(identity.node.name)")
        }
        lines.append("")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `--dev`: SIGHUP reloads the identities file, so a test or a developer can change a profile,
/// a grant, or remove a device while tsidp runs. A file with mistakes is reported and ignored.
struct IdentityReloadService: Service {
    let path: String
    let tailnet: SimulatedTailnet
    /// Forgotten on every reload: the answers it holds describe the old identities.
    let sharing: WhoIsSharing
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withGracefulShutdownHandler {
            for await _ in signals.cancelOnGracefulShutdown() {
                do {
                    let identities = try DevIdentities.load(path: path)
                    tailnet.setIdentities(identities)
                    sharing.forgetAll()
                    logger.info("reloaded dev identities", metadata: ["count": "\(identities.count)"])
                } catch {
                    logger.error(
                        "dev identities not reloaded; keeping the previous ones", metadata: ["error": "\(error)"])
                }
            }
        } onGracefulShutdown: {
        }
    }
}

/// Once a minute: forgets expired codes and tokens, and rotates signing keys when due.
struct SweepService: Service {
    let provider: Provider
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
            } catch {
                return
            }
            do {
                try await provider.sweep()
            } catch {
                logger.warning(
                    "expired grants could not be removed from the store; the next sweep retries",
                    metadata: ["error": "\(error)"])
            }
            do {
                try await provider.keys.maintain()
            } catch {
                logger.error(
                    "signing key rotation failed; the current keys stay in use", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Says, when SIGTERM or SIGINT arrives, that tsidp is draining and how many requests it waits
/// for: the listeners stop accepting, idle connections close, and requests in progress are
/// answered before the process exits.
struct DrainNotice: Service {
    let metrics: TsidpMetrics
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info(
            "shutting down: no new connections; answering the requests in progress first",
            metadata: ["in_flight": "\(metrics.requestsInFlight)"])
    }
}

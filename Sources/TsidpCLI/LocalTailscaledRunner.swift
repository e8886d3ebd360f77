import Foundation
import Hummingbird
import IDPServer
import Logging
import NIOCore
import NIOSSL
import OIDCProvider
import ServiceLifecycle
import StateStore
import Synchronization
import Tailnet
import Telemetry

/// `--use-local-tailscaled`: serves HTTPS on each of the host node's Tailscale addresses with the
/// certificate tailscaled holds for the node's MagicDNS name, and asks the host's tailscaled who
/// each caller is.
struct LocalTailscaledRunner {
    let configuration: Configuration
    let logger: Logger
    var metrics = TsidpMetrics(version: TsidpVersion.current)

    func run() async throws {
        let localAPI = LocalAPIClient(
            socketPath: configuration.socketPath, logger: Runner.tailnetLogger(configuration, logger))
        try Self.checkSocket(localAPI)
        let status: Status
        do {
            status = try await localAPI.status()
        } catch {
            throw UsageError("cannot get tailscaled's status at \(configuration.socketPath): \(error)")
        }
        guard status.backendState == "Running" else {
            throw UsageError(
                "tailscaled is \(status.backendState.isEmpty ? "not running" : status.backendState); run `tailscale up` first"
            )
        }
        guard let dnsName = status.selfDNSName, !dnsName.isEmpty else {
            throw UsageError("tailscaled reports no MagicDNS name for this node; enable MagicDNS for the tailnet")
        }
        guard !status.certDomains.isEmpty else {
            throw UsageError(
                "HTTPS certificates are not enabled for this tailnet; turn them on in the admin console (DNS page)")
        }
        guard !status.tailscaleIPs.isEmpty else {
            throw UsageError("tailscaled reports no Tailscale addresses for this node")
        }
        let certificates = try await CertificateSource.load(localAPI: localAPI, domain: dnsName)

        guard let stateDirectory = configuration.stateDirectory else {
            throw UsageError(
                "--dir (or TS_STATE_DIR) is required with --use-local-tailscaled: it holds the signing key and clients")
        }
        let store = try await Runner.openStateStore(configuration, directory: stateDirectory, logger: logger)
        let writer = StateWriter(store: store, logger: logger, metrics: metrics)
        let issuer = configuration.issuer(
            default: "https://\(dnsName)" + (configuration.port == 443 ? "" : ":\(configuration.port)"))
        let caller = CallerIdentity(
            localAPI: localAPI, capabilityName: DevIdentities.tsidpCapability,
            excludedNodeStableIDs: Set([status.selfNode?.id].compactMap { $0 }.filter { !$0.isEmpty }),
            metrics: metrics)
        let provider = try await Runner.makeProvider(
            writer: writer, issuer: issuer, idpHost: dnsName, identity: caller, options: configuration,
            logger: logger, metrics: metrics)
        var options = IDPServer.Options()
        options.debugAllRequests = configuration.debugAllRequests
        let server = IDPServer(
            provider: provider,
            identity: caller,
            options: options, logger: logger,
            readiness: { (try? await localAPI.status())?.backendState == "Running" })

        // The writer first: services stop in reverse order, so it drains after every listener.
        var services: [any Service] = [writer]
        if configuration.funnel {
            if let refusal = status.selfNode.map({ $0.funnelRefusal(port: configuration.port) })
                ?? "tailscaled reports no node"
            {
                throw UsageError("--funnel: \(refusal)")
            }
            guard let tailscaledUID = localAPI.serverUID() else {
                throw UsageError(
                    "--funnel: cannot tell which user tailscaled runs as (this needs Linux peer credentials), so its proxy's connections could not be told from other programs'"
                )
            }
            // tailscaled terminates HTTPS for the port and proxies every request to the
            // serve-proxy listener; tsidp does not bind the Tailscale addresses itself.
            services += configuration.funnelModeServices(
                server: server, localAPI: localAPI, dnsName: dnsName, tailscaledUID: tailscaledUID,
                nodeRunning: {}, logger: logger,
                announce: { logger.info("tsidp is serving", metadata: ["issuer": "\(issuer)", "funnel": "on"]) })
            try await Runner.run(Runner.serviceGroup(services, logger: logger), thenFlush: store)
            return
        }
        // One HTTPS listener per Tailscale address.
        let addresses = status.tailscaleIPs
        services += try configuration.httpsServices(
            server: server, hosts: addresses, certificates: certificates, logger: logger,
            announce: {
                logger.info(
                    "tsidp is serving",
                    metadata: ["issuer": "\(issuer)", "addresses": "\(addresses.joined(separator: ","))"])
            })
        try await Runner.run(Runner.serviceGroup(services, logger: logger), thenFlush: store)
    }
}

extension LocalTailscaledRunner {
    /// Fails at once, in one line naming the socket, when nothing accepts connections on it.
    static func checkSocket(_ localAPI: LocalAPIClient) throws(UsageError) {
        let path = localAPI.socketPath
        do {
            try localAPI.probeSocket()
        } catch .missing {
            throw UsageError(
                "tailscaled's socket \(path) does not exist: start tailscaled, or pass --socket with the path of its socket"
            )
        } catch .refused {
            throw UsageError(
                "nothing accepts connections on tailscaled's socket \(path): start tailscaled, or pass --socket with the path of its socket"
            )
        } catch .permissionDenied {
            throw UsageError(
                "permission denied on tailscaled's socket \(path): run tsidp as root or as a user who may use the socket"
            )
        } catch {
            throw UsageError(
                "cannot connect to tailscaled's socket \(path): \(error); start tailscaled, or pass --socket with the path of its socket"
            )
        }
    }
}

/// The node's TLS certificate from tailscaled, swapped in place when tailscaled renews it.
final class CertificateSource: Sendable {
    struct Material: Sendable {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    let localAPI: LocalAPIClient
    let domain: String
    private let current: Mutex<Material>

    private init(localAPI: LocalAPIClient, domain: String, material: Material) {
        self.localAPI = localAPI
        self.domain = domain
        self.current = Mutex(material)
    }

    static func load(localAPI: LocalAPIClient, domain: String) async throws -> CertificateSource {
        CertificateSource(
            localAPI: localAPI, domain: domain, material: try await fetch(localAPI: localAPI, domain: domain))
    }

    static func fetch(localAPI: LocalAPIClient, domain: String) async throws -> Material {
        let pair: CertPair
        do {
            pair = try await localAPI.certPair(domain: domain)
        } catch {
            throw UsageError("cannot get a TLS certificate for \(domain) from tailscaled: \(error)")
        }
        do {
            return Material(
                chain: try NIOSSLCertificate.fromPEMBytes(Array(pair.certificatePEM.utf8)),
                key: try NIOSSLPrivateKey(bytes: Array(pair.keyPEM.utf8), format: .pem))
        } catch {
            throw UsageError("tailscaled's certificate for \(domain) cannot be used: \(error)")
        }
    }

    /// When the current leaf certificate stops being valid (seconds since 1970).
    var expiry: Int { current.withLock { $0.chain.first.map { Int($0.notValidAfter) } ?? 0 } }

    /// Fetches the certificate again (tailscaled renews it before it expires).
    func refresh() async throws {
        let material = try await Self.fetch(localAPI: localAPI, domain: domain)
        current.withLock { $0 = material }
    }

    /// A server configuration whose every handshake uses the current certificate.
    func tlsConfiguration() -> TLSConfiguration {
        let material = current.withLock { $0 }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: material.chain.map { .certificate($0) }, privateKey: .privateKey(material.key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.sslContextCallback = { [weak self] _, promise in
            guard let self else {
                promise.succeed(.noChanges)
                return
            }
            let latest = self.current.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = latest.chain.map { .certificate($0) }
            override.privateKey = .privateKey(latest.key)
            promise.succeed(override)
        }
        return configuration
    }
}

/// Re-fetches the TLS certificate every 12 hours, and sooner as its expiry nears: tailscaled
/// renews a certificate once a third of its lifetime is left, so asking again at a third of the
/// remaining time (at least a minute apart) picks the renewal up well before the old one expires.
struct CertificateRefreshService: Service {
    let source: CertificateSource
    let logger: Logger

    /// How long to wait before the next fetch, for a certificate valid until `expiry`.
    static func delay(expiry: Int, now: Int) -> Duration {
        let third = (expiry - now) / 3
        return .seconds(min(12 * 3600, max(60, third)))
    }

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = Self.delay(expiry: source.expiry, now: Int(Date().timeIntervalSince1970))
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                return
            }
            do {
                try await source.refresh()
                logger.info("TLS certificate refreshed", metadata: ["domain": "\(source.domain)"])
            } catch {
                logger.warning(
                    "TLS certificate refresh failed; keeping the current one", metadata: ["error": "\(error)"])
            }
        }
    }
}

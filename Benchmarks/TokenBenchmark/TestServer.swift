import AsyncHTTPClient
import Foundation
import Hummingbird
import IDPServer
import Logging
import NIOCore
import NIOPosix
import OIDCProvider
import StateStore
import Tailnet

/// tsidp running in this process as `tsidp --dev` wires it (`Runner.runDevelopment()`): a
/// simulated tailnet on a private unix socket with the built-in identity, the provider over a
/// directory state store, and the tailnet router served by Hummingbird on 127.0.0.1.
///
/// Differences from `tsidp --dev`, none on the request path: the port is a free one picked here,
/// the state directory is a fresh temporary one, there is no banner and no once-a-minute sweep
/// service (every scenario is far shorter than its first sweep), the LocalAPI client has an HTTP
/// client of its own (with `HTTPClient.shared`'s configuration, so that it can be shut down between
/// scenarios), and with `persistGrants: false` the provider gets `grantStore: nil`.
struct TestServer: Sendable {
    let port: Int
    let issuer: String
    let provider: Provider
    let caller: CallerIdentity
    /// The confidential client registered at start.
    let client: ClientCredentials
    let redirectURI: String
    let stateDirectory: String
    let socketDirectory: String
    let persistGrants: Bool
    private let localAPIHTTPClient: HTTPClient
    private let running: Task<Void, any Error>

    /// Bytes and number of the grant-state files (`tsidp-grants*`) in the state directory.
    var grantStateOnDisk: (bytes: Int, files: Int) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []
        var bytes = 0
        var files = 0
        for name in names where name.hasPrefix("tsidp-grants") {
            bytes += SystemInfo.fileSize(stateDirectory + "/" + name) ?? 0
            files += 1
        }
        return (bytes, files)
    }

    static func start(persistGrants: Bool, stateParent: String?, logger: Logger) async throws -> TestServer {
        let identities = DevIdentities.builtIn
        let stateDirectory = try SystemInfo.makeTemporaryDirectory(prefix: "tsidp-bench-state", parent: stateParent)
        let store = try DirectoryStateStore(path: stateDirectory)

        // The simulated tailnet's socket lives in a private directory of its own.
        let socketDirectory = try SystemInfo.makeTemporaryDirectory(prefix: "tsidp-bench-sock")
        let socketPath = socketDirectory + "/tailscaled.sock"
        let tailnet = SimulatedTailnet(socketPath: socketPath, identities: identities)
        let simulatedReady = ReadySignal()
        let simulated = tailnet.application(logger: logger) { await simulatedReady.fire() }

        let port = try await freePort()
        let issuer = "http://localhost:\(port)"
        let localAPIHTTPClient = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: .singletonConfiguration)
        let localAPI = LocalAPIClient(socketPath: socketPath, timeout: .seconds(5), httpClient: localAPIHTTPClient)
        let caller = CallerIdentity(localAPI: localAPI, capabilityName: DevIdentities.tsidpCapability)

        // Runner.makeProvider
        let writer = StateWriter(store: store, logger: logger)
        let keys = try await KeyRing.load(from: writer)
        let clients = try await ClientRegistry.load(from: writer)
        let provider = Provider(
            configuration: ProviderConfiguration(issuer: issuer, idpHost: "localhost"), keys: keys, clients: clients,
            writer: persistGrants ? writer : nil,
            reidentify: { (grant: UserIdentity) async throws(IdentityFailure) -> UserIdentity in
                try await caller.reidentify(grant)
            },
            logger: logger)
        try await provider.restoreGrants()

        let options = IDPServer.Options()
        let server = IDPServer(
            provider: provider, identity: caller, options: options, logger: logger,
            readiness: { (try? await localAPI.status()) != nil })

        let serverReady = ReadySignal()
        var app = Application(
            router: server.router(for: .tailnet),
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: nil),
            onServerRunning: { _ in await serverReady.fire() },
            logger: logger)
        app.beforeServerStarts { await simulatedReady.wait() }
        let application = app

        let running = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await simulated.run() }
                group.addTask { try await application.run() }
                _ = try await group.next()
                group.cancelAll()
            }
        }
        await serverReady.wait()

        let redirectURI = "http://rp.localhost:9999/oauth/callback"
        let client = try await register(provider, name: "tsidp-benchmark", redirectURI: redirectURI)
        return TestServer(
            port: port, issuer: issuer, provider: provider, caller: caller, client: client,
            redirectURI: redirectURI, stateDirectory: stateDirectory,
            socketDirectory: socketDirectory, persistGrants: persistGrants, localAPIHTTPClient: localAPIHTTPClient,
            running: running)
    }

    /// Stops both listeners (by cancelling them: this target has no ServiceLifecycle dependency
    /// for a graceful shutdown) and removes the temporary directories. Shut the load client down
    /// first.
    func stop() async {
        try? await localAPIHTTPClient.shutdown()
        try? await Task.sleep(for: .milliseconds(200))
        BenchmarkLogHandler.stopping.store(true, ordering: .relaxed)
        running.cancel()
        _ = await running.result
        BenchmarkLogHandler.stopping.store(false, ordering: .relaxed)
        try? FileManager.default.removeItem(atPath: stateDirectory)
        try? FileManager.default.removeItem(atPath: socketDirectory)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw BenchmarkError("could not find a free port on 127.0.0.1") }
        return port
    }

    static func register(_ provider: Provider, name: String, redirectURI: String) async throws -> ClientCredentials {
        let (client, secret) = try await provider.clients.register(.init(name: name, redirectURIs: [redirectURI]))
        guard let secret else { throw BenchmarkError("the benchmark client was registered without a secret") }
        return ClientCredentials(id: client.clientID, secret: secret)
    }

    /// `count` more confidential clients with the same redirect URI. tsidp allows a user only a
    /// few outstanding codes per client (`GrantStore.codesPerUserAndClient`), so a pool of codes
    /// for one user is spread over clients.
    func registerClients(_ count: Int) async throws -> [ClientCredentials] {
        var clients: [ClientCredentials] = []
        for index in 0..<count {
            clients.append(
                try await Self.register(provider, name: "tsidp-benchmark-\(index)", redirectURI: redirectURI))
        }
        return clients
    }

    /// The built-in identity, as `/authorize` would obtain it through WhoIs.
    var devUser: UserIdentity {
        caller.convert(DevIdentities.builtIn[0]!)
    }
}

/// A registered confidential client and its `client_secret_basic` header.
struct ClientCredentials: Sendable {
    let id: String
    let secret: String
    let basicAuthorization: String

    init(id: String, secret: String) {
        self.id = id
        self.secret = secret
        basicAuthorization = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
    }
}

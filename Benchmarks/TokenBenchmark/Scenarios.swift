import Foundation
import Logging
import OIDCProvider
import Synchronization

/// The measured outcome of one scenario, as reported.
struct ScenarioResult: Codable, Sendable {
    struct Step: Codable, Sendable {
        var name: String
        var latency: LatencySummary
    }

    var name: String
    var title: String
    /// `http` (loopback, AsyncHTTPClient) or `in-process` (direct `Provider` calls).
    var transport: String
    /// `directory` (DirectoryStateStore, fsync per grant write) or `memory` (`grantStore: nil`).
    var grantStore: String
    var concurrency: Int
    var windowSeconds: Double
    var completed: Int
    var ratePerSecond: Double
    /// Operations finished in each second of the window (a falling series means the cost grows).
    var completedPerSecond: [Int]
    var errors: Int
    var errorSamples: [String]
    var latency: LatencySummary
    var steps: [Step]
    /// Share of all cores' time this process used during the window (1.0 = every core busy).
    var cpuUtilization: Double
    /// Process CPU time (client and server together) per completed operation, in microseconds.
    var cpuMicrosecondsPerOperation: Double
    var cpuSystemShare: Double
    /// Share of all cores other processes on the machine kept busy during the window.
    var otherProcessesCPUUtilization: Double?
    /// Grant-state writes (each one a full snapshot, fsync'd) during the warm-up and window.
    var grantWrites: Int?
    var grantWritesPerSecond: Double?
    /// Operations finished per grant write during the warm-up and window (the group-commit batch).
    var operationsPerGrantWrite: Double?
    /// Total size and number of the grant-state files (`tsidp-grants*`) when the scenario ended.
    var grantStateBytes: Int?
    var grantStateFiles: Int?
    /// Live refresh families when the scenario ended.
    var liveFamilies: Int?
    var codesPrepared: Int?
    /// Confidential clients the scenario used (codes are spread over clients; see `codesPerClient`).
    var clients: Int?
    var ranOutOfCodes: Bool
    /// Signing input (`header.payload`) length of an ID token the scenario received.
    var idTokenSigningInputBytes: Int?
    var vmHWMKilobytesAfter: Int?
}

/// Builds and runs the scenarios.
struct Scenarios {
    let options: Options
    let logger: Logger
    private let cores = ProcessInfo.processInfo.activeProcessorCount

    init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    func result(
        name: String, title: String, transport: String, server: TestServer, measurement m: LoadMeasurement,
        stepNames: [String] = [], codes: Int? = nil, idTokenBytes: Int? = nil
    ) async -> ScenarioResult {
        let cpu = m.cpuUser + m.cpuSystem
        let writes = m.grantWrites.flatMap { $0 > 0 ? $0 : nil }
        return ScenarioResult(
            name: name, title: title, transport: transport,
            grantStore: server.persistGrants ? "directory" : "memory", concurrency: options.concurrency,
            windowSeconds: m.window, completed: m.completed,
            ratePerSecond: m.window > 0 ? Double(m.completed) / m.window : 0,
            completedPerSecond: Array(m.perSecond.prefix(Int(m.window.rounded(.up)))),
            errors: m.errors, errorSamples: m.errorSamples, latency: LatencySummary(m.latencies),
            steps: zip(stepNames, m.steps).map { ScenarioResult.Step(name: $0.0, latency: LatencySummary($0.1)) },
            cpuUtilization: m.window > 0 ? cpu / (m.window * Double(cores)) : 0,
            cpuMicrosecondsPerOperation: m.completed > 0 ? cpu / Double(m.completed) * 1e6 : 0,
            cpuSystemShare: cpu > 0 ? m.cpuSystem / cpu : 0, otherProcessesCPUUtilization: m.otherCPUUtilization,
            grantWrites: m.grantWrites,
            grantWritesPerSecond: writes.map { Double($0) / (options.warmup + m.window) },
            operationsPerGrantWrite: writes.map { Double(m.completed + m.warmupCompleted) / Double($0) },
            grantStateBytes: server.persistGrants ? server.grantStateOnDisk.bytes : nil,
            grantStateFiles: server.persistGrants ? server.grantStateOnDisk.files : nil,
            liveFamilies: server.provider.grantCounts.families,
            codesPrepared: codes, clients: nil, ranOutOfCodes: m.exhausted, idTokenSigningInputBytes: idTokenBytes,
            vmHWMKilobytesAfter: SystemInfo.peakResidentKB)
    }

    /// Runs `body` and records how many grant writes the server made meanwhile.
    func countingWrites(_ server: TestServer, _ body: () async -> LoadMeasurement) async -> LoadMeasurement {
        guard server.persistGrants else { return await body() }
        let before = server.provider.grantWrites
        var measurement = await body()
        measurement.grantWrites = server.provider.grantWrites - before
        return measurement
    }

    func startServer(persistGrants: Bool) async throws -> TestServer {
        try await TestServer.start(persistGrants: persistGrants, stateParent: options.stateParent, logger: logger)
    }

    // MARK: HTTP

    /// GET /healthz/live: what a request costs with no provider work (client and server together).
    func httpFloor() async throws -> ScenarioResult {
        let server = try await startServer(persistGrants: true)
        let driver = HTTPDriver(server: server, connections: options.concurrency)
        let measurement = await LoadRunner.run(
            concurrency: options.concurrency, warmup: options.warmup, duration: options.duration
        ) { _ in
            if let failure = await driver.get("/healthz/live") { return .failure(failure.description) }
            return .success(steps: [])
        }
        let result = await self.result(
            name: "floor", title: "HTTP floor: GET /healthz/live", transport: "http", server: server,
            measurement: measurement)
        await driver.shutdown()
        await server.stop()
        return result
    }

    /// Codes one pool keeps outstanding per client: tsidp refuses a user more than
    /// `GrantStore.codesPerUserAndClient` (32) unredeemed codes per client.
    static let codesPerClient = 24

    /// GET /authorize → POST /token → GET /userinfo, repeated. Each worker holds at most one
    /// outstanding code, so one client serves up to 16 workers.
    func fullFlow(persistGrants: Bool) async throws -> ScenarioResult {
        let server = try await startServer(persistGrants: persistGrants)
        let clients = [server.client] + (try await server.registerClients((options.concurrency - 1) / 16))
        let driver = HTTPDriver(server: server, connections: options.concurrency)
        let idTokenBytes = Locked<Int?>(nil)
        let clock = ContinuousClock()
        let measurement = await countingWrites(server) {
            await LoadRunner.run(
                concurrency: options.concurrency, warmup: options.warmup, duration: options.duration
            ) { worker in
                let client = clients[worker % clients.count]
                let t0 = clock.now
                let code: String
                switch await driver.authorize(client: client) {
                case .success(let value): code = value
                case .failure(let failure): return .failure(failure.description)
                }
                let t1 = clock.now
                let tokens: (accessToken: String, idToken: String)
                switch await driver.token(code: code, client: client) {
                case .success(let value): tokens = value
                case .failure(let failure): return .failure(failure.description)
                }
                let t2 = clock.now
                if let failure = await driver.userInfo(accessToken: tokens.accessToken) {
                    return .failure(failure.description)
                }
                let t3 = clock.now
                idTokenBytes.withLock { if $0 == nil { $0 = Self.signingInputBytes(tokens.idToken) } }
                return .success(steps: [(t1 - t0).seconds, (t2 - t1).seconds, (t3 - t2).seconds])
            }
        }
        var result = await self.result(
            name: persistGrants ? "full" : "full-memory",
            title: "full login flow" + (persistGrants ? "" : " (grantStore: nil)"), transport: "http",
            server: server, measurement: measurement,
            stepNames: ["GET /authorize", "POST /token", "GET /userinfo"], idTokenBytes: idTokenBytes.withLock { $0 })
        result.clients = clients.count
        await driver.shutdown()
        await server.stop()
        return result
    }

    /// POST /token alone, redeeming codes obtained from GET /authorize beforehand.
    func tokenEndpoint(persistGrants: Bool) async throws -> ScenarioResult {
        let server = try await startServer(persistGrants: persistGrants)
        let driver = HTTPDriver(server: server, connections: options.concurrency)
        let idTokenBytes = Locked<Int?>(nil)
        let (measurement, prepared) = try await redeemPreparedCodes(
            server: server,
            makeCodes: { count in try await prepareHTTPCodes(driver, server: server, count: count) },
            redeem: { prepared in
                switch await driver.token(code: prepared.code, client: prepared.client) {
                case .success(let tokens):
                    idTokenBytes.withLock { if $0 == nil { $0 = Self.signingInputBytes(tokens.idToken) } }
                    return .success(steps: [])
                case .failure(let failure):
                    return .failure(failure.description)
                }
            })
        var result = await self.result(
            name: persistGrants ? "token" : "token-memory",
            title: "token endpoint alone" + (persistGrants ? "" : " (grantStore: nil)"), transport: "http",
            server: server, measurement: measurement, codes: prepared.codes, idTokenBytes: idTokenBytes.withLock { $0 })
        result.clients = prepared.clients
        await driver.shutdown()
        await server.stop()
        return result
    }

    /// POST /token with grant_type=refresh_token, each worker rotating its own login's token: a
    /// durable rotation per request, with the tailnet asked again who owns the device each time.
    func refreshChain() async throws -> ScenarioResult {
        let server = try await startServer(persistGrants: true)
        let clients = [server.client] + (try await server.registerClients((options.concurrency - 1) / 16))
        let driver = HTTPDriver(server: server, connections: options.concurrency)
        var tokens: [String] = []
        for worker in 0..<options.concurrency {
            switch await driver.login(client: clients[worker % clients.count]) {
            case .success(let token): tokens.append(token)
            case .failure(let failure): throw failure
            }
        }
        let current = Locked(tokens)
        let measurement = await countingWrites(server) {
            await LoadRunner.run(
                concurrency: options.concurrency, warmup: options.warmup, duration: options.duration
            ) { worker in
                let client = clients[worker % clients.count]
                let token = current.withLock { $0[worker] }
                switch await driver.refresh(token, client: client) {
                case .success(let next):
                    current.withLock { $0[worker] = next }
                    return .success(steps: [])
                case .failure(let failure):
                    return .failure(failure.description)
                }
            }
        }
        var result = await self.result(
            name: "refresh", title: "refresh chain: POST /token grant_type=refresh_token", transport: "http",
            server: server, measurement: measurement)
        result.clients = clients.count
        await driver.shutdown()
        await server.stop()
        return result
    }

    /// `Provider.token(_:authorization:)` called directly, no HTTP: the provider's own cost.
    func inProcessToken(persistGrants: Bool) async throws -> ScenarioResult {
        let server = try await startServer(persistGrants: persistGrants)
        let provider = server.provider
        let user = server.devUser
        let redirectURI = server.redirectURI
        let (measurement, prepared) = try await redeemPreparedCodes(
            server: server,
            makeCodes: { count in
                let clients = try await server.registerClients((count + Self.codesPerClient - 1) / Self.codesPerClient)
                var codes: [PreparedCode] = []
                codes.reserveCapacity(count)
                for index in 0..<count {
                    let client = clients[index / Self.codesPerClient]
                    let parameters = OAuthParameters([
                        ("response_type", "code"), ("client_id", client.id), ("redirect_uri", redirectURI),
                        ("scope", "openid profile email"),
                        ("state", String(UInt64.random(in: 0...UInt64.max), radix: 36)),
                        ("nonce", String(UInt64.random(in: 0...UInt64.max), radix: 36)),
                    ])
                    let answer = await provider.authorize(parameters) {
                        () async throws(IdentityFailure) -> UserIdentity in user
                    }
                    guard case .redirect(let location) = answer, let code = HTTPDriver.queryValue("code", in: location)
                    else {
                        throw BenchmarkError("in-process authorize did not redirect with a code: \(answer)")
                    }
                    codes.append(PreparedCode(code: code, client: client))
                }
                return (codes, clients.count)
            },
            redeem: { prepared in
                let answer = await provider.token(
                    OAuthParameters([
                        ("grant_type", "authorization_code"), ("code", prepared.code), ("redirect_uri", redirectURI),
                    ]),
                    authorization: prepared.client.basicAuthorization)
                guard answer.status == 200 else {
                    return .failure(
                        "Provider.token: \(answer.status) \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
                }
                return .success(steps: [])
            })
        var result = await self.result(
            name: persistGrants ? "inprocess" : "inprocess-memory",
            title: "Provider.token in-process, no HTTP" + (persistGrants ? "" : " (grantStore: nil)"),
            transport: "in-process", server: server, measurement: measurement, codes: prepared.codes)
        result.clients = prepared.clients
        await server.stop()
        return result
    }

    // MARK: Codes

    /// Runs a token scenario over a pool of prepared codes: a one-second probe estimates the rate,
    /// enough codes for the warm-up and window (plus 30 %) are prepared, then the measured run.
    /// Returns the measurement, the codes prepared for it and the clients they were spread over.
    func redeemPreparedCodes(
        server: TestServer, makeCodes: (Int) async throws -> (codes: [PreparedCode], clients: Int),
        redeem: @escaping @Sendable (PreparedCode) async -> Outcome
    ) async throws -> (LoadMeasurement, (codes: Int, clients: Int)) {
        let probePool = CodePool(try await makeCodes(max(500, options.concurrency * 16)).codes)
        let probe = await LoadRunner.run(concurrency: options.concurrency, warmup: 0, duration: 1) { _ in
            guard let code = probePool.take() else { return .exhausted }
            return await redeem(code)
        }
        if probe.errors > 0 {
            throw BenchmarkError("the probe run failed: \(probe.errorSamples.first ?? "?")")
        }
        let rate = probe.window > 0 ? Double(probe.completed) / probe.window : 1000
        let count = Int(rate * (options.warmup + options.duration) * 1.3) + options.concurrency * 4
        let clock = ContinuousClock()
        let began = clock.now
        let (codes, clients) = try await makeCodes(count)
        let pool = CodePool(codes)
        progress(
            "  \(count) codes prepared over \(clients) clients in \(Format.number((clock.now - began).seconds, digits: 1)) s; "
                + "warm-up and measured window start now")
        let measurement = await countingWrites(server) {
            await LoadRunner.run(
                concurrency: options.concurrency, warmup: options.warmup, duration: options.duration
            ) { _ in
                guard let code = pool.take() else { return .exhausted }
                return await redeem(code)
            }
        }
        return (measurement, (count, clients))
    }

    /// Codes from `count` GET /authorize calls, made by `concurrency` workers (not timed), spread
    /// over newly registered clients.
    func prepareHTTPCodes(_ driver: HTTPDriver, server: TestServer, count: Int) async throws
        -> (codes: [PreparedCode], clients: Int)
    {
        let clients = try await server.registerClients((count + Self.codesPerClient - 1) / Self.codesPerClient)
        let issued = Counter()
        let codes = try await withThrowingTaskGroup(of: [PreparedCode].self) { group in
            for _ in 0..<options.concurrency {
                group.addTask {
                    var codes: [PreparedCode] = []
                    while true {
                        let index = issued.next()
                        guard index < count else { break }
                        let client = clients[index / Self.codesPerClient]
                        switch await driver.authorize(client: client) {
                        case .success(let code): codes.append(PreparedCode(code: code, client: client))
                        case .failure(let failure): throw failure
                        }
                    }
                    return codes
                }
            }
            var all: [PreparedCode] = []
            for try await part in group { all += part }
            return all
        }
        return (codes, clients.count)
    }

    /// Length of `header.payload` of a compact JWS.
    static func signingInputBytes(_ jws: String) -> Int? {
        guard let lastDot = jws.lastIndex(of: ".") else { return nil }
        return jws.utf8.distance(
            from: jws.utf8.startIndex, to: lastDot.samePosition(in: jws.utf8) ?? jws.utf8.startIndex)
    }
}

/// A value behind a lock, shareable between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

/// A shared counter; ``next()`` returns 0, 1, 2, … across tasks.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue }
}

/// An authorization code and the client it was issued to.
struct PreparedCode: Sendable {
    let code: String
    let client: ClientCredentials
}

/// Codes handed out once each, across workers.
final class CodePool: Sendable {
    let codes: [PreparedCode]
    private let next = Atomic<Int>(0)

    init(_ codes: [PreparedCode]) { self.codes = codes }

    func take() -> PreparedCode? {
        let index = next.add(1, ordering: .relaxed).oldValue
        return index < codes.count ? codes[index] : nil
    }
}

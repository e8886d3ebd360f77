import Benchmark
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore

// Allocations (malloc calls) per request on tsidp's hottest paths, checked against the thresholds
// in Benchmarks/Thresholds/ (see Benchmarks/README.md, "Allocation thresholds (CI)"). Each
// iteration measures exactly one request; whatever it needs (a fresh code, the refresh token of
// the previous answer) is made before `startMeasurement()`.

/// The server of the benchmark that is running, with the tokens it chains from one iteration to
/// the next.
struct Fixture: Sendable {
    var server: InProcessServer
    var refreshToken = ""
    var accessToken = ""
}

let current = NIOLockedValueBox<Fixture?>(nil)

func fixture() throws -> Fixture {
    guard let fixture = current.withLockedValue({ $0 }) else {
        throw InProcessServerError("the benchmark's server was not started")
    }
    return fixture
}

/// Starts a fresh server (a new state directory) for one benchmark; with `signIn`, redeems one
/// code first, for the refresh and access token the benchmark chains.
func startServer(signIn: Bool) async throws {
    let server = try await InProcessServer.start()
    var fixture = Fixture(server: server)
    if signIn {
        let code = try await server.mintCode()
        let answer = try await server.token(
            "grant_type=authorization_code&code=\(InProcessServer.formEncoded(code))&redirect_uri="
                + InProcessServer.formEncoded(InProcessServer.redirectURI))
        guard answer.status == .ok, let refresh = InProcessServer.member("refresh_token", of: answer.body),
            let access = InProcessServer.member("access_token", of: answer.body)
        else {
            throw InProcessServerError("the first sign-in failed: \(answer.status) \(String(buffer: answer.body))")
        }
        fixture.refreshToken = refresh
        fixture.accessToken = access
    }
    current.withLockedValue { $0 = fixture }
}

func stopServer() async {
    current.withLockedValue { fixture in
        fixture?.server.stop()
        fixture = nil
    }
}

/// Every benchmark: allocation counts only (times differ from machine to machine), a fixed number
/// of iterations (state grows with every sign-in, so the same iterations must be measured on
/// every run), and `tolerance` allocations up or down at p90 before the check fails.
func configuration(tolerance: Int, signIn: Bool = false) -> Benchmark.Configuration {
    .init(
        metrics: [.mallocCountTotal],
        warmupIterations: 10,
        maxDuration: .seconds(600),
        maxIterations: 100,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: tolerance])],
        setup: {
            do { try await startServer(signIn: signIn) } catch { fatalError("cannot start the server: \(error)") }
        },
        teardown: { await stopServer() })
}

func check(_ answer: (status: HTTPResponse.Status, body: ByteBuffer), _ what: String) throws {
    guard answer.status == .ok else {
        throw InProcessServerError("\(what): \(answer.status) \(String(buffer: answer.body))")
    }
}

/// Registers a benchmark whose failures crash it. package-benchmark reports a benchmark that
/// throws (or whose setup throws) and leaves it out of the threshold check, which then passes
/// without it; a crash fails the check.
func register(
    _ name: String, _ configuration: Benchmark.Configuration, _ body: @escaping (Benchmark) async throws -> Void
) {
    Benchmark(name, configuration: configuration) { benchmark async in
        do {
            try await body(benchmark)
        } catch {
            fatalError("\(name): \(error)")
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    // One authorization-code redemption: POST /token with a code minted for this iteration.
    register("token-code", configuration(tolerance: 10)) { benchmark in
        let server = try fixture().server
        let code = try await server.mintCode()
        let form =
            "grant_type=authorization_code&code=\(InProcessServer.formEncoded(code))&redirect_uri="
            + InProcessServer.formEncoded(InProcessServer.redirectURI)
        benchmark.startMeasurement()
        let answer = try await server.token(form)
        benchmark.stopMeasurement()
        try check(answer, "POST /token (code)")
    }

    // One refresh, each with the refresh token the previous one returned (rotation).
    register("token-refresh", configuration(tolerance: 10, signIn: true)) { benchmark in
        let fixture = try fixture()
        let form = "grant_type=refresh_token&refresh_token=" + InProcessServer.formEncoded(fixture.refreshToken)
        benchmark.startMeasurement()
        let answer = try await fixture.server.token(form)
        benchmark.stopMeasurement()
        try check(answer, "POST /token (refresh)")
        guard let next = InProcessServer.member("refresh_token", of: answer.body) else {
            throw InProcessServerError("the refresh answer has no refresh_token")
        }
        current.withLockedValue { $0?.refreshToken = next }
    }

    // The discovery document.
    register("discovery", configuration(tolerance: 4)) { benchmark in
        let server = try fixture().server
        benchmark.startMeasurement()
        let answer = try await server.send(.get, "/.well-known/openid-configuration")
        benchmark.stopMeasurement()
        try check(answer, "GET /.well-known/openid-configuration")
    }

    // The key set.
    register("jwks", configuration(tolerance: 4)) { benchmark in
        let server = try fixture().server
        benchmark.startMeasurement()
        let answer = try await server.send(.get, "/.well-known/jwks.json")
        benchmark.stopMeasurement()
        try check(answer, "GET /.well-known/jwks.json")
    }

    // Introspection of a live access token by its client.
    register("introspect", configuration(tolerance: 4, signIn: true)) { benchmark in
        let fixture = try fixture()
        let form = "token=" + InProcessServer.formEncoded(fixture.accessToken)
        benchmark.startMeasurement()
        let answer = try await fixture.server.send(
            .post, "/introspect", form: form, authorization: fixture.server.basicAuthorization)
        benchmark.stopMeasurement()
        try check(answer, "POST /introspect")
        guard String(buffer: answer.body).contains("\"active\":true") else {
            throw InProcessServerError("the access token is not active: \(String(buffer: answer.body))")
        }
    }
}

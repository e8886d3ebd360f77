// The token benchmark; see Benchmarks/README.md.
//
// One run measures the raw signing rate of this machine's cores (openssl speed and the same
// primitive through swift-crypto), then starts tsidp in this process as `tsidp --dev` wires it
// and loads it over loopback HTTP, and prints how the token endpoint and full login flows
// compare with the raw RS256 signing rate.
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

func progress(_ text: String) {
    FileHandle.standardError.write(Data("[tsidp-benchmark] \(text)\n".utf8))
}

func runBenchmark() async throws {
    let options: Options
    do {
        options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
    } catch let error as OptionsError {
        if error.isHelp {
            print(Options.usage, terminator: "")
            exit(0)
        }
        FileHandle.standardError.write(Data("tsidp-benchmark: \(error.message)\n\(Options.usage)".utf8))
        exit(2)
    }

    LoggingSystem.bootstrap { label in
        var handler = BenchmarkLogHandler(label: label)
        handler.logLevel = .warning
        return handler
    }
    var logger = Logger(label: "tsidp")
    logger.logLevel = .warning

    let clock = ContinuousClock()
    let began = clock.now
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let loadAtStart = SystemInfo.loadAverage
    let command =
        ProcessInfo.processInfo.environment["TSIDP_BENCHMARK_COMMAND"]
        ?? CommandLine.arguments.joined(separator: " ")
    let date = Date().formatted(.iso8601)
    let stateParent = options.stateParent ?? NSTemporaryDirectory()

    // 1. Baselines, before anything else runs in this process.
    var openssl: OpenSSLBaseline?
    if !options.skipOpenSSL {
        progress("openssl speed -seconds \(options.baselineSeconds) rsa2048 ecdsap256, then -multi \(cores) rsa2048")
        openssl = Baselines.openSSL(seconds: options.baselineSeconds, multi: cores)
        if let note = openssl?.note { progress("note: \(note)") }
    }
    var loops: [SigningLoop] = []
    let seconds = Double(options.baselineSeconds)
    for tasks in Array(Set([1, cores])).sorted() {
        progress("swift-crypto RS256 signing on \(tasks) task(s) for \(options.baselineSeconds) s")
        loops.append(try await Baselines.rs256(tasks: tasks, seconds: seconds))
    }
    for tasks in Array(Set([1, cores])).sorted() {
        progress("swift-crypto ES256 signing on \(tasks) task(s) for \(options.baselineSeconds) s")
        loops.append(try await Baselines.es256(tasks: tasks, seconds: seconds))
    }
    for tasks in Array(Set([1, cores])).sorted() {
        progress("tsidp SigningKey RS256 signing on \(tasks) task(s) for \(options.baselineSeconds) s")
        loops.append(try await Baselines.tsidpRS256(tasks: tasks, seconds: seconds))
    }

    // 2-3. The scenarios, each on a fresh in-process tsidp.
    let scenarios = Scenarios(options: options, logger: logger)
    var results: [ScenarioResult] = []
    func record(_ result: ScenarioResult) {
        results.append(result)
        progress(
            "  \(result.name): \(Format.number(result.ratePerSecond, digits: 1))/s, p50 \(Format.ms(result.latency.p50Ms)), p99 \(Format.ms(result.latency.p99Ms)), errors \(result.errors)"
        )
    }
    if options.runs("floor") {
        progress("HTTP floor: GET /healthz/live")
        record(try await scenarios.httpFloor())
    }
    if options.runs("full") {
        progress("full login flow, grants in a directory store")
        record(try await scenarios.fullFlow(persistGrants: true))
    }
    if options.runs("token") {
        progress("token endpoint alone, grants in a directory store")
        record(try await scenarios.tokenEndpoint(persistGrants: true))
    }
    if options.runs("refresh") {
        progress("refresh chain, grants in a directory store")
        record(try await scenarios.refreshChain())
    }
    if options.runs("full-memory") {
        progress("full login flow, grantStore: nil")
        record(try await scenarios.fullFlow(persistGrants: false))
    }
    if options.runs("token-memory") {
        progress("token endpoint alone, grantStore: nil")
        record(try await scenarios.tokenEndpoint(persistGrants: false))
    }
    if options.runs("inprocess") {
        progress("Provider.token in-process, grants in a directory store")
        record(try await scenarios.inProcessToken(persistGrants: true))
        progress("Provider.token in-process, grantStore: nil")
        record(try await scenarios.inProcessToken(persistGrants: false))
    }

    // 4. The report.
    let baselines = Report.Baselines(openssl: openssl, swift: loops)
    let report = Report(
        date: date, command: command, revision: ProcessInfo.processInfo.environment["TSIDP_BENCHMARK_REVISION"],
        host: .init(
            cores: cores, cpuModel: SystemInfo.cpuModel, kernel: SystemInfo.kernel, loadAverageAtStart: loadAtStart,
            loadAverageAtEnd: SystemInfo.loadAverage, stateFileSystem: SystemInfo.fileSystemType(stateParent)),
        settings: .init(
            durationSeconds: options.duration, warmupSeconds: options.warmup, concurrency: options.concurrency,
            baselineSeconds: options.baselineSeconds),
        baselines: baselines, scenarios: results,
        targets: Report.targets(scenarios: results, baselines: baselines),
        breakdown: Report.breakdown(scenarios: results, baselines: baselines, cores: cores),
        peakMemoryKilobytes: SystemInfo.peakResidentKB, totalSeconds: (clock.now - began).seconds)
    print("")
    print(report.text, terminator: "")

    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let url = URL(fileURLWithPath: options.output)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try encoder.encode(report).write(to: url)
    print("JSON report: \(options.output)")
}

do {
    try await runBenchmark()
    exit(0)
} catch {
    FileHandle.standardError.write(Data("tsidp-benchmark: \(error)\n".utf8))
    exit(1)
}

import Foundation

/// Everything one run measured; printed as text and written as JSON.
struct Report: Codable, Sendable {
    struct Host: Codable, Sendable {
        var cores: Int
        var cpuModel: String
        var kernel: String
        var loadAverageAtStart: String
        var loadAverageAtEnd: String
        var stateFileSystem: String
    }

    struct Settings: Codable, Sendable {
        var durationSeconds: Double
        var warmupSeconds: Double
        var concurrency: Int
        var baselineSeconds: Int
    }

    struct Baselines: Codable, Sendable {
        var openssl: OpenSSLBaseline?
        var swift: [SigningLoop]
    }

    /// A rate compared with a signing baseline against a target ratio.
    struct TargetCheck: Codable, Sendable {
        var scenario: String
        var rate: Double
        var baseline: String
        var baselineRate: Double
        var ratio: Double
        var target: Double
        var met: Bool
    }

    /// CPU time per issued token (µs, all threads), split by what one scenario adds to another:
    /// signature + other provider work + HTTP + grant persistence = token endpoint over HTTP.
    struct Breakdown: Codable, Sendable {
        /// One RS256 ID-token signature through tsidp's `SigningKey` (1 task).
        var signatureMicroseconds: Double?
        /// `Provider.token` in-process without grant persistence, minus the signature.
        var providerExcludingSignatureMicroseconds: Double?
        /// Token endpoint over HTTP minus `Provider.token` in-process, both without persistence:
        /// the load client and the server's HTTP handling together.
        var httpClientAndServerMicroseconds: Double?
        /// Token endpoint over HTTP with a directory store minus the same with `grantStore: nil`.
        var grantPersistenceMicroseconds: Double?
        var tokenEndpointMicroseconds: Double?
        var httpFloorPerRequestMicroseconds: Double?
        /// CPU per token the token target allows: cores / (0.8 × swift-crypto RS256 all-core rate).
        var budgetForTokenTargetMicroseconds: Double?
        var notes: [String]
    }

    var date: String
    var command: String
    /// The tsidp revision measured (set by scripts/benchmark: commit, `+dirty` if Sources/ had changes).
    var revision: String?
    var host: Host
    var settings: Settings
    var baselines: Baselines
    var scenarios: [ScenarioResult]
    var targets: [TargetCheck]
    var breakdown: Breakdown
    var peakMemoryKilobytes: Int?
    var totalSeconds: Double

    func scenario(_ name: String) -> ScenarioResult? { scenarios.first { $0.name == name } }

    /// The swift-crypto RS256 loop on every core: the reference rate of the targets.
    static func swiftRS256AllCores(_ loops: [SigningLoop]) -> SigningLoop? {
        loops.filter { $0.implementation == "swift-crypto" && $0.algorithm == "RS256" }.max { $0.tasks < $1.tasks }
    }

    /// Target checks: the token endpoint against 0.8 ×, full login flows against 0.5 × the raw
    /// RS256 signing rate of all cores, for each baseline that was measured.
    static func targets(scenarios: [ScenarioResult], baselines: Baselines) -> [TargetCheck] {
        var references: [(String, Double)] = []
        if let swift = swiftRS256AllCores(baselines.swift) {
            references.append(("swift-crypto RS256, \(swift.tasks) tasks", swift.signaturesPerSecond))
        }
        if let openssl = baselines.openssl, let rate = openssl.rsa2048SignPerSecondMulti {
            references.append(("openssl speed -multi \(openssl.multi) rsa2048", rate))
        }
        var checks: [TargetCheck] = []
        for (name, target) in [("token", 0.8), ("full", 0.5), ("token-memory", 0.8), ("full-memory", 0.5)] {
            guard let scenario = scenarios.first(where: { $0.name == name }) else { continue }
            for (baseline, rate) in references where rate > 0 {
                let ratio = scenario.ratePerSecond / rate
                checks.append(
                    TargetCheck(
                        scenario: name, rate: scenario.ratePerSecond, baseline: baseline, baselineRate: rate,
                        ratio: ratio, target: target, met: ratio >= target && scenario.errors == 0))
            }
        }
        return checks
    }

    static func breakdown(scenarios: [ScenarioResult], baselines: Baselines, cores: Int) -> Breakdown {
        func cpu(_ name: String) -> Double? {
            scenarios.first { $0.name == name && $0.completed > 0 }?.cpuMicrosecondsPerOperation
        }
        var result = Breakdown(notes: [])
        let sign = baselines.swift.first { $0.implementation == "tsidp SigningKey" && $0.tasks == 1 }
            .map { 1e6 / $0.signaturesPerSecond }
        result.signatureMicroseconds = sign
        if let sign, let memory = cpu("inprocess-memory") {
            result.providerExcludingSignatureMicroseconds = memory - sign
        }
        if let inProcess = cpu("inprocess-memory"), let http = cpu("token-memory") {
            result.httpClientAndServerMicroseconds = http - inProcess
        }
        if let memory = cpu("token-memory"), let persisted = cpu("token") {
            result.grantPersistenceMicroseconds = persisted - memory
        }
        result.tokenEndpointMicroseconds = cpu("token")
        result.httpFloorPerRequestMicroseconds = cpu("floor")
        if let multi = swiftRS256AllCores(baselines.swift) {
            result.budgetForTokenTargetMicroseconds = Double(cores) * 1e6 / (0.8 * multi.signaturesPerSecond)
        }
        for scenario in scenarios where scenario.completed > 0 {
            let others = scenario.otherProcessesCPUUtilization ?? 0
            if scenario.cpuUtilization + others < 0.85 {
                result.notes.append(
                    "\(scenario.name): this process used \(Format.percent(scenario.cpuUtilization)) of the cores and "
                        + "other processes \(Format.percent(others)): tsidp was waiting (for fsync, a lock, an actor) "
                        + "rather than computing part of the time")
            }
            if others >= 0.1 {
                result.notes.append(
                    "\(scenario.name): other processes kept \(Format.percent(others)) of the cores busy; its rate is "
                        + "lower than on an idle machine")
            }
        }
        return result
    }

    // MARK: Text

    var text: String {
        var out: [String] = []
        out.append("tsidp token benchmark — \(date)")
        out.append("command: \(command)")
        if let revision { out.append("revision: \(revision)") }
        out.append(
            "host: \(host.cores) cores, \(host.cpuModel), Linux \(host.kernel); load average at start \(host.loadAverageAtStart), at end \(host.loadAverageAtEnd)"
        )
        out.append(
            "settings: \(Format.number(settings.durationSeconds)) s per scenario after \(Format.number(settings.warmupSeconds)) s warm-up, concurrency \(settings.concurrency), \(settings.baselineSeconds) s per signing baseline; grant state on \(host.stateFileSystem)"
        )
        out.append("")
        out.append("Signing baselines (signatures per second)")
        if let openssl = baselines.openssl {
            if openssl.available {
                out.append("  \(openssl.version ?? "openssl")")
                out.append(
                    "  openssl speed rsa2048                     \(Format.rate(openssl.rsa2048SignPerSecond))  (1 process)"
                )
                out.append(
                    "  openssl speed -multi \(openssl.multi) rsa2048            \(Format.rate(openssl.rsa2048SignPerSecondMulti))  (\(openssl.multi) processes)"
                )
                out.append(
                    "  openssl speed ecdsap256                   \(Format.rate(openssl.ecdsaP256SignPerSecond))  (1 process)"
                )
                let others = openssl.otherProcessesCPUUtilization.map { $0.map(Format.percent) ?? "n/a" }
                out.append(
                    "  other processes used \(others.joined(separator: " and ")) of the cores during the two openssl runs"
                )
            }
            if let note = openssl.note { out.append("  note: \(note)") }
        } else {
            out.append("  openssl: skipped (--skip-openssl)")
        }
        for loop in baselines.swift {
            let label = "\(loop.implementation) \(loop.algorithm), \(loop.tasks) task\(loop.tasks == 1 ? "" : "s")"
            out.append(
                "  \(label.padding(toLength: 42, withPad: " ", startingAt: 0))\(Format.rate(loop.signaturesPerSecond))  (\(loop.signingInputBytes)-byte JWS input; other processes used \(loop.otherProcessesCPUUtilization.map(Format.percent) ?? "n/a"))"
            )
        }
        out.append("")
        out.append("Scenarios (rates per second; latency of one operation; CPU = whole process, client and server)")
        for scenario in scenarios {
            out.append(
                "  \(scenario.title)  [\(scenario.transport), grants: \(scenario.grantStore), concurrency \(scenario.concurrency)]"
            )
            out.append(
                "    rate \(Format.rate(scenario.ratePerSecond))/s  (\(scenario.completed) in \(Format.number(scenario.windowSeconds)) s)   errors \(scenario.errors)"
            )
            out.append(
                "    latency p50 \(Format.ms(scenario.latency.p50Ms))  p90 \(Format.ms(scenario.latency.p90Ms))  p99 \(Format.ms(scenario.latency.p99Ms))  max \(Format.ms(scenario.latency.maxMs))"
            )
            for step in scenario.steps {
                out.append(
                    "      \(step.name.padding(toLength: 16, withPad: " ", startingAt: 0)) p50 \(Format.ms(step.latency.p50Ms))  p99 \(Format.ms(step.latency.p99Ms))  mean \(Format.ms(step.latency.meanMs))"
                )
            }
            out.append(
                "    CPU \(Format.percent(scenario.cpuUtilization)) of \(host.cores) cores, \(Format.number(scenario.cpuMicrosecondsPerOperation, digits: 0)) µs per operation (\(Format.percent(scenario.cpuSystemShare)) in the kernel); other processes used \(scenario.otherProcessesCPUUtilization.map(Format.percent) ?? "n/a")"
            )
            var extra: [String] = []
            if let writes = scenario.grantWrites {
                var text = "grant writes \(writes)"
                if let rate = scenario.grantWritesPerSecond, let batch = scenario.operationsPerGrantWrite {
                    text +=
                        " (\(Format.number(rate, digits: 1))/s, \(Format.number(batch, digits: 1)) operations per write)"
                }
                extra.append(text)
            }
            if let bytes = scenario.grantStateBytes, let files = scenario.grantStateFiles, files > 0 {
                extra.append("grant state on disk \(Format.bytes(bytes)) in \(files) file\(files == 1 ? "" : "s")")
            }
            if let families = scenario.liveFamilies, scenario.name != "floor" {
                extra.append("live refresh families \(families)")
            }
            if let codes = scenario.codesPrepared { extra.append("codes prepared \(codes)") }
            if let clients = scenario.clients { extra.append("clients \(clients)") }
            if let bytes = scenario.idTokenSigningInputBytes { extra.append("ID token signing input \(bytes) bytes") }
            if let hwm = scenario.vmHWMKilobytesAfter { extra.append("VmHWM after \(Format.bytes(hwm * 1024))") }
            if !extra.isEmpty { out.append("    " + extra.joined(separator: ", ")) }
            if scenario.completedPerSecond.count > 1 {
                out.append(
                    "    completed per second: \(scenario.completedPerSecond.map(String.init).joined(separator: " "))")
            }
            if scenario.ranOutOfCodes { out.append("    NOTE: the prepared codes ran out; the window was cut short") }
            for sample in scenario.errorSamples { out.append("    error: \(sample)") }
        }
        out.append("")
        out.append(
            "Targets (from the issue): token endpoint ≥ 0.8 × and full login flows ≥ 0.5 × the raw RS256 signing rate of the same cores"
        )
        for check in targets {
            let label = "\(check.scenario) vs \(check.baseline)"
            out.append(
                "  \(label.padding(toLength: 60, withPad: " ", startingAt: 0)) \(Format.rate(check.rate)) / \(Format.rate(check.baselineRate)) = \(Format.number(check.ratio, digits: 3))  (target \(check.target))  \(check.met ? "MET" : "MISSED")"
            )
        }
        if targets.isEmpty { out.append("  (no scenario to compare)") }
        out.append("")
        out.append(
            "Where the CPU time of one issued token goes (µs of CPU, all threads, differences between scenarios)")
        let b = breakdown
        out.append("  RS256 signature (tsidp SigningKey, 1 task)              \(Format.micro(b.signatureMicroseconds))")
        out.append(
            "  rest of Provider.token (inprocess-memory − signature)   \(Format.micro(b.providerExcludingSignatureMicroseconds))"
        )
        out.append(
            "  HTTP client + server (token-memory − inprocess-memory)  \(Format.micro(b.httpClientAndServerMicroseconds))"
        )
        out.append(
            "  grant persistence (token − token-memory)                \(Format.micro(b.grantPersistenceMicroseconds))")
        out.append(
            "  = token endpoint over HTTP, directory store (token)     \(Format.micro(b.tokenEndpointMicroseconds))")
        out.append(
            "  for comparison: one GET /healthz/live (floor)           \(Format.micro(b.httpFloorPerRequestMicroseconds))"
        )
        out.append(
            "  budget per token for 0.8 × swift-crypto RS256 rate      \(Format.micro(b.budgetForTokenTargetMicroseconds))"
        )
        for note in b.notes { out.append("  note: \(note)") }
        out.append("")
        out.append(
            "Peak memory (VmHWM of this process, which hosts the server and the load client): \(peakMemoryKilobytes.map { Format.bytes($0 * 1024) } ?? "unknown")"
        )
        out.append("Total run time: \(Format.number(totalSeconds, digits: 0)) s")
        return out.joined(separator: "\n") + "\n"
    }
}

enum Format {
    static func number(_ value: Double, digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
    static func rate(_ value: Double?) -> String {
        guard let value else { return "       n/a" }
        return String(format: "%10.1f", value)
    }
    static func ms(_ value: Double) -> String { String(format: "%.2f ms", value) }
    static func micro(_ value: Double?) -> String {
        guard let value else { return "     n/a" }
        return String(format: "%8.0f", value)
    }
    static func percent(_ value: Double) -> String { String(format: "%.0f %%", value * 100) }
    static func bytes(_ value: Int) -> String {
        if value >= 1 << 20 { return String(format: "%.1f MiB", Double(value) / 1048576) }
        if value >= 1 << 10 { return String(format: "%.1f KiB", Double(value) / 1024) }
        return "\(value) B"
    }
}

import IDPServer
import Testing

@testable import TsidpCLI

@Suite("Listener limit flags")
struct ListenerFlagsTests {
    func configuration(_ arguments: [String], _ environment: [String: String] = [:]) throws -> Configuration {
        switch TsidpMain.parse(arguments: ["--dev"] + arguments, environment: environment) {
        case .run(let configuration): return configuration
        case .exit(let status, let output, _): throw UsageError("exit \(status): \(output)")
        }
    }

    func failure(_ arguments: [String], _ environment: [String: String] = [:]) -> (Int32, String) {
        switch TsidpMain.parse(arguments: ["--dev"] + arguments, environment: environment) {
        case .run: return (0, "ran")
        case .exit(let status, let output, _): return (status, output)
        }
    }

    @Test("defaults")
    func defaults() throws {
        let limits = try configuration([]).listenerLimits
        #expect(limits == ListenerLimits.defaults)
        #expect(limits.idleTimeout == .seconds(30))
        #expect(limits.headerTimeout == .seconds(10))
        #expect(limits.bodyTimeout == .seconds(10))
        #expect(limits.maxConnectionsPerPeer == 64)
        #expect(limits.maxConnections == 4096)
    }

    @Test("flags in Go's spellings")
    func flags() throws {
        let limits = try configuration([
            "-idle-timeout=1m30s", "--read-header-timeout", "2s", "-read-body-timeout", "500ms",
            "--max-connections-per-peer=8", "-max-connections", "100",
        ]).listenerLimits
        #expect(limits.idleTimeout == .seconds(90))
        #expect(limits.headerTimeout == .seconds(2))
        #expect(limits.bodyTimeout == .milliseconds(500))
        #expect(limits.maxConnectionsPerPeer == 8)
        #expect(limits.maxConnections == 100)
    }

    @Test("environment variables fill in; flags win")
    func environment() throws {
        let environment = [
            "TSIDP_IDLE_TIMEOUT": "45s", "TSIDP_READ_HEADER_TIMEOUT": "3", "TSIDP_READ_BODY_TIMEOUT": "1.5s",
            "TSIDP_MAX_CONNECTIONS_PER_PEER": "16", "TSIDP_MAX_CONNECTIONS": "512",
        ]
        let limits = try configuration([], environment).listenerLimits
        #expect(limits.idleTimeout == .seconds(45))
        #expect(limits.headerTimeout == .seconds(3))
        #expect(limits.bodyTimeout == .milliseconds(1500))
        #expect(limits.maxConnectionsPerPeer == 16)
        #expect(limits.maxConnections == 512)
        let overridden = try configuration(["--idle-timeout", "5s", "--max-connections", "9"], environment)
        #expect(overridden.listenerLimits.idleTimeout == .seconds(5))
        #expect(overridden.listenerLimits.maxConnections == 9)
        #expect(overridden.listenerLimits.maxConnectionsPerPeer == 16)
    }

    @Test(
        "bad values exit 2 with one line naming the flag or variable",
        arguments: [
            (["--idle-timeout", "soon"], [:], "--idle-timeout"),
            (["--idle-timeout", "0s"], [:], "out of range"),
            (["--read-header-timeout", "-1s"], [:], "--read-header-timeout"),
            (["--read-body-timeout", "25h"], [:], "out of range"),
            (["--max-connections-per-peer", "0"], [:], "--max-connections-per-peer"),
            (["--max-connections", "-5"], [:], "--max-connections"),
            (["--max-connections", "many"], [:], "max-connections"),
            ([], ["TSIDP_IDLE_TIMEOUT": "10 s"], "TSIDP_IDLE_TIMEOUT"),
            ([], ["TSIDP_MAX_CONNECTIONS": "lots"], "TSIDP_MAX_CONNECTIONS"),
            ([], ["TSIDP_MAX_CONNECTIONS_PER_PEER": "0"], "TSIDP_MAX_CONNECTIONS_PER_PEER"),
        ] as [([String], [String: String], String)])
    func badValues(_ arguments: [String], _ environment: [String: String], _ expected: String) {
        let (status, output) = failure(arguments, environment)
        #expect(status == 2)
        #expect(output.hasPrefix("tsidp: "))
        #expect(output.contains(expected), "\(output)")
        #expect(!output.contains("\n"))
    }

    @Test(
        "Go durations",
        arguments: [
            ("30s", Duration.seconds(30)), ("1m30s", .seconds(90)), ("2h", .seconds(7200)),
            ("500ms", .milliseconds(500)),
            ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)), ("10", .seconds(10)),
            ("0.25", .milliseconds(250)),
            ("1h2m3s4ms", .seconds(3723) + .milliseconds(4)), ("+5s", .seconds(5)), ("-5s", .seconds(-5)),
        ])
    func goDurations(_ text: String, _ expected: Duration) {
        #expect(GoDuration.parse(text) == expected)
    }

    @Test("not durations", arguments: ["", "s", "5x", "5 s", "s5", "1m 2s", ".", "-", "5sm", "1e3s", "NaN"])
    func notDurations(_ text: String) {
        #expect(GoDuration.parse(text) == nil, "\(text)")
    }

    @Test("the connection budget fits every listener group in the open-file limit")
    func budget() {
        #expect(FileDescriptorLimit.connectionBudget(configured: 4096, openFiles: 1_048_576, groups: 2) == 4096)
        #expect(FileDescriptorLimit.connectionBudget(configured: 4096, openFiles: 1024, groups: 1) == 896)
        #expect(FileDescriptorLimit.connectionBudget(configured: 4096, openFiles: 1024, groups: 2) == 448)
        #expect(FileDescriptorLimit.connectionBudget(configured: 100, openFiles: 1024, groups: 2) == 100)
        #expect(FileDescriptorLimit.connectionBudget(configured: 4096, openFiles: 64, groups: 1) == 1)
        #expect(FileDescriptorLimit.connectionBudget(configured: 4096, openFiles: UInt64.max, groups: 2) == 4096)
        let configuration = Configuration.resolved(localPort: 9090)
        #expect(configuration.fitting(openFiles: 1_048_576) == configuration)
        let fitted = configuration.fitting(openFiles: 1024).listenerLimits
        #expect(fitted.maxConnections == 448)
        #expect(fitted.maxConnectionsPerPeer == 64)
        // Lowered far enough, one peer may hold only a quarter of what is left.
        let tight = configuration.fitting(openFiles: 256).listenerLimits
        #expect(tight.maxConnections == 64)
        #expect(tight.maxConnectionsPerPeer == 16)
    }

    @Test("the open-file limit is raised to the hard limit")
    func raise() throws {
        let limits = try #require(FileDescriptorLimit.raiseToHardLimit())
        #expect(limits.after >= limits.before)
        // A second call finds it already raised.
        #expect(FileDescriptorLimit.raiseToHardLimit()?.before == limits.after)
    }

    @Test("--help lists the limit flags, their variables and defaults")
    func help() {
        guard case .exit(0, let output, _) = TsidpMain.parse(arguments: ["--help"], environment: [:]) else {
            Issue.record("--help should exit 0")
            return
        }
        let flat = output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for flag in [
            "--idle-timeout", "--read-header-timeout", "--read-body-timeout", "--max-connections-per-peer",
            "--max-connections",
        ] {
            #expect(flat.contains(flag), "\(flag) missing from --help")
        }
        for variable in [
            "TSIDP_IDLE_TIMEOUT", "TSIDP_READ_HEADER_TIMEOUT", "TSIDP_READ_BODY_TIMEOUT",
            "TSIDP_MAX_CONNECTIONS_PER_PEER", "TSIDP_MAX_CONNECTIONS",
        ] {
            #expect(flat.contains(variable), "\(variable) missing from --help")
        }
        for text in ["(default: 30s)", "(default: 10s)", "(default: 64)", "(default: 4096)"] {
            #expect(flat.contains(text), "\(text) missing from --help")
        }
    }
}

extension Configuration {
    /// A `--dev` configuration with `--local-port`.
    fileprivate static func resolved(localPort: Int) -> Configuration {
        guard
            case .run(let configuration) = TsidpMain.parse(
                arguments: ["--dev", "--local-port", "\(localPort)"], environment: [:])
        else { fatalError("--dev --local-port must parse") }
        return configuration
    }
}

import Logging
import Testing
import TsidpCLI

@Suite("Command line")
struct CommandLineTests {
    let wip = ["TAILSCALE_USE_WIP_CODE": "1"]

    func configuration(_ arguments: [String], _ environment: [String: String] = ["TAILSCALE_USE_WIP_CODE": "1"]) throws
        -> Configuration
    {
        switch TsidpMain.parse(arguments: arguments, environment: environment) {
        case .run(let configuration): return configuration
        case .exit(let status, let output, _): throw UsageError("exit \(status): \(output)")
        }
    }

    func failure(_ arguments: [String], _ environment: [String: String] = ["TAILSCALE_USE_WIP_CODE": "1"]) -> (
        Int32, String
    ) {
        switch TsidpMain.parse(arguments: arguments, environment: environment) {
        case .run: return (0, "ran")
        case .exit(let status, let output, _): return (status, output)
        }
    }

    @Test("defaults match the Go tsidp")
    func defaults() throws {
        let config = try configuration(["--use-local-tailscaled"])
        #expect(config.port == 443)
        #expect(config.localPort == nil)
        #expect(config.hostname == "idp")
        #expect(config.socketPath == "/var/run/tailscale/tailscaled.sock")
        #expect(config.logLevel == .info)
        #expect(!config.funnel && !config.enableSTS && !config.debugAllRequests)
        let dev = try configuration(["--dev"], [:])
        #expect(dev.mode == .development)
        #expect(dev.port == 8080)
    }

    @Test("Go spellings: -flag value, -flag=value, --flag=false")
    func goSpellings() throws {
        let config = try configuration([
            "-use-local-tailscaled", "-port", "8443", "-local-port=9090", "--hostname=sso", "-dir", "/var/lib/tsidp",
            "--funnel=false", "-verbose=true",
        ])
        #expect(config.port == 8443)
        #expect(config.localPort == 9090)
        #expect(config.hostname == "sso")
        #expect(config.stateDirectory == "/var/lib/tsidp")
        #expect(!config.funnel)
        #expect(config.logLevel == .debug)
        #expect(try configuration(["-dev", "-port=9000"], [:]).port == 9000)
    }

    @Test("environment variables fill in what flags leave out; flags win")
    func environment() throws {
        let env = [
            "TAILSCALE_USE_WIP_CODE": "1", "TSIDP_PORT": "8443", "TSIDP_LOCAL_PORT": "9999", "TS_HOSTNAME": "login",
            "TS_STATE_DIR": "/data", "TSIDP_USE_LOCAL_TAILSCALED": "true", "TSIDP_LOG": "warn",
            "TSIDP_DEBUG_ALL_REQUESTS": "1", "TSIDP_DEBUG_TSNET": "true", "TSIDP_ENABLE_STS": "true",
            "TSIDP_USE_FUNNEL": "1",
            "TS_STATE": "kube:tsidp-0",
        ]
        let config = try configuration([], env)
        #expect(config.mode == .localTailscaled)
        #expect(config.port == 8443)
        #expect(config.localPort == 9999)
        #expect(config.hostname == "login")
        #expect(config.stateDirectory == "/data")
        #expect(config.logLevel == .warning)
        #expect(config.debugAllRequests && config.debugTailscaled && config.enableSTS && config.funnel)
        #expect(config.state == "kube:tsidp-0")
        let overridden = try configuration(["--port", "1443", "--no-funnel", "--log", "error"], env)
        #expect(overridden.port == 1443)
        #expect(!overridden.funnel)
        #expect(overridden.logLevel == .error)
    }

    @Test(
        "bad values and impossible combinations exit 2 with one line",
        arguments: [
            (["--port", "70000"], "out of range"),
            (["--port", "abc"], "port"),
            (["--local-port", "0"], "out of range"),
            (["--log", "loud"], "invalid --log level"),
            (["--funnel=maybe"], "invalid boolean value"),
            (["--dev-identities", "x.json"], "only works together with --dev"),
            (["--dev", "--use-local-tailscaled"], "cannot be combined"),
            (["--dev", "--funnel"], "cannot be combined"),
            (["--hostname", "no spaces"], "invalid --hostname"),
            (["--no-such-flag"], "no-such-flag"),
            (["--port", "8080", "--local-port", "8080"], "must differ"),
        ])
    func usageErrors(_ arguments: [String], _ expected: String) {
        let (status, output) = failure(arguments)
        #expect(status == 2)
        #expect(output.contains(expected), "\(output)")
        #expect(!output.contains("\n"))
        #expect(output.hasPrefix("tsidp: "))
    }

    @Test(
        "a negative number is the value of an integer flag in every Go spelling",
        arguments: ["port", "local-port", "max-connections-per-peer", "max-connections"])
    func negativeIntegers(_ flag: String) {
        for spelling in [["-\(flag)", "-1"], ["--\(flag)", "-1"], ["-\(flag)=-1"], ["--\(flag)=-1"]] {
            // Flags after the value are still flags.
            let outcome = TsidpMain.parse(arguments: ["--dev"] + spelling + ["-log", "warn"], environment: [:])
            if flag == "local-port" {
                guard case .run(let configuration) = outcome else {
                    Issue.record("\(spelling): \(outcome)")
                    continue
                }
                #expect(configuration.localPort == nil)
                #expect(configuration.logLevel == .warning)
            } else {
                // The value reaches the range check, which names the flag and the value.
                guard case .exit(2, let output, true) = outcome else {
                    Issue.record("\(spelling): \(outcome)")
                    continue
                }
                #expect(output.hasPrefix("tsidp: --\(flag) -1 is out of range"), "\(spelling): \(output)")
            }
        }
    }

    @Test("Go's -flag -1 spellings, and a negative duration reaching its range check")
    func negativeSpellings() throws {
        let config = try configuration(["-local-port", "-1", "-port", "9000", "--dev"], [:])
        #expect(config.localPort == nil)
        #expect(config.port == 9000)
        #expect(try configuration(["--dev", "--local-port", "-1"], ["TSIDP_LOCAL_PORT": "9090"]).localPort == nil)
        let (status, output) = failure(["--dev", "-idle-timeout", "-5s"], [:])
        #expect(status == 2)
        #expect(output == "tsidp: --idle-timeout -5s is out of range: use more than 0s and at most 24h")
        // A stray negative number is still not a flag, and a flag still needs its value.
        #expect(failure(["--dev", "-1"], [:]).0 == 2)
        #expect(failure(["--dev", "--port"], [:]).0 == 2)
    }

    @Test(
        "an empty --dir is refused instead of meaning the working directory",
        arguments: [["--dir", ""], ["--dir="], ["-dir", ""], ["-dir="]])
    func emptyDirectory(_ spelling: [String]) {
        for mode in [["--dev"], ["--use-local-tailscaled"]] {
            let (status, output) = failure(mode + spelling)
            #expect(status == 2)
            #expect(output == "tsidp: --dir is empty: name the state directory, e.g. --dir /var/lib/tsidp")
        }
    }

    @Test("an empty TS_STATE_DIR given explicitly is refused; --dir wins over it")
    func emptyStateDirVariable() throws {
        let (status, output) = failure(["--dev"], ["TS_STATE_DIR": ""])
        #expect(status == 2)
        #expect(output == "tsidp: TS_STATE_DIR is set but empty: set it to the state directory, or unset it")
        #expect(
            try configuration(["--dev", "--dir", "/srv/tsidp"], ["TS_STATE_DIR": ""]).stateDirectory == "/srv/tsidp")
        #expect(try configuration(["--dev"], [:]).stateDirectory == nil)
    }

    @Test("bad environment values exit 2")
    func badEnvironment() {
        #expect(failure([], ["TAILSCALE_USE_WIP_CODE": "1", "TSIDP_PORT": "eighty"]).0 == 2)
        #expect(failure([], ["TAILSCALE_USE_WIP_CODE": "1", "TSIDP_USE_FUNNEL": "yes please"]).0 == 2)
        #expect(failure(["--dev"], ["TSIDP_GRANT_JOURNAL_ENTRIES": "0"]).0 == 2)
        #expect(failure(["--dev"], ["TSIDP_GRANT_JOURNAL_ENTRIES": "many"]).0 == 2)
    }

    @Test("TSIDP_GRANT_JOURNAL_ENTRIES sets how long the grant journal grows before compaction")
    func journalEntries() throws {
        #expect(try configuration(["--dev"]).grantJournalEntries == nil)
        #expect(try configuration(["--dev"], ["TSIDP_GRANT_JOURNAL_ENTRIES": "64"]).grantJournalEntries == 64)
    }

    @Test("outside --dev, TAILSCALE_USE_WIP_CODE=1 is required and the message says so")
    func wipCode() {
        let (status, output) = failure(["--use-local-tailscaled"], [:])
        #expect(status == 2)
        #expect(output.contains("TAILSCALE_USE_WIP_CODE=1"))
    }

    @Test("flags that mean nothing in a mode are refused by name, never ignored")
    func notYetSupported() throws {
        #expect(try configuration([]).unsupportedFeature == nil)
        #expect(try configuration(["--state", "kube:tsidp"]).unsupportedFeature == nil)
        #expect(try configuration(["--use-local-tailscaled", "--state", "kube:tsidp"]).unsupportedFeature == nil)
        #expect(try configuration(["--dev", "--state", "kube:tsidp"], [:]).unsupportedFeature == nil)
        #expect(
            try configuration(["--use-local-tailscaled", "--state", "/var/lib/ts.state"]).unsupportedFeature?.contains(
                "--state") == true)
        #expect(try configuration(["--use-local-tailscaled", "--enable-sts"]).unsupportedFeature == nil)
        #expect(
            try configuration(["--use-local-tailscaled", "--allow-insecure-registration"]).unsupportedFeature == nil)
        #expect(try configuration(["--use-local-tailscaled"]).unsupportedFeature == nil)
        #expect(try configuration(["--dev"], [:]).unsupportedFeature == nil)
    }

    @Test("--help lists every flag and environment variable and exits 0")
    func help() {
        guard
            case .exit(let status, let output, let toStandardError) = TsidpMain.parse(
                arguments: ["--help"], environment: [:])
        else {
            Issue.record("--help should exit")
            return
        }
        #expect(status == 0)
        #expect(!toStandardError)
        for flag in [
            "--verbose", "--port", "--local-port", "--use-local-tailscaled", "--socket", "--hostname", "--dir",
            "--state",
            "--funnel", "--enable-sts", "--log", "--allow-insecure-registration", "--debug-all-requests",
            "--debug-tailscaled", "--version", "--dev", "--dev-identities",
        ] {
            #expect(output.contains(flag), "\(flag) missing from --help")
        }
        for variable in [
            "TSIDP_PORT", "TSIDP_LOCAL_PORT", "TSIDP_USE_LOCAL_TAILSCALED", "TS_HOSTNAME", "TS_STATE_DIR", "TS_STATE",
            "TSIDP_USE_FUNNEL", "TSIDP_ENABLE_STS", "TSIDP_LOG", "TSIDP_DEBUG_ALL_REQUESTS", "TSIDP_DEBUG_TSNET",
            "TAILSCALE_USE_WIP_CODE",
        ] {
            #expect(output.contains(variable), "\(variable) missing from --help")
        }
        let flat = output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(flat.contains("(default: 443; 8080 with --dev)"))
        for spelling in [["-help"], ["-h"]] {
            guard case .exit(0, _, _) = TsidpMain.parse(arguments: spelling, environment: [:]) else {
                Issue.record("\(spelling) should print help")
                continue
            }
        }
    }

    @Test("--version prints the version")
    func version() {
        for spelling in ["--version", "-version"] {
            guard case .exit(0, let output, _) = TsidpMain.parse(arguments: [spelling], environment: [:]) else {
                Issue.record("\(spelling) should exit 0")
                continue
            }
            #expect(output == TsidpVersion.current)
        }
    }
}

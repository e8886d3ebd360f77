import Testing
import TsidpCLI

@Suite("--cap-name")
struct CapabilityNameTests {
    func parse(_ arguments: [String], _ environment: [String: String] = [:]) -> TsidpMain.ParseOutcome {
        TsidpMain.parse(arguments: arguments, environment: environment)
    }

    func name(_ arguments: [String], _ environment: [String: String] = [:]) -> String? {
        guard case .run(let configuration) = parse(arguments, environment) else { return nil }
        return configuration.capabilityName
    }

    @Test("the default is the Go tsidp's capability, in every mode")
    func defaultName() {
        #expect(name(["--dev"]) == "tailscale.com/cap/tsidp")
        #expect(name(["--use-local-tailscaled"], ["TAILSCALE_USE_WIP_CODE": "1"]) == "tailscale.com/cap/tsidp")
    }

    @Test("the flag in every Go spelling, and TSIDP_CAP_NAME; the flag wins; an empty variable is unset")
    func flagAndEnvironment() {
        #expect(name(["--dev", "--cap-name", "example.com/cap/idp"]) == "example.com/cap/idp")
        #expect(name(["-dev", "-cap-name=example.com/cap/idp"]) == "example.com/cap/idp")
        #expect(name(["--dev"], ["TSIDP_CAP_NAME": "example.com/cap/env"]) == "example.com/cap/env")
        #expect(
            name(["--dev", "--cap-name", "example.com/cap/flag"], ["TSIDP_CAP_NAME": "example.com/cap/env"])
                == "example.com/cap/flag")
        #expect(name(["--dev"], ["TSIDP_CAP_NAME": ""]) == "tailscale.com/cap/tsidp")
        #expect(
            name(["--use-local-tailscaled", "--cap-name", "example.com/cap/idp"], ["TAILSCALE_USE_WIP_CODE": "1"])
                == "example.com/cap/idp")
    }

    @Test(
        "bad names exit 2 with one line naming the source",
        arguments: [
            (["--dev", "--cap-name", ""], [:], "--cap-name is empty"),
            (["--dev", "--cap-name=example.com/cap/ts idp"], [:], "white space"),
            (["--dev", "--cap-name", "example.com/cap/\ttsidp"], [:], "white space"),
            (["--dev", "--cap-name", "tsidp"], [:], "not a capability name"),
            (["--dev", "--cap-name", "/cap/tsidp"], [:], "not a capability name"),
            (["--dev", "--cap-name", "example.com/" + String(repeating: "a", count: 300)], [:], "too long"),
            (["--dev"], ["TSIDP_CAP_NAME": "bad name/x"], "TSIDP_CAP_NAME"),
        ] as [([String], [String: String], String)])
    func refused(arguments: [String], environment: [String: String], fragment: String) {
        guard case .exit(let status, let output, let toStandardError) = parse(arguments, environment) else {
            Issue.record("\(arguments) should be refused")
            return
        }
        #expect(status == 2)
        #expect(toStandardError)
        #expect(output.contains(fragment), "\(output)")
        #expect(!output.contains("\n"))
    }

    @Test("--help names the flag and its variable")
    func help() {
        guard case .exit(0, let output, _) = parse(["--help"]) else {
            Issue.record("--help should exit 0")
            return
        }
        #expect(output.contains("--cap-name"))
        #expect(output.contains("TSIDP_CAP_NAME"))
    }
}

import IDPServer
import Testing
import TsidpCLI

@Suite("Reverse proxy flags: --server-url, --trusted-proxy, --unix-socket")
struct ReverseProxyFlagsTests {
    static let wip = ["TAILSCALE_USE_WIP_CODE": "1"]

    static func configuration(_ arguments: [String], _ environment: [String: String] = wip) throws -> Configuration {
        switch TsidpMain.parse(arguments: arguments, environment: environment) {
        case .run(let configuration): return configuration
        case .exit(let status, let output, _): throw UsageError("exit \(status): \(output)")
        }
    }

    /// The one line a refused command line prints, which must exit with status 2.
    static func refusal(_ arguments: [String], _ environment: [String: String] = wip) -> String {
        switch TsidpMain.parse(arguments: arguments, environment: environment) {
        case .run: return "accepted"
        case .exit(let status, let output, _):
            #expect(status == 2)
            #expect(!output.contains("\n"), "one line: \(output)")
            return output
        }
    }

    @Test(
        "--server-url becomes the issuer, without a trailing slash",
        arguments: [
            (["--use-local-tailscaled", "--server-url", "https://id.example.com"], "https://id.example.com"),
            (["--use-local-tailscaled", "--server-url", "https://id.example.com/"], "https://id.example.com"),
            (["--use-local-tailscaled", "--server-url=https://id.example.com:8443"], "https://id.example.com:8443"),
            (["-use-local-tailscaled", "-server-url", "http://localhost:9000"], "http://localhost:9000"),
            (["--use-local-tailscaled", "--server-url", "http://127.0.0.5:9000/"], "http://127.0.0.5:9000"),
            (["--use-local-tailscaled", "--server-url", "http://[::1]:9000"], "http://[::1]:9000"),
            (["--dev", "--server-url", "http://id.example.test:8080"], "http://id.example.test:8080"),
            (["--dev", "--server-url", "https://id.example.test"], "https://id.example.test"),
        ])
    func serverURL(arguments: [String], issuer: String) throws {
        let configuration = try Self.configuration(arguments)
        #expect(configuration.reverseProxy.serverURL == issuer)
        #expect(configuration.issuer(default: "https://idp.example-tailnet.ts.net") == issuer)
    }

    @Test("without --server-url the mode's own issuer stays")
    func defaultIssuer() throws {
        let configuration = try Self.configuration(["--dev"])
        #expect(configuration.reverseProxy.serverURL == nil)
        #expect(configuration.issuer(default: "http://localhost:8080") == "http://localhost:8080")
    }

    @Test(
        "a bad --server-url is one line naming the value and the problem",
        arguments: [
            ("http://id.example.com", "http is only allowed for a loopback host"),
            ("ftp://id.example.com", "use an https URL"),
            ("id.example.com", "use an absolute URL"),
            ("https:id.example.com", "use an absolute URL"),
            ("https://", "use an absolute URL"),
            ("https://id.example.com/?next=1", "must not have a query"),
            ("https://id.example.com?", "must not have a query"),
            ("https://id.example.com#top", "must not have a fragment"),
            ("https://id.example.com/idp", "must not have a path"),
            ("https://id.example.com//", "must not have a path"),
            ("https://alice@id.example.com", "user name or password"),
            ("https://id.example.com:70000", "out of range"),
            ("https://id_example.com", "is not a host name"),
            ("https://%69d.example.com", "percent-encoding"),
            ("", "use an absolute URL"),
        ])
    func badServerURL(value: String, reason: String) {
        let line = Self.refusal(["--use-local-tailscaled", "--server-url", value])
        #expect(line.hasPrefix("tsidp: invalid --server-url \"\(value)\": "), "\(line)")
        #expect(line.contains(reason), "\(line)")
    }

    @Test("TSIDP_SERVER_URL fills in for the flag, is checked the same way, and loses to it")
    func serverURLEnvironment() throws {
        var environment = Self.wip
        environment["TSIDP_SERVER_URL"] = "https://sso.example.com/"
        #expect(
            try Self.configuration(["--use-local-tailscaled"], environment).reverseProxy.serverURL
                == "https://sso.example.com")
        #expect(
            try Self.configuration(["--use-local-tailscaled", "--server-url", "https://id.example.com"], environment)
                .reverseProxy.serverURL == "https://id.example.com")
        environment["TSIDP_SERVER_URL"] = "http://sso.example.com"
        #expect(Self.refusal(["--use-local-tailscaled"], environment).hasPrefix("tsidp: invalid TSIDP_SERVER_URL"))
    }

    @Test("--trusted-proxy: repeatable, comma lists, bare addresses, IPv6, unix")
    func trustedProxies() throws {
        let configuration = try Self.configuration([
            "--dev", "--trusted-proxy", "127.0.0.1/32", "-trusted-proxy", "10.0.0.0/8, fd7a:115c:a1e0::/48",
            "--trusted-proxy=unix", "--trusted-proxy", "192.0.2.7",
        ])
        let trust = configuration.forwardedTrust
        #expect(
            trust.networks.map(\.description) == [
                "127.0.0.1/32", "10.0.0.0/8", "fd7a:115c:a1e0::/48", "192.0.2.7/32",
            ])
        #expect(trust.trustsUnixSocketPeers)
        #expect(try Self.configuration(["--dev"]).forwardedTrust == .nobody)
        let unixOnly = try Self.configuration(["--dev", "--trusted-proxy", "unix"]).forwardedTrust
        #expect(unixOnly.networks.isEmpty && unixOnly.trustsUnixSocketPeers)
    }

    @Test("TSIDP_TRUSTED_PROXIES is a comma-separated list; the flag replaces it")
    func trustedProxiesEnvironment() throws {
        let environment = ["TSIDP_TRUSTED_PROXIES": "127.0.0.1/32,unix"]
        let fromEnvironment = try Self.configuration(["--dev"], environment).forwardedTrust
        #expect(fromEnvironment.networks.map(\.description) == ["127.0.0.1/32"])
        #expect(fromEnvironment.trustsUnixSocketPeers)
        let fromFlag = try Self.configuration(["--dev", "--trusted-proxy", "10.0.0.0/8"], environment).forwardedTrust
        #expect(fromFlag.networks.map(\.description) == ["10.0.0.0/8"])
        #expect(!fromFlag.trustsUnixSocketPeers)
        #expect(
            Self.refusal(["--dev"], ["TSIDP_TRUSTED_PROXIES": "127.0.0.1/32,127.0.0.2/8"])
                == "tsidp: invalid TSIDP_TRUSTED_PROXIES \"127.0.0.2/8\": it has bits set past its prefix length: use 127.0.0.0/8"
        )
    }

    @Test(
        "a bad --trusted-proxy names the value",
        arguments: [
            ("proxy.example.com", "tsidp: invalid --trusted-proxy \"proxy.example.com\": use a CIDR range"),
            ("10.0.0.0/33", "tsidp: invalid --trusted-proxy \"10.0.0.0/33\": it has a prefix length out of range"),
            ("10.1.2.3/8", "tsidp: invalid --trusted-proxy \"10.1.2.3/8\": it has bits set past its prefix length"),
            ("UNIX", "tsidp: invalid --trusted-proxy \"UNIX\": use a CIDR range"),
            ("0.0.0.0/0", "tsidp: --trusted-proxy 0.0.0.0/0 would let every peer choose which user it is"),
            ("::/0", "tsidp: --trusted-proxy ::/0 would let every peer choose which user it is"),
            ("", "tsidp: --trusted-proxy is empty"),
            (" , ", "tsidp: --trusted-proxy is empty"),
        ])
    func badTrustedProxy(value: String, expected: String) {
        let line = Self.refusal(["--dev", "--trusted-proxy", "127.0.0.1", "--trusted-proxy", value])
        #expect(line.hasPrefix(expected), "\(line)")
    }

    @Test("--unix-socket and TSIDP_UNIX_SOCKET name the socket; empty, directory and overlong paths are refused")
    func unixSocket() throws {
        #expect(
            try Self.configuration(["--dev", "--unix-socket", "/run/tsidp/tsidp.sock"]).reverseProxy.unixSocketPath
                == "/run/tsidp/tsidp.sock")
        #expect(
            try Self.configuration(["--dev"], ["TSIDP_UNIX_SOCKET": "/run/tsidp.sock"]).reverseProxy.unixSocketPath
                == "/run/tsidp.sock")
        #expect(try Self.configuration(["--dev"]).reverseProxy.unixSocketPath == nil)
        #expect(Self.refusal(["--dev", "--unix-socket", ""]).hasPrefix("tsidp: --unix-socket is empty"))
        #expect(
            Self.refusal(["--dev", "--unix-socket", "/run/tsidp/"]).hasPrefix(
                "tsidp: invalid --unix-socket \"/run/tsidp/\": name a file"))
        let long = "/tmp/" + String(repeating: "s", count: 110)
        #expect(Self.refusal(["--dev", "--unix-socket", long]).contains("is too long for a unix socket"))
    }

    @Test("the embedded mode refuses trusting loopback addresses, which stand for every tailnet device there")
    func embeddedLoopback() throws {
        for value in ["127.0.0.1/32", "127.0.0.0/8", "0.0.0.0/1", "::1", "::/1"] {
            let line = Self.refusal(["--trusted-proxy", value])
            let network = try IPNetwork(parsing: value)
            #expect(line.hasPrefix("tsidp: --trusted-proxy \(network) covers loopback addresses"), "\(line)")
        }
        #expect(
            Self.refusal([], ["TAILSCALE_USE_WIP_CODE": "1", "TSIDP_TRUSTED_PROXIES": "unix,127.0.0.1"]).hasPrefix(
                "tsidp: TSIDP_TRUSTED_PROXIES 127.0.0.1/32 covers loopback addresses"))
        let embedded = try Self.configuration([
            "--trusted-proxy", "100.64.0.7,unix", "--trusted-proxy", "128.0.0.0/1",
        ])
        #expect(embedded.mode == .embedded)
        #expect(embedded.forwardedTrust.networks.count == 2 && embedded.forwardedTrust.trustsUnixSocketPeers)
        // The modes whose loopback peers are local processes may trust them.
        #expect(
            try Self.configuration(["--use-local-tailscaled", "--trusted-proxy", "127.0.0.1"]).forwardedTrust
                != .nobody)
        #expect(try Self.configuration(["--dev", "--trusted-proxy", "127.0.0.1"]).forwardedTrust != .nobody)
    }
}

import Foundation
import Testing

@testable import TsidpCLI

@Suite("Embedded mode configuration")
struct EmbeddedConfigurationTests {
    static let wip = ["TAILSCALE_USE_WIP_CODE": "1"]

    func resolve(_ environment: [String: String]) -> Result<Configuration, UsageError> {
        resolve([], environment)
    }

    func resolve(_ arguments: [String], _ environment: [String: String]) -> Result<Configuration, UsageError> {
        switch TsidpMain.parse(arguments: arguments, environment: Self.wip.merging(environment) { $1 }) {
        case .run(let configuration): return .success(configuration)
        case .exit(_, let output, _): return .failure(UsageError(output))
        }
    }

    func keyFile(_ content: String) throws -> String {
        let path = NSTemporaryDirectory() + "tsidp-key-\(UUID().uuidString)"
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("TS_AUTHKEY, TS_AUTH_KEY and TS_AUTHKEY_FILE each give the key; a file's content is trimmed")
    func keySources() throws {
        #expect(try resolve(["TS_AUTHKEY": "tskey-auth-one"]).get().authKey == "tskey-auth-one")
        #expect(try resolve(["TS_AUTH_KEY": "tskey-auth-two"]).get().authKey == "tskey-auth-two")
        let file = try keyFile("  tskey-auth-three\n\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try resolve(["TS_AUTHKEY_FILE": file]).get().authKey == "tskey-auth-three")
        #expect(try resolve([:]).get().authKey == nil)
        // The same key under both names is not a conflict.
        #expect(try resolve(["TS_AUTHKEY": "tskey-a", "TS_AUTH_KEY": "tskey-a"]).get().authKey == "tskey-a")
    }

    @Test("an empty or missing key file, a key and a file, two different keys: one-line errors")
    func keyMistakes() throws {
        let empty = try keyFile(" \n")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let good = try keyFile("tskey-auth-file")
        defer { try? FileManager.default.removeItem(atPath: good) }
        let cases: [([String: String], String)] = [
            (["TS_AUTHKEY_FILE": empty], "is empty"),
            (["TS_AUTHKEY_FILE": "/nonexistent/tsidp-key"], "cannot read TS_AUTHKEY_FILE /nonexistent/tsidp-key"),
            (["TS_AUTHKEY_FILE": good, "TS_AUTHKEY": "tskey-x"], "both set"),
            (["TS_AUTHKEY_FILE": good, "TS_AUTH_KEY": "tskey-x"], "both set"),
            (["TS_AUTHKEY": "tskey-x", "TS_AUTH_KEY": "tskey-y"], "different keys"),
            (["TS_AUTHKEY": "tskey x"], "spaces"),
        ]
        for (environment, expected) in cases {
            guard case .failure(let error) = resolve(environment) else {
                Issue.record("accepted \(environment)")
                continue
            }
            #expect(error.message.contains(expected), "\(environment): \(error.message)")
            #expect(!error.message.contains("\n"))
            #expect(!error.message.contains("tskey-auth-file"), "the key itself is never repeated")
        }
    }

    @Test("TS_ADVERTISE_TAGS, TSNET_FORCE_LOGIN, TS_TAILSCALED_EXTRA_ARGS and --tailscaled")
    func nodeSettings() throws {
        let configuration = try resolve(
            ["--tailscaled", "/opt/tailscale/tailscaled"],
            [
                "TS_ADVERTISE_TAGS": "tag:idp, tag:prod", "TSNET_FORCE_LOGIN": "1",
                "TS_TAILSCALED_EXTRA_ARGS": "--port=41642  --verbose=1",
            ]
        ).get()
        #expect(configuration.advertiseTags == ["tag:idp", "tag:prod"])
        #expect(configuration.forceLogin)
        #expect(configuration.tailscaledExtraArguments == ["--port=41642", "--verbose=1"])
        #expect(configuration.tailscaledPath == "/opt/tailscale/tailscaled")
        #expect(try resolve(["TSIDP_TAILSCALED": "/x/tailscaled"]).get().tailscaledPath == "/x/tailscaled")
        guard case .failure(let error) = resolve(["TS_ADVERTISE_TAGS": "idp"]) else {
            Issue.record("a tag without tag: was accepted")
            return
        }
        #expect(error.message.contains("tag:idp"))
    }

    @Test("--state is the embedded node's; the other modes refuse it")
    func state() throws {
        #expect(try resolve(["--state", "kube:tsidp"], [:]).get().state == "kube:tsidp")
        #expect(try resolve(["--state", "kube:tsidp"], [:]).get().unsupportedFeature == nil)
        #expect(try resolve([], ["TS_STATE": "/var/lib/tsidp/ts.state"]).get().state == "/var/lib/tsidp/ts.state")
    }

    @Test("the child's environment never carries the auth key or systemd's socket variables")
    func childEnvironment() {
        let environment = EmbeddedRunner.childEnvironment()
        for name in ["TS_AUTHKEY", "TS_AUTH_KEY", "TS_AUTHKEY_FILE", "LISTEN_FDS", "LISTEN_PID"] {
            #expect(environment[name] == nil)
        }
    }

    @Test("a missing tailscaled is one line that says how to install it and which other modes there are")
    func missingTailscaled() {
        #expect(throws: UsageError.self) { try EmbeddedRunner.findTailscaled("/nonexistent/tailscaled") }
        do {
            _ = try EmbeddedRunner.findTailscaled("/nonexistent/tailscaled")
        } catch let error as UsageError {
            #expect(error.message.contains("install Tailscale"))
            #expect(error.message.contains("--use-local-tailscaled"))
            #expect(error.message.contains("--dev"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("the socket goes next to the state unless that path is too long for a socket address")
    func socketPath() throws {
        #expect(try EmbeddedRunner.socketPath(in: "/var/lib/tsidp") == "/var/lib/tsidp/tailscaled.sock")
        let long = "/tmp/" + String(repeating: "d", count: 120)
        let fallback = try EmbeddedRunner.socketPath(in: long)
        #expect(fallback.hasPrefix("/tmp/tsidp-node-"))
        #expect(fallback.utf8.count < 100)
        try? FileManager.default.removeItem(atPath: (fallback as NSString).deletingLastPathComponent)
    }
}

@Suite("Certificate refresh")
struct CertificateRefreshScheduleTests {
    @Test("every 12 hours, sooner as the expiry nears, never more often than once a minute")
    func schedule() {
        let now = 1_800_000_000
        #expect(CertificateRefreshService.delay(expiry: now + 90 * 86400, now: now) == .seconds(12 * 3600))
        #expect(CertificateRefreshService.delay(expiry: now + 3 * 3600, now: now) == .seconds(3600))
        #expect(CertificateRefreshService.delay(expiry: now + 30, now: now) == .seconds(60))
        #expect(CertificateRefreshService.delay(expiry: now - 3600, now: now) == .seconds(60))
    }
}

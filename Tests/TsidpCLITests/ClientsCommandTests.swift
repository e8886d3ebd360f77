import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import Testing
import TsidpCLI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `tsidp clients …`, run as the built binary against a running `tsidp --dev --local-port` and
/// against the state directory of a stopped one.
@Suite("tsidp clients", .serialized)
struct ClientsCommandTests {
    /// A started `tsidp --dev` with a local listener on `directory/state`.
    struct Server {
        let running: TsidpBinary.Running
        let port: Int
        let localPort: Int
        var url: String { "http://127.0.0.1:\(localPort)" }

        static func start(_ binary: TsidpBinary, in directory: String) async throws -> Server {
            let port = try LocalTailscaledModeTests.freePort()
            var localPort = try LocalTailscaledModeTests.freePort()
            while localPort == port { localPort = try LocalTailscaledModeTests.freePort() }
            let running = try binary.start(
                ["--dev", "--port", "\(port)", "--local-port", "\(localPort)", "--dir", directory + "/state"],
                in: directory)
            let started = await running.waitForError(containing: "Issuer:", limit: .seconds(120))
            #expect(started, "\(running.errorText)")
            if !started { throw CancellationError() }
            return Server(running: running, port: port, localPort: localPort)
        }

        func stop() async {
            running.process.terminate()
            #expect(await running.waitForExit(limit: .seconds(30)))
        }
    }

    static func json(_ outcome: TsidpBinary.Outcome) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8))
    }

    static func records(_ outcome: TsidpBinary.Outcome) throws -> [[String: Any]] {
        try #require(try json(outcome) as? [[String: Any]], "\(outcome.standardOutput)")
    }

    /// The comparable part of a list: ID, name and redirect URIs of each client, by ID.
    static func summary(_ list: [[String: Any]]) -> [String] {
        list.map {
            "\($0["client_id"] as? String ?? "")|\($0["client_name"] as? String ?? "")|\(($0["redirect_uris"] as? [String] ?? []).joined(separator: ","))"
        }.sorted()
    }

    @Test(
        "through a running server and on the stopped state directory, the same clients; --dir is refused while it runs")
    func bothWays() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await Server.start(binary, in: directory)
        let viaServer = ["--server", server.url]

        let added = try await binary.run(
            [
                "clients", "add", "--name", "Grafana", "--redirect-uri",
                "https://grafana.example.com/login/generic_oauth",
                "--redirect-uri", "http://127.0.0.1:3000/cb", "--json",
            ] + viaServer, in: directory)
        #expect(added.status == 0, "\(added.standardError)")
        let created = try #require(try Self.json(added) as? [String: Any])
        let id = try #require(created["client_id"] as? String)
        let secret = try #require(created["client_secret"] as? String)
        #expect(secret.count == 64)

        let human = try await binary.run(
            ["clients", "add", "--name", "CLI app", "--redirect-uri", "com.example.app:/cb", "--public"] + viaServer,
            in: directory)
        #expect(human.status == 0, "\(human.standardError)")
        #expect(human.standardOutput.contains("Client ID:"))
        #expect(human.standardOutput.contains("Public client"))

        // Pairwise subjects, through the server; shown by `show`.
        let pairwise = try await binary.run(
            [
                "clients", "add", "--name", "Wiki", "--redirect-uri", "https://wiki.example.com/cb", "--pairwise",
                "--json",
            ] + viaServer, in: directory)
        #expect(pairwise.status == 0, "\(pairwise.standardError)")
        let pairwiseRecord = try #require(try Self.json(pairwise) as? [String: Any])
        #expect(pairwiseRecord["subject_type"] as? String == "pairwise")
        let pairwiseID = try #require(pairwiseRecord["client_id"] as? String)
        let pairwiseShown = try await binary.run(["clients", "show", pairwiseID] + viaServer, in: directory)
        #expect(pairwiseShown.standardOutput.contains("Subjects:       pairwise"))
        let twoHosts = try await binary.run(
            [
                "clients", "add", "--name", "Wiki", "--redirect-uri", "https://a.example.com/cb", "--redirect-uri",
                "https://b.example.com/cb", "--pairwise",
            ] + viaServer, in: directory)
        #expect(twoHosts.status == 1)
        #expect(twoHosts.errorLines.count == 1, "\(twoHosts.standardError)")
        let removed = try await binary.run(["clients", "delete", pairwiseID, "--yes"] + viaServer, in: directory)
        #expect(removed.status == 0, "\(removed.standardError)")

        let table = try await binary.run(["clients", "list"] + viaServer, in: directory)
        #expect(table.status == 0)
        #expect(table.standardOutput.hasPrefix("NAME"))
        #expect(table.standardOutput.contains(id))
        #expect(
            table.standardOutput.contains("https://grafana.example.com/login/generic_oauth, http://127.0.0.1:3000/cb"))
        #expect(!table.standardOutput.contains(secret))

        let shown = try await binary.run(["clients", "show", id] + viaServer, in: directory)
        #expect(shown.status == 0)
        #expect(shown.standardOutput.contains("Grafana"))
        #expect(!shown.standardOutput.contains(secret))

        let renamed = try await binary.run(
            ["clients", "update", id, "--name", "Grafana prod", "--json"] + viaServer, in: directory)
        #expect(renamed.status == 0, "\(renamed.standardError)")
        let afterRename = try #require(try Self.json(renamed) as? [String: Any])
        #expect(afterRename["client_name"] as? String == "Grafana prod")
        // The redirect URIs stay when only the name changes.
        #expect(
            afterRename["redirect_uris"] as? [String] == [
                "https://grafana.example.com/login/generic_oauth", "http://127.0.0.1:3000/cb",
            ])

        // Resource URIs: set, kept by a rename, refused when not absolute https, cleared.
        let serving = try await binary.run(
            ["clients", "update", id, "--resource", "https://mcp.example.com/mcp", "--json"] + viaServer,
            in: directory)
        #expect(serving.status == 0, "\(serving.standardError)")
        #expect(
            (try Self.json(serving) as? [String: Any])?["resources"] as? [String] == ["https://mcp.example.com/mcp"])
        let badResource = try await binary.run(
            ["clients", "update", id, "--resource", "http://mcp.example.com/mcp#x"] + viaServer, in: directory)
        #expect(badResource.status == 1)
        #expect(badResource.errorLines.count == 1 && badResource.standardError.contains("resource"))
        let shownServing = try await binary.run(["clients", "show", id] + viaServer, in: directory)
        #expect(shownServing.standardOutput.contains("https://mcp.example.com/mcp"))
        let cleared = try await binary.run(
            ["clients", "update", id, "--no-resources", "--json"] + viaServer, in: directory)
        #expect(cleared.status == 0, "\(cleared.standardError)")
        #expect((try Self.json(cleared) as? [String: Any])?["resources"] == nil)

        let regenerated = try await binary.run(
            ["clients", "regenerate-secret", id, "--json"] + viaServer, in: directory)
        #expect(regenerated.status == 0)
        let newSecret = try #require((try Self.json(regenerated) as? [String: Any])?["client_secret"] as? String)
        #expect(newSecret != secret)

        // The directory is the server's while it runs.
        let refused = try await binary.run(["clients", "list", "--dir", directory + "/state"], in: directory)
        #expect(refused.status == 2)
        #expect(refused.errorLines.count == 1)
        #expect(refused.standardError.contains("a tsidp server is running on"), "\(refused.standardError)")
        #expect(refused.standardError.contains("--server"))

        let listedByServer = Self.summary(
            try Self.records(try await binary.run(["clients", "list", "--json"] + viaServer, in: directory)))
        #expect(listedByServer.count == 2)
        await server.stop()
        #expect(!server.running.errorText.contains(secret))
        #expect(!server.running.errorText.contains(newSecret))

        let viaDir = ["--dir", directory + "/state"]
        let listedByDir = Self.summary(
            try Self.records(try await binary.run(["clients", "list", "--json"] + viaDir, in: directory)))
        #expect(listedByDir == listedByServer)

        // Changes on the stopped directory are what the next server serves.
        let offline = try await binary.run(
            [
                "clients", "add", "--name", "Portainer", "--redirect-uri", "https://portainer.example.com/",
                "--resource", "https://portainer.example.com/api", "--json",
            ] + viaDir,
            in: directory)
        #expect(offline.status == 0, "\(offline.standardError)")
        let offlineID = try #require((try Self.json(offline) as? [String: Any])?["client_id"] as? String)
        #expect(
            (try Self.json(offline) as? [String: Any])?["resources"] as? [String] == [
                "https://portainer.example.com/api"
            ])
        let deleted = try await binary.run(["clients", "delete", id, "--yes"] + viaDir, in: directory)
        #expect(deleted.status == 0, "\(deleted.standardError)")
        let afterOffline = Self.summary(
            try Self.records(try await binary.run(["clients", "list", "--json"] + viaDir, in: directory)))

        let restarted = try await Server.start(binary, in: directory)
        let listedAgain = Self.summary(
            try Self.records(
                try await binary.run(["clients", "list", "--json", "--server", restarted.url], in: directory)))
        #expect(listedAgain == afterOffline)
        #expect(listedAgain.contains { $0.hasPrefix(offlineID + "|Portainer|") })
        let servingAgain = try await binary.run(
            ["clients", "show", offlineID, "--json", "--server", restarted.url], in: directory)
        #expect(
            (try Self.json(servingAgain) as? [String: Any])?["resources"] as? [String] == [
                "https://portainer.example.com/api"
            ])
        #expect(!listedAgain.contains { $0.hasPrefix(id) })
        let gone = try await binary.run(
            ["clients", "delete", offlineID, "--yes", "--server", restarted.url], in: directory)
        #expect(gone.status == 0, "\(gone.standardError)")
        let missing = try await binary.run(["clients", "show", offlineID, "--server", restarted.url], in: directory)
        #expect(missing.status == 1)
        #expect(missing.errorLines == ["tsidp clients: client not found"])
        await restarted.stop()
    }

    @Test("deleting on the stopped state directory ends the client's refresh tokens too")
    func storeDeleteEndsGrants() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await signInThenDeleteOffline(binary: binary, directory: directory, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    func signInThenDeleteOffline(binary: TsidpBinary, directory: String, http: HTTPClient) async throws {
        let server = try await Server.start(binary, in: directory)
        let added = try await binary.run(
            [
                "clients", "add", "--name", "App", "--redirect-uri", "https://app.example.com/cb", "--json", "--server",
                server.url,
            ],
            in: directory)
        let created = try #require(try Self.json(added) as? [String: Any])
        let id = try #require(created["client_id"] as? String)
        let secret = try #require(created["client_secret"] as? String)

        var base = "http://127.0.0.1:\(server.port)"
        let authorize = try await http.execute(
            HTTPClientRequest(
                url:
                    "\(base)/authorize?client_id=\(id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid"
            ),
            timeout: .seconds(30))
        let location = try #require(authorize.headers.first(name: "Location"))
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        func token(_ body: String, base: String) async throws -> (Int, [String: Any]) {
            var request = HTTPClientRequest(url: "\(base)/token")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.headers.add(
                name: "Authorization", value: "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString())
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await http.execute(request, timeout: .seconds(30))
            let data = try await response.body.collect(upTo: 1 << 20)
            return (
                Int(response.status.code),
                (try? JSONSerialization.jsonObject(with: Data(buffer: data))) as? [String: Any] ?? [:]
            )
        }
        let (status, tokens) = try await token(
            "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb", base: base)
        #expect(status == 200)
        let refresh = try #require(tokens["refresh_token"] as? String)
        await server.stop()

        let deleted = try await binary.run(
            ["clients", "delete", id, "--yes", "--dir", directory + "/state"], in: directory)
        #expect(deleted.status == 0, "\(deleted.standardError)")
        let restarted = try await Server.start(binary, in: directory)
        base = "http://127.0.0.1:\(restarted.port)"
        // The grant state the restarted server loads holds nothing of the deleted client's.
        let loaded = restarted.running.errorText.split(separator: "\n").filter { $0.contains("grant state loaded") }
        #expect(loaded.count == 1, "\(restarted.running.errorText)")
        #expect(loaded.first?.contains("logins=0") == true, "\(loaded)")
        #expect(loaded.first?.contains("access_tokens=0") == true, "\(loaded)")
        let (after, error) = try await token("grant_type=refresh_token&refresh_token=\(refresh)", base: base)
        #expect(after == 401 || after == 400)
        #expect(["invalid_client", "invalid_grant"].contains(error["error"] as? String ?? ""))
        await restarted.stop()
    }

    @Test(
        "usage mistakes exit 2 with one line",
        arguments: [
            ["clients", "list"],
            ["clients", "list", "--server", "http://127.0.0.1:1", "--dir", "/tmp"],
            ["clients", "add", "--redirect-uri", "https://app.example.com/cb", "--dir", "/tmp"],
            ["clients", "add", "--name", "App", "--dir", "/tmp"],
            ["clients", "update", "abc", "--dir", "/tmp"],
            ["clients", "update", "abc", "--resource", "https://a.example.com/", "--no-resources", "--dir", "/tmp"],
            ["clients", "frobnicate"],
            ["clients", "show"],
            ["clients", "list", "--server", "https://idp.example.com"],
            ["clients", "list", "--server", "http://192.0.2.1:9090"],
            ["clients", "list", "--state", "kube:tsidp"],
        ])
    func usage(arguments: [String]) async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outcome = try await binary.run(arguments, in: directory)
        #expect(outcome.status == 2, "\(outcome.standardError)")
        #expect(outcome.errorLines.count == 1, "\(outcome.standardError)")
        #expect(outcome.errorLines.first?.hasPrefix("tsidp clients: ") == true)
        #expect(outcome.standardOutput.isEmpty)
    }

    @Test("failed operations exit 1 with one line: no server, unknown client, missing directory")
    func failures() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let closedPort = try LocalTailscaledModeTests.freePort()
        let unreachable = try await binary.run(
            ["clients", "list", "--server", "http://127.0.0.1:\(closedPort)"], in: directory)
        #expect(unreachable.status == 1)
        #expect(unreachable.errorLines.count == 1)
        #expect(unreachable.standardError.contains("cannot reach tsidp"))

        let missingDirectory = try await binary.run(["clients", "list", "--dir", directory + "/nope"], in: directory)
        #expect(missingDirectory.status == 1)
        #expect(missingDirectory.standardError.contains("does not exist"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/nope"))

        try FileManager.default.createDirectory(
            atPath: directory + "/state", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let unknown = try await binary.run(
            ["clients", "show", "0123abcd", "--dir", directory + "/state"], in: directory)
        #expect(unknown.status == 1)
        #expect(unknown.errorLines == ["tsidp clients: client 0123abcd not found"])
        let badURI = try await binary.run(
            [
                "clients", "add", "--name", "App", "--redirect-uri", "javascript:alert(1)", "--dir",
                directory + "/state",
            ],
            in: directory)
        #expect(badURI.status == 1)
        #expect(badURI.standardError.contains("not allowed"))
        let empty = try await binary.run(["clients", "list", "--dir", directory + "/state"], in: directory)
        #expect(empty.status == 0)
        #expect(empty.standardOutput == "No clients.\n")
        // Without a terminal, delete wants --yes.
        let added = try await binary.run(
            [
                "clients", "add", "--name", "App", "--redirect-uri", "https://app.example.com/cb", "--json", "--dir",
                directory + "/state",
            ],
            in: directory)
        let id = try #require((try Self.json(added) as? [String: Any])?["client_id"] as? String)
        let unconfirmed = try await binary.run(["clients", "delete", id, "--dir", directory + "/state"], in: directory)
        #expect(unconfirmed.status == 2)
        #expect(unconfirmed.standardError.contains("--yes"))
        let stillThere = try await binary.run(["clients", "show", id, "--dir", directory + "/state"], in: directory)
        #expect(stillThere.status == 0)
    }

    @Test("the variables name the way when no flag does; a flag wins")
    func environment() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/state", withIntermediateDirectories: false)
        let viaEnvironment = try await binary.run(
            ["clients", "list"], in: directory, environment: ["TS_STATE_DIR": directory + "/state"])
        #expect(viaEnvironment.status == 0, "\(viaEnvironment.standardError)")
        let closedPort = try LocalTailscaledModeTests.freePort()
        // TSIDP_LOCAL_URL wins over TS_STATE_DIR (and here reaches nothing).
        let both = try await binary.run(
            ["clients", "list"], in: directory,
            environment: ["TS_STATE_DIR": directory + "/state", "TSIDP_LOCAL_URL": "http://127.0.0.1:\(closedPort)"])
        #expect(both.status == 1)
        let flagWins = try await binary.run(
            ["clients", "list", "--dir", directory + "/state"], in: directory,
            environment: ["TSIDP_LOCAL_URL": "http://127.0.0.1:\(closedPort)"])
        #expect(flagWins.status == 0)
    }

    @Test("the server's Go-style command line is untouched by the clients command")
    func goFlagsUnaffected() {
        #expect(!ClientsMain.handles(["-dev"]))
        #expect(!ClientsMain.handles(["--port", "8080", "--dev"]))
        #expect(ClientsMain.handles(["clients", "list"]))
        guard case .run(let dev) = TsidpMain.parse(arguments: ["-dev", "-port=9000"], environment: [:]) else {
            Issue.record("-dev -port=9000 should run")
            return
        }
        #expect(dev.port == 9000)
        guard case .run(let port) = TsidpMain.parse(arguments: ["--dev", "--port", "8080"], environment: [:]) else {
            Issue.record("--dev --port 8080 should run")
            return
        }
        #expect(port.port == 8080)
    }
}

import Foundation
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What an operator trying the binary for the first time sees: the built `tsidp` run with the
/// command lines that once went wrong, checked for exit status and output.
@Suite("The binary, run as a new operator runs it", .serialized, .timeLimit(.minutes(3)))
struct OperatorPaperCutTests {
    @Test("-local-port -1 (and the other Go spellings) turns the local listener off and tsidp starts")
    func negativeLocalPort() async throws {
        let binary = try TsidpBinary.required()
        for spelling in [["-local-port", "-1"], ["--local-port", "-1"], ["-local-port=-1"], ["--local-port=-1"]] {
            let directory = try TsidpBinary.scratchDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let port = try LocalTailscaledModeTests.freePort()
            let running = try binary.start(
                ["--dev", "--port", "\(port)", "--dir", directory + "/state"] + spelling, in: directory)
            let started = await running.waitForError(containing: "Issuer:", limit: .seconds(60))
            running.process.terminate()
            let exited = await running.waitForExit(limit: .seconds(20))
            #expect(started, "\(spelling): \(running.errorText)")
            #expect(exited && running.process.terminationStatus == 0, "\(spelling): \(running.errorText)")
            #expect(!running.errorText.contains("Operator:"), "\(spelling): the local listener should be off")
        }
    }

    @Test("--dir '' exits 2 in one line and leaves the working directory alone")
    func emptyDirectory() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let workdir = directory + "/work"
        try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: false)
        #expect(chmod(workdir, 0o755) == 0)
        for arguments in [["--dev", "--dir", ""], ["--dev", "-dir="]] {
            let outcome = try await binary.run(arguments, in: workdir)
            #expect(outcome.status == 2)
            #expect(
                outcome.standardError == "tsidp: --dir is empty: name the state directory, e.g. --dir /var/lib/tsidp\n")
        }
        let outcome = try await binary.run(
            ["--dev"], in: workdir, environment: ["TS_STATE_DIR": ""], limit: .seconds(30))
        #expect(outcome.status == 2)
        #expect(
            outcome.errorLines == ["tsidp: TS_STATE_DIR is set but empty: set it to the state directory, or unset it"])
        let mode = try FileManager.default.attributesOfItem(atPath: workdir)[.posixPermissions] as? Int
        #expect(mode == 0o755)
        // Only the run's own output files: no key, no client file.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: workdir).sorted() == ["tsidp.stderr", "tsidp.stdout"])
    }

    @Test("an existing state directory keeps its mode, and tsidp says how to fix it")
    func existingDirectoryMode() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = URL(fileURLWithPath: directory + "/state").standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false)
        #expect(chmod(state, 0o755) == 0)
        let port = try LocalTailscaledModeTests.freePort()
        let running = try binary.start(["--dev", "--port", "\(port)", "--dir", state], in: directory)
        let started = await running.waitForError(containing: "Issuer:", limit: .seconds(60))
        running.process.terminate()
        _ = await running.waitForExit(limit: .seconds(20))
        #expect(started, "\(running.errorText)")
        let warning = running.errorText.split(separator: "\n").filter { $0.contains("chmod 700 \(state)") }
        #expect(warning.count == 1, "\(running.errorText)")
        #expect(warning.first?.contains("\(state) has mode 0755") == true)
        #expect(try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int == 0o755)
    }

    @Test("a port already in use: one line naming address and port, exit 2", arguments: ["--port", "--local-port"])
    func portInUse(_ flag: String) async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let holder = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let taken = try #require(holder.localAddress?.port)
        let free = try LocalTailscaledModeTests.freePort()
        let ports = flag == "--port" ? ["--port", "\(taken)"] : ["--port", "\(free)", "--local-port", "\(taken)"]
        let outcome = try await binary.run(["--dev", "--dir", directory + "/state"] + ports, in: directory)
        try await holder.close()
        #expect(outcome.status == 2, "\(outcome.standardError)")
        let last = outcome.errorLines.last ?? ""
        #expect(
            last
                == "tsidp: cannot listen on 127.0.0.1:\(taken): the port is already in use (another tsidp, or another server?); stop it or choose another \(flag)"
        )
        #expect(outcome.errorLines.filter { $0.hasPrefix("tsidp: ") }.count == 1, "\(outcome.standardError)")
        #expect(!outcome.standardError.contains("errno"))
    }

    @Test("a state path under a regular file names the file that is in the way")
    func stateUnderFile() async throws {
        let binary = try TsidpBinary.required()
        let directory = URL(fileURLWithPath: try TsidpBinary.scratchDirectory()).standardizedFileURL.path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/hostname"
        try Data("host\n".utf8).write(to: URL(fileURLWithPath: file))
        let outcome = try await binary.run(["--dev", "--dir", file + "/sub"], in: directory)
        #expect(outcome.status == 2)
        #expect(outcome.errorLines == ["tsidp: cannot create state directory \(file)/sub: \(file) is not a directory"])
    }

    @Test("a missing tailscaled socket: exit 2 at once, one clean line naming it")
    func missingSocket() async throws {
        let binary = try TsidpBinary.required()
        let directory = try TsidpBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/tailscaled.sock"
        let outcome = try await binary.run(
            ["--use-local-tailscaled", "--socket", socket, "--dir", directory + "/state"], in: directory,
            environment: ["TAILSCALE_USE_WIP_CODE": "1"])
        #expect(outcome.status == 2)
        #expect(
            outcome.errorLines == [
                "tsidp: tailscaled's socket \(socket) does not exist: start tailscaled, or pass --socket with the path of its socket"
            ])
        #expect(outcome.elapsed < .seconds(5), "took \(outcome.elapsed)")
    }
}

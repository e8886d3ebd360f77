import ArgumentParser
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs `tsidp clients …`: parses, picks the way to the clients, runs one operation.
public enum ClientsMain {
    /// What a run printed and its exit status: 0 done, 1 the operation failed, 2 a usage mistake.
    public struct Outcome: Sendable, Equatable {
        public var status: Int32
        public var standardOutput: String
        public var standardError: String
    }

    /// Whether `arguments` (without the program name) ask for `tsidp clients`.
    public static func handles(_ arguments: [String]) -> Bool {
        arguments.first == "clients"
    }

    /// Runs the command in `arguments` (starting with `clients`). `ask` answers a confirmation
    /// question, or returns nil when there is no terminal.
    public static func run(
        arguments: [String], environment: [String: String],
        ask: @escaping @Sendable (String) -> Bool? = { _ in nil }
    ) async -> Outcome {
        let rest = Array(arguments.dropFirst())
        let command: any ClientsSubcommand
        do {
            let parsed = try ClientsCommand.parseAsRoot(try GoFlags.normalize(rest))
            guard let subcommand = parsed as? any ClientsSubcommand else {
                return Outcome(status: 0, standardOutput: ClientsCommand.helpMessage() + "\n", standardError: "")
            }
            command = subcommand
            try command.validateArguments()
        } catch let error as UsageError {
            return usage(error.message)
        } catch {
            let code = ClientsCommand.exitCode(for: error)
            if code == .success {
                return Outcome(
                    status: 0, standardOutput: ClientsCommand.fullMessage(for: error) + "\n", standardError: "")
            }
            let message =
                ClientsCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
            return usage("\(message) (see tsidp clients --help)")
        }
        let output = ClientsOutput(json: command.options.json, ask: ask)
        var logger = Logger(label: "tsidp") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let backend: any ClientsBackend
        do {
            backend = try await open(command.options, environment: environment, logger: logger)
        } catch let error as UsageError {
            return usage(error.message)
        } catch {
            return failure("\(error)")
        }
        var result: Outcome
        do {
            try await command.run(on: backend, output: output)
            result = Outcome(status: 0, standardOutput: output.standardOutput, standardError: "")
        } catch let error as UsageError {
            result = usage(error.message)
        } catch {
            result = failure("\(error)")
        }
        await backend.close()
        return result
    }

    static func usage(_ message: String) -> Outcome {
        Outcome(status: 2, standardOutput: "", standardError: "tsidp clients: \(message)\n")
    }

    static func failure(_ message: String) -> Outcome {
        let line = message.split(separator: "\n").first.map(String.init) ?? message
        return Outcome(status: 1, standardOutput: "", standardError: "tsidp clients: \(line)\n")
    }

    /// The way to the clients: a flag wins over both variables, `TSIDP_LOCAL_URL` over `TS_STATE_DIR`.
    static func open(_ options: ClientsOptions, environment: [String: String], logger: Logger) async throws
        -> any ClientsBackend
    {
        if options.state != nil {
            throw UsageError(
                "--state is not supported by tsidp clients: manage the clients of a kube: store through the running server (--server)"
            )
        }
        if options.server != nil && options.dir != nil {
            throw UsageError("give --server or --dir, not both")
        }
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        if let server = options.server {
            return ServerClientsBackend(base: try ServerClientsBackend.baseURL(server, source: "--server"))
        }
        if let dir = options.dir {
            guard !dir.isEmpty else { throw UsageError("--dir is empty: name the state directory") }
            return try await StoreClientsBackend.open(directory: dir, logger: logger)
        }
        if let server = value("TSIDP_LOCAL_URL") {
            return ServerClientsBackend(base: try ServerClientsBackend.baseURL(server, source: "TSIDP_LOCAL_URL"))
        }
        if let dir = value("TS_STATE_DIR") {
            return try await StoreClientsBackend.open(directory: dir, logger: logger)
        }
        throw UsageError(
            "name the clients' place: --server http://127.0.0.1:PORT (a running tsidp's --local-port) or --dir DIR (a stopped tsidp's state)"
        )
    }

    /// The program's `tsidp clients`: prints, asks on the terminal for `delete`, and exits.
    public static func main(arguments: [String]) async -> Never {
        let outcome = await run(
            arguments: arguments, environment: ProcessInfo.processInfo.environment,
            ask: { question in
                guard isatty(0) == 1 else { return nil }
                FileHandle.standardError.write(Data("\(question) [y/N] ".utf8))
                guard let answer = readLine() else { return false }
                return ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased())
            })
        if !outcome.standardOutput.isEmpty { FileHandle.standardOutput.write(Data(outcome.standardOutput.utf8)) }
        if !outcome.standardError.isEmpty { FileHandle.standardError.write(Data(outcome.standardError.utf8)) }
        exit(outcome.status)
    }
}

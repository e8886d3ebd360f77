import ArgumentParser
import CoreMetrics
import Foundation
import IDPServer
import Logging
import Prometheus
import Telemetry

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `tsidp` program: parses the command line, reports mistakes in one line with status 2,
/// and runs the server.
public enum TsidpMain {
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst())) async {
        var configuration: Configuration
        switch parse(arguments: arguments, environment: ProcessInfo.processInfo.environment) {
        case .exit(let status, let output, let toStandardError):
            if !output.isEmpty {
                FileHandle(fileDescriptor: toStandardError ? 2 : 1).write(Data((output + "\n").utf8))
            }
            exit(status)
        case .run(let resolved):
            configuration = resolved
        }
        do {
            configuration.reverseProxy.inheritedSockets = try SocketActivation.claim()
        } catch {
            FileHandle.standardError.write(Data("tsidp: \(error.message)\n".utf8))
            exit(2)
        }
        if let unsupported = configuration.unsupportedFeature {
            FileHandle.standardError.write(Data("tsidp: \(unsupported)\n".utf8))
            exit(2)
        }
        let logger = makeLogger(level: configuration.logLevel, format: configuration.logFormat)
        let metrics = TsidpMetrics(version: TsidpVersion.current)
        // Libraries that report through swift-metrics land in the same registry as tsidp's own series.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        if let files = FileDescriptorLimit.raiseToHardLimit() {
            logger.debug(
                "open-file limit raised to the hard limit",
                metadata: ["before": "\(files.before)", "after": "\(files.after)"])
            let fitted = configuration.fitting(openFiles: files.after)
            if fitted.listenerLimits.maxConnections < configuration.listenerLimits.maxConnections {
                logger.warning(
                    "connection caps lowered to fit the open-file limit",
                    metadata: [
                        "open_files": "\(files.after)",
                        "max_connections": "\(fitted.listenerLimits.maxConnections)",
                        "max_connections_per_peer": "\(fitted.listenerLimits.maxConnectionsPerPeer)",
                    ])
            }
            configuration = fitted
        }
        do {
            try await Runner(configuration: configuration, logger: logger, metrics: metrics).run()
        } catch let error as UsageError {
            FileHandle.standardError.write(Data("tsidp: \(error.message)\n".utf8))
            exit(2)
        } catch {
            FileHandle.standardError.write(Data("tsidp: \(error)\n".utf8))
            exit(1)
        }
    }

    /// What the command line asks for.
    public enum ParseOutcome: Equatable {
        case run(Configuration)
        case exit(status: Int32, output: String, toStandardError: Bool)
    }

    /// Parses `arguments` without side effects (tests call this directly).
    public static func parse(arguments: [String], environment: [String: String]) -> ParseOutcome {
        let command: TsidpCommand
        do {
            let normalized = try GoFlags.normalize(arguments)
            let parsed = try TsidpCommand.parseAsRoot(normalized)
            guard let ours = parsed as? TsidpCommand else {
                // `--help` and `help` parse into the library's own help command.
                return .exit(status: 0, output: TsidpCommand.helpMessage(), toStandardError: false)
            }
            command = ours
        } catch let error as UsageError {
            return .exit(status: 2, output: "tsidp: \(error.message)", toStandardError: true)
        } catch {
            let code = TsidpCommand.exitCode(for: error)
            if code == .success {
                return .exit(status: 0, output: TsidpCommand.fullMessage(for: error), toStandardError: false)
            }
            let message =
                TsidpCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
            return .exit(status: 2, output: "tsidp: \(message) (see tsidp --help)", toStandardError: true)
        }
        do {
            return .run(try Configuration.resolve(command, environment: environment))
        } catch {
            return .exit(status: 2, output: "tsidp: \(error)", toStandardError: true)
        }
    }

    static func makeLogger(level: Logger.Level, format: LogFormat = .text) -> Logger {
        // Lines logged while a request is answered carry its `request_id`.
        LoggingSystem.bootstrap(
            { label, provider in
                switch format {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    // Every value in every line is escaped: no request can forge a log line.
                    return EscapingLogHandler(wrapping: handler)
                case .json:
                    var handler = JSONLogHandler(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    return handler
                }
            }, metadataProvider: RequestLog.metadataProvider)
        var logger = Logger(label: "tsidp")
        logger.logLevel = level
        return logger
    }
}

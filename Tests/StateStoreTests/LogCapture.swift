import Logging
import Synchronization

/// Collects the lines logged through ``logger`` as `"<level> <message>"`.
final class LogCapture: Sendable {
    private let collected = Mutex<[String]>([])

    /// A logger, at debug level, whose every line lands here.
    var logger: Logger {
        var logger = Logger(label: "test") { _ in Handler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    /// Every line so far.
    var lines: [String] { collected.withLock { $0 } }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.collected.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }
}

import Logging
import Synchronization

/// Standard-error logging at the level it is given, except for the one error Hummingbird logs
/// when a server task is cancelled (`Waiting on child channel: CancellationError()`): the benchmark
/// stops each scenario's server by cancelling it, so that line would appear after every scenario
/// without meaning anything went wrong. Everything else passes through unchanged.
struct BenchmarkLogHandler: LogHandler {
    /// Set while ``TestServer/stop()`` cancels a server.
    static let stopping = Atomic<Bool>(false)

    private var inner: StreamLogHandler

    init(label: String) {
        inner = StreamLogHandler.standardError(label: label)
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        if Self.stopping.load(ordering: .relaxed), event.message.description.hasPrefix("Waiting on child channel") {
            return
        }
        inner.log(event: event)
    }
}

import Logging

/// A log handler that escapes the message and every metadata value (see ``LogEscape``) before
/// handing the line to another handler, so that no value can break a log line in two.
///
/// The handler's own metadata and its metadata provider are kept here, not in the wrapped
/// handler, so that they are escaped too; an attached error becomes the escaped `error.message`
/// and `error.type` metadata.
public struct EscapingLogHandler: LogHandler {
    private var inner: any LogHandler
    /// The handler's own metadata (escaped when a line is logged).
    public var metadata: Logger.Metadata = [:]
    /// Contextual metadata (escaped when a line is logged).
    public var metadataProvider: Logger.MetadataProvider?

    /// Escapes what reaches `inner`.
    public init(wrapping inner: any LogHandler) {
        var inner = inner
        self.metadata = inner.metadata
        self.metadataProvider = inner.metadataProvider
        inner.metadata = [:]
        // Only a handler that supports providers may be given one (even nil) without a warning.
        if inner.metadataProvider != nil { inner.metadataProvider = nil }
        self.inner = inner
    }

    /// The wrapped handler's level.
    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    /// One entry of the handler's own metadata.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Hands `event` to the wrapped handler with its message and all metadata escaped.
    public func log(event: LogEvent) {
        let merged = LogEventMetadata.merged(metadata, provider: metadataProvider, event: event)
        var escaped: Logger.Metadata = [:]
        for (key, value) in merged { escaped[LogEscape.escape(key)] = LogEscape.escape(value) }
        var event = event
        event.message = Logger.Message(stringLiteral: LogEscape.escape(event.message.description))
        event.metadata = escaped
        event.error = nil
        inner.log(event: event)
    }
}

/// The metadata of one log line as tsidp's handlers write it: the handler's own, then the
/// metadata provider's, then the line's (later ones win), and an attached error as
/// `error.message` and `error.type`.
enum LogEventMetadata {
    static func merged(
        _ own: Logger.Metadata, provider: Logger.MetadataProvider?, event: LogEvent
    ) -> Logger.Metadata {
        var merged = own
        if let provided = provider?.get() { merged.merge(provided) { $1 } }
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        return merged
    }
}

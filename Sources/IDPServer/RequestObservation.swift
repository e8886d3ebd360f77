import HTTPTypes
import Hummingbird
import Logging
import Synchronization
import Telemetry

/// The request a task is answering, for log lines.
///
/// Every request gets an ID (32 hex digits, unique within the process) that is returned to the
/// caller in `X-Request-Id` and added as `request_id` to every line logged while the request is
/// answered, whichever part of tsidp logs it (``metadataProvider``). An operator given the header
/// by a user or a proxy's log finds the request's lines with it.
public enum RequestLog {
    /// The ID of the request the current task answers, if any.
    @TaskLocal public static var id: String?

    /// A random prefix for this process, so that IDs from two runs do not collide.
    private static let prefix = UInt64.random(in: .min ... .max)
    /// Counts requests; the low half of each ID.
    private static let counter = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    /// A new request ID: 32 lowercase hex digits (the process prefix, then a counter), always
    /// zero-padded to that length.
    static func nextID() -> String {
        let low = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return hex(prefix) + hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Adds `request_id` to log lines written while a request is answered; install it with
    /// `LoggingSystem.bootstrap(_:metadataProvider:)`.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let id = RequestLog.id else { return [:] }
        return ["request_id": .string(id)]
    }
}

/// The outermost middleware of every listener: gives the request its ID, counts it by route and
/// status, times it, and writes the access line (at debug level: method, route template, status,
/// milliseconds; never the path or query, which can hold codes and tokens).
struct RequestObservationMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext
    let metrics: TsidpMetrics
    let listener: TsidpMetrics.ListenerKind
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        // Not `context.id`: that reads the logger's metadata, which a logger that keeps none
        // (a no-op handler) does not have.
        let id = RequestLog.nextID()
        let started = ContinuousClock.now
        metrics.requestsInFlight(1)
        defer { metrics.requestsInFlight(-1) }
        let outcome: Result<Response, any Error>
        do {
            outcome = .success(try await RequestLog.$id.withValue(id) { try await next(request, context) })
        } catch {
            outcome = .failure(error)
        }
        let elapsed = ContinuousClock.now - started
        let endpoint = context.endpointPath ?? "unmatched"
        let status: Int
        switch outcome {
        case .success(let response): status = response.status.code
        case .failure(let error as HTTPError): status = error.status.code
        case .failure: status = 500
        }
        metrics.request(listener: listener, endpoint: endpoint, status: status, duration: elapsed)
        if logger.logLevel <= .debug {
            let milliseconds =
                Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000
                + Double(elapsed.components.seconds) * 1000
            logger.debug(
                "request",
                metadata: [
                    "request_id": "\(id)", "method": "\(request.method.rawValue)", "endpoint": "\(endpoint)",
                    "status": "\(status)", "ms": "\(milliseconds)", "listener": "\(listener.rawValue)",
                ])
        }
        var response = try outcome.get()
        response.headers[.xRequestID] = id
        return response
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-Id")!
}

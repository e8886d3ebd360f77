import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// tsidp's Prometheus metrics: one registry per server, with every series tsidp exports created
/// here, its help text with it, so that `/metrics` names and explains each one.
///
/// Labels take values from small fixed sets (endpoint templates, grant types, OAuth error codes,
/// status codes), never from request data, so that no caller can grow the number of series.
/// Recording is a lock and a dictionary lookup at most; nothing here allocates per request once
/// a series exists.
public final class TsidpMetrics: Sendable {
    /// The registry `/metrics` renders (``render()``).
    public let registry: PrometheusCollectorRegistry

    /// Where an HTTP request arrived.
    public enum ListenerKind: String, Sendable {
        /// The listeners tailnet users and relying parties reach (and a reverse proxy's).
        case tailnet
        /// The operator's `--local-port` listener.
        case local
    }

    /// The kind of `/authorize` outcome a sign-in attempt had.
    public enum LoginResult: String, Sendable, CaseIterable {
        /// An authorization code was issued.
        case issued
        /// The consent page was shown (the person has not answered yet).
        case consentShown = "consent_shown"
        /// The person declined on the consent page.
        case declined
        /// WhoIs did not name a user for the device (not on the tailnet, tagged, or tsidp's own).
        case unknownDevice = "unknown_device"
        /// tailscaled could not be asked.
        case unavailable
        /// The request was refused for another reason (bad client, redirect URI or parameters).
        case refused
    }

    /// The outcome of a WhoIs call.
    public enum WhoIsResult: String, Sendable {
        case found
        case notFound = "not_found"
        case failed
    }

    private struct RequestKey: Hashable {
        var listener: ListenerKind
        var endpoint: String
        var status: Int
    }

    private struct TokenErrorKey: Hashable {
        var grant: String
        var error: String
    }

    private let requests = NIOLockedValueBox([RequestKey: Counter]())
    private let durations = NIOLockedValueBox([String: DurationHistogram]())
    private let tokensIssued = NIOLockedValueBox([String: Counter]())
    private let tokenErrors = NIOLockedValueBox([TokenErrorKey: Counter]())
    private let logins: [LoginResult: Counter]
    private let whoIs: [WhoIsResult: DurationHistogram]
    private let inFlight: Gauge
    private let inFlightCount = NIOLockedValueBox(0)
    private let storeWrites: DurationHistogram
    private let storeWriteFailures: Counter
    private let refreshFamilies: Gauge
    private let accessTokens: Gauge
    private let clients: Gauge
    private let residentMemory: Gauge
    private let openFileDescriptors: Gauge
    private let cpuSeconds: Gauge

    /// Durations from half a millisecond (a WhoIs on loopback, a discovery request) to ten
    /// seconds (a slow tailscaled, a Kubernetes API server that answers late).
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// - Parameter version: reported by `tsidp_build_info`.
    public init(version: String = "unknown") {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        registry.makeGauge(
            descriptor: Self.descriptor(
                "tsidp_build_info", "Always 1; the label carries the version of the running tsidp."),
            labels: [("version", version)]
        ).set(Int64(1))
        registry.makeGauge(
            descriptor: Self.descriptor(
                "tsidp_start_time_seconds", "When this tsidp process started, in seconds since the Unix epoch.")
        ).set(Date().timeIntervalSince1970)
        var logins: [LoginResult: Counter] = [:]
        for result in LoginResult.allCases {
            logins[result] = registry.makeCounter(
                descriptor: Self.descriptor(
                    "tsidp_logins_total", "Sign-in attempts at /authorize and the consent page, by outcome."),
                labels: [("result", result.rawValue)])
        }
        self.logins = logins
        var whoIs: [WhoIsResult: DurationHistogram] = [:]
        for result in [WhoIsResult.found, .notFound, .failed] {
            whoIs[result] = registry.makeDurationHistogram(
                descriptor: Self.descriptor(
                    "tsidp_whois_duration_seconds", "Time taken by tailscaled's LocalAPI WhoIs, by outcome."),
                labels: [("result", result.rawValue)], buckets: Self.durationBuckets)
        }
        self.whoIs = whoIs
        inFlight = registry.makeGauge(
            descriptor: Self.descriptor(
                "tsidp_http_requests_in_flight", "HTTP requests being answered now, on every listener."))
        storeWrites = registry.makeDurationHistogram(
            descriptor: Self.descriptor(
                "tsidp_state_write_duration_seconds",
                "Time taken by each write to the state store (directory or Kubernetes Secret), failed or not."),
            buckets: Self.durationBuckets)
        storeWriteFailures = registry.makeCounter(
            descriptor: Self.descriptor(
                "tsidp_state_write_failures_total",
                "Writes to the state store that failed (the requests that caused them were refused)."))
        refreshFamilies = registry.makeGauge(
            descriptor: Self.descriptor(
                "tsidp_refresh_families", "Live logins: refresh-token families that are neither expired nor revoked."))
        accessTokens = registry.makeGauge(
            descriptor: Self.descriptor("tsidp_access_tokens", "Access tokens issued and not yet expired or revoked."))
        clients = registry.makeGauge(descriptor: Self.descriptor("tsidp_clients", "Registered clients."))
        residentMemory = registry.makeGauge(
            descriptor: Self.descriptor(
                "process_resident_memory_bytes", "Resident memory size of the tsidp process in bytes."))
        openFileDescriptors = registry.makeGauge(
            descriptor: Self.descriptor("process_open_fds", "Open file descriptors of the tsidp process."))
        cpuSeconds = registry.makeGauge(
            descriptor: Self.descriptor(
                "process_cpu_seconds_total", "User and system CPU time used by the tsidp process, in seconds."))
    }

    /// A series name with its help text (no namespace or unit added: `name` is whole).
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    // MARK: Recording

    /// One answered HTTP request. `endpoint` is the route template (`/clients/:id`), or
    /// `unmatched` for a path no route serves.
    public func request(listener: ListenerKind, endpoint: String, status: Int, duration: Duration) {
        let key = RequestKey(listener: listener, endpoint: endpoint, status: status)
        let counter = requests.withLockedValue { cache in
            if let counter = cache[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: Self.descriptor(
                    "tsidp_http_requests_total", "HTTP requests answered, by listener, route and status code."),
                labels: [("listener", listener.rawValue), ("endpoint", endpoint), ("status", String(status))])
            cache[key] = counter
            return counter
        }
        counter.increment()
        let histogram = durations.withLockedValue { cache in
            if let histogram = cache[endpoint] { return histogram }
            let histogram = registry.makeDurationHistogram(
                descriptor: Self.descriptor(
                    "tsidp_http_request_duration_seconds",
                    "Time from a request's arrival at the router to its response, by route."),
                labels: [("endpoint", endpoint)], buckets: Self.durationBuckets)
            cache[endpoint] = histogram
            return histogram
        }
        histogram.record(duration)
    }

    /// A request started (`+1`) or finished (`-1`).
    public func requestsInFlight(_ delta: Int) {
        let now = inFlightCount.withLockedValue { count in
            count += delta
            return count
        }
        inFlight.set(Int64(now))
    }

    /// HTTP requests being answered now.
    public var requestsInFlight: Int { inFlightCount.withLockedValue { $0 } }

    /// One sign-in attempt's outcome.
    public func login(_ result: LoginResult) {
        logins[result]?.increment()
    }

    /// The token endpoint issued tokens for `grantType` (``grantLabel(_:)``).
    public func tokenIssued(grantType: String) {
        counter(in: tokensIssued, key: grantType) {
            registry.makeCounter(
                descriptor: Self.descriptor(
                    "tsidp_tokens_issued_total", "Successful token endpoint answers, by grant type."),
                labels: [("grant_type", grantType)])
        }.increment()
    }

    /// The token endpoint refused a request for `grantType` with OAuth error `error`.
    public func tokenRefused(grantType: String, error: String) {
        let key = TokenErrorKey(grant: grantType, error: error)
        counter(in: tokenErrors, key: key) {
            registry.makeCounter(
                descriptor: Self.descriptor(
                    "tsidp_token_errors_total", "Refused token endpoint requests, by grant type and OAuth error code."),
                labels: [("grant_type", grantType), ("error", error)])
        }.increment()
    }

    /// The label for a `grant_type` value: one of the grants tsidp knows, or `other`.
    public static func grantLabel(_ grantType: String?) -> String {
        switch grantType {
        case "authorization_code", "refresh_token": grantType ?? "other"
        case "urn:ietf:params:oauth:grant-type:token-exchange": "token_exchange"
        case .none: "none"
        default: "other"
        }
    }

    /// One WhoIs call and how long it took.
    public func whoIs(_ result: WhoIsResult, duration: Duration) {
        whoIs[result]?.record(duration)
    }

    /// One state store write and how long it took.
    public func stateWrite(duration: Duration, failed: Bool) {
        storeWrites.record(duration)
        if failed { storeWriteFailures.increment() }
    }

    /// The sizes that `/metrics` reports as gauges, read when it is scraped.
    public struct Sizes: Sendable {
        public var refreshFamilies: Int
        public var accessTokens: Int
        public var clients: Int
        public init(refreshFamilies: Int, accessTokens: Int, clients: Int) {
            self.refreshFamilies = refreshFamilies
            self.accessTokens = accessTokens
            self.clients = clients
        }
    }

    // MARK: Rendering

    /// The exposition text (Prometheus text format 0.0.4) with `sizes` and the process's own
    /// figures brought up to date first.
    public func render(sizes: Sizes?) -> [UInt8] {
        if let sizes {
            refreshFamilies.set(Double(sizes.refreshFamilies))
            accessTokens.set(Double(sizes.accessTokens))
            clients.set(Double(sizes.clients))
        }
        let process = ProcessFigures.read()
        if let rss = process.residentBytes { residentMemory.set(Double(rss)) }
        if let fds = process.openFileDescriptors { openFileDescriptors.set(Double(fds)) }
        if let cpu = process.cpuSeconds { cpuSeconds.set(cpu) }
        return registry.emitToBuffer()
    }

    private func counter<Key: Hashable>(
        in box: NIOLockedValueBox<[Key: Counter]>, key: Key, make: () -> Counter
    ) -> Counter {
        box.withLockedValue { cache in
            if let counter = cache[key] { return counter }
            let counter = make()
            cache[key] = counter
            return counter
        }
    }
}

/// Figures of the running process, read from `/proc/self` (absent where there is none).
struct ProcessFigures {
    var residentBytes: Int?
    var openFileDescriptors: Int?
    var cpuSeconds: Double?

    static func read() -> ProcessFigures {
        var figures = ProcessFigures()
        #if os(Linux)
            let page = sysconf(Int32(_SC_PAGESIZE))
            if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
                let fields = statm.split(separator: " ")
                if fields.count > 1, let pages = Int(fields[1]) { figures.residentBytes = pages * page }
            }
            if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
                figures.openFileDescriptors = entries.count
            }
            // Fields 14 and 15 of /proc/self/stat (utime, stime) in clock ticks; the command name
            // before them is in parentheses and may hold spaces, so count from its closing one.
            if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            {
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 {
                    figures.cpuSeconds = (user + system) / ticks
                }
            }
        #endif
        return figures
    }
}

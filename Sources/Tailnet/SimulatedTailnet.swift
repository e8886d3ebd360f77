import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// An in-process stand-in for tailscaled: serves the LocalAPI (`whois`, `status`) on a private
/// unix socket so that `--dev` runs the real ``LocalAPIClient``.
///
/// Address mapping, as a tailnet maps addresses to nodes:
/// - `127.0.0.N` gets identity N (1-based); any other loopback address gets identity 1;
/// - a `null` identity is an address the tailnet does not know (WhoIs answers 404);
/// - every address in an identity's `Node.Addresses` gets that identity;
/// - anything else is unknown (404 `no match for IP:port`).
///
/// The server enforces what tailscaled enforces: `Host: local-tailscaled.sock` and no
/// `Origin`/`Referer`, so a client that gets those wrong fails here too.
public final class SimulatedTailnet: Sendable {
    /// Where the LocalAPI socket is.
    public let socketPath: String
    /// The name tsidp's own node has on this simulated tailnet.
    public let selfDNSName: String
    /// The `type=pair` body served by `cert/<selfDNSName>`; without one, the tailnet has HTTPS off.
    public let certificatePair: String?
    private let identities: Mutex<[WhoIsResponse?]>

    public init(
        socketPath: String, identities: [WhoIsResponse?], selfDNSName: String = "idp.example-tailnet.ts.net.",
        certificatePair: String? = nil
    ) {
        self.socketPath = socketPath
        self.identities = Mutex(identities)
        self.selfDNSName = selfDNSName
        self.certificatePair = certificatePair
    }

    /// Replaces the identities (a node leaving, a profile or grant change).
    public func setIdentities(_ newValue: [WhoIsResponse?]) {
        identities.withLock { $0 = newValue }
    }

    /// The identities currently served.
    public var currentIdentities: [WhoIsResponse?] {
        identities.withLock { $0 }
    }

    /// The identity a caller at `address` (`IP`, `IP:port` or `[IPv6]:port`) resolves to.
    public func resolve(address: String) -> WhoIsResponse? {
        guard let ip = Self.hostPart(of: address) else { return nil }
        let all = currentIdentities
        guard !all.isEmpty else { return nil }
        for identity in all.compactMap({ $0 })
        where identity.node.addresses.contains(where: { Self.parsePrefixAddress($0) == ip }) {
            return identity
        }
        if let octets = Self.ipv4Octets(ip), octets[0] == 127 {
            let n = Int(octets[3])
            if octets[1] == 0, octets[2] == 0, n >= 1, n <= all.count {
                return all[n - 1]
            }
            return all[0]
        }
        if ip == "::1" { return all[0] }
        return nil
    }

    /// The HTTP application serving the LocalAPI on ``socketPath``.
    public func application(logger: Logger, onRunning: @escaping @Sendable () async -> Void = {})
        -> some ApplicationProtocol
    {
        let router = Router()
        router.middlewares.add(LocalAPIGuard())
        router.get("/localapi/v0/whois") { request, _ -> Response in
            guard let addr = request.uri.queryParameters.get("addr"), !addr.isEmpty else {
                return Self.text(.badRequest, "missing 'addr' parameter")
            }
            guard Self.hostPart(of: addr) != nil else {
                return Self.text(.badRequest, "invalid 'addr' parameter")
            }
            guard let identity = self.resolve(address: addr) else {
                return Self.text(.notFound, "no match for IP:port")
            }
            return Self.json(identity)
        }
        router.get("/localapi/v0/status") { _, _ -> Response in
            let name = self.selfDNSName
            let status = Status(
                backendState: "Running", version: "simulated",
                tailscaleIPs: ["127.0.0.1"],
                selfNode: SelfStatus(
                    id: "nSIMULATED", hostName: String(name.split(separator: ".").first ?? "idp"), dnsName: name,
                    tailscaleIPs: ["127.0.0.1"]),
                certDomains: self.certificatePair == nil ? [] : [String(name.dropLast())],
                magicDNSSuffix: "example-tailnet.ts.net")
            return Self.json(status)
        }
        router.get("/localapi/v0/cert/:domain") { request, context -> Response in
            let domain = context.parameters.get("domain") ?? ""
            guard let pair = self.certificatePair, domain == String(self.selfDNSName.dropLast()) else {
                return Self.text(.internalServerError, "invalid domain \"\(domain)\"")
            }
            guard request.uri.queryParameters.get("type") == "pair" else {
                return Self.text(.badRequest, "unsupported type")
            }
            return Self.text(.ok, pair)
        }
        var logger = logger
        logger[metadataKey: "component"] = "simulated-tailnet"
        return Application(
            router: router,
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: nil),
            onServerRunning: { _ in await onRunning() },
            logger: logger)
    }

    static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        let body = message.hasSuffix("\n") ? message : message + "\n"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The IP of `IP`, `IP:port`, `[v6]:port`, as text (IPv4-mapped IPv6 unmapped), or nil.
    static func hostPart(of address: String) -> String? {
        var host = address
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if host.filter({ $0 == ":" }).count == 1 {
            host = String(host.split(separator: ":", omittingEmptySubsequences: false)[0])
        }
        if host.lowercased().hasPrefix("::ffff:"), ipv4Octets(String(host.dropFirst(7))) != nil {
            host = String(host.dropFirst(7))
        }
        if ipv4Octets(host) != nil { return host }
        if host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) { return host.lowercased() }
        return nil
    }

    /// The address part of a prefix such as `100.64.0.1/32`.
    public static func parsePrefixAddress(_ prefix: String) -> String? {
        let address = String(prefix.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)[0])
        return hostPart(of: address.contains(":") ? "[\(address)]" : address)
    }

    static func ipv4Octets(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isNumber), let value = UInt8(part) else {
                return nil
            }
            octets.append(value)
        }
        return octets
    }
}

/// Rejects requests tailscaled would reject: a Host other than `local-tailscaled.sock` (or none),
/// and any `Origin` or `Referer`.
struct LocalAPIGuard<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let host = request.head.authority ?? ""
        if !(host.isEmpty || host == LocalAPIClient.hostHeader)
            || request.headers[.origin] != nil || request.headers[.referer] != nil
        {
            return SimulatedTailnet.text(.forbidden, "invalid localapi request")
        }
        return try await next(request, context)
    }
}

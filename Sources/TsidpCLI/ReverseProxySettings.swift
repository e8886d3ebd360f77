import Foundation
import IDPServer
import Logging

/// How tsidp is reached through a reverse proxy: the issuer it announces (`--server-url`), the
/// proxies whose `X-Forwarded-For` it believes (`--trusted-proxy`), and the sockets a proxy on
/// the same host connects to (`--unix-socket`, sockets passed by systemd).
public struct ReverseProxySettings: Sendable, Equatable {
    /// `--server-url`: the issuer, without a trailing slash; nil: the mode's own issuer.
    public var serverURL: String?
    /// `--trusted-proxy`: the connections whose `X-Forwarded-For` names the caller.
    public var forwardedTrust: ForwardedTrust = .nobody
    /// `--unix-socket`: a plain-HTTP listener on this unix-domain socket path.
    public var unixSocketPath: String?
    /// Listening sockets passed by the service manager (`LISTEN_FDS`); set at start by
    /// ``TsidpMain``, which takes them from the environment.
    public var inheritedSockets: [InheritedSocket] = []

    public init() {}

    /// How many listeners a proxy on this host connects to.
    public var listenerCount: Int { (unixSocketPath == nil ? 0 : 1) + inheritedSockets.count }

    /// Logs the trusted proxies, and a warning for a setting that cannot do what it was given
    /// for: `unix` trusted with no unix socket to serve, or a unix socket whose callers nobody can
    /// identify.
    func logTrust(logger: Logger) {
        if !forwardedTrust.trustsNobody {
            logger.info(
                "X-Forwarded-For names the caller on connections from trusted proxies",
                metadata: ["trusted_proxies": "\(forwardedTrust)"])
        }
        let servesUnixSocket =
            unixSocketPath != nil
            || inheritedSockets.contains { if case .unix = $0.address { true } else { false } }
        if forwardedTrust.trustsUnixSocketPeers && !servesUnixSocket {
            logger.warning("--trusted-proxy unix has no effect: tsidp listens on no unix socket")
        }
        if servesUnixSocket && !forwardedTrust.trustsUnixSocketPeers {
            logger.warning(
                "requests on the unix socket have no caller identity, so nobody can sign in through it; add --trusted-proxy unix if a reverse proxy connects there"
            )
        }
    }

    /// Resolves the settings from flags and environment variables (a flag wins).
    ///
    /// - Throws: ``UsageError`` naming the bad value.
    ///
    /// - Important: With `embedded`, a range that covers a loopback address is refused: the
    ///   embedded node hands every tailnet connection to tsidp from a loopback address, so
    ///   trusting one would let any device name itself as any other.
    static func resolve(_ command: TsidpCommand, environment: [String: String], dev: Bool, embedded: Bool)
        throws(UsageError) -> ReverseProxySettings
    {
        func envString(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        var settings = ReverseProxySettings()
        if let url = command.serverURL {
            settings.serverURL = try serverURL(url, source: "--server-url", dev: dev)
        } else if let url = envString("TSIDP_SERVER_URL") {
            settings.serverURL = try serverURL(url, source: "TSIDP_SERVER_URL", dev: dev)
        }
        let trustSource = command.trustedProxies.isEmpty ? "TSIDP_TRUSTED_PROXIES" : "--trusted-proxy"
        if !command.trustedProxies.isEmpty {
            settings.forwardedTrust = try trustedProxies(command.trustedProxies, source: trustSource)
        } else if let list = envString("TSIDP_TRUSTED_PROXIES") {
            settings.forwardedTrust = try trustedProxies([list], source: trustSource)
        }
        if embedded,
            let covering = settings.forwardedTrust.networks.first(where: { network in
                IPNetwork.loopback.contains { $0.overlaps(network) }
            })
        {
            throw UsageError(
                "\(trustSource) \(covering) covers loopback addresses, from which the embedded node hands tsidp every tailnet connection (any device could then choose its identity): let the proxy use --unix-socket with --trusted-proxy unix"
            )
        }
        if let path = command.unixSocket {
            settings.unixSocketPath = try unixSocketPath(path, source: "--unix-socket")
        } else if let path = envString("TSIDP_UNIX_SOCKET") {
            settings.unixSocketPath = try unixSocketPath(path, source: "TSIDP_UNIX_SOCKET")
        }
        return settings
    }

    /// A valid issuer URL from `text`: absolute, `https` (or `http` for a loopback host, or any
    /// host with `--dev`), a host and an optional port, nothing else; one trailing `/` is dropped.
    static func serverURL(_ text: String, source: String, dev: Bool) throws(UsageError) -> String {
        func refused(_ reason: String) -> UsageError {
            UsageError("invalid \(source) \"\(LogEscape.escape(text))\": \(reason)")
        }
        var url = text
        if url.hasSuffix("/") { url.removeLast() }
        if url.contains("?") { throw refused("it must not have a query") }
        if url.contains("#") { throw refused("it must not have a fragment") }
        if url.contains("%") { throw refused("write the host name without percent-encoding") }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            url.contains("://"), var host = components.host, !host.isEmpty
        else {
            throw refused("use an absolute URL such as https://id.example.com")
        }
        guard scheme == "https" || scheme == "http" else {
            throw refused("use an https URL such as https://id.example.com")
        }
        guard components.user == nil, components.password == nil else {
            throw refused("it must not carry a user name or password")
        }
        guard components.path.isEmpty else {
            throw refused("it must not have a path: tsidp serves its endpoints at the root of its host")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw refused("the port is out of range: use 1 to 65535")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let address = IPAddress(parsing: host)
        let isName =
            !host.hasPrefix(".") && !host.hasPrefix("-")
            && host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
        guard address != nil || isName else {
            throw refused("\"\(LogEscape.escape(host))\" is not a host name or an IP address")
        }
        if scheme == "http", !dev, !isLoopback(host: host, address: address) {
            throw refused(
                "http is only allowed for a loopback host (localhost, 127.0.0.1, [::1]) or with --dev; use https")
        }
        return url
    }

    static func isLoopback(host: String, address: IPAddress?) -> Bool {
        if host.lowercased() == "localhost" { return true }
        guard let address else { return false }
        return IPNetwork.loopback.contains { $0.contains(address) }
    }

    /// The trust from `--trusted-proxy` values (each a comma-separated list of CIDR ranges, bare
    /// addresses and `unix`).
    static func trustedProxies(_ values: [String], source: String) throws(UsageError) -> ForwardedTrust {
        var networks: [IPNetwork] = []
        var unix = false
        for value in values {
            let items = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            if items.isEmpty {
                throw UsageError(
                    "\(source) is empty: name the proxy's addresses (such as 127.0.0.1/32 or fd7a:115c:a1e0::/48), or unix"
                )
            }
            for item in items {
                if item == "unix" {
                    unix = true
                    continue
                }
                let network: IPNetwork
                do {
                    network = try IPNetwork(parsing: item)
                } catch .malformed {
                    throw UsageError(
                        "invalid \(source) \"\(LogEscape.escape(item))\": use a CIDR range such as 10.0.0.0/8, an IP address, or unix"
                    )
                } catch {
                    throw UsageError("invalid \(source) \"\(LogEscape.escape(item))\": it \(error)")
                }
                if network.prefixLength == 0 {
                    throw UsageError(
                        "\(source) \(network) would let every peer choose which user it is: name the proxy's own addresses"
                    )
                }
                if !networks.contains(network) { networks.append(network) }
            }
        }
        return ForwardedTrust(networks: networks, unixSocketPeers: unix)
    }

    /// A usable unix-domain socket path.
    static func unixSocketPath(_ path: String, source: String) throws(UsageError) -> String {
        guard !path.isEmpty else {
            throw UsageError("\(source) is empty: name the socket's path, e.g. /run/tsidp/tsidp.sock")
        }
        guard !path.utf8.contains(0), !path.hasSuffix("/") else {
            throw UsageError("invalid \(source) \"\(LogEscape.escape(path))\": name a file, not a directory")
        }
        // sockaddr_un holds 108 bytes, the terminating NUL included.
        guard path.utf8.count <= 107 else {
            throw UsageError(
                "\(source) \"\(LogEscape.escape(path))\" is too long for a unix socket: use a path of at most 107 bytes"
            )
        }
        return path
    }
}

extension Configuration {
    /// The issuer: `--server-url` when given, otherwise `fallback`, the mode's own
    /// (`http://localhost:<port>` with `--dev`, `https://<node name>` on a tailnet).
    ///
    /// - Important: The issuer, and every endpoint URL derived from it, comes from configuration
    ///   only: never from `Host`, `X-Forwarded-Host` or `X-Forwarded-Proto` (mix-up attacks).
    public func issuer(default fallback: String) -> String {
        reverseProxy.serverURL ?? fallback
    }

    /// The trusted proxies (`--trusted-proxy`) of the tailnet-side listeners.
    public var forwardedTrust: ForwardedTrust { reverseProxy.forwardedTrust }
}

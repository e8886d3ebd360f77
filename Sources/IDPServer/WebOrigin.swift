import Foundation

/// A web origin (RFC 6454): scheme, host and port, compared exactly.
public struct WebOrigin: Sendable, Hashable, CustomStringConvertible {
    /// `http` or `https`.
    public let scheme: String
    /// The host name in lower case; an IPv6 address without brackets.
    public let host: String
    /// The port, the scheme's default when none is written.
    public let port: Int

    /// An origin from its parts (`host` in any case, IPv6 with or without brackets).
    public init?(scheme: String, host: String, port: Int?) {
        let scheme = scheme.lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        let port = port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else { return nil }
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// The origin of an absolute `http` or `https` URL, such as the issuer.
    public init?(url: String) {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            let host = components.host
        else { return nil }
        self.init(scheme: scheme, host: host, port: components.port)
    }

    /// The origin an `Origin` header names: exactly `scheme://host[:port]`. `null`, and values
    /// with user information, a path, a query or a fragment, name no origin.
    public init?(header: String) {
        guard let components = URLComponents(string: header), let scheme = components.scheme,
            let host = components.host, components.user == nil, components.password == nil,
            components.path.isEmpty, components.query == nil, components.fragment == nil
        else { return nil }
        self.init(scheme: scheme, host: host, port: components.port)
    }

    /// `scheme://host:port` with the port always written.
    public var description: String {
        "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }
}

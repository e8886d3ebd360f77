import Foundation

/// What the server needs to know, read from the environment.
struct Configuration: Sendable {
    /// tsidp's issuer, e.g. `https://idp.example-tailnet.ts.net` (`TSIDP_ISSUER`).
    let issuer: String
    /// This server's MCP endpoint, e.g. `https://mcp.example-tailnet.ts.net/mcp` (`MCP_URL`). It is
    /// the resource the clients ask tsidp for, so it must be in every token's `aud`.
    let mcpURL: String
    /// This server's own tsidp client, registered with `"resources": [MCP_URL]`, for checking
    /// tokens that are not JWTs at `/introspect` (`MCP_CLIENT_ID`, `MCP_CLIENT_SECRET`; optional).
    let clientID: String?
    let clientSecret: String?
    /// Where to listen: `MCP_LISTEN` (`host:port`, e.g. `127.0.0.1:9000` behind `tailscale serve`),
    /// else the host and port of `MCP_URL`.
    let host: String
    let port: Int
    /// The path of the MCP endpoint, e.g. `/mcp`.
    let mcpPath: String

    /// RFC 9728: the metadata of `https://host/mcp` is at `https://host/.well-known/oauth-protected-resource/mcp`.
    var metadataPath: String { "/.well-known/oauth-protected-resource" + mcpPath }
    var metadataURL: String { origin + metadataPath }
    /// `scheme://host[:port]` of `MCP_URL`, which is also the `Origin` a browser would send.
    let origin: String
    /// The `Host` header that clients send for `MCP_URL`.
    let authority: String

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> Configuration
    {
        guard let issuer = environment["TSIDP_ISSUER"], URL(string: issuer)?.host != nil else {
            throw ConfigurationError("TSIDP_ISSUER is not set to a URL (tsidp's issuer)")
        }
        guard let mcpURL = environment["MCP_URL"], let url = URLComponents(string: mcpURL),
            let scheme = url.scheme, scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
        else {
            throw ConfigurationError("MCP_URL is not set to an http(s) URL (this server's MCP endpoint)")
        }
        let authority = url.port.map { "\(host):\($0)" } ?? host
        var listen = (host: host, port: url.port ?? (scheme == "https" ? 443 : 80))
        if let address = environment["MCP_LISTEN"], !address.isEmpty {
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...])
            else { throw ConfigurationError("MCP_LISTEN is not host:port") }
            listen = (String(address[..<colon]), port)
        }
        return Configuration(
            issuer: issuer,
            mcpURL: mcpURL,
            clientID: environment["MCP_CLIENT_ID"].flatMap { $0.isEmpty ? nil : $0 },
            clientSecret: environment["MCP_CLIENT_SECRET"].flatMap { $0.isEmpty ? nil : $0 },
            host: listen.host,
            port: listen.port,
            mcpPath: url.path.isEmpty ? "/" : url.path,
            origin: "\(scheme)://\(authority)",
            authority: authority
        )
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

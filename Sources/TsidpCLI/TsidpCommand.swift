import ArgumentParser

@_exported import enum IDPServer.TsidpVersion

/// `tsidp`: flags as parsed, before environment fallbacks and defaults are applied.
public struct TsidpCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tsidp",
        abstract: "An OpenID Connect identity provider for your tailnet.",
        discussion: """
            Users are identified by the Tailscale identity of the device their browser connects from;
            relying parties get standard OIDC tokens.

            Try it without a tailnet:   tsidp --dev   (then open http://localhost:8080/.well-known/openid-configuration)

            Every flag also takes Go's spellings: -port 443, -port=443, --funnel=false.
            Environment variables (a flag given on the command line wins):
              TSIDP_PORT, TSIDP_LOCAL_PORT, TSIDP_USE_LOCAL_TAILSCALED, TS_HOSTNAME, TS_STATE_DIR, TS_STATE,
              TSIDP_USE_FUNNEL, TSIDP_ENABLE_STS, TSIDP_LOG, TSIDP_DEBUG_ALL_REQUESTS, TSIDP_DEBUG_TSNET,
              TSIDP_IDLE_TIMEOUT, TSIDP_READ_HEADER_TIMEOUT, TSIDP_READ_BODY_TIMEOUT,
              TSIDP_MAX_CONNECTIONS_PER_PEER, TSIDP_MAX_CONNECTIONS,
              TSIDP_SERVER_URL, TSIDP_TRUSTED_PROXIES (comma-separated), TSIDP_UNIX_SOCKET,
              TSIDP_TAILSCALED, TS_AUTHKEY / TS_AUTH_KEY / TS_AUTHKEY_FILE, TS_ADVERTISE_TAGS, TSNET_FORCE_LOGIN,
              TS_TAILSCALED_EXTRA_ARGS (embedded node), TAILSCALE_USE_WIP_CODE=1 (required outside --dev).

            Behind a reverse proxy (docs/reverse-proxy.md): --server-url sets the issuer; the caller is
            the last X-Forwarded-For address, and only on connections from a --trusted-proxy. Sockets
            passed by systemd socket activation (LISTEN_FDS) are served like --unix-socket.
            """,
        version: TsidpVersion.current)

    @Flag(
        name: .customLong("verbose"), inversion: .prefixedNo,
        help: "Verbose logging (same as --log debug). (default: false)")
    public var verbose: Bool?

    // Numeric options (ports, caps, durations) take the next argument whatever it looks like, as
    // Go's flag package does for every flag with a value: `-local-port -1` is a value, not a flag.
    @Option(
        name: .customLong("port"), parsing: .unconditional,
        help: "Port to serve on. Env: TSIDP_PORT. (default: 443; 8080 with --dev)")
    public var port: Int?

    @Option(
        name: .customLong("local-port"), parsing: .unconditional,
        help:
            "Also serve plain HTTP on localhost:<port>, with operator rights; -1 turns it off. Env: TSIDP_LOCAL_PORT. (default: -1)"
    )
    public var localPort: Int?

    @Flag(
        name: .customLong("use-local-tailscaled"), inversion: .prefixedNo,
        help:
            "Use the host's tailscaled (at --socket) instead of an embedded node. Env: TSIDP_USE_LOCAL_TAILSCALED. (default: false)"
    )
    public var useLocalTailscaled: Bool?

    @Option(
        name: .customLong("socket"), help: "tailscaled's LocalAPI socket. (default: /var/run/tailscale/tailscaled.sock)"
    )
    public var socket: String?

    @Option(
        name: .customLong("tailscaled"),
        help:
            "Embedded mode: the tailscaled program tsidp runs for its node. Env: TSIDP_TAILSCALED. (default: tailscaled on PATH)"
    )
    public var tailscaled: String?

    @Option(
        name: .customLong("hostname"),
        help: "Node name on the tailnet: https://<hostname>.<tailnet>.ts.net. Env: TS_HOSTNAME. (default: idp)")
    public var hostname: String?

    @Option(
        name: .customLong("dir"),
        help:
            "State directory (keys, clients, node state). Env: TS_STATE_DIR. (default: none; ./tsidp-dev-state with --dev)"
    )
    public var dir: String?

    @Option(
        name: .customLong("state"),
        help:
            "Embedded node: tailscaled's state store, a file path or kube:<secret>. Env: TS_STATE. (default: none)")
    public var state: String?

    @Flag(
        name: .customLong("funnel"), inversion: .prefixedNo,
        help:
            "Expose discovery, JWKS, token, userinfo, introspection and revocation over Tailscale Funnel. Env: TSIDP_USE_FUNNEL. (default: false)"
    )
    public var funnel: Bool?

    @Flag(
        name: .customLong("enable-sts"), inversion: .prefixedNo,
        help: "Enable RFC 8693 token exchange. Env: TSIDP_ENABLE_STS. (default: false)")
    public var enableSTS: Bool?

    @Option(name: .customLong("log"), help: "Log level: debug, info, warn or error. Env: TSIDP_LOG. (default: info)")
    public var log: String?

    @Option(
        name: .customLong("log-format"),
        help: "Log line format: text, or json (one JSON object per line). Env: TSIDP_LOG_FORMAT. (default: text)")
    public var logFormat: String?

    @Flag(
        name: .customLong("allow-insecure-registration"), inversion: .prefixedNo,
        help: "Legacy flow: accept any client_id and identify the relying party by its node. (default: false)")
    public var allowInsecureRegistration: Bool?

    @Flag(
        name: .customLong("debug-all-requests"), inversion: .prefixedNo,
        help:
            "Log every request and response, with secrets, codes and tokens redacted. Env: TSIDP_DEBUG_ALL_REQUESTS. (default: false)"
    )
    public var debugAllRequests: Bool?

    @Flag(
        name: [.customLong("debug-tailscaled"), .customLong("debug-tsnet")], inversion: .prefixedNo,
        help: "Verbose logs from the tailnet layer. Env: TSIDP_DEBUG_TSNET. (default: false)")
    public var debugTailscaled: Bool?

    @Flag(
        name: .customLong("dev"), inversion: .prefixedNo,
        help:
            "Development mode: no Tailscale needed; a simulated tailnet on 127.0.0.1, plain HTTP. Not for production. (default: false)"
    )
    public var dev: Bool?

    @Option(
        name: .customLong("dev-identities"),
        help:
            "With --dev: JSON array of WhoIs documents; identity N answers callers from 127.0.0.N. (default: one built-in user, alice@example.com)"
    )
    public var devIdentities: String?

    @Option(
        name: .customLong("idle-timeout"), parsing: .unconditional,
        help:
            "Close a connection with no request in progress after this long (Go duration: 30s, 2m). Env: TSIDP_IDLE_TIMEOUT. (default: 30s)"
    )
    public var idleTimeout: String?

    @Option(
        name: .customLong("read-header-timeout"), parsing: .unconditional,
        help:
            "A request's headers must arrive within this long of its first byte, or 408. Env: TSIDP_READ_HEADER_TIMEOUT. (default: 10s)"
    )
    public var readHeaderTimeout: String?

    @Option(
        name: .customLong("read-body-timeout"), parsing: .unconditional,
        help:
            "A request's body must arrive within this long of its headers, or 408. Env: TSIDP_READ_BODY_TIMEOUT. (default: 10s)"
    )
    public var readBodyTimeout: String?

    @Option(
        name: .customLong("max-connections-per-peer"), parsing: .unconditional,
        help:
            "Open connections one peer address may hold per listener; more are closed at once. Env: TSIDP_MAX_CONNECTIONS_PER_PEER. (default: 64)"
    )
    public var maxConnectionsPerPeer: Int?

    @Option(
        name: .customLong("max-connections"), parsing: .unconditional,
        help:
            "Open connections in total, per listener group (tailnet, local); more are closed at once. Lowered to fit the open-file limit. Env: TSIDP_MAX_CONNECTIONS. (default: 4096)"
    )
    public var maxConnections: Int?

    @Option(
        name: .customLong("server-url"),
        help:
            "The issuer and base of every endpoint URL, e.g. https://id.example.com (http only for a loopback host or with --dev). Env: TSIDP_SERVER_URL. (default: the node's https://<name>; http://localhost:<port> with --dev)"
    )
    public var serverURL: String?

    @Option(
        name: .customLong("trusted-proxy"),
        help: ArgumentHelp(
            "A reverse proxy whose X-Forwarded-For names the caller: a CIDR range or address, or unix for every unix-socket connection; repeatable. Env: TSIDP_TRUSTED_PROXIES (comma-separated). (default: none)",
            valueName: "cidr|unix"))
    public var trustedProxies: [String] = []

    @Option(
        name: .customLong("unix-socket"),
        help:
            "Also serve plain HTTP on this unix socket (mode 0660), for a reverse proxy on this host. Env: TSIDP_UNIX_SOCKET. (default: none)"
    )
    public var unixSocket: String?

    public init() {}
}

import HTTPTypes
import Hummingbird
import OIDCProvider

/// What a Funnel caller (the public internet, marked by tailscaled's `Tailscale-Funnel-Request`
/// header) may reach: discovery, the JWKS, and the endpoints a relying party authenticates to
/// with its own credentials. Sign-in, consent, the user pages, client administration,
/// registration and health are for the tailnet only (reference B.1; THREATS "Funnel").
///
/// The header only ever takes rights away, so it is honoured on every listener, whoever sends it.
struct FunnelGate: RouterMiddleware {
    typealias Context = IDPRequestContext

    /// Paths a Funnel caller may use.
    static let open: Set<String> = [
        "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json",
        "/token", "/userinfo", "/introspect", "/revoke",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard IDPServer.isFunnel(request), !Self.open.contains(Self.normalized(request.uri.path)) else {
            return try await next(request, context)
        }
        let path = request.uri.path
        if path == "/logout" {
            return Responses.html(
                HTML.logoutErrorPage(
                    OAuthError(
                        .accessDenied, "Signing out is only possible from a device on the tailnet, not over Funnel.")
                ),
                status: .unauthorized)
        }
        if path == "/authorize" || path.hasPrefix("/authorize/") {
            return Responses.html(
                HTML.errorPage(
                    OAuthError(
                        .accessDenied, "Signing in is only possible from a device on the tailnet, not over Funnel.")),
                status: .unauthorized)
        }
        return Responses.error(OAuthError(.accessDenied, "not available over Funnel", status: 401))
    }

    /// The path without one trailing slash, as the router matches it.
    static func normalized(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }
}

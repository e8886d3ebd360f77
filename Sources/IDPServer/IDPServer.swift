import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import OIDCProvider
import Tailnet

/// The HTTP face of tsidp: routes, middleware and the translation between HTTP and the
/// ``Provider``.
public struct IDPServer: Sendable {
    /// Options that change how requests are answered.
    public struct Options: Sendable {
        /// Dump every request and response, with secrets redacted.
        public var debugAllRequests = false
        public init() {}
    }

    public let provider: Provider
    public let identity: CallerIdentity
    public let options: Options
    public let logger: Logger
    /// Readiness probe: answers whether the identity service can be reached.
    let readiness: @Sendable () async -> Bool
    /// Keys the CSRF tokens of the user pages; new at every start.
    let formKey = SymmetricKey(size: .bits256)

    public init(
        provider: Provider, identity: CallerIdentity, options: Options = Options(), logger: Logger,
        readiness: @escaping @Sendable () async -> Bool = { true }
    ) {
        self.provider = provider
        self.identity = identity
        self.options = options
        self.logger = logger
        self.readiness = readiness
    }

    /// The router of one listener.
    ///
    /// - Parameter forwardedTrust: the connections of the listener whose `X-Forwarded-For` names
    ///   the caller (see ``CallerAddress``). The `.local` listener never reads it: its callers
    ///   are the operator, not people.
    public func router(for listener: Listener, forwardedTrust: ForwardedTrust = .nobody) -> Router<IDPRequestContext> {
        let router = Router(context: IDPRequestContext.self)
        router.middlewares.add(
            RequestObservationMiddleware(
                metrics: provider.metrics, listener: listener == .local ? .local : .tailnet, logger: logger))
        router.middlewares.add(CallerAddressMiddleware(trust: listener == .local ? .nobody : forwardedTrust))
        if options.debugAllRequests {
            router.middlewares.add(DebugDumpMiddleware(logger: logger))
        }
        router.middlewares.add(SecurityHeadersMiddleware())
        router.middlewares.add(ErrorMiddleware(logger: logger))
        router.middlewares.add(FunnelGate())
        addDiscoveryRoutes(to: router)
        addOAuthRoutes(to: router)
        addClientRoutes(to: router, listener: listener)
        addConsentRoutes(to: router, listener: listener)
        addAdminUIRoutes(to: router, listener: listener)
        addUserPageRoutes(to: router, listener: listener)
        router.get("/healthz/live") { _, _ in Responses.text("ok\n") }
        if listener == .local {
            // Prometheus metrics: the operator's door only.
            router.get("/metrics") { _, _ -> Response in
                let text = provider.metrics.render(sizes: await provider.metricSizes())
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                return Response(
                    status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
            }
        }
        router.get("/healthz/ready") { _, _ -> Response in
            await readiness()
                ? Responses.text("ok\n") : Responses.text("identity service unreachable\n", status: .serviceUnavailable)
        }
        return router
    }

    /// Whether the request arrived over Tailscale Funnel (tailscaled marks it).
    static func isFunnel(_ request: Request) -> Bool {
        guard let name = HTTPField.Name("Tailscale-Funnel-Request") else { return false }
        return !(request.headers[name] ?? "").isEmpty
    }

    func addDiscoveryRoutes(to router: Router<IDPRequestContext>) {
        let discovery: @Sendable (Request, IDPRequestContext) async throws -> Response = { request, context in
            var legacyNode: Int64?
            if provider.configuration.allowInsecureRegistration, !Self.isFunnel(request) {
                legacyNode = try? await identity.identify(context.callerAddress).nodeID
            }
            var response = Responses.json(
                provider.discoveryDocument(includeRegistration: !Self.isFunnel(request), legacyNodeID: legacyNode))
            guard legacyNode == nil else {
                // A document naming the caller's node is not for other sites' scripts.
                response.headers[.cacheControl] = "private, no-cache"
                return response
            }
            response.headers[.cacheControl] = "public, max-age=300"
            return Self.withCORS(response, methods: "GET, OPTIONS")
        }
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
            router.get(RouterPath(path), use: discovery)
            router.on(RouterPath(path), method: .options) { _, _ in Self.preflight(methods: "GET, OPTIONS") }
        }
        router.get("/.well-known/jwks.json") { _, _ in
            var response = Responses.json(provider.keys.jwksDocument)
            response.headers[.cacheControl] = "public, max-age=\(provider.keys.policy.jwksMaxAge)"
            return Self.withCORS(response, methods: "GET, OPTIONS")
        }
        router.on("/.well-known/jwks.json", method: .options) { _, _ in Self.preflight(methods: "GET, OPTIONS") }
    }

    static func withCORS(_ response: Response, methods: String) -> Response {
        var response = response
        response.headers[.accessControlAllowOrigin] = "*"
        response.headers[.accessControlAllowMethods] = methods
        response.headers[.accessControlAllowHeaders] = "*"
        return response
    }

    static func preflight(methods: String) -> Response {
        var headers = HTTPFields()
        headers[.accessControlAllowOrigin] = "*"
        headers[.accessControlAllowMethods] = methods
        headers[.accessControlAllowHeaders] = "*"
        headers[.accessControlMaxAge] = "600"
        return Response(status: .noContent, headers: headers)
    }

    /// Reads a form body (`application/x-www-form-urlencoded`), bounded in size.
    static func readForm(_ request: inout Request, context: IDPRequestContext) async throws -> OAuthParameters {
        let type = (request.headers[.contentType] ?? "").lowercased()
        guard type.hasPrefix("application/x-www-form-urlencoded") else {
            throw OAuthError(.invalidRequest, "the body must be application/x-www-form-urlencoded")
        }
        let body = try await readBody(&request, context: context)
        return try OAuthParameters.parse(formEncoded: String(decoding: body.readableBytesView, as: UTF8.self))
    }

    static func readBody(_ request: inout Request, context: IDPRequestContext) async throws -> ByteBuffer {
        do {
            return try await request.collectBody(upTo: context.maxUploadSize)
        } catch {
            throw OAuthError(
                .invalidRequest, "the request body is larger than \(context.maxUploadSize / 1024) KiB", status: 413)
        }
    }

    /// The query string of `request` as parameters.
    static func query(_ request: Request) throws -> OAuthParameters {
        try OAuthParameters.parse(formEncoded: request.uri.query ?? "")
    }
}

/// Turns thrown errors into the right answers: OAuth errors as JSON, anything else as a logged
/// `server_error` without details.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as OAuthError {
            return Responses.error(error)
        } catch let error as HTTPError where error.status == .notFound {
            return Responses.error(OAuthError(.notFound, "no such endpoint", status: 404))
        } catch let error as HTTPError where error.status == .methodNotAllowed {
            return Responses.error(OAuthError(.invalidRequest, "method not allowed", status: 405))
        } catch let error as HTTPError where error.status == .contentTooLarge {
            return Responses.error(OAuthError(.invalidRequest, "the request body is too large", status: 413))
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(type(of: error))"])
            return Responses.error(OAuthError(.serverError, "internal error"))
        }
    }
}

/// Headers every answer carries: no framing, no sniffing, no referrer leaks (pages with forms
/// choose `same-origin`, so that browsers send their origin), and `no-store` unless a route chose
/// its own caching.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response = try await next(request, context)
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.xContentTypeOptions] = "nosniff"
        if response.headers[.referrerPolicy] == nil { response.headers[.referrerPolicy] = "no-referrer" }
        if response.headers[.cacheControl] == nil {
            response.headers[.cacheControl] = "no-store"
            response.headers[.pragma] = "no-cache"
        }
        return response
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let secFetchSite = Self("Sec-Fetch-Site")!
}

extension HTTPField.Name {
    static let pragma = Self("Pragma")!
}

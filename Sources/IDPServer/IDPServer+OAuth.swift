import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

extension IDPServer {
    func addOAuthRoutes(to router: Router<IDPRequestContext>) {
        router.get("/authorize") { request, context in
            try await authorize(request, context: context, form: nil)
        }
        router.post("/authorize") { request, context in
            var request = request
            let form = try await Self.readForm(&request, context: context)
            return try await authorize(request, context: context, form: form)
        }
        router.get("/authorize/:node") { request, context in
            try await authorize(request, context: context, form: nil, legacyNode: context.parameters.get("node"))
        }
        router.post("/authorize/:node") { request, context in
            var request = request
            let form = try await Self.readForm(&request, context: context)
            return try await authorize(
                request, context: context, form: form, legacyNode: context.parameters.get("node"))
        }
        router.post("/token") { request, context -> Response in
            let browser = request.headers[.origin] != nil
            var request = request
            return Self.withCORS(
                try await formEndpoint(&request, context: context) { form, authorization in
                    let identity = self.identity
                    let caller = context.callerAddress
                    // Legacy grants are bound to the relying party's node. A browser on that node
                    // must not redeem them for a web page, so requests with an Origin get no node.
                    return await provider.token(form, authorization: authorization) {
                        browser ? nil : try? await identity.identify(caller).nodeID
                    }
                }, methods: "POST, OPTIONS")
        }
        router.on("/token", method: .options) { _, _ in Self.preflight(methods: "POST, OPTIONS") }
        router.post("/revoke") { request, context -> Response in
            var request = request
            return Self.withCORS(
                try await formEndpoint(&request, context: context) { form, authorization in
                    await provider.revoke(form, authorization: authorization)
                }, methods: "POST, OPTIONS")
        }
        router.on("/revoke", method: .options) { _, _ in Self.preflight(methods: "POST, OPTIONS") }
        router.post("/introspect") { request, context -> Response in
            let funnel = Self.isFunnel(request)
            var request = request
            return try await formEndpoint(&request, context: context) { form, authorization in
                // A request without client credentials may come from a resource server the
                // tailnet policy allows to introspect (`introspect` in its grant); over Funnel
                // nobody is identified by the tailnet.
                if !funnel, Self.presentsNoClient(form, authorization: authorization),
                    let resources = await self.introspectableResources(context.callerAddress), !resources.isEmpty
                {
                    return await provider.introspect(form, grantedResources: resources)
                }
                return await provider.introspect(form, authorization: authorization)
            }
        }
        router.get("/token") { _, _ in Self.withCORS(Responses.methodNotAllowed("POST"), methods: "POST, OPTIONS") }

        router.get("/userinfo") { request, _ -> Response in
            let token: String?
            do {
                token = try Self.bearerToken(request.headers[.authorization])
            } catch let error as OAuthError {
                return Self.withCORS(Self.bearerError(error), methods: "GET, POST, OPTIONS")
            }
            return Self.withCORS(await userInfo(token), methods: "GET, POST, OPTIONS")
        }
        router.post("/userinfo") { request, context -> Response in
            var request = request
            var token: String?
            do {
                token = try Self.bearerToken(request.headers[.authorization])
                let type = (request.headers[.contentType] ?? "").lowercased()
                if type.hasPrefix("application/x-www-form-urlencoded") {
                    let form = try await Self.readForm(&request, context: context)
                    if let bodyToken = try form.single("access_token") {
                        guard token == nil else {
                            throw OAuthError(.invalidRequest, "send the access token in one place only")
                        }
                        token = bodyToken
                    }
                }
            } catch let error as OAuthError {
                return Self.withCORS(Self.bearerError(error), methods: "GET, POST, OPTIONS")
            }
            return Self.withCORS(await userInfo(token), methods: "GET, POST, OPTIONS")
        }
        router.get("/logout") { request, context in
            try await endSession(request, context: context, form: nil)
        }
        router.post("/logout") { request, context in
            var request = request
            let form = try await Self.readForm(&request, context: context)
            return try await endSession(request, context: context, form: form)
        }
        router.on("/userinfo", method: .options) { _, _ in Self.preflight(methods: "GET, POST, OPTIONS") }
    }

    /// Reads a form and answers with what `handle` returns, as JSON with `no-store`.
    /// Whether a token-endpoint-style request carries no client authentication at all.
    static func presentsNoClient(_ form: OAuthParameters, authorization: String?) -> Bool {
        (authorization ?? "").isEmpty
            && ["client_id", "client_secret", "client_assertion", "client_assertion_type"].allSatisfy {
                form.all($0).isEmpty
            }
    }

    /// The resources the device at `caller` may introspect tokens for by its grant; `nil` when the
    /// caller is not identified or its grant does not parse.
    func introspectableResources(_ caller: CallerAddress) async -> [String]? {
        guard let person = try? await identity.identify(caller), let grants = try? provider.policy(for: person) else {
            return nil
        }
        return grants.introspectableResources
    }

    func formEndpoint(
        _ request: inout Request, context: IDPRequestContext,
        _ handle: (OAuthParameters, String?) async -> TokenResponse
    ) async throws -> Response {
        let form: OAuthParameters
        do {
            form = try await Self.readForm(&request, context: context)
        } catch let error as OAuthError {
            return Responses.error(error)
        }
        let answer = await handle(form, request.headers[.authorization])
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        headers[.pragma] = "no-cache"
        if let challenge = answer.wwwAuthenticate { headers[.wwwAuthenticate] = challenge }
        if answer.body.isEmpty {
            return Response(status: .init(code: answer.status), headers: headers)
        }
        return Responses.json(answer.body, status: .init(code: answer.status), headers: headers)
    }

    func userInfo(_ token: String?) async -> Response {
        let answer = await provider.userInfoAnswer(accessToken: token)
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        if let challenge = answer.wwwAuthenticate { headers[.wwwAuthenticate] = challenge }
        if answer.contentType != "application/json" {
            headers[.contentType] = answer.contentType
            return Response(
                status: .init(code: answer.status), headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
        }
        return Responses.json(answer.body, status: .init(code: answer.status), headers: headers)
    }

    /// The token of an `Authorization: Bearer` header; the scheme is case-insensitive.
    static func bearerToken(_ header: String?) throws -> String? {
        guard let header, !header.isEmpty else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw OAuthError(.invalidRequest, "the Authorization header must use the Bearer scheme")
        }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, !token.contains(" ") else {
            throw OAuthError(.invalidRequest, "the bearer token is malformed")
        }
        return token
    }

    static func bearerError(_ error: OAuthError) -> Response {
        var headers = HTTPFields()
        headers[.wwwAuthenticate] = "Bearer realm=\"tsidp\", error=\"\(error.code.rawValue)\""
        return Responses.error(error, headers: headers)
    }

    func authorize(
        _ request: Request, context: IDPRequestContext, form: OAuthParameters?, legacyNode: String? = nil
    ) async throws -> Response {
        if Self.isFunnel(request) {
            return Responses.html(
                HTML.errorPage(
                    OAuthError(
                        .accessDenied, "Signing in is only possible from a device on the tailnet, not over Funnel.")),
                status: .unauthorized)
        }
        if Self.isSubresourceLoad(request) {
            // An <img>, <iframe> or fetch() of /authorize, which a site can make a visitor's
            // browser send: never a sign-in, whatever the client.
            return Responses.html(
                HTML.errorPage(
                    OAuthError(
                        .invalidRequest,
                        "Sign-in requests must be opened as a page, not loaded as an image, frame or script.")),
                status: .badRequest)
        }
        var parameters: OAuthParameters
        do {
            parameters = try Self.query(request)
            if let form { parameters.append(contentsOf: form) }
        } catch let error as OAuthError {
            return Responses.html(HTML.errorPage(error), status: .badRequest)
        }
        var legacyNodeID: Int64?
        if let legacyNode {
            guard let node = Int64(legacyNode), node > 0 else {
                return Responses.html(
                    HTML.errorPage(OAuthError(.invalidRequest, "The sign-in link names no valid tailnet node.")),
                    status: .badRequest)
            }
            legacyNodeID = node
        }
        let caller = context.callerAddress
        let identity = self.identity
        let result = await provider.authorize(parameters, legacyNodeID: legacyNodeID) {
            () async throws(IdentityFailure) -> UserIdentity in
            try await identity.identify(caller)
        }
        return authorizeResponse(result)
    }

    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): GET or POST `/logout`.
    func endSession(_ request: Request, context: IDPRequestContext, form: OAuthParameters?) async throws -> Response {
        var parameters: OAuthParameters
        do {
            parameters = try Self.query(request)
            if let form { parameters.append(contentsOf: form) }
        } catch let error as OAuthError {
            return Responses.html(HTML.logoutErrorPage(error), status: .badRequest)
        }
        let caller = context.callerAddress
        let identity = self.identity
        let result = await provider.endSession(parameters) { () async throws(IdentityFailure) -> UserIdentity in
            try await identity.identify(caller)
        }
        switch result {
        case .redirect(let location):
            var response = Responses.redirect(location)
            response.headers[.cacheControl] = "no-store"
            return response
        case .signedOut(let clientName, let endedLogins):
            var response = Responses.html(HTML.signedOutPage(clientName: clientName, endedLogins: endedLogins))
            response.headers[.cacheControl] = "no-store"
            return response
        case .errorPage(let error):
            return Responses.html(HTML.logoutErrorPage(error), status: .init(code: error.status))
        }
    }

    /// The HTTP answer to an authorization result.
    func authorizeResponse(_ result: AuthorizeResult) -> Response {
        switch result {
        case .redirect(let location):
            return Responses.redirect(location)
        case .formPost(let action, let fields):
            var response = Responses.html(
                HTML.formPost(action: action, fields: fields), csp: HTML.formPostCSP(action: action))
            response.headers[.cacheControl] = "no-store"
            return response
        case .errorPage(let error):
            return Responses.html(
                HTML.errorPage(error, hint: Self.hint(for: error)),
                status: .init(code: error.status == 401 ? 400 : error.status))
        case .consent(let prompt):
            return Self.consentPage(prompt)
        }
    }

    static func hint(for error: OAuthError) -> String? {
        switch error.code {
        case .invalidClient:
            return """
                Register the application with tsidp (<code>POST /clients/new</code> with a name and its redirect URI, \
                or <code>/register</code>) and configure it with the client ID and secret tsidp returns. \
                Guides written for the Go tsidp's legacy mode (\u{201C}Client ID: unused\u{201D}) need tsidp started with \
                <code>--allow-insecure-registration</code>, which lets any application on the tailnet sign users in by its \
                node; registering the client is the safer choice.
                """
        case .invalidRequest where error.message.contains("redirect_uri"):
            return
                "The application's redirect URI must exactly match one registered for it, including scheme, port, path and query."
        default:
            return nil
        }
    }
}

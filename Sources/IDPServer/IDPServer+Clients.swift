import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

/// A client as the `/clients/` API shows it: never with a secret, except right after creation.
struct ClientView: Encodable {
    var clientID: String
    var clientSecret: String?
    var clientName: String
    var redirectURIs: [String]
    var redirectURI: String
    var tokenEndpointAuthMethod: String
    var createdAt: String
    var dynamicallyRegistered: Bool
    var hasSecret: Bool
    var consentRequired: Bool
    var resources: [String]
    var accessTokenFormat: String
    var postLogoutRedirectURIs: [String]?
    var subjectType: String

    init(_ client: Client, secret: String? = nil) {
        clientID = client.clientID
        clientSecret = secret
        clientName = client.name
        redirectURIs = client.redirectURIs
        redirectURI = ""
        tokenEndpointAuthMethod = client.tokenEndpointAuthMethod
        createdAt = RFC3339.format(client.createdAt)
        dynamicallyRegistered = client.dynamicallyRegistered
        hasSecret = client.secretHash != nil
        consentRequired = client.requiresConsent
        resources = client.resources
        accessTokenFormat = client.accessTokenFormat
        postLogoutRedirectURIs = client.postLogoutRedirectURIs.isEmpty ? nil : client.postLogoutRedirectURIs
        subjectType = client.subjectType
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", clientSecret = "client_secret", clientName = "client_name"
        case redirectURIs = "redirect_uris", redirectURI = "redirect_uri"
        case tokenEndpointAuthMethod = "token_endpoint_auth_method", createdAt = "created_at"
        case dynamicallyRegistered = "dynamically_registered", hasSecret = "has_secret"
        case consentRequired = "consent_required", resources, accessTokenFormat = "access_token_format"
        case postLogoutRedirectURIs = "post_logout_redirect_uris", subjectType = "subject_type"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(clientID, forKey: .clientID)
        try c.encodeIfPresent(clientSecret, forKey: .clientSecret)
        try c.encode(clientName, forKey: .clientName)
        try c.encode(redirectURIs, forKey: .redirectURIs)
        try c.encode(redirectURI, forKey: .redirectURI)
        try c.encode(tokenEndpointAuthMethod, forKey: .tokenEndpointAuthMethod)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(dynamicallyRegistered, forKey: .dynamicallyRegistered)
        try c.encode(hasSecret, forKey: .hasSecret)
        try c.encode(consentRequired, forKey: .consentRequired)
        if !resources.isEmpty { try c.encode(resources, forKey: .resources) }
        if !accessTokenFormat.isEmpty { try c.encode(accessTokenFormat, forKey: .accessTokenFormat) }
        try c.encodeIfPresent(postLogoutRedirectURIs, forKey: .postLogoutRedirectURIs)
        if subjectType != "public" { try c.encode(subjectType, forKey: .subjectType) }
    }
}

extension IDPServer {
    enum Right { case admin, registration }

    /// Checks that the caller may use the admin API or DCR: always on the local listener; on the
    /// tailnet listener only with the matching grant; never over Funnel.
    func requireRight(_ right: Right, request: Request, context: IDPRequestContext, listener: Listener) async throws {
        if Self.isFunnel(request) {
            throw OAuthError(.accessDenied, "not available over Funnel", status: 401)
        }
        try Self.checkHost(request, issuer: provider.configuration.issuer, forwarded: context.callerAddress.isForwarded)
        if listener == .local { return }
        let caller: UserIdentity
        do {
            caller = try await identity.identify(context.callerAddress)
        } catch {
            throw OAuthError(.accessDenied, "the caller is not identified on the tailnet", status: 403)
        }
        // A grant that does not parse: 403 naming the bad field, logged once per node.
        let grants = try provider.policy(for: caller)
        let allowed = right == .admin ? grants.allowAdminUI : grants.allowDCR
        guard allowed, !caller.isTagged || right == .registration else {
            throw OAuthError(.accessDenied, "application capability not granted")
        }
    }

    /// Host names under which the admin surface may be reached: the issuer's, and loopback names.
    ///
    /// - Important: Checking `Host` against this fixed list (and `Origin` against fixed origins,
    ///   see ``allowedOrigins(issuer:listenerAddress:)``), never against each other, is what
    ///   defeats DNS rebinding: a page on `evil.example` rebound to 127.0.0.1 sends
    ///   `Host: evil.example`.
    static func allowedHostNames(issuer: String) -> Set<String> {
        var names: Set<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
        if let host = URLComponents(string: issuer)?.host?.lowercased() { names.insert(host) }
        return names
    }

    /// The host name of a `Host` value or of an origin's authority (port and brackets handled).
    static func hostName(ofAuthority authority: String) -> String {
        let lowered = authority.lowercased()
        if lowered.hasPrefix("["), let close = lowered.firstIndex(of: "]") {
            return String(lowered[...close])
        }
        return String(lowered.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    /// Refuses requests whose `Host` is not one of this server's names. A request a trusted proxy
    /// forwarded must name the issuer's host: a proxy that replaces `Host` with a loopback name
    /// would otherwise let a rebound name through.
    static func checkHost(_ request: Request, issuer: String, forwarded: Bool = false) throws {
        let authority = request.head.authority ?? ""
        var allowed = allowedHostNames(issuer: issuer)
        if forwarded {
            let host = URLComponents(string: issuer)?.host?.lowercased() ?? ""
            allowed = host.isEmpty ? [] : host.contains(":") && !host.hasPrefix("[") ? [host, "[\(host)]"] : [host]
        }
        guard allowed.contains(hostName(ofAuthority: authority)) else {
            throw OAuthError(.accessDenied, "requests for this host name are refused")
        }
    }

    /// The origins a same-origin request to the admin API may come from: the issuer's, and, on a
    /// loopback listener, the listener's own (`http://localhost:<port>`, `http://<its address>:<port>`).
    ///
    /// - Important: Scheme, host and port must all match: `http://localhost:9999` is another site
    ///   than `http://localhost:8080`, and any page served there must not act as the operator.
    static func allowedOrigins(issuer: String, listenerAddress: SocketAddress?) -> Set<WebOrigin> {
        var origins: Set<WebOrigin> = []
        if let origin = WebOrigin(url: issuer) { origins.insert(origin) }
        if let address = listenerAddress, let ip = address.ipAddress, let port = address.port,
            ip == "::1" || ip.hasPrefix("127.")
        {
            for host in ["localhost", ip] {
                if let origin = WebOrigin(scheme: "http", host: host, port: port) { origins.insert(origin) }
            }
        }
        return origins
    }

    /// Refuses cross-site requests (CSRF): a browser's `Sec-Fetch-Site` must be same-origin or
    /// none, and an `Origin` must be exactly one of ``allowedOrigins(issuer:listenerAddress:)``.
    static func checkSameOrigin(_ request: Request, issuer: String, listenerAddress: SocketAddress?) throws {
        if let site = request.headers[.secFetchSite]?.lowercased(), site != "same-origin", site != "none" {
            throw OAuthError(.accessDenied, "cross-site request refused")
        }
        guard let header = request.headers[.origin] else { return }
        guard let origin = WebOrigin(header: header),
            allowedOrigins(issuer: issuer, listenerAddress: listenerAddress).contains(origin)
        else {
            throw OAuthError(.accessDenied, "cross-origin request refused")
        }
    }

    func addClientRoutes(to router: Router<IDPRequestContext>, listener: Listener) {
        let issuer = provider.configuration.issuer
        let clients = provider.clients

        router.get("/clients") { request, context -> Response in
            try await requireRight(.admin, request: request, context: context, listener: listener)
            return Responses.encoded(await clients.all().map { ClientView($0) })
        }
        router.post("/clients/new") { request, context -> Response in
            try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
            try await requireRight(.admin, request: request, context: context, listener: listener)
            var request = request
            let form = try await Self.readForm(&request, context: context)
            guard let name = try form.single("name") else { throw OAuthError(.invalidRequest, "name is required") }
            let uris = RedirectURI.splitLines(try form.single("redirect_uri") ?? "")
            guard !uris.isEmpty else { throw OAuthError(.invalidRequest, "redirect_uri is required") }
            var registration = ClientRegistry.Registration(name: name, redirectURIs: uris)
            registration.idTokenSignedResponseAlg = try form.single("id_token_signed_response_alg") ?? "RS256"
            registration.accessTokenFormat = try form.single("access_token_format") ?? ""
            registration.resources = try Self.formResources(form) ?? []
            registration.scope = try form.single("scope") ?? ""
            registration.postLogoutRedirectURIs = RedirectURI.splitLines(
                try form.single("post_logout_redirect_uri") ?? "")
            registration.tokenEndpointAuthMethod =
                try form.single("token_endpoint_auth_method") ?? "client_secret_basic"
            registration.subjectType = try form.single("subject_type") ?? "public"
            registration.sectorIdentifierURI = try form.single("sector_identifier_uri") ?? ""
            if let text = try form.single("consent_required") {
                guard let value = Self.formBool(text) else {
                    throw OAuthError(.invalidRequest, "consent_required must be true or false")
                }
                registration.consentRequired = value
            }
            let created = try await clients.register(registration)
            logger.info("client created", metadata: ["client_id": "\(created.client.clientID)", "name": "\(name)"])
            return Responses.encoded(ClientView(created.client, secret: created.secret))
        }
        router.get("/clients/:id") { request, context -> Response in
            try await requireRight(.admin, request: request, context: context, listener: listener)
            let id = context.parameters.get("id") ?? ""
            guard let client = await clients.client(id) else { throw OAuthError(.notFound, "client not found") }
            return Responses.encoded(ClientView(client))
        }
        router.put("/clients/:id") { request, context -> Response in
            try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
            try await requireRight(.admin, request: request, context: context, listener: listener)
            var request = request
            let form = try await Self.readForm(&request, context: context)
            let id = context.parameters.get("id") ?? ""
            guard let existing = await clients.client(id) else { throw OAuthError(.notFound, "client not found") }
            let uris = RedirectURI.splitLines(try form.single("redirect_uri") ?? "")
            let client = try await clients.update(
                id, name: try form.single("name") ?? existing.name, redirectURIs: uris,
                resources: try Self.formResources(form))
            logger.info("client updated", metadata: ["client_id": "\(id)"])
            return Responses.encoded(ClientView(client))
        }
        router.delete("/clients/:id") { request, context -> Response in
            try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
            try await requireRight(.admin, request: request, context: context, listener: listener)
            let id = context.parameters.get("id") ?? ""
            guard try await provider.deleteClient(id) else { throw OAuthError(.notFound, "client not found") }
            logger.info("client deleted", metadata: ["client_id": "\(id)"])
            return Response(status: .noContent)
        }
        router.post("/clients/:id/regenerate-secret") { request, context -> Response in
            try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
            try await requireRight(.admin, request: request, context: context, listener: listener)
            let id = context.parameters.get("id") ?? ""
            let result = try await clients.regenerateSecret(id)
            logger.info("client secret regenerated", metadata: ["client_id": "\(id)"])
            return Responses.encoded(ClientView(result.client, secret: result.secret))
        }

        router.post("/register") { request, context -> Response in
            var request = request
            do {
                // Registration is authorised by who the caller is (WhoIs), which a browser carries
                // to any site: only same-origin or non-browser callers may use it.
                try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
                try await requireRight(.registration, request: request, context: context, listener: listener)
                let body = try await Self.readBody(&request, context: context)
                let asked = try ClientRegistry.Registration(rfc7591JSON: Data(body.readableBytesView))
                let created = try await clients.registerDynamically(asked)
                logger.info("client registered", metadata: ["client_id": "\(created.client.clientID)"])
                return Self.clientInformation(
                    created.client, secret: created.secret, registrationAccessToken: created.registrationAccessToken,
                    issuer: issuer, status: .created)
            } catch let error as OAuthError {
                return Responses.error(error)
            }
        }
        addClientConfigurationRoutes(to: router)
        router.post("/keys/rotate") { request, context -> Response in
            try Self.checkSameOrigin(request, issuer: issuer, listenerAddress: context.localAddress)
            try await requireRight(.admin, request: request, context: context, listener: listener)
            try await provider.keys.rotate()
            logger.info("signing keys rotated", metadata: ["kid": "\(provider.keys.signingKey.kid)"])
            return Responses.json(provider.keys.jwksDocument)
        }
    }
}

extension IDPServer {
    /// The `resources` a client form names (one URI a line, as `redirect_uri`), or `nil` when the
    /// form has no `resources` field; an empty field clears the list.
    static func formResources(_ form: OAuthParameters) throws -> [String]? {
        guard form.pairs.contains(where: { $0.name == "resources" }) else { return nil }
        return RedirectURI.splitLines(try form.single("resources") ?? "")
    }

    /// A checkbox or form boolean: `true`/`on`/`1` or `false`/`off`/`0`.
    static func formBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "on", "1", "yes": return true
        case "false", "off", "0", "no", "": return false
        default: return nil
        }
    }
}

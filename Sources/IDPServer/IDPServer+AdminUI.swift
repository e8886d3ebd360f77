import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

extension IDPServer {
    /// The admin UI (`/`, `/new`, `/edit/{id}`, the Go tsidp's paths) and its assets. Every action
    /// is a plain form post answered by a redirect or a page, so nothing needs script.
    func addAdminUIRoutes(to router: Router<IDPRequestContext>, listener: Listener) {
        router.get("/style.css") { _, _ in Self.asset(PageTemplates.stylesheet, type: "text/css; charset=utf-8") }
        router.get("/ui.js") { _, _ in Self.asset(PageTemplates.script, type: "text/javascript; charset=utf-8") }

        let admin = router.group().add(middleware: PageGate(server: self, listener: listener, audience: .admins))
        admin.get("/") { request, context -> Response in
            var notice: String?
            if let query = try? Self.query(request), (try? query.single("deleted")) != nil {
                notice = "The client was deleted."
            }
            return await clientListPage(notice: notice)
        }
        admin.get("/new") { _, context -> Response in
            newClientPage(NewClientForm(), error: nil, visitor: try Self.visitor(context))
        }
        admin.post("/new") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "new", visitor: visitor)
            let input = NewClientForm(form)
            do {
                let created = try await provider.clients.register(try input.registration())
                logger.info(
                    "client created in the admin UI",
                    metadata: ["client_id": "\(created.client.clientID)", "by": "\(visitor.subject)"])
                return secretPage(created.client, secret: created.secret, heading: "Client created")
            } catch let error as OAuthError {
                return newClientPage(
                    input, error: error.message, visitor: visitor,
                    status: error.status >= 500 ? .init(code: error.status) : .badRequest)
            }
        }
        admin.get("/edit/:id") { request, context -> Response in
            let client = try await Self.pageClient(context, provider: provider)
            let saved = (try? Self.query(request).single("saved")) != nil
            return await editClientPage(
                client, input: nil, notice: saved ? "Saved." : nil, error: nil, visitor: try Self.visitor(context))
        }
        admin.post("/edit/:id") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let client = try await Self.pageClient(context, provider: provider)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "edit:\(client.clientID)", visitor: visitor)
            let name = ((try? form.single("name")) ?? nil) ?? ""
            let text = ((try? form.single("redirect_uri")) ?? nil) ?? ""
            do {
                _ = try await provider.clients.update(
                    client.clientID, name: name.trimmingCharacters(in: .whitespaces),
                    redirectURIs: RedirectURI.splitLines(text))
            } catch let error as OAuthError {
                return await editClientPage(
                    client, input: (name, text), notice: nil, error: error.message, visitor: visitor,
                    status: error.status >= 500 ? .init(code: error.status) : .badRequest)
            }
            logger.info(
                "client updated in the admin UI",
                metadata: ["client_id": "\(client.clientID)", "by": "\(visitor.subject)"])
            return Self.seeOther(UIPages.editPath(client.clientID) + "?saved=1")
        }
        admin.post("/edit/:id/secret") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let client = try await Self.pageClient(context, provider: provider)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "secret:\(client.clientID)", visitor: visitor)
            let result = try await Self.storing { try await provider.clients.regenerateSecret(client.clientID) }
            logger.info(
                "client secret regenerated in the admin UI",
                metadata: ["client_id": "\(client.clientID)", "by": "\(visitor.subject)"])
            return secretPage(result.client, secret: result.secret, heading: "New client secret")
        }
        admin.get("/edit/:id/delete") { _, context -> Response in
            let visitor = try Self.visitor(context)
            let client = try await Self.pageClient(context, provider: provider)
            return UIPages.page(
                "uiDeleteClient",
                [
                    "title": "Delete client", "displayName": Self.displayName(client), "clientID": client.clientID,
                    "liveLogins": provider.liveLoginCount(clientID: client.clientID),
                    "deletePath": UIPages.editPath(client.clientID) + "/delete",
                    "editPath": UIPages.editPath(client.clientID),
                    "csrfToken": pageFormToken("delete:\(client.clientID)", visitor: visitor),
                ], navigation: .init(admin: true, user: visitor.user != nil))
        }
        admin.post("/edit/:id/delete") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let client = try await Self.pageClient(context, provider: provider)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "delete:\(client.clientID)", visitor: visitor)
            _ = try await Self.storing { try await provider.deleteClient(client.clientID) }
            logger.info(
                "client deleted in the admin UI",
                metadata: ["client_id": "\(client.clientID)", "by": "\(visitor.subject)"])
            return Self.seeOther("/?deleted=1")
        }
    }

    // MARK: Pages

    func clientListPage(notice: String?) async -> Response {
        let clients = await provider.clients.all()
        var values: [String: Any] = [
            "title": "Clients", "count": clients.count, "hasClients": !clients.isEmpty,
            "clients": clients.map { client -> [String: Any] in
                [
                    "name": Self.displayName(client), "clientID": client.clientID,
                    "redirectURIs": client.redirectURIs, "created": UIPages.when(client.createdAt),
                    "status": UIPages.status(client), "dynamic": client.dynamicallyRegistered,
                    "editPath": UIPages.editPath(client.clientID),
                ]
            },
            "endpoints": UIPages.endpoints(issuer: provider.configuration.issuer),
        ]
        if let notice { values["notice"] = notice }
        return UIPages.page("uiClients", values, navigation: .init(admin: true, user: true))
    }

    func newClientPage(
        _ input: NewClientForm, error: String?, visitor: PageVisitor, status: HTTPResponse.Status = .ok
    ) -> Response {
        var values: [String: Any] = [
            "title": "New client", "csrfToken": pageFormToken("new", visitor: visitor), "name": input.name,
            "redirectURIs": input.redirectURIs, "logoURI": input.logoURI, "scope": input.scope,
            "resources": input.resources,
            "authMethods": UIPages.options(UIPages.authMethods, chosen: input.authMethod),
            "algorithms": UIPages.options(UIPages.algorithms, chosen: input.algorithm),
            "formats": UIPages.options(UIPages.accessTokenFormats, chosen: input.accessTokenFormat),
            "consentRequired": input.consentRequired,
        ]
        if let error { values["error"] = error }
        return UIPages.page(
            "uiNewClient", values, navigation: .init(admin: true, user: visitor.user != nil), status: status)
    }

    func secretPage(_ client: Client, secret: String?, heading: String) -> Response {
        var values: [String: Any] = [
            "title": heading, "heading": heading, "name": Self.displayName(client), "clientID": client.clientID,
            "editPath": UIPages.editPath(client.clientID),
            "endpoints": UIPages.endpoints(issuer: provider.configuration.issuer),
        ]
        if let secret { values["secret"] = secret }
        return UIPages.page("uiSecret", values, navigation: .init(admin: true, user: true))
    }

    func editClientPage(
        _ client: Client, input: (name: String, redirectURIs: String)?, notice: String?, error: String?,
        visitor: PageVisitor, status: HTTPResponse.Status = .ok
    ) async -> Response {
        let path = UIPages.editPath(client.clientID)
        var values: [String: Any] = [
            "title": "Edit client", "displayName": Self.displayName(client), "clientID": client.clientID,
            "name": input?.name ?? client.name,
            "redirectURIs": input?.redirectURIs ?? client.redirectURIs.joined(separator: "\n"),
            "created": UIPages.when(client.createdAt), "authMethod": client.tokenEndpointAuthMethod,
            "algorithm": client.idTokenSignedResponseAlg.rawValue,
            "accessTokenFormat": client.accessTokenFormat.isEmpty
                ? "JWT when a resource is requested, opaque otherwise" : client.accessTokenFormat,
            "resources": client.resources,
            "consent": client.requiresConsent, "dynamic": client.dynamicallyRegistered,
            "liveLogins": provider.liveLoginCount(clientID: client.clientID),
            "secretStatus": client.isPublic
                ? "A public client has no secret; regenerating gives it one (and makes it confidential)."
                : client.secretHash == nil
                    ? "This client has no secret." : "The client has a secret; tsidp keeps only its digest.",
            "editPath": path, "secretPath": path + "/secret", "deletePath": path + "/delete",
            "editToken": pageFormToken("edit:\(client.clientID)", visitor: visitor),
            "secretToken": pageFormToken("secret:\(client.clientID)", visitor: visitor),
        ]
        if !client.scope.isEmpty { values["scope"] = client.scope }
        if !client.logoURI.isEmpty { values["logoURI"] = client.logoURI }
        if let notice { values["notice"] = notice }
        if let error { values["error"] = error }
        return UIPages.page(
            "uiEditClient", values, navigation: .init(admin: true, user: visitor.user != nil), status: status)
    }

    // MARK: Helpers

    static func displayName(_ client: Client) -> String {
        client.name.isEmpty ? "Unnamed client" : client.name
    }

    static func visitor(_ context: IDPRequestContext) throws -> PageVisitor {
        guard let visitor = context.pageVisitor else {
            throw PageError.forbidden("This page is not available here.")
        }
        return visitor
    }

    /// The client a page's `{id}` names, or a 404 page.
    static func pageClient(_ context: IDPRequestContext, provider: Provider) async throws -> Client {
        let id = context.parameters.get("id") ?? ""
        if let client = await provider.clients.client(id) { return client }
        if let decoded = id.removingPercentEncoding, let client = await provider.clients.client(decoded) {
            return client
        }
        throw PageError(.notFound, "No such client", "There is no client with this ID; it may have been deleted.")
    }

    /// A form body of a page, or a 400 (413) page.
    static func readPageForm(_ request: Request, context: IDPRequestContext) async throws -> OAuthParameters {
        var request = request
        do {
            return try await readForm(&request, context: context)
        } catch let error as OAuthError {
            throw PageError(
                .init(code: error.status == 413 ? 413 : 400), "The form could not be read", error.message)
        }
    }

    /// Runs a store-changing action; a storage failure becomes a 503 page (nothing changed).
    static func storing<T>(_ action: () async throws -> T) async throws -> T {
        do {
            return try await action()
        } catch let error as OAuthError {
            throw PageError(.init(code: error.status), "The change was not made", error.message)
        }
    }

    static func seeOther(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers)
    }

    static func asset(_ text: String, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// What the new-client form holds, to create a client or to show the form again with an error.
struct NewClientForm {
    var name = ""
    var redirectURIs = ""
    var logoURI = ""
    var scope = ""
    var authMethod = "client_secret_basic"
    var algorithm = "RS256"
    var accessTokenFormat = ""
    var resources = ""
    var consentRequired = false

    init() {}

    init(_ form: OAuthParameters) {
        func value(_ name: String) -> String? { ((try? form.single(name)) ?? nil) }
        name = (value("name") ?? "").trimmingCharacters(in: .whitespaces)
        redirectURIs = value("redirect_uri") ?? ""
        logoURI = (value("logo_uri") ?? "").trimmingCharacters(in: .whitespaces)
        scope = (value("scope") ?? "").trimmingCharacters(in: .whitespaces)
        authMethod = value("token_endpoint_auth_method") ?? authMethod
        algorithm = value("id_token_signed_response_alg") ?? algorithm
        accessTokenFormat = value("access_token_format") ?? accessTokenFormat
        resources = value("resources") ?? ""
        consentRequired = IDPServer.formBool(value("consent_required") ?? "") ?? false
    }

    /// The registration the form asks for; the registry validates the rest.
    func registration() throws -> ClientRegistry.Registration {
        let uris = RedirectURI.splitLines(redirectURIs)
        guard !uris.isEmpty else { throw OAuthError(.invalidRequest, "Enter at least one redirect URI.") }
        if !logoURI.isEmpty {
            guard let components = URLComponents(string: logoURI), components.scheme?.lowercased() == "https",
                !(components.host ?? "").isEmpty
            else {
                throw OAuthError(.invalidRequest, "The logo URI must be an https URL.")
            }
        }
        var registration = ClientRegistry.Registration(name: name, redirectURIs: uris)
        registration.logoURI = logoURI
        registration.scope = scope
        registration.tokenEndpointAuthMethod = authMethod
        registration.idTokenSignedResponseAlg = algorithm
        registration.accessTokenFormat = accessTokenFormat
        registration.resources = RedirectURI.splitLines(resources)
        registration.consentRequired = consentRequired
        return registration
    }
}

import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

extension HTTPField.Name {
    static let secFetchDest = Self("Sec-Fetch-Dest")!
}

extension IDPServer {
    /// Whether a browser marked the request as a sub-resource load (`<img>`, `<iframe>`,
    /// `fetch`…): such a load of `/authorize` must never yield a code.
    static func isSubresourceLoad(_ request: Request) -> Bool {
        guard let destination = request.headers[.secFetchDest]?.lowercased() else { return false }
        return destination != "document"
    }

    /// The consent page for a parked authorization request.
    static func consentPage(_ prompt: ConsentPrompt) -> Response {
        let html = PageTemplates.render(
            "consent",
            [
                "title": "Sign in to \(prompt.clientName)?", "clientName": prompt.clientName,
                "userLogin": prompt.userLogin, "redirectHost": prompt.redirectHost, "claims": prompt.claims,
                "dynamicallyRegistered": prompt.dynamicallyRegistered, "requestID": prompt.requestID,
                "csrfToken": prompt.csrfToken,
            ])
        // The form posts to tsidp, which answers with a redirect to the application: both are
        // allowed form targets (browsers apply form-action to the redirect too).
        let target = prompt.redirectOrigin.map { " " + $0 } ?? ""
        var response = Responses.html(
            html,
            csp:
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'\(target)"
        )
        response.headers[.cacheControl] = "no-store"
        // Not no-referrer: browsers then send `Origin: null` with the form, which the same-origin
        // check must refuse. Other sites get no Referer either way.
        response.headers[.referrerPolicy] = "same-origin"
        return response
    }

    /// The token that the consents page's forms carry: bound to the user, keyed by a secret of
    /// this process (a page from before a restart asks to be reloaded).
    func consentsFormToken(userID: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("consents|\(userID)".utf8), using: formKey)
        return Data(mac).base64EncodedString()
    }

    func addConsentRoutes(to router: Router<IDPRequestContext>, listener: Listener) {
        // The answer of the consent page.
        router.post("/consent") { request, context -> Response in
            if Self.isFunnel(request) || listener != .tailnet {
                return Responses.html(
                    HTML.errorPage(
                        OAuthError(.accessDenied, "Signing in is only possible from a device on the tailnet.")),
                    status: .forbidden)
            }
            do {
                try Self.checkSameOrigin(
                    request, issuer: provider.configuration.issuer, listenerAddress: context.localAddress)
            } catch let error as OAuthError {
                return Responses.html(HTML.errorPage(error), status: .forbidden)
            }
            var request = request
            let form: OAuthParameters
            do {
                form = try await Self.readForm(&request, context: context)
            } catch let error as OAuthError {
                return Responses.html(HTML.errorPage(error), status: .badRequest)
            }
            guard let requestID = try? form.single("request"), let token = try? form.single("csrf_token"),
                let decisionText = try? form.single("decision")
            else {
                return Responses.html(
                    HTML.errorPage(OAuthError(.invalidRequest, "The consent form is incomplete.")), status: .badRequest)
            }
            let decision: ConsentDecision = decisionText == "allow" ? .allow : .deny
            let caller = context.callerAddress
            let identity = self.identity
            let result = await provider.decideConsent(requestID: requestID, csrfToken: token, decision: decision) {
                () async throws(IdentityFailure) -> UserIdentity in
                try await identity.identify(caller)
            }
            var response = authorizeResponse(result)
            if response.status == .found { response.status = .seeOther }
            return response
        }

        // A user's own page: the clients they consented to, and a way to take consent back.
        router.get("/consents") { request, context -> Response in
            guard let caller = try await pageCaller(request, context: context, listener: listener) else {
                return Responses.html(
                    HTML.errorPage(OAuthError(.accessDenied, "This page is only for people on the tailnet.")),
                    status: .forbidden)
            }
            let token = consentsFormToken(userID: caller.userID)
            let formatter = ISO8601DateFormatter()
            let items: [[String: Any]] = await provider.consents(userID: caller.userID).map {
                [
                    "clientName": $0.clientName, "clientID": $0.clientID,
                    "grantedAt": formatter.string(from: $0.grantedAt), "activeLogins": $0.activeLogins,
                    "scopes": $0.scopes.joined(separator: " "), "csrfToken": token,
                ]
            }
            var response = Responses.html(
                PageTemplates.render(
                    "consents", ["title": "Your sign-ins", "userLogin": caller.loginName, "consents": items]))
            response.headers[.cacheControl] = "no-store"
            response.headers[.referrerPolicy] = "same-origin"
            return response
        }
        router.post("/consents/revoke") { request, context -> Response in
            do {
                try Self.checkSameOrigin(
                    request, issuer: provider.configuration.issuer, listenerAddress: context.localAddress)
            } catch let error as OAuthError {
                return Responses.html(HTML.errorPage(error), status: .forbidden)
            }
            guard let caller = try await pageCaller(request, context: context, listener: listener) else {
                return Responses.html(
                    HTML.errorPage(OAuthError(.accessDenied, "This page is only for people on the tailnet.")),
                    status: .forbidden)
            }
            var request = request
            let form = try await Self.readForm(&request, context: context)
            guard let clientID = try form.single("client_id"), let token = try form.single("csrf_token"),
                ConstantTime.equals(token, consentsFormToken(userID: caller.userID))
            else {
                return Responses.html(
                    HTML.errorPage(
                        OAuthError(.accessDenied, "The form was not sent by your sign-ins page; reload it.")),
                    status: .forbidden)
            }
            try await provider.revokeConsent(userID: caller.userID, clientID: clientID)
            var headers = HTTPFields()
            headers[.location] = "/consents"
            headers[.cacheControl] = "no-store"
            return Response(status: .seeOther, headers: headers)
        }
    }

    /// The person using a page: identified by WhoIs on the tailnet listener, never over Funnel
    /// and never on the operator's listener (which has no person behind it).
    func pageCaller(_ request: Request, context: IDPRequestContext, listener: Listener) async throws -> UserIdentity? {
        guard listener == .tailnet, !Self.isFunnel(request) else { return nil }
        guard let caller = try? await identity.identify(context.callerAddress), !caller.isTagged else {
            return nil
        }
        return caller
    }
}

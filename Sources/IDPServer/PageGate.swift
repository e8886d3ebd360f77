import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

/// Who is using a page of the admin UI or a user's own page.
public enum PageVisitor: Sendable {
    /// The operator, on the `--local-port` listener: no person, full admin rights.
    case `operator`
    /// A person on the tailnet, identified by WhoIs.
    case user(UserIdentity)

    /// What the visitor's form tokens are bound to.
    var subject: String {
        switch self {
        case .operator: "operator"
        case .user(let identity): "user:\(identity.userID)"
        }
    }

    /// The person behind the visitor, if any.
    var user: UserIdentity? {
        if case .user(let identity) = self { return identity }
        return nil
    }
}

/// A refusal shown as a page of the UI, with its status.
struct PageError: Error {
    var status: HTTPResponse.Status
    var title: String
    var message: String
    /// A tailnet policy file snippet that would grant what is missing.
    var policySnippet: String?

    init(_ status: HTTPResponse.Status, _ title: String, _ message: String, policySnippet: String? = nil) {
        self.status = status
        self.title = title
        self.message = message
        self.policySnippet = policySnippet
    }

    static func forbidden(_ message: String) -> PageError {
        PageError(.forbidden, "Not allowed", message)
    }
}

/// Guards a group of UI routes: who may see them, and which form posts are accepted.
///
/// - Admin pages: the operator's listener always; on the tailnet listener a person whose grants
///   include `allow_admin_ui`, otherwise 403 with the grant to add. Tagged devices never.
/// - User pages: people on the tailnet listener only (the operator's listener has no person).
/// - Funnel callers never (``FunnelGate`` refuses them first; checked again here).
///
/// - Important: Every state-changing request (any method but GET and HEAD) must come from this
///   server's own pages: an `Origin` that is exactly one of the allowed origins, or, without
///   `Origin`, `Sec-Fetch-Site: same-origin`. The handler then checks the form's token
///   (``IDPServer/pageFormToken(_:visitor:)``). Either failure is a 403 page and changes nothing.
struct PageGate: RouterMiddleware {
    typealias Context = IDPRequestContext

    enum Audience { case admins, tailnetUsers }

    let server: IDPServer
    let listener: Listener
    let audience: Audience

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            var context = context
            context.pageVisitor = try await admit(request, context: context)
            if request.method != .get, request.method != .head {
                try Self.checkFormOrigin(
                    request, issuer: server.provider.configuration.issuer, listenerAddress: context.localAddress)
            }
            return try await next(request, context)
        } catch let error as PageError {
            return UIPages.errorPage(error)
        }
    }

    private func admit(_ request: Request, context: Context) async throws -> PageVisitor {
        if IDPServer.isFunnel(request) {
            throw PageError(.unauthorized, "Not available over Funnel", "This page is only reachable on the tailnet.")
        }
        do {
            try IDPServer.checkHost(
                request, issuer: server.provider.configuration.issuer, forwarded: context.callerAddress.isForwarded)
        } catch {
            throw PageError.forbidden("Requests for this host name are refused. Use the issuer's address.")
        }
        if listener == .local {
            guard audience == .admins else {
                throw PageError.forbidden(
                    "This page shows your own sign-ins; it is only for people on the tailnet, not on the local port.")
            }
            return .operator
        }
        let caller: UserIdentity
        do {
            caller = try await server.identity.identify(context.callerAddress)
        } catch .unavailable {
            throw PageError(
                .serviceUnavailable, "Tailnet unavailable",
                "tsidp cannot ask the tailnet who you are right now; try again in a moment.")
        } catch {
            throw PageError.forbidden("Your device is not identified on the tailnet.")
        }
        guard !caller.isTagged else {
            throw PageError.forbidden(
                "Tagged devices have no user; open this page from a device signed in as a person.")
        }
        guard audience == .admins else { return .user(caller) }
        let grants: Grants
        do {
            grants = try server.provider.policy(for: caller)
        } catch {
            throw PageError.forbidden("Your tailnet grants for tsidp cannot be read: \(error.message)")
        }
        guard grants.allowAdminUI else {
            throw PageError(
                .forbidden, "Admin access not granted",
                "\(caller.loginName) has no grant that allows the admin UI. An administrator of the tailnet can add "
                    + "this grant to the tailnet policy file; it takes effect on the next request.",
                policySnippet: UIPages.adminGrantSnippet(
                    login: caller.loginName, capabilityName: server.identity.capabilityName))
        }
        return .user(caller)
    }

    /// The CSRF check of the UI's form posts, stricter than the API's: a request must show that a
    /// browser sent it from this server's own page.
    static func checkFormOrigin(_ request: Request, issuer: String, listenerAddress: SocketAddress?) throws {
        let site = request.headers[.secFetchSite]?.lowercased()
        if let site, site != "same-origin" {
            throw PageError.forbidden("The form was sent from another site (\(site)); nothing was changed.")
        }
        if let header = request.headers[.origin] {
            guard let origin = WebOrigin(header: header),
                IDPServer.allowedOrigins(issuer: issuer, listenerAddress: listenerAddress).contains(origin)
            else {
                throw PageError.forbidden("The form was sent from another origin; nothing was changed.")
            }
        } else if site != "same-origin" {
            throw PageError.forbidden(
                "The form did not say where it was sent from (no Origin header); nothing was changed.")
        }
    }
}

extension IDPServer {
    /// The token a UI form carries: bound to the form's purpose (and the client it acts on) and
    /// to the visitor, keyed by a secret of this process, so a page from before a restart asks
    /// to be reloaded.
    func pageFormToken(_ purpose: String, visitor: PageVisitor) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data("page|\(purpose)|\(visitor.subject)".utf8), using: formKey)
        return Base64URL.encode(Data(mac))
    }

    /// Checks a UI form's token.
    ///
    /// - Important: Compared in constant time; a missing or wrong token is a 403 page.
    func checkPageFormToken(_ form: OAuthParameters, _ purpose: String, visitor: PageVisitor) throws {
        let sent = (try? form.single("csrf_token")) ?? nil
        guard let sent, ConstantTime.equals(sent, pageFormToken(purpose, visitor: visitor)) else {
            throw PageError.forbidden(
                "The form was not sent by this page, or the page is from before tsidp restarted. "
                    + "Reload the page and try again; nothing was changed.")
        }
    }
}

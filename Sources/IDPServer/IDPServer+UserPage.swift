import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import OIDCProvider

extension IDPServer {
    /// A person's own page, `/me`: who tsidp sees (login, name, device, tags), the grants tsidp
    /// reads for them, where they are signed in, and the applications they consented to. Every
    /// person on the tailnet may use it; no grant is needed, and every action acts only on the
    /// caller's own user ID.
    func addUserPageRoutes(to router: Router<IDPRequestContext>, listener: Listener) {
        let user = router.group().add(middleware: PageGate(server: self, listener: listener, audience: .tailnetUsers))
        user.get("/me") { request, context -> Response in
            let person = try Self.person(context)
            let query = try? Self.query(request)
            var notice: String?
            if (try? query?.single("ended")) != nil { notice = "Signed out of that login." }
            if (try? query?.single("revoked")) != nil { notice = "Consent taken back." }
            return await userPage(person, notice: notice)
        }
        user.post("/me/logins/end") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let person = try Self.person(context)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "end-login", visitor: visitor)
            let handle = ((try? form.single("login")) ?? nil) ?? ""
            let ended = try await Self.storing { try await provider.endLogin(userID: person.userID, handle: handle) }
            guard ended else {
                throw PageError(
                    .notFound, "No such login", "You have no live login with this name; it may have ended already.")
            }
            return Self.seeOther("/me?ended=1")
        }
        user.post("/me/consents/revoke") { request, context -> Response in
            let visitor = try Self.visitor(context)
            let person = try Self.person(context)
            let form = try await Self.readPageForm(request, context: context)
            try checkPageFormToken(form, "revoke-consent", visitor: visitor)
            let clientID = ((try? form.single("client_id")) ?? nil) ?? ""
            let revoked = try await Self.storing {
                try await provider.revokeConsent(userID: person.userID, clientID: clientID)
            }
            guard revoked else {
                throw PageError(.notFound, "No such consent", "You have not consented to this application.")
            }
            return Self.seeOther("/me?revoked=1")
        }
    }

    static func person(_ context: IDPRequestContext) throws -> UserIdentity {
        guard let person = context.pageVisitor?.user else {
            throw PageError.forbidden("This page is only for people on the tailnet.")
        }
        return person
    }

    func userPage(_ person: UserIdentity, notice: String?) async -> Response {
        let visitor = PageVisitor.user(person)
        var values: [String: Any] = [
            "title": "Your account", "login": person.loginName,
            "displayName": person.displayName.isEmpty ? person.loginName : person.displayName,
            "userID": IDToken.subject(person), "nodeName": person.nodeName, "nodeID": String(person.nodeID),
            "addresses": person.addresses, "tags": person.tags, "groups": person.groups,
            "capabilityName": identity.capabilityName,
        ]
        var adminUI = false
        do {
            let grants = try provider.policy(for: person)
            adminUI = grants.allowAdminUI
            values["dcr"] = grants.allowDCR ? "allowed" : "not granted"
            values["rules"] = grants.rules.enumerated().map { index, rule -> [String: Any] in
                var item: [String: Any] = [
                    "number": index + 1, "allowAdminUI": String(rule.allowAdminUI), "allowDCR": String(rule.allowDCR),
                    "users": rule.users, "resources": rule.resources,
                    "includeInUserInfo": String(rule.includeInUserInfo),
                ]
                if !rule.extraClaims.isEmpty { item["extraClaims"] = JSONText.encode(.object(rule.extraClaims)) }
                return item
            }
        } catch {
            values["grantError"] = "Your grants cannot be read: \(error.message)"
            values["dcr"] = "not granted"
        }
        values["adminUI"] = adminUI ? "allowed" : "not granted"
        if let notice { values["notice"] = notice }
        let loginToken = pageFormToken("end-login", visitor: visitor)
        let logins = await provider.logins(userID: person.userID)
        values["hasLogins"] = !logins.isEmpty
        values["logins"] = logins.map { login -> [String: Any] in
            [
                "handle": login.handle, "clientName": login.clientName,
                "nodeName": login.nodeName.isEmpty ? "node \(login.nodeID)" : login.nodeName,
                "signedInAt": UIPages.when(login.signedInAt), "lastUsedAt": UIPages.when(login.lastUsedAt),
                "expiresAt": UIPages.when(login.expiresAt), "csrfToken": loginToken,
            ]
        }
        let consentToken = pageFormToken("revoke-consent", visitor: visitor)
        values["consents"] = await provider.consents(userID: person.userID).map { consent -> [String: Any] in
            [
                "clientName": consent.clientName, "clientID": consent.clientID,
                "grantedAt": UIPages.when(consent.grantedAt), "scopes": consent.scopes.joined(separator: " "),
                "activeLogins": consent.activeLogins, "csrfToken": consentToken,
            ]
        }
        return UIPages.page("uiMe", values, navigation: .init(admin: adminUI, user: true))
    }
}

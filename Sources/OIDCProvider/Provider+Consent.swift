import Foundation
import Telemetry

/// A consent a user gave, as the user's own page lists it.
public struct ConsentSummary: Sendable, Equatable {
    public var clientID: String
    public var clientName: String
    public var grantedAt: Date
    public var scopes: [String]
    /// The user's live logins (refresh families) with this client.
    public var activeLogins: Int
}

extension Provider {
    /// The consent page's content for a parked request.
    func consentPrompt(requestID: String, parked: ConsentRequests.Parked, client: Client) -> ConsentPrompt {
        let grant = parked.grant
        var redirectHost = grant.redirectURI
        var redirectOrigin: String?
        if let components = URLComponents(string: grant.redirectURI), let scheme = components.scheme {
            if let host = components.host, !host.isEmpty {
                redirectHost = host + (components.port.map { ":\($0)" } ?? "")
                redirectOrigin = "\(scheme)://\(redirectHost)"
            } else {
                redirectHost = scheme + ":"
                redirectOrigin = scheme + ":"
            }
        }
        return ConsentPrompt(
            requestID: requestID, csrfToken: parked.csrfToken, clientID: client.clientID,
            clientName: client.name.isEmpty ? client.clientID : client.name, redirectHost: redirectHost,
            redirectOrigin: redirectOrigin, userLogin: grant.identity.loginName, claims: Self.claimLines(grant),
            dynamicallyRegistered: client.dynamicallyRegistered)
    }

    /// What a client learns with `grant`, in the person's words.
    static func claimLines(_ grant: AuthorizationGrant) -> [String] {
        var lines: [String] = []
        if grant.scopes.contains(Scope.openid) { lines.append("your tailnet user ID and the device you sign in from") }
        // A `claims` request releases the same claims as the scope that usually carries them.
        let requested = Set((grant.claims?.idToken ?? []) + (grant.claims?.userInfo ?? []))
        if grant.scopes.contains(Scope.profile)
            || !requested.isDisjoint(with: ["name", "preferred_username", "username", "picture"])
        {
            lines.append("your name, user name and profile picture")
        }
        if grant.scopes.contains(Scope.email) || !requested.isDisjoint(with: ["email", "email_verified"]) {
            lines.append("your login name as an email address")
        }
        if grant.scopes.contains(Scope.groups) || requested.contains("groups") {
            lines.append("the groups you belong to")
        }
        if grant.scopes.contains("offline_access") || grant.scopes.contains(Scope.openid) {
            lines.append("to stay signed in for up to 30 days")
        }
        for scope in grant.scopes where !Scope.standard.contains(scope) { lines.append("access named \(scope)") }
        for resource in grant.resources { lines.append("access to \(resource)") }
        return lines
    }

    /// Answers the consent page: `allow` remembers the consent (durably) and issues the code,
    /// `deny` sends the client `access_denied`.
    ///
    /// - Important: The request is answerable once, only with its CSRF token (compared in
    ///   constant time), and only by the same user on the same device that asked.
    public func decideConsent(
        requestID: String, csrfToken: String, decision: ConsentDecision,
        identify: @Sendable () async throws(IdentityFailure) -> UserIdentity
    ) async -> AuthorizeResult {
        var outcome = TsidpMetrics.LoginResult.refused
        let result = await consentAnswer(
            requestID: requestID, csrfToken: csrfToken, decision: decision, outcome: &outcome, identify: identify)
        metrics.login(outcome)
        return result
    }

    /// ``decideConsent(requestID:csrfToken:decision:identify:)``, reporting in `outcome` what
    /// became of the sign-in.
    func consentAnswer(
        requestID: String, csrfToken: String, decision: ConsentDecision, outcome: inout TsidpMetrics.LoginResult,
        identify: @Sendable () async throws(IdentityFailure) -> UserIdentity
    ) async -> AuthorizeResult {
        let expired = OAuthError(
            .invalidRequest,
            "This sign-in request has expired or was already answered. Start again from the application.",
            status: 400)
        guard let parked = consentRequests.take(requestID, now: now()) else { return .errorPage(expired) }
        guard ConstantTime.equals(csrfToken, parked.csrfToken) else {
            return .errorPage(OAuthError(.accessDenied, "The sign-in form was not sent by this page.", status: 403))
        }
        let identity: UserIdentity
        do {
            identity = try await identify()
        } catch {
            outcome = .unknownDevice
            return .errorPage(OAuthError(.accessDenied, "The device is not identified on the tailnet.", status: 403))
        }
        let asked = parked.grant.identity
        guard identity.userID == asked.userID, identity.nodeID == asked.nodeID, !identity.isTagged else {
            return .errorPage(
                OAuthError(.accessDenied, "This sign-in request was started by another user or device.", status: 403))
        }
        guard decision == .allow else {
            outcome = .declined
            logger.info(
                "sign-in declined on the consent page", metadata: ["client_id": "\(parked.grant.clientID)"])
            return respond(
                parked.grant.redirectURI, mode: parked.responseMode, state: parked.state,
                error: OAuthError(.accessDenied, "the user declined to sign in to this application"))
        }
        guard await clients.client(parked.grant.clientID) != nil else { return .errorPage(expired) }
        var fresh = parked
        fresh.grant.identity = identity
        let record = ConsentRecord(
            userID: identity.userID, clientID: parked.grant.clientID, grantedAt: now(), scopes: parked.grant.scopes)
        do {
            try await ledger.transact { tables in
                tables.setConsent(ConsentRecord.key(userID: identity.userID, clientID: record.clientID), record)
            }
        } catch {
            return respond(
                parked.grant.redirectURI, mode: parked.responseMode, state: parked.state,
                error: OAuthError(.temporarilyUnavailable, "the consent could not be stored; try again"))
        }
        logger.info("consent given", metadata: ["client_id": "\(record.clientID)"])
        return issueCode(fresh, outcome: &outcome)
    }

    /// The consents `userID` gave, newest first.
    public func consents(userID: Int64) async -> [ConsentSummary] {
        let (records, logins) = ledger.read { tables in
            (
                tables.consents.values.filter { $0.userID == userID },
                tables.families.values.filter { $0.grant.identity.userID == userID }.map(\.grant.clientID)
            )
        }
        var summaries: [ConsentSummary] = []
        for record in records {
            let name = await clients.client(record.clientID)?.name ?? record.clientID
            summaries.append(
                ConsentSummary(
                    clientID: record.clientID, clientName: name.isEmpty ? record.clientID : name,
                    grantedAt: record.grantedAt, scopes: record.scopes,
                    activeLogins: logins.filter { $0 == record.clientID }.count))
        }
        return summaries.sorted { ($0.grantedAt, $0.clientID) > ($1.grantedAt, $1.clientID) }
    }

    /// Ends `userID`'s consent to `clientID` and every login of that user with that client;
    /// returns whether there was a consent. The next sign-in asks again.
    @discardableResult
    public func revokeConsent(userID: Int64, clientID: String) async throws -> Bool {
        let ended = try await ledger.transact { tables -> Bool in
            let key = ConsentRecord.key(userID: userID, clientID: clientID)
            guard tables.consents[key] != nil else { return false }
            tables.setConsent(key, nil)
            for (id, family) in tables.families
            where family.grant.clientID == clientID && family.grant.identity.userID == userID {
                tables.revokeFamily(id)
            }
            return true
        }
        if ended { logger.info("consent revoked by the user", metadata: ["client_id": "\(clientID)"]) }
        return ended
    }
}

import Foundation

/// What the end-session endpoint (OpenID Connect RP-Initiated Logout 1.0) answers.
public enum EndSessionResult: Sendable, Equatable {
    /// 302 to a registered `post_logout_redirect_uri`, with `state` when one was sent.
    case redirect(String)
    /// The signed-out page: `clientName` names the application when the request named one;
    /// `endedLogins` is how many of the person's logins to it ended.
    case signedOut(clientName: String?, endedLogins: Int)
    /// The request is refused; shown to the person, never redirected.
    case errorPage(OAuthError)
}

extension Provider {
    /// Handles an RP-initiated logout request (`/logout`, GET or POST).
    ///
    /// The application is the one `client_id` names, or else the audience of `id_token_hint`.
    /// With a valid `id_token_hint` whose subject is the caller, the caller's logins to that
    /// application end: their refresh tokens and the access tokens issued with them stop
    /// working. The browser then goes back to `post_logout_redirect_uri` when the application
    /// registered it exactly, or sees the signed-out page.
    ///
    /// - Important: Only the caller's own logins end (the tailnet names the caller; the hint
    ///   must name the same user), and only when the request carries an ID token this provider
    ///   signed for the application: a bare link cannot end anybody's logins. An unregistered
    ///   `post_logout_redirect_uri` is never followed.
    public func endSession(
        _ parameters: OAuthParameters, identify: @Sendable () async throws(IdentityFailure) -> UserIdentity
    ) async -> EndSessionResult {
        do {
            let hintText = try parameters.single("id_token_hint")
            let requestedClientID = try parameters.single("client_id")
            let returnURI = try parameters.single("post_logout_redirect_uri")
            let state = try parameters.single("state")

            let hint = try hintText.map { hint in
                do {
                    return try verifiedIDTokenHint(hint)
                } catch {
                    throw OAuthError(
                        .invalidRequest, "The id_token_hint is not an ID token this identity provider issued.")
                }
            }
            var clientID = requestedClientID
            if let hint {
                if let requestedClientID {
                    guard hint.audience.contains(requestedClientID) else {
                        throw OAuthError(
                            .invalidRequest, "The id_token_hint was issued to another application than client_id names."
                        )
                    }
                } else {
                    clientID = hint.authorizedParty ?? (hint.audience.count == 1 ? hint.audience[0] : nil)
                }
            }
            var client: Client?
            if let clientID {
                guard let found = await clients.client(clientID) else {
                    throw OAuthError(
                        .invalidRequest, "No application with client ID \(Self.clip(clientID)) is registered.")
                }
                client = found
            }
            if let returnURI {
                guard let client else {
                    throw OAuthError(
                        .invalidRequest,
                        "The request names a post_logout_redirect_uri but no application (id_token_hint or client_id).")
                }
                guard client.postLogoutRedirectURIs.contains(returnURI) else {
                    throw OAuthError(
                        .invalidRequest,
                        "The post_logout_redirect_uri \(Self.clip(returnURI)) is not registered for \(client.name.isEmpty ? client.clientID : client.name)."
                    )
                }
            }

            var ended = 0
            if let hint, let client {
                let caller: UserIdentity
                do {
                    caller = try await identify()
                } catch {
                    throw OAuthError(.accessDenied, "This device is not identified on the tailnet.", status: 403)
                }
                guard hint.subject == pairwiseSubject(for: caller, client: client) ?? IDToken.subject(caller) else {
                    throw OAuthError(
                        .accessDenied, "The id_token_hint names another user than the one signed in on this device.",
                        status: 403)
                }
                ended = try await endLogins(userID: caller.userID, clientID: client.clientID)
            }
            if let returnURI {
                return .redirect(RedirectURI.appending(state.map { [("state", $0)] } ?? [], to: returnURI))
            }
            return .signedOut(clientName: client.map { $0.name.isEmpty ? $0.clientID : $0.name }, endedLogins: ended)
        } catch let error as OAuthError {
            return .errorPage(error)
        } catch {
            return .errorPage(OAuthError(.invalidRequest, "The logout request is malformed."))
        }
    }

    /// Ends every login of `userID` to `clientID` and the access tokens issued with them;
    /// returns how many logins ended.
    func endLogins(userID: Int64, clientID: String) async throws -> Int {
        let ended = try await ledger.transact { tables -> Int in
            var ended = 0
            for (id, family) in tables.families
            where family.grant.identity.userID == userID && family.grant.clientID == clientID {
                if tables.revokeFamily(id) { ended += 1 }
            }
            for (key, record) in tables.access
            where record.grant.identity.userID == userID && record.grant.clientID == clientID {
                tables.setAccess(key, nil)
            }
            return ended
        }
        logger.info(
            "logins ended by RP-initiated logout", metadata: ["client_id": "\(clientID)", "logins": "\(ended)"])
        return ended
    }
}

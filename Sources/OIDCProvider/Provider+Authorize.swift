import Foundation
import Telemetry

/// What `/authorize` answers.
public enum AuthorizeResult: Sendable, Equatable {
    /// 302 to this URL (success or an error the client can handle).
    case redirect(String)
    /// An auto-submitting HTML form posting `fields` to `action` (`response_mode=form_post`).
    case formPost(action: String, fields: [String: String])
    /// An error shown to the person, never redirected: the client or redirect URI is not trusted.
    case errorPage(OAuthError)
    /// The consent page: the client was not vetted by the operator and the person has not agreed
    /// to sign in to it yet (or the client asked with `prompt=consent`).
    case consent(ConsentPrompt)
}

extension Provider {
    /// Handles an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2).
    ///
    /// Checks that can only fail because of the client or redirect URI end on an error page;
    /// later failures are redirected to the client with `error`, `state` and `iss`.
    ///
    /// - Important: `identify` is asked only once the request is otherwise valid, and any failure
    ///   of it means "not identified": no default user is ever substituted.
    ///
    /// - Parameter legacyNodeID: set for the Go tsidp's legacy flow (`/authorize/<node ID>` with
    ///   `--allow-insecure-registration`): any `client_id` and redirect URI are accepted, and the
    ///   code can only be redeemed by the relying party's node.
    public func authorize(
        _ parameters: OAuthParameters, legacyNodeID: Int64? = nil,
        identify: @Sendable () async throws(IdentityFailure) -> UserIdentity
    ) async -> AuthorizeResult {
        var outcome = TsidpMetrics.LoginResult.refused
        let result = await authorizeAnswer(
            parameters, legacyNodeID: legacyNodeID, outcome: &outcome, identify: identify)
        metrics.login(outcome)
        return result
    }

    /// ``authorize(_:legacyNodeID:identify:)``, reporting in `outcome` what became of the sign-in.
    func authorizeAnswer(
        _ parameters: OAuthParameters, legacyNodeID: Int64?, outcome: inout TsidpMetrics.LoginResult,
        identify: @Sendable () async throws(IdentityFailure) -> UserIdentity
    ) async -> AuthorizeResult {
        // 1. Client and redirect URI: failures here must not redirect anywhere.
        let clientID: String
        let redirectURI: String
        let client: Client
        do {
            guard let id = try parameters.single("client_id") else {
                return .errorPage(OAuthError(.invalidRequest, "The request has no client_id."))
            }
            clientID = id
            if let legacyNodeID {
                guard configuration.allowInsecureRegistration else {
                    return .errorPage(Self.legacyDisabled)
                }
                guard let uri = try parameters.single("redirect_uri") else {
                    return .errorPage(OAuthError(.invalidRequest, "The request has no redirect_uri."))
                }
                do {
                    // The legacy flow is the operator's opt-out: plain http to any host, as the Go tsidp.
                    try RedirectURI.validate(uri, plainHTTP: .anyHost)
                } catch let error as OAuthError {
                    return .errorPage(OAuthError(.invalidRequest, "The redirect_uri is not usable: \(error.message)."))
                }
                // A registered client's ID must not be borrowed by the legacy flow: its tokens would
                // be accepted by that client's relying party.
                guard await clients.client(id) == nil else {
                    return .errorPage(
                        OAuthError(
                            .invalidRequest,
                            "Client \(Self.clip(id)) is registered; its sign-in requests go to /authorize, not to the legacy link."
                        ))
                }
                client = Client.legacy(clientID: id, redirectURI: uri, nodeID: legacyNodeID)
            } else {
                guard let found = await clients.client(id) else {
                    return .errorPage(
                        OAuthError(
                            .invalidClient,
                            "No client with ID \(Self.clip(id)) is registered with this identity provider.", status: 400
                        ))
                }
                client = found
            }
            guard let uri = try parameters.single("redirect_uri") else {
                return .errorPage(OAuthError(.invalidRequest, "The request has no redirect_uri."))
            }
            guard client.redirectURIs.contains(uri) else {
                return .errorPage(
                    OAuthError(
                        .invalidRequest,
                        "The redirect_uri \(Self.clip(uri)) is not registered for client \(client.name.isEmpty ? clientID : client.name)."
                    ))
            }
            redirectURI = uri
        } catch let error as OAuthError {
            return .errorPage(error)
        } catch {
            return .errorPage(OAuthError(.invalidRequest, "The request is malformed."))
        }

        let state = parameters.first("state")
        var responseMode = "query"
        if let mode = parameters.first("response_mode") {
            guard mode == "query" || mode == "form_post" else {
                return respond(
                    redirectURI, mode: "query", state: state,
                    error: OAuthError(.invalidRequest, "response_mode \(Self.clip(mode)) is not supported"))
            }
            responseMode = mode
        }
        func fail(_ error: OAuthError) -> AuthorizeResult {
            respond(redirectURI, mode: responseMode, state: state, error: error)
        }

        do {
            // 2. Request shape.
            if parameters.first("request") != nil {
                return fail(OAuthError(.requestNotSupported, "request objects are not supported"))
            }
            if parameters.first("request_uri") != nil {
                return fail(OAuthError(.requestURINotSupported, "request_uri is not supported"))
            }
            guard let responseType = try parameters.single("response_type") else {
                return fail(OAuthError(.invalidRequest, "response_type is required"))
            }
            guard responseType == "code" else {
                return fail(OAuthError(.unsupportedResponseType, "only response_type=code is supported"))
            }
            guard client.grantTypes.contains("authorization_code") else {
                return fail(
                    OAuthError(
                        .unauthorizedClient,
                        "this client is not registered for the authorization_code grant type (grant_types)"))
            }
            var scopes = Scope.parse(try parameters.single("scope"))
            let allowed = Set(Scope.standard + client.customScopes)
            if let unknown = scopes.first(where: { !allowed.contains($0) }) {
                // OIDC Core §3.1.2.1: scope values that are not understood are ignored in OpenID
                // requests; a plain OAuth request for an unknown scope is refused (RFC 6749 §4.1.2.1).
                guard scopes.contains(Scope.openid) else {
                    return fail(OAuthError(.invalidScope, "scope \(Self.clip(unknown)) is not supported"))
                }
                scopes = scopes.filter(allowed.contains)
            }
            let nonce = try parameters.single("nonce")
            var challenge: String?
            var method: PKCE.Method?
            if let value = try parameters.single("code_challenge") {
                let methodText = try parameters.single("code_challenge_method") ?? "plain"
                guard let parsed = PKCE.Method(rawValue: methodText) else {
                    return fail(OAuthError(.invalidRequest, "code_challenge_method must be S256 or plain"))
                }
                guard PKCE.isWellFormed(value) else {
                    return fail(
                        OAuthError(.invalidRequest, "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]"))
                }
                challenge = value
                method = parsed
            }
            if client.isPublic && method != .s256 {
                return fail(OAuthError(.invalidRequest, "public clients must use PKCE with code_challenge_method=S256"))
            }
            let prompts = Set((try parameters.single("prompt") ?? "").split(separator: " ").map(String.init))
            if prompts.contains("none") && prompts.count > 1 {
                return fail(OAuthError(.invalidRequest, "prompt=none cannot be combined with other values"))
            }
            var maxAge: Int?
            if let text = try parameters.single("max_age") {
                guard let value = Int(text), value >= 0 else {
                    return fail(OAuthError(.invalidRequest, "max_age must be a non-negative integer"))
                }
                maxAge = value
            }
            let claimsRequest = try parameters.single("claims").map(ClaimsRequest.parse).flatMap {
                $0.idToken.isEmpty && $0.userInfo.isEmpty ? nil : $0
            }
            if let claimsText = try parameters.single("claims"),
                let required = ClaimsRequest.essentialACRValues(claimsText),
                !required.contains(IDToken.authenticationContextClass)
            {
                // OIDC Core §5.5.1.1: an essential acr that cannot be met fails the sign-in.
                return fail(
                    OAuthError(
                        .accessDenied,
                        "the essential acr cannot be met: tsidp signs people in by their tailnet device (acr \(IDToken.authenticationContextClass))"
                    ))
            }
            let hintSubject = try idTokenHintSubject(try parameters.single("id_token_hint"), clientID: clientID)
            var resources: [String] = []
            for resource in parameters.all("resource") {
                guard let url = URLComponents(string: resource), url.scheme != nil, url.fragment == nil else {
                    return fail(OAuthError(.invalidTarget, "resource \(Self.clip(resource)) is not an absolute URI"))
                }
                if !resources.contains(resource) { resources.append(resource) }
            }

            // 3. Who is asking.
            let identity: UserIdentity
            do {
                identity = try await identify()
            } catch {
                if prompts.contains("none") {
                    return fail(OAuthError(.loginRequired, "the device is not identified on the tailnet"))
                }
                switch error {
                case .unknownDevice:
                    outcome = .unknownDevice
                    return fail(OAuthError(.accessDenied, "the device is not identified on the tailnet"))
                case .unavailable:
                    outcome = .unavailable
                    return fail(OAuthError(.temporarilyUnavailable, "the tailnet identity service is unavailable"))
                }
            }
            guard !identity.isTagged else {
                outcome = .unknownDevice
                return fail(OAuthError(.accessDenied, "tagged devices have no user identity and cannot log in"))
            }
            let subject = pairwiseSubject(for: identity, client: client)
            if let hintSubject, hintSubject != subject ?? IDToken.subject(identity), prompts.contains("none") {
                return fail(
                    OAuthError(.loginRequired, "the device belongs to a different user than id_token_hint names"))
            }
            // A grant that does not parse grants nothing. The person (whose tailnet policy needs
            // fixing) is told on a page; the relying party could not help.
            let policy: Grants
            do {
                policy = try self.policy(for: identity)
            } catch {
                return .errorPage(error)
            }
            if !resources.isEmpty {
                resources = resources.filter { policy.allows(resource: $0, for: identity.loginName) }
                if resources.isEmpty {
                    return fail(OAuthError(.invalidTarget, "none of the requested resources is granted to this user"))
                }
            }

            var grant = AuthorizationGrant(
                clientID: clientID, redirectURI: redirectURI, scopes: scopes, nonce: nonce, codeChallenge: challenge,
                codeChallengeMethod: method, resources: resources, identity: identity, authTime: now(),
                boundNodeID: legacyNodeID, claims: claimsRequest)
            grant.pairwiseSubject = subject
            var parked = ConsentRequests.Parked(
                csrfToken: "", grant: grant, forceNewAuthentication: prompts.contains("login"),
                maxAge: maxAge, responseMode: responseMode, state: state,
                expiresAt: now().addingTimeInterval(ConsentRequests.lifetime))

            // 4. Consent, for clients the operator did not vet.
            if client.requiresConsent {
                let key = ConsentRecord.key(userID: identity.userID, clientID: clientID)
                let consented = ledger.read { $0.consents[key] != nil }
                if !consented || prompts.contains("consent") {
                    if prompts.contains("none") {
                        return fail(
                            OAuthError(.consentRequired, "the user has not agreed to sign in to this application"))
                    }
                    parked.csrfToken = RandomToken.make(bytes: 24)
                    guard let requestID = consentRequests.park(parked, now: now()) else {
                        return fail(
                            OAuthError(
                                .temporarilyUnavailable, "too many sign-ins in progress; try again in a few minutes"))
                    }
                    outcome = .consentShown
                    return .consent(consentPrompt(requestID: requestID, parked: parked, client: client))
                }
            }

            // 5. Issue the code.
            return issueCode(parked, outcome: &outcome)
        } catch let error as OAuthError {
            return fail(error)
        } catch {
            return fail(OAuthError(.invalidRequest, "the request is malformed"))
        }
    }

    /// The pairwise subject of `identity` at `client` (OIDC Core §8.1), or `nil` when the client
    /// uses public subjects.
    func pairwiseSubject(for identity: UserIdentity, client: Client) -> String? {
        guard client.usesPairwiseSubjects else { return nil }
        return keys.pairwiseSubject(userID: identity.userID, sector: client.sector)
    }

    /// The `sub` of an `id_token_hint`, which must be an ID token this provider signed for
    /// `clientID` (it may have expired, OIDC Core §3.1.2.1).
    func idTokenHintSubject(_ hint: String?, clientID: String) throws -> String? {
        guard let hint else { return nil }
        let verified = try verifiedIDTokenHint(hint)
        guard verified.audience.contains(clientID) else {
            throw OAuthError(.invalidRequest, "id_token_hint was issued to another client")
        }
        return verified.subject
    }

    /// The subject, audience and `azp` of `hint` when it is an ID token this provider signed with
    /// a key it still publishes; its expiry is not checked (a hint may have expired).
    func verifiedIDTokenHint(_ hint: String) throws -> (subject: String, audience: [String], authorizedParty: String?) {
        let parts = hint.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]),
            let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
            let kid = header["kid"] as? String, let key = keys.key(withID: kid), key.verify(hint),
            let payloadData = Base64URL.decode(parts[1]),
            let payload = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any],
            payload["iss"] as? String == configuration.issuer, let subject = payload["sub"] as? String
        else {
            throw OAuthError(.invalidRequest, "id_token_hint is not an ID token from this provider")
        }
        let audience = (payload["aud"] as? [String]) ?? [(payload["aud"] as? String) ?? ""]
        return (subject, audience, payload["azp"] as? String)
    }

    /// Issues a code for a validated request and sends it to the client.
    func issueCode(_ request: ConsentRequests.Parked, outcome: inout TsidpMetrics.LoginResult) -> AuthorizeResult {
        var grant = request.grant
        let issuedAt = now()
        grant.authTime = sessions.authenticate(
            grant.identity, at: issuedAt, forceNew: request.forceNewAuthentication, maxAge: request.maxAge)
        let code = RandomToken.make(bytes: 32)
        let codeHash = GrantLedger.hash(code)
        let expiresAt = issuedAt.addingTimeInterval(configuration.codeLifetime)
        let issued = grant
        guard ledger.changeCodes({ $0.issueCode(codeHash, grant: issued, expiresAt: expiresAt, now: issuedAt) }) else {
            return respond(
                grant.redirectURI, mode: request.responseMode, state: request.state,
                error: OAuthError(.temporarilyUnavailable, "too many sign-ins in progress; try again in a few minutes"))
        }
        outcome = .issued
        var fields: [(String, String)] = [("code", code)]
        if let state = request.state { fields.append(("state", state)) }
        fields.append(("iss", configuration.issuer))
        return deliver(grant.redirectURI, mode: request.responseMode, fields: fields)
    }

    func respond(_ redirectURI: String, mode: String, state: String?, error: OAuthError) -> AuthorizeResult {
        var fields: [(String, String)] = [("error", error.code.rawValue), ("error_description", error.message)]
        if let state { fields.append(("state", state)) }
        fields.append(("iss", configuration.issuer))
        return deliver(redirectURI, mode: mode, fields: fields)
    }

    private func deliver(_ redirectURI: String, mode: String, fields: [(String, String)]) -> AuthorizeResult {
        if mode == "form_post" {
            return .formPost(action: redirectURI, fields: Dictionary(fields, uniquingKeysWith: { a, _ in a }))
        }
        return .redirect(RedirectURI.appending(fields, to: redirectURI))
    }

    /// The page for `/authorize/<node>` when the legacy flow is off.
    static let legacyDisabled = OAuthError(
        .invalidClient,
        "This sign-in link uses the legacy flow, in which any client ID is accepted and the application is identified by its tailnet node. That flow is off.",
        status: 400)

    /// Shortens attacker-controlled text before it is shown.
    static func clip(_ text: String) -> String {
        text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}

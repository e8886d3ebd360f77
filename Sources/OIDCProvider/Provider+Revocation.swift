import AnyJSON
import Foundation

extension Provider {
    /// RFC 7009 token revocation. Answers 200 for unknown tokens and for tokens of other clients
    /// (the RFC's rule, so that a client cannot probe for tokens), and revokes what the caller owns:
    /// an access token alone, or a refresh token with its whole family.
    public func revoke(_ form: OAuthParameters, authorization: String?) async -> TokenResponse {
        do {
            let credentials = try PresentedCredentials(authorization: authorization, form: form)
            let client = try await authenticate(credentials, endpoint: "/revoke")
            guard let token = try form.single("token") else {
                throw OAuthError(.invalidRequest, "token is required")
            }
            let hint = try form.single("token_type_hint")
            if let hint, hint != "access_token", hint != "refresh_token" {
                throw OAuthError(.unsupportedTokenType, "token_type_hint \(Self.clip(hint)) is not supported")
            }
            let hash = GrantLedger.hash(token)
            let revoked = try await ledger.transact { tables -> Bool in
                if let record = tables.access[hash], record.grant.clientID == client.clientID {
                    tables.setAccess(hash, nil)
                    return true
                }
                if let (id, family) = tables.family(forTokenHash: hash), family.grant.clientID == client.clientID {
                    return tables.revokeFamily(id)
                }
                return false
            }
            if revoked {
                logger.info("token revoked by its client", metadata: ["client_id": "\(client.clientID)"])
            }
            return TokenResponse(status: 200, body: [], wwwAuthenticate: nil)
        } catch let error as OAuthError {
            return .failure(error)
        } catch {
            return .failure(OAuthError(.serverError, "the token could not be revoked"))
        }
    }

    /// RFC 7662 token introspection, for authenticated confidential clients only, and only about
    /// tokens issued to the caller, naming it as an audience, or (for a resource server) naming
    /// one of the resources it registered as an audience; anything else is `{"active": false}`.
    ///
    /// - Important: A refresh token is introspectable by its own client only.
    public func introspect(_ form: OAuthParameters, authorization: String?) async -> TokenResponse {
        do {
            let credentials = try PresentedCredentials(authorization: authorization, form: form)
            let client = try await authenticate(credentials, endpoint: "/introspect")
            guard !client.isPublic else {
                throw OAuthError(.invalidClient, "public clients cannot introspect tokens")
            }
            guard let token = try form.single("token") else {
                throw OAuthError(.invalidRequest, "token is required")
            }
            return introspection(of: token, refreshTokensOf: client.clientID) { entry in
                entry.grant.clientID == client.clientID || entry.audience.contains(client.clientID)
                    || client.servesAny(of: entry.audience)
            }
        } catch let error as OAuthError {
            return .failure(error)
        } catch {
            return .failure(OAuthError(.serverError, "the token could not be introspected"))
        }
    }

    /// RFC 7662 introspection for a tailnet device whose grant names `resources` under
    /// `introspect` (a resource server allowed by policy rather than by a registered client): it
    /// learns about live access tokens whose audience names one of them (any, for `*`), and
    /// nothing else; refresh tokens never.
    ///
    /// - Parameter resources: the caller's ``Grants/introspectableResources``, not empty.
    public func introspect(_ form: OAuthParameters, grantedResources resources: [String]) async -> TokenResponse {
        do {
            guard let token = try form.single("token") else {
                throw OAuthError(.invalidRequest, "token is required")
            }
            let any = resources.contains("*")
            return introspection(of: token, refreshTokensOf: nil) { entry in
                any || entry.audience.contains(where: resources.contains)
            }
        } catch let error as OAuthError {
            return .failure(error)
        } catch {
            return .failure(OAuthError(.serverError, "the token could not be introspected"))
        }
    }

    /// The introspection answer about `token`: active when it is a live access token `mayInspect`
    /// accepts, or the current refresh token of client `refreshOwner`.
    private func introspection(
        of token: String, refreshTokensOf refreshOwner: String?, mayInspect: (AccessTokenRecord) -> Bool
    ) -> TokenResponse {
        let inactive = TokenResponse(status: 200, body: Array("{\"active\":false}".utf8), wwwAuthenticate: nil)
        let current = now()
        let hash = GrantLedger.hash(token)
        if let entry = ledger.read({ $0.access[hash] }) {
            guard entry.expiresAt > current, mayInspect(entry) else { return inactive }
            return TokenResponse(
                status: 200,
                body: Array(
                    introspection(
                        entry.grant, audience: entry.audience, issuedAt: entry.issuedAt, expiresAt: entry.expiresAt,
                        jti: entry.jti, actor: entry.actor, tokenType: "Bearer"
                    ).utf8),
                wwwAuthenticate: nil)
        }
        if let (_, family) = ledger.read({ $0.family(forTokenHash: hash) }), family.currentTokenHash == hash {
            guard family.expiresAt > current, family.grant.clientID == refreshOwner else { return inactive }
            return TokenResponse(
                status: 200,
                body: Array(
                    introspection(
                        family.grant, audience: [family.grant.clientID], issuedAt: nil, expiresAt: family.expiresAt,
                        jti: nil, actor: nil, tokenType: "refresh_token"
                    ).utf8),
                wwwAuthenticate: nil)
        }
        return inactive
    }

    private func introspection(
        _ grant: AuthorizationGrant, audience: [String], issuedAt: Date?, expiresAt: Date, jti: String?,
        actor: ActorClaim?,
        tokenType: String
    ) -> String {
        var members: [(String, JSONValue)] = [
            ("active", .bool(true)),
            ("client_id", .string(grant.clientID)),
            ("token_type", .string(tokenType)),
            ("scope", .string(grant.scopes.joined(separator: " "))),
            ("sub", .string(grant.subject)),
            ("username", .string(grant.identity.loginName)),
            ("iss", .string(configuration.issuer)),
            ("aud", audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string))),
            ("exp", .int(Int64(expiresAt.timeIntervalSince1970))),
        ]
        if let issuedAt {
            members.append(("iat", .int(Int64(issuedAt.timeIntervalSince1970))))
            members.append(("nbf", .int(Int64(issuedAt.timeIntervalSince1970))))
        }
        if let jti { members.append(("jti", .string(jti))) }
        if grant.scopes.contains(Scope.email) {
            members.append(("email", .string(grant.identity.realishEmail(idpHost: configuration.idpHost))))
        }
        if grant.scopes.contains(Scope.profile) {
            members.append(("preferred_username", .string(grant.identity.username)))
            if let picture = grant.identity.pictureURL { members.append(("picture", .string(picture))) }
        }
        if let actor { members.append(("act", ActorClaim.json(actor))) }
        return JSONText.object(members)
    }
}

import AnyJSON
import Foundation

/// RFC 8693 token type identifiers.
public enum TokenType {
    public static let accessToken = "urn:ietf:params:oauth:token-type:access_token"
    public static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
}

extension Provider {
    /// RFC 8693 token exchange (enabled with `--enable-sts`): an authenticated client trades an
    /// access token it is an audience of for a new one bound to other audiences the subject's user
    /// is granted (`users`/`resources` rules), optionally on behalf of an actor (`act` claim).
    ///
    /// - Important: The exchanging client must be the subject token's client or an audience of it
    ///   (a resource server's registered `resources` do not count); otherwise any client holding
    ///   someone's token could re-target it.
    func exchange(_ form: OAuthParameters, client: Client) async throws -> TokenResponse {
        guard configuration.enableTokenExchange else {
            throw OAuthError(.unsupportedGrantType, "token exchange is not enabled (start tsidp with --enable-sts)")
        }
        guard !client.isPublic else {
            throw OAuthError(.unauthorizedClient, "public clients cannot exchange tokens")
        }
        guard let subjectToken = try form.single("subject_token") else {
            throw OAuthError(.invalidRequest, "subject_token is required")
        }
        guard try form.single("subject_token_type") == TokenType.accessToken else {
            throw OAuthError(.invalidRequest, "subject_token_type must be \(TokenType.accessToken)")
        }
        if let requested = try form.single("requested_token_type"), requested != TokenType.accessToken {
            throw OAuthError(.invalidRequest, "requested_token_type must be \(TokenType.accessToken)")
        }
        let current = now()
        let subjectHash = GrantLedger.hash(subjectToken)
        guard let subject = ledger.read({ $0.access[subjectHash] }), subject.expiresAt > current else {
            throw OAuthError(.invalidGrant, "the subject token is invalid or expired")
        }
        guard subject.audience.contains(client.clientID) || subject.grant.clientID == client.clientID else {
            throw OAuthError(.invalidGrant, "the subject token was not issued to this client")
        }
        let audiences = form.all("audience") + form.all("resource")
        guard !audiences.isEmpty else {
            throw OAuthError(.invalidRequest, "audience is required")
        }
        let policy = try self.policy(for: subject.grant.identity)
        var allowed: [String] = []
        for audience in audiences where !allowed.contains(audience) {
            if policy.allows(resource: audience, for: subject.grant.identity.loginName) { allowed.append(audience) }
        }
        guard !allowed.isEmpty else {
            throw OAuthError(.invalidTarget, "the subject's user is not granted any of the requested audiences")
        }
        var scopes = subject.grant.scopes
        if let text = try form.single("scope") {
            let requested = Scope.parse(text)
            guard requested.allSatisfy(scopes.contains) else {
                throw OAuthError(.invalidScope, "an exchange cannot add scopes to the subject token's")
            }
            scopes = requested
        }
        var actor: ActorClaim?
        if let actorToken = try form.single("actor_token") {
            guard try form.single("actor_token_type") == TokenType.accessToken else {
                throw OAuthError(.invalidRequest, "actor_token_type must be \(TokenType.accessToken)")
            }
            guard let entry = ledger.read({ $0.access[GrantLedger.hash(actorToken)] }), entry.expiresAt > current else {
                throw OAuthError(.invalidRequest, "the actor token is invalid or expired")
            }
            guard (entry.actor?.depth ?? 0) < ActorClaim.maximumDepth else {
                throw OAuthError(
                    .invalidRequest, "the actor chain is longer than \(ActorClaim.maximumDepth) delegations")
            }
            actor = ActorClaim(
                sub: entry.grant.subject, clientID: entry.grant.clientID,
                act: entry.actor.map(ActorClaim.Box.init))
        } else if try form.single("actor_token_type") != nil {
            throw OAuthError(.invalidRequest, "actor_token_type without actor_token")
        }

        var grant = subject.grant
        grant.clientID = client.clientID
        grant.scopes = scopes
        grant.resources = allowed
        let jti = RandomToken.make(bytes: 16)
        let token: String
        if client.usesJWTAccessTokens {
            token = try keys.signingKey(for: client.idTokenSignedResponseAlg).signAccessToken(
                payload: accessTokenPayload(grant: grant, issuedAt: current, jti: jti, actor: actor, audience: allowed))
        } else {
            token = RandomToken.make(bytes: 32)
        }
        // The new token lives no longer than the subject token and dies with its login (family), so
        // exchanging cannot outlast a revocation.
        let expiresAt = min(current.addingTimeInterval(configuration.accessTokenLifetime), subject.expiresAt)
        let record = AccessTokenRecord(
            grant: grant, audience: allowed, expiresAt: expiresAt, issuedAt: current, familyID: subject.familyID,
            jti: jti, actor: actor)
        let tokenHash = GrantLedger.hash(token)
        let recorded = try await ledger.transact { tables -> Bool in
            // The subject token may have been revoked while this one was being made.
            guard tables.access[subjectHash] != nil else { return false }
            tables.setAccess(tokenHash, record)
            return true
        }
        guard recorded else { throw OAuthError(.invalidGrant, "the subject token is invalid or expired") }
        let members: [(String, JSONValue)] = [
            ("access_token", .string(token)),
            ("issued_token_type", .string(TokenType.accessToken)),
            ("token_type", .string("Bearer")),
            ("expires_in", .int(Int64(max(0, expiresAt.timeIntervalSince(current).rounded(.down))))),
            ("scope", .string(scopes.joined(separator: " "))),
        ]
        return TokenResponse(status: 200, body: JSONText.objectBytes(members), wwwAuthenticate: nil)
    }
}

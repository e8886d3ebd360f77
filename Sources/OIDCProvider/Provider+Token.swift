import AnyJSON
import Foundation
import Telemetry

/// What `/token` (and `/revoke`, `/introspect`) answers: a JSON body and its status; a 401
/// carries a `WWW-Authenticate: Basic` challenge.
public struct TokenResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var wwwAuthenticate: String?
    /// The OAuth error of an error answer.
    public var errorCode: OAuthError.Code?

    init(status: Int, body: [UInt8], wwwAuthenticate: String?, errorCode: OAuthError.Code? = nil) {
        self.status = status
        self.body = body
        self.wwwAuthenticate = wwwAuthenticate
        self.errorCode = errorCode
    }

    /// An error answer. Every 401 at these endpoints is a failed client authentication, which
    /// the client tried with HTTP Basic or could have (RFC 6749 §5.2): it carries the challenge,
    /// whether the credentials were wrong, missing or malformed.
    static func failure(_ error: OAuthError) -> TokenResponse {
        TokenResponse(
            status: error.status, body: error.jsonBody,
            wwwAuthenticate: error.status == 401 ? "Basic realm=\"tsidp\"" : nil, errorCode: error.code)
    }
}

/// Client credentials presented at the token endpoint.
struct PresentedCredentials {
    var clientID: String?
    var secret: String?
    /// A JWT client assertion (RFC 7523 §2.2), not yet verified.
    var assertion: ClientAssertion.Parsed?

    /// Reads `client_secret_basic` from the Authorization header, `client_secret_post` /
    /// public `client_id` from the form (RFC 6749 §2.3.1), or a JWT client assertion
    /// (`private_key_jwt`, `client_secret_jwt`, RFC 7523). Using two methods is an error.
    init(authorization: String?, form: OAuthParameters) throws {
        let formID = try form.single("client_id")
        let formSecret = try form.single("client_secret")
        let assertionType = try form.single("client_assertion_type")
        let assertionText = try form.single("client_assertion")
        if assertionType != nil || assertionText != nil {
            guard assertionType == ClientAssertion.type else {
                throw OAuthError(
                    .invalidClient, "client_assertion_type must be \(ClientAssertion.type) with a client_assertion")
            }
            guard let assertionText else { throw OAuthError(.invalidClient, "client_assertion is required") }
            if formSecret != nil || !(authorization ?? "").isEmpty {
                throw OAuthError(.invalidRequest, "use one client authentication method, not both")
            }
            let parsed = try ClientAssertion.parse(assertionText)
            guard let claimed = parsed.claimedClient else {
                throw OAuthError(.invalidClient, "client_assertion: sub (the client ID) is required")
            }
            if let formID, formID != claimed {
                throw OAuthError(.invalidClient, "client_id differs from the client_assertion's sub")
            }
            self.clientID = claimed
            self.secret = nil
            self.assertion = parsed
            return
        }
        if let authorization, !authorization.isEmpty {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "basic" else {
                throw OAuthError(.invalidClient, "the Authorization header is not HTTP Basic")
            }
            // Optional whitespace around the credentials is spaces and tabs (RFC 9110 §5.6.3);
            // trimmed on the UTF-8 view, without a round trip through NSString.
            let utf8 = parts[1].utf8
            var start = utf8.startIndex
            var end = utf8.endIndex
            while start < end, utf8[start] == 0x20 || utf8[start] == 0x09 { start = utf8.index(after: start) }
            while start < end, utf8[utf8.index(before: end)] == 0x20 || utf8[utf8.index(before: end)] == 0x09 {
                end = utf8.index(before: end)
            }
            guard let decoded = Data(base64Encoded: String(Substring(utf8[start..<end]))),
                let text = String(validating: decoded, as: UTF8.self), let colon = text.firstIndex(of: ":")
            else {
                throw OAuthError(.invalidClient, "the Basic credentials are malformed")
            }
            let id = try OAuthParameters.decodeComponent(text[..<colon])
            let secret = try OAuthParameters.decodeComponent(text[text.index(after: colon)...])
            if formSecret != nil {
                throw OAuthError(.invalidRequest, "use one client authentication method, not both")
            }
            if let formID, formID != id {
                throw OAuthError(.invalidClient, "client_id in the form differs from the Basic credentials")
            }
            self.clientID = id
            self.secret = secret
        } else {
            self.clientID = formID
            self.secret = formSecret
        }
    }
}

extension Provider {
    /// Handles a token request (RFC 6749 §4.1.3 and §6).
    ///
    /// - Parameter callerNodeID: the tailnet node of the caller, asked only for legacy-flow grants
    ///   (`--allow-insecure-registration`), which are bound to the relying party's node.
    /// - Important: Errors never echo a presented secret, code or token.
    public func token(
        _ form: OAuthParameters, authorization: String?, callerNodeID: (@Sendable () async -> Int64?)? = nil
    ) async -> TokenResponse {
        let grantLabel = TsidpMetrics.grantLabel((try? form.single("grant_type")) ?? nil)
        let response = await tokenAnswer(form, authorization: authorization, callerNodeID: callerNodeID)
        if response.status == 200 {
            metrics.tokenIssued(grantType: grantLabel)
        } else {
            metrics.tokenRefused(grantType: grantLabel, error: response.errorCode?.rawValue ?? "unknown")
        }
        return response
    }

    func tokenAnswer(
        _ form: OAuthParameters, authorization: String?, callerNodeID: (@Sendable () async -> Int64?)?
    ) async -> TokenResponse {
        do {
            let credentials = try PresentedCredentials(authorization: authorization, form: form)
            guard let grantType = try form.single("grant_type") else {
                throw OAuthError(.invalidRequest, "grant_type is required")
            }
            switch grantType {
            case "authorization_code":
                if configuration.allowInsecureRegistration, let code = try form.single("code"),
                    let pending = ledger.read({ $0.codes[GrantLedger.hash(code)]?.grant }),
                    let node = pending.boundNodeID
                {
                    let client = try await legacyClient(
                        pending, node: node, credentials: credentials, callerNodeID: callerNodeID)
                    return try await redeemCode(form, client: client)
                }
                let client = try await authenticate(credentials)
                try Self.requireGrantType("authorization_code", of: client)
                return try await redeemCode(form, client: client)
            case "refresh_token":
                if configuration.allowInsecureRegistration, let token = try form.single("refresh_token"),
                    let family = ledger.read({ $0.family(forTokenHash: GrantLedger.hash(token))?.family.grant }),
                    let node = family.boundNodeID
                {
                    let client = try await legacyClient(
                        family, node: node, credentials: credentials, callerNodeID: callerNodeID)
                    return try await refresh(form, client: client)
                }
                let client = try await authenticate(credentials)
                try Self.requireGrantType("refresh_token", of: client)
                return try await refresh(form, client: client)
            case TokenType.grantType:
                guard configuration.enableTokenExchange else {
                    throw OAuthError(
                        .unsupportedGrantType, "token exchange is not enabled (start tsidp with --enable-sts)")
                }
                let client = try await authenticate(credentials)
                return try await exchange(form, client: client)
            default:
                throw OAuthError(.unsupportedGrantType, "grant_type \(Self.clip(grantType)) is not supported")
            }
        } catch let error as OAuthError {
            return .failure(error)
        } catch {
            return .failure(OAuthError(.serverError, "the token could not be issued"))
        }
    }

    /// Refuses a grant type the client did not register (`grant_types`, RFC 7591 §2) with
    /// `unauthorized_client` (RFC 6749 §5.2).
    static func requireGrantType(_ grantType: String, of client: Client) throws {
        guard client.grantTypes.contains(grantType) else {
            throw OAuthError(
                .unauthorizedClient, "this client is not registered for the \(grantType) grant type (grant_types)")
        }
    }

    /// Legacy flow: the relying party is whoever runs on the node the grant is bound to.
    func legacyClient(
        _ grant: AuthorizationGrant, node: Int64, credentials: PresentedCredentials,
        callerNodeID: (@Sendable () async -> Int64?)?
    ) async throws -> Client {
        if let id = credentials.clientID, id != grant.clientID {
            throw OAuthError(.invalidClient, "client authentication failed")
        }
        guard let caller = await callerNodeID?(), caller == node else {
            throw OAuthError(.invalidClient, "this grant can only be used from the relying party's own tailnet node")
        }
        return Client.legacy(clientID: grant.clientID, redirectURI: grant.redirectURI, nodeID: node)
    }

    /// The client `credentials` authenticate, at the endpoint `endpoint` (the path, for the
    /// audiences a client assertion may name).
    func authenticate(_ credentials: PresentedCredentials, endpoint: String = "/token") async throws -> Client {
        guard let id = credentials.clientID else {
            throw OAuthError(.invalidClient, "client authentication is required")
        }
        guard let client = await clients.client(id) else {
            throw OAuthError(.invalidClient, "client authentication failed")
        }
        if let assertion = credentials.assertion {
            try await verifyAssertion(assertion, client: client, endpoint: endpoint)
            return client
        }
        if client.usesClientAssertion {
            throw OAuthError(
                .invalidClient,
                "this client authenticates with a client assertion (\(client.tokenEndpointAuthMethod), RFC 7523)")
        }
        if client.isPublic {
            guard credentials.secret == nil else {
                throw OAuthError(.invalidClient, "client authentication failed")
            }
            return client
        }
        guard let secret = credentials.secret else {
            throw OAuthError(.invalidClient, "client authentication is required")
        }
        guard client.secretMatches(secret) else {
            throw OAuthError(.invalidClient, "client authentication failed")
        }
        return client
    }

    /// Verifies a client assertion of `client` (RFC 7523 §3): the method the client registered,
    /// a signature by one of its keys (or a MAC under its secret), the claims, and a `jti` not
    /// seen before.
    ///
    /// - Important: Never logs or echoes the assertion.
    func verifyAssertion(_ assertion: ClientAssertion.Parsed, client: Client, endpoint: String) async throws {
        let failed = OAuthError(.invalidClient, "client authentication failed")
        guard client.usesClientAssertion else {
            throw OAuthError(.invalidClient, "this client is not registered for client assertions (RFC 7523)")
        }
        if let only = client.tokenEndpointAuthSigningAlg, assertion.algorithm != only {
            throw OAuthError(.invalidClient, "client_assertion must be signed with \(only)")
        }
        switch client.tokenEndpointAuthMethod {
        case "client_secret_jwt":
            guard ClientAssertion.macAlgorithms.contains(assertion.algorithm), let secret = client.macSecret,
                ClientAssertion.macMatches(assertion, secret: secret)
            else { throw failed }
        default:
            guard ClientAssertion.signatureAlgorithms.contains(assertion.algorithm) else {
                throw OAuthError(
                    .invalidClient,
                    "client_assertion alg must be one of \(ClientAssertion.signatureAlgorithms.joined(separator: ", "))"
                )
            }
            guard
                try await clientKeys(client, keyID: assertion.keyID).contains(where: { key in
                    (assertion.keyID == nil || key.keyID == nil || key.keyID == assertion.keyID)
                        && key.verifies(assertion)
                })
            else { throw failed }
        }
        let issuer = configuration.issuer
        let audiences: Set<String> = [issuer, issuer + "/", issuer + "/token", issuer + endpoint]
        let current = now()
        let (jti, expiresAt) = try ClientAssertion.checkClaims(
            assertion, clientID: client.clientID, audiences: audiences, now: current)
        guard assertionReplays.record(clientID: client.clientID, jti: jti, expiresAt: expiresAt, now: current) else {
            logger.warning("client assertion replayed", metadata: ["client_id": "\(client.clientID)"])
            throw OAuthError(.invalidClient, "client_assertion was already used (jti)")
        }
    }

    /// The public keys `client` registered: its `jwks`, or its `jwks_uri`'s set, fetched when not
    /// cached, stale, or (at most every few seconds) lacking the key `keyID` names.
    func clientKeys(_ client: Client, keyID: String?) async throws -> [ClientPublicKey] {
        if let jwks = client.jwks { return (try? ClientPublicKey.keys(fromJWKS: jwks)) ?? [] }
        let uri = client.jwksURI
        guard !uri.isEmpty else { return [] }
        let current = now()
        if let cached = clientKeySets.cached(uri, now: current) {
            let knowsKey = keyID.map { id in cached.keys.contains { $0.keyID == id } } ?? true
            if !cached.mayRefetch || (cached.fresh && knowsKey) { return cached.keys }
        }
        guard let fetch = await clients.fetchDocument else {
            throw OAuthError(.invalidClient, "the client's jwks_uri cannot be fetched by this tsidp")
        }
        let keys: [ClientPublicKey]
        do {
            let bytes = try await fetch(uri)
            keys = try ClientPublicKey.keys(fromJWKS: try JSONDecoder().decode(JSONValue.self, from: Data(bytes)))
        } catch {
            logger.warning(
                "the key set at a client's jwks_uri could not be read",
                metadata: ["client_id": "\(client.clientID)", "jwks_uri": "\(uri)"])
            // The set as last fetched stays in use; the next fetch waits the minimum interval.
            clientKeySets.failed(uri, now: current)
            if let last = clientKeySets.cached(uri, now: current), !last.keys.isEmpty { return last.keys }
            throw OAuthError(.invalidClient, "the client's jwks_uri could not be read")
        }
        clientKeySets.store(keys, for: uri, now: current)
        return keys
    }

    /// What a code redemption found, decided in one critical section.
    enum Redemption: Sendable {
        case issued
        case unknown
        case expired
        case otherClient
        /// A replay: what the first redemption minted has been revoked.
        case replayed
        /// The code became redeemable between the first look and the critical section.
        case retry
    }

    private func redeemCode(_ form: OAuthParameters, client: Client) async throws -> TokenResponse {
        guard let code = try form.single("code") else {
            throw OAuthError(.invalidRequest, "code is required")
        }
        let current = now()
        let hash = GrantLedger.hash(code)
        // Look first, without using the code up: a code presented by another client stays
        // usable, so that whoever intercepted it cannot make the real client's redemption look
        // like a replay.
        guard let entry = ledger.read({ $0.codes[hash] }) else {
            throw OAuthError(.invalidGrant, "the code is invalid")
        }
        guard entry.grant.clientID == client.clientID else {
            throw OAuthError(.invalidGrant, "the code was issued to another client")
        }
        var grant = entry.grant
        let redeemable = !entry.redeemed && entry.expiresAt > current
        if redeemable {
            do {
                try checkRedemption(form, grant: grant)
                grant.resources = try tokenResources(form, grant: grant)
            } catch {
                // A failed attempt by the right client spends the code.
                ledger.changeCodes { tables in
                    if var spent = tables.codes[hash], !spent.redeemed {
                        spent.redeemed = true
                        tables.setCode(hash, spent)
                    }
                }
                throw error
            }
        }
        // Sign before taking the lock; the critical section only records. A replayed or
        // expired code needs no tokens.
        let minted = redeemable ? try mint(grant: grant, client: client, issuedAt: current, refreshToken: nil) : nil
        let refreshHash = minted.map { GrantLedger.hash($0.refreshToken) } ?? ""
        let accessHash = minted.map { GrantLedger.hash($0.accessToken) } ?? ""
        let familyID = RandomToken.make(bytes: 16)
        let refreshExpiry = current.addingTimeInterval(configuration.refreshTokenLifetime)
        let outcome = try await ledger.transact { tables -> Redemption in
            guard var entry = tables.codes[hash] else { return .unknown }
            guard entry.grant.clientID == client.clientID else { return .otherClient }
            if entry.redeemed {
                if let family = entry.mintedFamily { tables.revokeFamily(family) }
                if let access = entry.mintedAccessToken { tables.setAccess(access, nil) }
                entry.mintedFamily = nil
                entry.mintedAccessToken = nil
                tables.setCode(hash, entry)
                return .replayed
            }
            guard entry.expiresAt > current else {
                tables.setCode(hash, nil)
                return .expired
            }
            // Redeemable again only after a failed write undid a redemption seen a moment ago.
            guard let minted else { return .retry }
            entry.redeemed = true
            entry.mintedFamily = familyID
            entry.mintedAccessToken = accessHash
            tables.setCode(hash, entry)
            tables.setFamily(
                familyID, RefreshFamily(grant: grant, currentTokenHash: refreshHash, expiresAt: refreshExpiry))
            tables.setAccess(accessHash, minted.record(familyID: familyID))
            return .issued
        }
        switch outcome {
        case .issued:
            guard let minted else { throw OAuthError(.serverError, "the token could not be issued") }
            return minted.response
        case .retry:
            throw OAuthError(
                .temporarilyUnavailable, "the code is being redeemed by another request; try again", status: 503)
        case .unknown: throw OAuthError(.invalidGrant, "the code is invalid")
        case .otherClient: throw OAuthError(.invalidGrant, "the code was issued to another client")
        case .expired: throw OAuthError(.invalidGrant, "the code has expired")
        case .replayed:
            logger.warning(
                "authorization code replayed; the tokens it minted are revoked",
                metadata: ["client_id": "\(client.clientID)"])
            throw OAuthError(.invalidGrant, "the code was already used; tokens issued with it are revoked")
        }
    }

    /// The redirect URI and PKCE checks of a code redemption (RFC 6749 §4.1.3, RFC 7636 §4.6).
    private func checkRedemption(_ form: OAuthParameters, grant: AuthorizationGrant) throws {
        guard let redirectURI = try form.single("redirect_uri"), redirectURI == grant.redirectURI else {
            throw OAuthError(.invalidGrant, "redirect_uri does not match the authorization request")
        }
        let verifier = try form.single("code_verifier")
        if let challenge = grant.codeChallenge, let method = grant.codeChallengeMethod {
            guard let verifier else { throw OAuthError(.invalidRequest, "code_verifier is required") }
            guard PKCE.verify(verifier: verifier, challenge: challenge, method: method) else {
                throw OAuthError(.invalidGrant, "code_verifier does not match the code_challenge")
            }
        } else if verifier != nil {
            throw OAuthError(
                .invalidRequest, "code_verifier was sent but the authorization request had no code_challenge")
        }
    }

    /// RFC 8707 at the token endpoint: requested resources must be granted to the user by policy
    /// and, when `/authorize` named resources, be among them.
    func tokenResources(_ form: OAuthParameters, grant: AuthorizationGrant) throws -> [String] {
        // A grant that does not parse grants nothing; checked before anything is issued or rotated.
        let policy = try self.policy(for: grant.identity)
        let requested = form.all("resource")
        guard !requested.isEmpty else { return grant.resources }
        var allowed: [String] = []
        for resource in requested where !allowed.contains(resource) {
            guard grant.resources.isEmpty || grant.resources.contains(resource) else {
                throw OAuthError(.invalidTarget, "resource \(Self.clip(resource)) was not part of the original grant")
            }
            if policy.allows(resource: resource, for: grant.identity.loginName) { allowed.append(resource) }
        }
        guard !allowed.isEmpty else {
            throw OAuthError(.invalidTarget, "none of the requested resources is granted to this user")
        }
        return allowed
    }

    /// What a refresh found, decided in one critical section.
    enum Rotation: Sendable {
        case rotated
        case unknown
        case expired
        case reused
    }

    private func refresh(_ form: OAuthParameters, client: Client) async throws -> TokenResponse {
        guard let presented = try form.single("refresh_token") else {
            throw OAuthError(.invalidRequest, "refresh_token is required")
        }
        let current = now()
        let requested = try form.single("scope").map(Scope.parse)
        let presentedHash = GrantLedger.hash(presented)
        guard let (familyID, family) = ledger.read({ $0.family(forTokenHash: presentedHash) }) else {
            throw OAuthError(.invalidGrant, "the refresh token is invalid")
        }
        switch family.present(presentedHash, clientID: client.clientID, now: current) {
        case .otherClient:
            throw OAuthError(.invalidGrant, "the refresh token is invalid")
        case .reused, .expired:
            // Decided again under the lock, where the family is ended.
            try await endFamily(familyID, presented: presentedHash, client: client, now: current)
        case .current:
            break
        }
        var grant = family.grant
        if let requested, !requested.allSatisfy(grant.scopes.contains) {
            throw OAuthError(.invalidScope, "a refresh cannot add scopes to the original grant")
        }
        if let reidentify {
            do {
                let fresh = try await reidentify(grant.identity)
                guard fresh.userID == grant.identity.userID, !fresh.isTagged else {
                    try await ledger.transact { tables in _ = tables.revokeFamily(familyID) }
                    logger.warning(
                        "login ended: the device now belongs to someone else or is tagged",
                        metadata: ["client_id": "\(client.clientID)", "node_id": "\(grant.identity.nodeID)"])
                    throw OAuthError(.invalidGrant, "the device no longer belongs to the user who signed in")
                }
                grant.identity = fresh
                grant.pairwiseSubject = pairwiseSubject(for: fresh, client: client)
            } catch let error as OAuthError {
                throw error
            } catch IdentityFailure.unknownDevice {
                try await ledger.transact { tables in _ = tables.revokeFamily(familyID) }
                logger.warning(
                    "login ended: the device or its user left the tailnet",
                    metadata: ["client_id": "\(client.clientID)", "node_id": "\(grant.identity.nodeID)"])
                throw OAuthError(.invalidGrant, "the device or its user is no longer on the tailnet")
            } catch {
                throw OAuthError(.temporarilyUnavailable, "the tailnet identity service is unavailable", status: 503)
            }
        }
        var issued = grant
        // A refreshed ID token carries no nonce: no authentication request is being answered.
        issued.nonce = nil
        issued.resources = try tokenResources(form, grant: grant)
        if let requested { issued.scopes = requested }
        let next = RandomToken.make(bytes: 32)
        let minted = try mint(grant: issued, client: client, issuedAt: current, refreshToken: next)
        let nextHash = GrantLedger.hash(next)
        let accessHash = GrantLedger.hash(minted.accessToken)
        let expiresAt = current.addingTimeInterval(configuration.refreshTokenLifetime)
        let outcome = try await settle(familyID, presented: presentedHash, client: client, now: current) {
            tables, id, family in
            var rotated = family
            rotated.rotate(to: nextHash, grant: grant, expiresAt: expiresAt)
            tables.setFamily(id, rotated)
            tables.setAccess(accessHash, minted.record(familyID: id))
        }
        guard outcome == .rotated else { throw refusal(outcome, client: client) }
        return minted.response
    }

    /// Ends a family whose presented token is retired (reuse) or expired, and throws the answer.
    private func endFamily(_ familyID: String, presented: String, client: Client, now current: Date) async throws
        -> Never
    {
        throw refusal(
            try await settle(familyID, presented: presented, client: client, now: current, rotate: nil), client: client)
    }

    /// Decides, in one critical section, what presenting a refresh token means now: a reused or
    /// expired token ends its family; a current one is rotated by `rotate` (or, without it,
    /// counts as unknown).
    private func settle(
        _ familyID: String, presented: String, client: Client, now current: Date,
        rotate: ((inout GrantTables, String, RefreshFamily) -> Void)?
    ) async throws -> Rotation {
        try await ledger.transact { tables -> Rotation in
            guard let (id, family) = tables.family(forTokenHash: presented), id == familyID else { return .unknown }
            switch family.present(presented, clientID: client.clientID, now: current) {
            case .otherClient: return .unknown
            case .reused:
                tables.revokeFamily(id)
                return .reused
            case .expired:
                tables.revokeFamily(id)
                return .expired
            case .current:
                guard let rotate else { return .unknown }
                rotate(&tables, id, family)
                return .rotated
            }
        }
    }

    /// The error answering a refresh that did not rotate.
    private func refusal(_ outcome: Rotation, client: Client) -> OAuthError {
        switch outcome {
        case .reused: return reuseError(client)
        case .expired: return OAuthError(.invalidGrant, "the refresh token has expired")
        case .unknown, .rotated: return OAuthError(.invalidGrant, "the refresh token is invalid")
        }
    }

    private func reuseError(_ client: Client) -> OAuthError {
        logger.warning(
            "refresh token reused; the login is revoked", metadata: ["client_id": "\(client.clientID)"])
        return OAuthError(.invalidGrant, "the refresh token was already used; the grant is revoked")
    }

    /// Tokens signed and ready to be recorded.
    struct MintedTokens: Sendable {
        var accessToken: String
        var refreshToken: String
        var response: TokenResponse
        var grant: AuthorizationGrant
        var audience: [String]
        var issuedAt: Date
        var expiresAt: Date
        var jti: String

        /// The access token's record, as part of login `familyID`.
        func record(familyID: String) -> AccessTokenRecord {
            AccessTokenRecord(
                grant: grant, audience: audience, expiresAt: expiresAt, issuedAt: issuedAt, familyID: familyID,
                jti: jti)
        }
    }

    /// Signs an access token (a JWT when the client wants one or, by default, when resources were
    /// granted), an ID token (for `openid`) and makes a refresh token, and writes the token
    /// response. Nothing is recorded here.
    ///
    /// - Important: RFC 8707 binds `resource` to the access token only: its audience is exactly
    ///   the granted resources (the client when there are none), and the ID token's audience is
    ///   the client alone, so that an ID token is never accepted as an access token.
    func mint(grant: AuthorizationGrant, client: Client, issuedAt: Date, refreshToken: String?) throws
        -> MintedTokens
    {
        let audience = grant.resources.isEmpty ? [grant.clientID] : grant.resources
        let jti = RandomToken.make(bytes: 16)
        let accessToken: String
        if client.issuesJWTAccessToken(forResources: grant.resources) {
            accessToken = try keys.signingKey(for: client.idTokenSignedResponseAlg).signAccessToken(
                payload: accessTokenPayload(grant: grant, issuedAt: issuedAt, jti: jti, actor: nil, audience: audience))
        } else {
            accessToken = RandomToken.make(bytes: 32)
        }
        var idToken: String?
        if grant.scopes.contains(Scope.openid) {
            let payload = try idTokenPayload(
                grant: grant, audience: [grant.clientID], issuedAt: issuedAt, accessToken: accessToken,
                algorithm: client.idTokenSignedResponseAlg)
            idToken = try keys.signingKey(for: client.idTokenSignedResponseAlg).sign(payload: payload)
        }
        let refresh = refreshToken ?? RandomToken.make(bytes: 32)
        var members: [(String, JSONValue)] = [
            ("access_token", .string(accessToken)),
            ("token_type", .string("Bearer")),
            ("expires_in", .int(Int64(configuration.accessTokenLifetime))),
        ]
        // A client registered without the refresh_token grant gets no refresh token; the login
        // is still recorded (so that it can be listed and ended), under a token nobody holds.
        if client.grantTypes.contains("refresh_token") { members.append(("refresh_token", .string(refresh))) }
        if let idToken { members.append(("id_token", .string(idToken))) }
        members.append(("scope", .string(grant.scopes.joined(separator: " "))))
        return MintedTokens(
            accessToken: accessToken, refreshToken: refresh,
            response: TokenResponse(status: 200, body: JSONText.objectBytes(members), wwwAuthenticate: nil),
            grant: grant, audience: audience, issuedAt: issuedAt,
            expiresAt: issuedAt.addingTimeInterval(configuration.accessTokenLifetime), jti: jti)
    }
}

extension Provider {
    /// RFC 9068 claims of a JWT access token, with the identity claims of its scopes.
    func accessTokenPayload(
        grant: AuthorizationGrant, issuedAt: Date, jti: String, actor: ActorClaim?, audience: [String]? = nil
    ) -> String {
        let iat = Int64(issuedAt.timeIntervalSince1970)
        let audiences = audience ?? (grant.resources.isEmpty ? [grant.clientID] : grant.resources)
        var members: [(String, JSONValue)] = [
            ("iss", .string(configuration.issuer)),
            ("sub", .string(grant.subject)),
            ("aud", audiences.count == 1 ? .string(audiences[0]) : .array(audiences.map(JSONValue.string))),
            ("exp", .int(iat + Int64(configuration.accessTokenLifetime))),
            ("iat", .int(iat)),
            ("jti", .string(jti)),
            ("client_id", .string(grant.clientID)),
            ("scope", .string(grant.scopes.joined(separator: " "))),
            ("auth_time", .int(Int64(grant.authTime.timeIntervalSince1970))),
        ]
        if let actor { members.append(("act", ActorClaim.json(actor))) }
        // RFC 9068 §2.2.3.1: the identity claims the granted scopes release (as in the ID token),
        // so that a resource server verifying offline knows who is calling without asking
        // /userinfo.
        members += identityClaims(grant, forUserInfo: false)
        return JSONText.object(members)
    }
}

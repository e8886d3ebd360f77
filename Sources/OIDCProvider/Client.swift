import AnyJSON
import Crypto
import Foundation

/// A registered relying party (OAuth client).
///
/// Serialized in the Go tsidp's `oidc-funnel-clients.json` shape, so a state directory moves
/// between the two. Secrets are kept as SHA-256 digests (`client_secret_hash`); a plaintext
/// `client_secret` from a Go tsidp file is accepted and replaced by its digest on the next write.
public struct Client: Sendable, Equatable, Codable {
    public var clientID: String
    /// `sha256:` + base64url digest of the secret; `nil` for public clients.
    public var secretHash: String?
    public var name: String
    public var redirectURIs: [String]
    /// `client_secret_basic` (default), `client_secret_post` or `none` (public client).
    public var tokenEndpointAuthMethod: String
    public var grantTypes: [String]
    public var responseTypes: [String]
    /// Space-separated scopes the client registered; custom ones become allowed at `/authorize`.
    public var scope: String
    public var clientURI: String
    public var logoURI: String
    public var contacts: [String]
    public var applicationType: String
    public var dynamicallyRegistered: Bool
    public var createdAt: Date
    /// The algorithm of this client's ID tokens (`id_token_signed_response_alg`), RS256 by default.
    public var idTokenSignedResponseAlg: SigningAlgorithm = .rs256
    /// `jwt` for RFC 9068 JWT access tokens always, `opaque` for opaque ones always, or empty
    /// (the default): a JWT bound to the granted resources when the request names a `resource`
    /// (RFC 8707), an opaque token otherwise.
    public var accessTokenFormat: String = ""
    /// The resource URIs this client serves as a resource server (`resources`, a tsidp
    /// extension): it may introspect access tokens whose audience names one of them.
    public var resources: [String] = []
    /// The operator asks users to confirm before their first sign-in (`consent_required`, a tsidp
    /// extension); dynamically registered clients always ask.
    public var consentRequired = false
    /// The digest (as ``hashSecret(_:)`` makes it) of the RFC 7592 registration access token that
    /// manages this client at `/register/<client_id>`; `nil` for clients the operator registered.
    /// Stored as `registration_access_token_hash`, a member older readers ignore.
    public var registrationTokenHash: String? = nil
    /// Where RP-initiated logout may send the browser back to (`post_logout_redirect_uris`,
    /// OpenID Connect RP-Initiated Logout 1.0 §3.1); empty: the signed-out page is shown.
    public var postLogoutRedirectURIs: [String] = []
    /// The algorithm `/userinfo` signs this client's answers with (`userinfo_signed_response_alg`);
    /// `nil`: plain JSON.
    public var userInfoSignedResponseAlg: SigningAlgorithm? = nil
    /// `public` (the default: `sub` is `userid:<n>` everywhere) or `pairwise` (OIDC Core §8: a
    /// `sub` of its own per sector, so relying parties cannot correlate users).
    public var subjectType = "public"
    /// `sector_identifier_uri` (OIDC Registration §5), when the client registered one.
    public var sectorIdentifierURI = ""
    /// The host pairwise subjects are derived for: that of `sector_identifier_uri`, or of the
    /// redirect URIs (all on one host). Kept as registered, so that changing redirect URIs
    /// later does not change anyone's `sub`.
    public var sector = ""

    /// The client's public keys (`jwks`, a JSON Web Key Set) for `private_key_jwt`.
    public var jwks: JSONValue? = nil
    /// Where the client publishes its public keys (`jwks_uri`) for `private_key_jwt`.
    public var jwksURI = ""
    /// The one algorithm the client's assertions may use (`token_endpoint_auth_signing_alg`);
    /// `nil`: any tsidp supports for its method.
    public var tokenEndpointAuthSigningAlg: String? = nil
    /// The secret itself, kept only for `client_secret_jwt`, whose assertions are MACs under it
    /// (RFC 7523 needs the secret to check them; every other client's secret is kept as a digest).
    /// Stored as the Go tsidp's plaintext `client_secret` member.
    public var macSecret: String? = nil

    /// Whether this client authenticates with a JWT assertion (RFC 7523) instead of a secret.
    public var usesClientAssertion: Bool { ClientAssertion.methods.contains(tokenEndpointAuthMethod) }

    /// Whether this client's users get pairwise subject identifiers.
    public var usesPairwiseSubjects: Bool { subjectType == "pairwise" }

    /// Whether users see a consent page before their first sign-in: the operator did not vet this
    /// client (dynamic registration), or asked for it.
    public var requiresConsent: Bool { dynamicallyRegistered || consentRequired }

    public init(
        clientID: String, secretHash: String?, name: String, redirectURIs: [String],
        tokenEndpointAuthMethod: String = "client_secret_basic",
        grantTypes: [String] = ["authorization_code", "refresh_token"],
        responseTypes: [String] = ["code"], scope: String = "", clientURI: String = "", logoURI: String = "",
        contacts: [String] = [], applicationType: String = "web", dynamicallyRegistered: Bool = false,
        createdAt: Date = Date()
    ) {
        self.clientID = clientID
        self.secretHash = secretHash
        self.name = name
        self.redirectURIs = redirectURIs
        self.tokenEndpointAuthMethod = tokenEndpointAuthMethod
        self.grantTypes = grantTypes
        self.responseTypes = responseTypes
        self.scope = scope
        self.clientURI = clientURI
        self.logoURI = logoURI
        self.contacts = contacts
        self.applicationType = applicationType
        self.dynamicallyRegistered = dynamicallyRegistered
        self.createdAt = createdAt
    }

    /// The stand-in client of the legacy flow: whatever `client_id` the relying party sent, the one
    /// redirect URI it asked for, authenticated by its node rather than a secret.
    static func legacy(clientID: String, redirectURI: String, nodeID: Int64) -> Client {
        Client(
            clientID: clientID, secretHash: nil, name: "node \(nodeID)", redirectURIs: [redirectURI],
            tokenEndpointAuthMethod: "tailnet_node", createdAt: Date())
    }

    /// Whether the client authenticates without a secret (and so must use PKCE S256).
    public var isPublic: Bool { tokenEndpointAuthMethod == "none" }

    /// Custom (non-standard) scopes this client registered.
    public var customScopes: [String] {
        Scope.parse(scope).filter { !Scope.standard.contains($0) }
    }

    /// The digest stored for `secret`.
    public static func hashSecret(_ secret: String) -> String {
        "sha256:" + Base64URL.encode(SHA256.hash(data: Data(secret.utf8)))
    }

    /// Whether `secret` is this client's secret.
    ///
    /// - Important: Compares digests in constant time; never logs either value.
    public func secretMatches(_ secret: String) -> Bool {
        guard let secretHash else { return false }
        return ConstantTime.equals(Self.hashSecret(secret), secretHash)
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", clientSecret = "client_secret", secretHash = "client_secret_hash"
        case clientName = "client_name", legacyName = "name", redirectURIs = "redirect_uris"
        case legacyRedirectURI = "redirect_uri", tokenEndpointAuthMethod = "token_endpoint_auth_method"
        case grantTypes = "grant_types", responseTypes = "response_types", scope, clientURI = "client_uri"
        case logoURI = "logo_uri", contacts, applicationType = "application_type"
        case dynamicallyRegistered = "dynamically_registered", createdAt = "created_at"
        case idTokenSignedResponseAlg = "id_token_signed_response_alg", accessTokenFormat = "access_token_format"
        case consentRequired = "consent_required"
        case registrationTokenHash = "registration_access_token_hash"
        case resources
        case postLogoutRedirectURIs = "post_logout_redirect_uris"
        case userInfoSignedResponseAlg = "userinfo_signed_response_alg"
        case subjectType = "subject_type", sectorIdentifierURI = "sector_identifier_uri", sector
        case jwks, jwksURI = "jwks_uri", tokenEndpointAuthSigningAlg = "token_endpoint_auth_signing_alg"
    }

    /// Whether the client registered RFC 9068 JWT access tokens for every request.
    public var usesJWTAccessTokens: Bool { accessTokenFormat == "jwt" }

    /// Whether an access token granted for `resources` is an RFC 9068 JWT: always for `jwt`,
    /// never for an explicit `opaque`, and otherwise exactly when resources were granted, so that
    /// a resource server can check the audience offline.
    public func issuesJWTAccessToken(forResources resources: [String]) -> Bool {
        switch accessTokenFormat {
        case "jwt": return true
        case "opaque": return false
        default: return !resources.isEmpty
        }
    }

    /// Whether this client serves one of `audience` as a resource server.
    public func servesAny(of audience: [String]) -> Bool {
        resources.contains(where: audience.contains)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clientID = try c.decodeIfPresent(String.self, forKey: .clientID) ?? ""
        let plaintext = try c.decodeIfPresent(String.self, forKey: .clientSecret) ?? ""
        let hash = try c.decodeIfPresent(String.self, forKey: .secretHash) ?? ""
        tokenEndpointAuthMethod =
            (try c.decodeIfPresent(String.self, forKey: .tokenEndpointAuthMethod)).flatMap { $0.isEmpty ? nil : $0 }
            ?? "client_secret_basic"
        if !hash.isEmpty {
            secretHash = hash
        } else if !plaintext.isEmpty {
            secretHash = Self.hashSecret(plaintext)
        } else {
            secretHash = nil
        }
        let clientName = try c.decodeIfPresent(String.self, forKey: .clientName) ?? ""
        let legacyName = try c.decodeIfPresent(String.self, forKey: .legacyName) ?? ""
        name = clientName.isEmpty ? legacyName : clientName
        var uris = try c.decodeIfPresent([String].self, forKey: .redirectURIs) ?? []
        if uris.isEmpty, let single = try c.decodeIfPresent(String.self, forKey: .legacyRedirectURI), !single.isEmpty {
            uris = [single]
        }
        redirectURIs = uris
        grantTypes =
            try c.decodeIfPresent([String].self, forKey: .grantTypes) ?? ["authorization_code", "refresh_token"]
        responseTypes = try c.decodeIfPresent([String].self, forKey: .responseTypes) ?? ["code"]
        scope = try c.decodeIfPresent(String.self, forKey: .scope) ?? ""
        clientURI = try c.decodeIfPresent(String.self, forKey: .clientURI) ?? ""
        logoURI = try c.decodeIfPresent(String.self, forKey: .logoURI) ?? ""
        contacts = try c.decodeIfPresent([String].self, forKey: .contacts) ?? []
        applicationType = try c.decodeIfPresent(String.self, forKey: .applicationType) ?? "web"
        dynamicallyRegistered = try c.decodeIfPresent(Bool.self, forKey: .dynamicallyRegistered) ?? false
        idTokenSignedResponseAlg =
            try c.decodeIfPresent(SigningAlgorithm.self, forKey: .idTokenSignedResponseAlg) ?? .rs256
        accessTokenFormat = try c.decodeIfPresent(String.self, forKey: .accessTokenFormat) ?? ""
        resources = try c.decodeIfPresent([String].self, forKey: .resources) ?? []
        consentRequired = try c.decodeIfPresent(Bool.self, forKey: .consentRequired) ?? false
        registrationTokenHash =
            (try c.decodeIfPresent(String.self, forKey: .registrationTokenHash)).flatMap { $0.isEmpty ? nil : $0 }
        postLogoutRedirectURIs = try c.decodeIfPresent([String].self, forKey: .postLogoutRedirectURIs) ?? []
        userInfoSignedResponseAlg = try c.decodeIfPresent(SigningAlgorithm.self, forKey: .userInfoSignedResponseAlg)
        subjectType =
            (try c.decodeIfPresent(String.self, forKey: .subjectType)).flatMap { $0.isEmpty ? nil : $0 } ?? "public"
        sectorIdentifierURI = try c.decodeIfPresent(String.self, forKey: .sectorIdentifierURI) ?? ""
        sector = try c.decodeIfPresent(String.self, forKey: .sector) ?? ""
        jwks = try c.decodeIfPresent(JSONValue.self, forKey: .jwks)
        jwksURI = try c.decodeIfPresent(String.self, forKey: .jwksURI) ?? ""
        tokenEndpointAuthSigningAlg = try c.decodeIfPresent(String.self, forKey: .tokenEndpointAuthSigningAlg)
        if tokenEndpointAuthMethod == "client_secret_jwt", !plaintext.isEmpty { macSecret = plaintext }
        if let text = try c.decodeIfPresent(String.self, forKey: .createdAt), let date = RFC3339.parse(text) {
            createdAt = date
        } else {
            createdAt = Date(timeIntervalSince1970: 0)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(clientID, forKey: .clientID)
        try c.encode(macSecret ?? "", forKey: .clientSecret)
        if let secretHash { try c.encode(secretHash, forKey: .secretHash) }
        try c.encode(name, forKey: .clientName)
        try c.encode(redirectURIs, forKey: .redirectURIs)
        try c.encode(redirectURIs.first ?? "", forKey: .legacyRedirectURI)
        try c.encode(tokenEndpointAuthMethod, forKey: .tokenEndpointAuthMethod)
        try c.encode(grantTypes, forKey: .grantTypes)
        try c.encode(responseTypes, forKey: .responseTypes)
        if !scope.isEmpty { try c.encode(scope, forKey: .scope) }
        if !clientURI.isEmpty { try c.encode(clientURI, forKey: .clientURI) }
        if !logoURI.isEmpty { try c.encode(logoURI, forKey: .logoURI) }
        if !contacts.isEmpty { try c.encode(contacts, forKey: .contacts) }
        try c.encode(applicationType, forKey: .applicationType)
        try c.encode(dynamicallyRegistered, forKey: .dynamicallyRegistered)
        try c.encode(RFC3339.format(createdAt), forKey: .createdAt)
        if idTokenSignedResponseAlg != .rs256 {
            try c.encode(idTokenSignedResponseAlg, forKey: .idTokenSignedResponseAlg)
        }
        if !accessTokenFormat.isEmpty { try c.encode(accessTokenFormat, forKey: .accessTokenFormat) }
        if !resources.isEmpty { try c.encode(resources, forKey: .resources) }
        if consentRequired { try c.encode(true, forKey: .consentRequired) }
        if let registrationTokenHash { try c.encode(registrationTokenHash, forKey: .registrationTokenHash) }
        if !postLogoutRedirectURIs.isEmpty { try c.encode(postLogoutRedirectURIs, forKey: .postLogoutRedirectURIs) }
        if let userInfoSignedResponseAlg {
            try c.encode(userInfoSignedResponseAlg, forKey: .userInfoSignedResponseAlg)
        }
        try c.encodeIfPresent(jwks, forKey: .jwks)
        if !jwksURI.isEmpty { try c.encode(jwksURI, forKey: .jwksURI) }
        try c.encodeIfPresent(tokenEndpointAuthSigningAlg, forKey: .tokenEndpointAuthSigningAlg)
        if usesPairwiseSubjects {
            try c.encode(subjectType, forKey: .subjectType)
            try c.encode(sector, forKey: .sector)
            if !sectorIdentifierURI.isEmpty { try c.encode(sectorIdentifierURI, forKey: .sectorIdentifierURI) }
        }
    }

    /// Whether `token` is this client's registration access token.
    ///
    /// - Important: Compares digests in constant time; a client without a token matches nothing.
    public func registrationTokenMatches(_ token: String) -> Bool {
        let presented = Self.hashSecret(token)
        guard let registrationTokenHash else {
            _ = ConstantTime.equals(presented, presented)
            return false
        }
        return ConstantTime.equals(presented, registrationTokenHash)
    }
}

/// RFC 3339 timestamps as Go writes and reads them.
public enum RFC3339 {
    public static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    public static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        if let date = try? Date(text, strategy: fractional) { return date }
        // Go writes offsets such as +02:00 and up to nanosecond fractions; trim the fraction.
        if let dot = text.firstIndex(of: "."),
            let end = text[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" })
        {
            let trimmed = String(text[..<dot]) + String(text[end...])
            return try? Date(trimmed, strategy: .iso8601)
        }
        return nil
    }
}

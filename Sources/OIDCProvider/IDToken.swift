import AnyJSON
import Crypto
import Foundation

/// The claims tsidp puts in ID tokens and userinfo answers.
public enum IDToken {
    /// Claims a grant's `extraClaims` may not set: they carry identity or protocol meaning.
    public static let protectedClaims: Set<String> = [
        "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "username", "email", "key", "addresses", "nid", "node",
        "tailnet", "tags", "user", "uid", "nonce", "azp", "act", "auth_time", "at_hash", "amr", "acr",
    ]

    /// Claims listed in discovery.
    public static let supportedClaims = [
        "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "auth_time", "nonce", "at_hash", "azp", "amr", "acr", "name",
        "email", "email_verified", "preferred_username", "picture", "groups", "username", "key", "addresses", "nid",
        "node", "tailnet", "uid",
    ]

    /// The `amr` value of every ID token: the person was signed in by their device's tailnet
    /// identity (WireGuard node key, vouched for by the tailnet's control plane), not by a
    /// password or a second factor at tsidp.
    public static let authenticationMethods = ["tailscale"]

    /// The `acr` value of every ID token (OIDC Core §2): the person was signed in because the
    /// device they use is theirs on the tailnet. It says nothing about how they signed in to the
    /// tailnet itself (that is the tailnet's identity provider's business); a relying party that
    /// requires another class as essential is refused with `access_denied`.
    public static let authenticationContextClass = "tailnet-device"

    /// The identity claims a scope releases (OIDC Core §5.4); `username` (the Go tsidp's claim)
    /// only in `/userinfo`.
    static func scopeClaims(_ scopes: [String], forUserInfo: Bool) -> [String] {
        var names: [String] = []
        if scopes.contains(Scope.profile) {
            names += ["name", "preferred_username"] + (forUserInfo ? ["username"] : []) + ["picture"]
        }
        if scopes.contains(Scope.email) { names += ["email", "email_verified"] }
        if scopes.contains(Scope.groups) { names.append("groups") }
        return names
    }

    /// `at_hash`: base64url of the left half of the hash of the access token's ASCII octets
    /// (OIDC Core §3.1.3.6), with the hash that goes with the ID token's signing algorithm:
    /// SHA-256 for RS256 and ES256, SHA-512 for EdDSA with Ed25519 (whose signatures hash with
    /// SHA-512), as the OpenID Foundation's conformance suite checks.
    public static func accessTokenHash(_ accessToken: String, algorithm: SigningAlgorithm = .rs256) -> String {
        switch algorithm {
        case .rs256, .es256:
            return Base64URL.encode(Array(SHA256.hash(data: Data(accessToken.utf8))).prefix(16))
        case .edDSA:
            return Base64URL.encode(Array(SHA512.hash(data: Data(accessToken.utf8))).prefix(32))
        }
    }

    /// `userid:<n>`, the subject the Go tsidp uses: the public subject identifier.
    public static func subject(_ identity: UserIdentity) -> String {
        "userid:\(identity.userID)"
    }

    /// Extra claims granted by `policy`. A rule that tries to set a protected claim adds
    /// nothing (the sign-in goes on with the other rules' claims); the provider logs it.
    static func extraClaims(_ policy: Grants, forUserInfo: Bool) -> [(String, JSONValue)] {
        policy.extraClaims(forUserInfo: forUserInfo, protected: protectedClaims)
    }
}

extension Provider {
    /// The ID token payload for `grant`, in a stable member order.
    func idTokenPayload(
        grant: AuthorizationGrant, audience: [String], issuedAt: Date, accessToken: String,
        algorithm: SigningAlgorithm = .rs256
    ) throws -> String {
        let identity = grant.identity
        let iat = Int64(issuedAt.timeIntervalSince1970)
        var members: [(String, JSONValue)] = [
            ("iss", .string(configuration.issuer)),
            ("sub", .string(grant.subject)),
            ("aud", audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string))),
            ("exp", .int(iat + Int64(configuration.idTokenLifetime))),
            ("iat", .int(iat)),
            ("nbf", .int(iat)),
            ("jti", .string(RandomToken.make(bytes: 16))),
            ("auth_time", .int(Int64(grant.authTime.timeIntervalSince1970))),
        ]
        if let nonce = grant.nonce { members.append(("nonce", .string(nonce))) }
        members.append(("at_hash", .string(IDToken.accessTokenHash(accessToken, algorithm: algorithm))))
        if audience.count > 1 { members.append(("azp", .string(grant.clientID))) }
        members.append(("amr", .array(IDToken.authenticationMethods.map(JSONValue.string))))
        members.append(("acr", .string(IDToken.authenticationContextClass)))
        members += [
            ("key", .string(identity.nodeKey)),
            ("addresses", .array(identity.addresses.map(JSONValue.string))),
            ("nid", .int(identity.nodeID)),
            ("node", .string(identity.nodeName)),
            ("tailnet", .string(identity.tailnet)),
            ("uid", .int(identity.userID)),
        ]
        members += identityClaims(grant, forUserInfo: false)
        return JSONText.object(try withExtraClaims(members, identity: identity, forUserInfo: false))
    }

    /// The `/userinfo` answer for an access token's grant.
    func userInfoPayload(_ grant: AuthorizationGrant) throws -> String {
        JSONText.object(try userInfoMembers(grant))
    }

    /// The members of the `/userinfo` answer for `grant`, in a stable order.
    func userInfoMembers(_ grant: AuthorizationGrant) throws -> [(String, JSONValue)] {
        let identity = grant.identity
        let members = [("sub", JSONValue.string(grant.subject))] + identityClaims(grant, forUserInfo: true)
        return try withExtraClaims(members, identity: identity, forUserInfo: true)
    }

    /// The identity claims `grant` releases to the ID token or to `/userinfo`: those of its
    /// scopes, and those its `claims` request asked for there. A claim tsidp has no value for
    /// (`picture` without an https URL, `groups` for a user in none) is left out.
    func identityClaims(_ grant: AuthorizationGrant, forUserInfo: Bool) -> [(String, JSONValue)] {
        let identity = grant.identity
        var names = IDToken.scopeClaims(grant.scopes, forUserInfo: forUserInfo)
        for name in (forUserInfo ? grant.claims?.userInfo : grant.claims?.idToken) ?? [] where !names.contains(name) {
            names.append(name)
        }
        return names.compactMap { name -> (String, JSONValue)? in
            switch name {
            case "name": return (name, .string(identity.displayName))
            case "preferred_username", "username": return (name, .string(identity.username))
            case "picture": return identity.pictureURL.map { (name, .string($0)) }
            case "email": return (name, .string(identity.realishEmail(idpHost: configuration.idpHost)))
            case "email_verified": return (name, .bool(identity.emailIsVerified))
            case "groups":
                return identity.groups.isEmpty ? nil : (name, .array(identity.groups.map(JSONValue.string)))
            default: return nil
            }
        }
    }

    /// `members` with the policy's extra claims for `identity` added; an extra claim replaces a
    /// claim of the same name.
    func withExtraClaims(_ members: [(String, JSONValue)], identity: UserIdentity, forUserInfo: Bool) throws
        -> [(String, JSONValue)]
    {
        var members = members
        for (name, value) in IDToken.extraClaims(try claimPolicy(for: identity), forUserInfo: forUserInfo) {
            members.removeAll { $0.0 == name }
            members.append((name, value))
        }
        return members
    }
}

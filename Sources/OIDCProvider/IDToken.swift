import AnyJSON
import Crypto
import Foundation

/// The claims tsidp puts in ID tokens and userinfo answers.
public enum IDToken {
    /// Claims a grant's `extraClaims` may not set: they carry identity or protocol meaning.
    public static let protectedClaims: Set<String> = [
        "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "username", "email", "key", "addresses", "nid", "node",
        "tailnet", "tags", "user", "uid", "nonce", "azp", "act", "auth_time", "at_hash",
    ]

    /// Claims listed in discovery.
    public static let supportedClaims = [
        "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "auth_time", "nonce", "at_hash", "azp", "name", "email",
        "preferred_username", "picture", "groups", "username", "key", "addresses", "nid", "node", "tailnet", "uid",
    ]

    /// `at_hash`: base64url of the left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
    public static func accessTokenHash(_ accessToken: String) -> String {
        let digest = Array(SHA256.hash(data: Data(accessToken.utf8)))
        return Base64URL.encode(digest.prefix(16))
    }

    /// `userid:<n>`, the subject the Go tsidp uses.
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
        grant: AuthorizationGrant, audience: [String], issuedAt: Date, accessToken: String
    ) throws -> String {
        let identity = grant.identity
        let iat = Int64(issuedAt.timeIntervalSince1970)
        var members: [(String, JSONValue)] = [
            ("iss", .string(configuration.issuer)),
            ("sub", .string(IDToken.subject(identity))),
            ("aud", audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string))),
            ("exp", .int(iat + Int64(configuration.idTokenLifetime))),
            ("iat", .int(iat)),
            ("nbf", .int(iat)),
            ("jti", .string(RandomToken.make(bytes: 16))),
            ("auth_time", .int(Int64(grant.authTime.timeIntervalSince1970))),
        ]
        if let nonce = grant.nonce { members.append(("nonce", .string(nonce))) }
        members.append(("at_hash", .string(IDToken.accessTokenHash(accessToken))))
        if audience.count > 1 { members.append(("azp", .string(grant.clientID))) }
        members += [
            ("key", .string(identity.nodeKey)),
            ("addresses", .array(identity.addresses.map(JSONValue.string))),
            ("nid", .int(identity.nodeID)),
            ("node", .string(identity.nodeName)),
            ("tailnet", .string(identity.tailnet)),
            ("uid", .int(identity.userID)),
        ]
        if grant.scopes.contains(Scope.email) {
            members.append(("email", .string(identity.realishEmail(idpHost: configuration.idpHost))))
        }
        if grant.scopes.contains(Scope.profile) {
            members.append(("name", .string(identity.displayName)))
            members.append(("preferred_username", .string(identity.username)))
            if let picture = identity.pictureURL { members.append(("picture", .string(picture))) }
        }
        if !identity.groups.isEmpty {
            members.append(("groups", .array(identity.groups.map(JSONValue.string))))
        }
        let extra = IDToken.extraClaims(try claimPolicy(for: identity), forUserInfo: false)
        let present = Set(members.map(\.0))
        for (name, value) in extra {
            if present.contains(name) {
                members.removeAll { $0.0 == name }
            }
            members.append((name, value))
        }
        return JSONText.object(members)
    }

    /// The `/userinfo` answer for an access token's grant.
    func userInfoPayload(_ grant: AuthorizationGrant) throws -> String {
        let identity = grant.identity
        var members: [(String, JSONValue)] = [
            ("sub", .string(IDToken.subject(identity))),
            ("name", .string(identity.displayName)),
            ("email", .string(identity.realishEmail(idpHost: configuration.idpHost))),
            ("preferred_username", .string(identity.username)),
            ("username", .string(identity.username)),
        ]
        if let picture = identity.pictureURL { members.append(("picture", .string(picture))) }
        if !identity.groups.isEmpty { members.append(("groups", .array(identity.groups.map(JSONValue.string)))) }
        for (name, value) in IDToken.extraClaims(try claimPolicy(for: identity), forUserInfo: true) {
            members.removeAll { $0.0 == name }
            members.append((name, value))
        }
        return JSONText.object(members)
    }
}

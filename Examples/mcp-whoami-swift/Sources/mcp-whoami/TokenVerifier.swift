import Foundation
import JWTKit

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The person a valid token was issued to.
struct Caller: Sendable {
    /// tsidp's stable user ID (`sub`), e.g. `userid:2001`.
    let subject: String
    /// What `whoami` answers: the email if known, else the login name, else `sub`.
    let name: String
}

/// Why a token was refused. The reason is logged and sent back in `error_description`; the token
/// itself never is.
struct InvalidToken: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The claims of an RFC 9068 access token that this server reads.
struct AccessTokenClaims: JWTPayload {
    let iss: IssuerClaim
    let sub: SubjectClaim
    let aud: AudienceClaim
    let exp: ExpirationClaim
    let email: String?
    let username: String?

    /// Called by JWTKit once the signature is good.
    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Checks the bearer tokens that MCP clients send.
///
/// A JWT is verified offline: tsidp's signature (keys from its JWKS), `typ` `at+jwt`, `iss`, `aud`
/// and `exp`. Any other token is shown to tsidp's `/introspect`, as this server's own client.
struct TokenVerifier: Sendable {
    let configuration: Configuration
    let tsidp: Tsidp

    func verify(_ token: String) async throws -> Caller {
        if token.split(separator: ".", omittingEmptySubsequences: false).count == 3 {
            return try await verifyJWT(token)
        }
        return try await introspect(token)
    }

    private func verifyJWT(_ token: String) async throws -> Caller {
        // The header first. tsidp signs its ID tokens with the same keys: only `typ` (and `aud`)
        // tell an ID token from an access token, and an ID token is no permission to call this server.
        guard let header = try? DefaultJWTParser().parse(Array(token.utf8), as: AccessTokenClaims.self).header
        else { throw InvalidToken("malformed JWT") }
        guard let type = header.typ?.lowercased(), type == "at+jwt" || type == "application/at+jwt" else {
            throw InvalidToken("not an access token (typ is not at+jwt)")
        }
        guard let kid = header.kid else { throw InvalidToken("no kid in the JWT header") }

        let keys = try await tsidp.keys(containing: kid)
        let claims: AccessTokenClaims
        do {
            // Signature with the key named by `kid`, then `exp` (AccessTokenClaims.verify).
            claims = try await keys.verify(token, as: AccessTokenClaims.self)
        } catch {
            throw InvalidToken("bad signature or expired")
        }
        guard claims.iss.value == configuration.issuer else { throw InvalidToken("issued by someone else") }
        guard claims.aud.value.contains(configuration.mcpURL) else { throw InvalidToken("meant for another resource") }

        if let name = claims.email ?? claims.username {
            return Caller(subject: claims.sub.value, name: name)
        }
        // tsidp's access tokens may name the user by `sub` only; its /userinfo knows the rest.
        let name = await tsidp.userName(subject: claims.sub.value, token: token) ?? claims.sub.value
        return Caller(subject: claims.sub.value, name: name)
    }

    private func introspect(_ token: String) async throws -> Caller {
        guard let clientID = configuration.clientID, let clientSecret = configuration.clientSecret else {
            throw InvalidToken("not a JWT (set MCP_CLIENT_ID and MCP_CLIENT_SECRET to introspect other tokens)")
        }
        let info = try await tsidp.introspect(token, clientID: clientID, clientSecret: clientSecret)
        // tsidp answers {"active": false} for a token that is not meant for this client's resources;
        // check the audience anyway, as a resource server should.
        guard info.active, let subject = info.sub else { throw InvalidToken("not active") }
        guard info.iss == configuration.issuer else { throw InvalidToken("issued by someone else") }
        guard info.aud?.value.contains(configuration.mcpURL) == true else {
            throw InvalidToken("meant for another resource")
        }
        if let exp = info.exp, Date(timeIntervalSince1970: exp) <= Date() { throw InvalidToken("expired") }
        return Caller(subject: subject, name: info.email ?? info.username ?? subject)
    }
}

import AnyJSON
import Foundation

/// What `/userinfo` answers (OIDC Core §5.3, RFC 6750 errors).
public struct UserInfoResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    /// The `WWW-Authenticate` challenge for 401/403 answers.
    public var wwwAuthenticate: String?
    /// `application/json`, or `application/jwt` for a signed answer.
    public var contentType = "application/json"
}

extension Provider {
    /// Answers a userinfo request carrying `accessToken` (`nil` when the request had none).
    public func userInfo(accessToken: String?) -> UserInfoResponse {
        guard let accessToken, !accessToken.isEmpty else {
            let error = OAuthError(.invalidToken, "an access token is required", status: 401)
            return UserInfoResponse(status: 401, body: error.jsonBody, wwwAuthenticate: "Bearer realm=\"tsidp\"")
        }
        guard let entry = ledger.read({ $0.access[GrantLedger.hash(accessToken)] }) else {
            return Self.bearerFailure(OAuthError(.invalidToken, "the access token is invalid"))
        }
        // An expired token is removed by the next sweep.
        guard entry.expiresAt > now() else {
            return Self.bearerFailure(OAuthError(.invalidToken, "the access token has expired"))
        }
        guard entry.grant.scopes.contains(Scope.openid) else {
            return Self.bearerFailure(OAuthError(.insufficientScope, "the access token was not issued for openid"))
        }
        do {
            return UserInfoResponse(
                status: 200, body: Array(try userInfoPayload(entry.grant).utf8), wwwAuthenticate: nil)
        } catch let error as OAuthError {
            return UserInfoResponse(status: error.status, body: error.jsonBody, wwwAuthenticate: nil)
        } catch {
            let failure = OAuthError(.serverError, "userinfo could not be produced")
            return UserInfoResponse(status: 500, body: failure.jsonBody, wwwAuthenticate: nil)
        }
    }

    /// Answers a userinfo request as the token's client registered: plain JSON, or a JWT signed
    /// with its `userinfo_signed_response_alg` and carrying `iss` and `aud` (OIDC Core §5.3.2).
    public func userInfoAnswer(accessToken: String?) async -> UserInfoResponse {
        let plain = userInfo(accessToken: accessToken)
        guard plain.status == 200, let accessToken,
            let entry = ledger.read({ $0.access[GrantLedger.hash(accessToken)] }),
            let algorithm = await clients.client(entry.grant.clientID)?.userInfoSignedResponseAlg
        else { return plain }
        do {
            let members: [(String, JSONValue)] =
                [("iss", .string(configuration.issuer)), ("aud", .string(entry.grant.clientID))]
                + (try userInfoMembers(entry.grant)).filter { $0.0 != "iss" && $0.0 != "aud" }
            let token = try keys.signingKey(for: algorithm).sign(payload: JSONText.object(members))
            return UserInfoResponse(
                status: 200, body: Array(token.utf8), wwwAuthenticate: nil, contentType: "application/jwt")
        } catch {
            let failure = OAuthError(.serverError, "userinfo could not be produced")
            return UserInfoResponse(status: 500, body: failure.jsonBody, wwwAuthenticate: nil)
        }
    }

    static func bearerFailure(_ error: OAuthError) -> UserInfoResponse {
        let challenge =
            "Bearer realm=\"tsidp\", error=\"\(error.code.rawValue)\", error_description=\"\(error.message)\""
        return UserInfoResponse(status: error.status, body: error.jsonBody, wwwAuthenticate: challenge)
    }
}

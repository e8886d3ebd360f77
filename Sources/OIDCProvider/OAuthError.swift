/// An OAuth 2.0 / OIDC error: the registered error code, a readable description and the HTTP
/// status it is answered with on endpoints that answer directly (RFC 6749 §5.2, RFC 6750 §3.1).
public struct OAuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Error codes registered by RFC 6749, RFC 6750, RFC 7591, RFC 8693 and OIDC Core.
    public enum Code: String, Sendable {
        case invalidRequest = "invalid_request"
        case invalidClient = "invalid_client"
        case invalidGrant = "invalid_grant"
        case unauthorizedClient = "unauthorized_client"
        case unsupportedGrantType = "unsupported_grant_type"
        case invalidScope = "invalid_scope"
        case accessDenied = "access_denied"
        case unsupportedResponseType = "unsupported_response_type"
        case serverError = "server_error"
        case temporarilyUnavailable = "temporarily_unavailable"
        case invalidToken = "invalid_token"
        case insufficientScope = "insufficient_scope"
        case loginRequired = "login_required"
        case consentRequired = "consent_required"
        case requestNotSupported = "request_not_supported"
        case requestURINotSupported = "request_uri_not_supported"
        case invalidClientMetadata = "invalid_client_metadata"
        case invalidRedirectURI = "invalid_redirect_uri"
        case invalidTarget = "invalid_target"
        case notFound = "not_found"
        case unsupportedTokenType = "unsupported_token_type"
    }

    public var code: Code
    public var message: String
    public var status: Int

    public init(_ code: Code, _ message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status ?? Self.defaultStatus(code)
    }

    public var description: String { "\(code.rawValue): \(message)" }

    static func defaultStatus(_ code: Code) -> Int {
        switch code {
        case .invalidClient, .invalidToken: return 401
        case .accessDenied, .insufficientScope: return 403
        case .notFound: return 404
        case .serverError: return 500
        case .temporarilyUnavailable: return 503
        default: return 400
        }
    }

    /// The JSON error body `{"error": …, "error_description": …}`.
    public var jsonBody: [UInt8] {
        let text = "{\"error\":\(JSONText.quote(code.rawValue)),\"error_description\":\(JSONText.quote(message))}"
        return Array(text.utf8)
    }
}

extension OAuthError {
    /// A store write failed: the request changed nothing and may be retried (HTTP 503).
    static func storageUnavailable(_ what: String) -> OAuthError {
        OAuthError(.temporarilyUnavailable, "\(what) could not be stored; try again", status: 503)
    }
}

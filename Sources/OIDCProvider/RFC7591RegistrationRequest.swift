import AnyJSON
import Foundation

/// The RFC 7591 registration request members tsidp reads (the JSON body of `/register`).
struct RFC7591RegistrationRequest: Decodable {
    var redirectURIs: [String]?
    var tokenEndpointAuthMethod: String?
    var grantTypes: [String]?
    var responseTypes: [String]?
    var clientName: String?
    var clientURI: String?
    var logoURI: String?
    var scope: String?
    var contacts: [String]?
    var applicationType: String?
    var idTokenSignedResponseAlg: String?
    var accessTokenFormat: String?
    var resources: [String]?
    var postLogoutRedirectURIs: [String]?
    var userInfoSignedResponseAlg: String?
    var subjectType: String?
    var sectorIdentifierURI: String?
    var jwks: JSONValue?
    var jwksURI: String?
    var tokenEndpointAuthSigningAlg: String?

    enum CodingKeys: String, CodingKey {
        case redirectURIs = "redirect_uris", tokenEndpointAuthMethod = "token_endpoint_auth_method"
        case grantTypes = "grant_types", responseTypes = "response_types", clientName = "client_name"
        case clientURI = "client_uri", logoURI = "logo_uri", scope, contacts, applicationType = "application_type"
        case idTokenSignedResponseAlg = "id_token_signed_response_alg", accessTokenFormat = "access_token_format"
        case resources
        case postLogoutRedirectURIs = "post_logout_redirect_uris"
        case userInfoSignedResponseAlg = "userinfo_signed_response_alg"
        case subjectType = "subject_type", sectorIdentifierURI = "sector_identifier_uri"
        case jwks, jwksURI = "jwks_uri", tokenEndpointAuthSigningAlg = "token_endpoint_auth_signing_alg"
    }
}

extension ClientRegistry.Registration {
    /// Reads an RFC 7591 dynamic registration request, with tsidp's defaults for absent members.
    ///
    /// The result is marked as dynamically registered; ``ClientRegistry/register(_:)`` applies
    /// the remaining rules (bounds, redirect URIs, algorithms).
    ///
    /// - Throws: `invalid_client_metadata` when `body` is not such a request, names no redirect
    ///   URI, or asks for a grant or response type tsidp does not offer.
    public init(rfc7591JSON body: Data) throws {
        let request: RFC7591RegistrationRequest
        do {
            request = try JSONDecoder().decode(RFC7591RegistrationRequest.self, from: body)
        } catch {
            throw OAuthError(.invalidClientMetadata, "the body is not a valid registration request (RFC 7591 JSON)")
        }
        guard let uris = request.redirectURIs, !uris.isEmpty else {
            throw OAuthError(.invalidClientMetadata, "redirect_uris is required")
        }
        self.init(name: request.clientName ?? "", redirectURIs: uris)
        tokenEndpointAuthMethod = request.tokenEndpointAuthMethod ?? "client_secret_basic"
        grantTypes = request.grantTypes ?? ["authorization_code", "refresh_token"]
        responseTypes = request.responseTypes ?? ["code"]
        scope = request.scope ?? ""
        clientURI = request.clientURI ?? ""
        logoURI = request.logoURI ?? ""
        contacts = request.contacts ?? []
        applicationType = request.applicationType ?? "web"
        idTokenSignedResponseAlg = request.idTokenSignedResponseAlg ?? "RS256"
        accessTokenFormat = request.accessTokenFormat ?? ""
        resources = request.resources ?? []
        postLogoutRedirectURIs = request.postLogoutRedirectURIs ?? []
        userInfoSignedResponseAlg = request.userInfoSignedResponseAlg
        subjectType = request.subjectType ?? "public"
        sectorIdentifierURI = request.sectorIdentifierURI ?? ""
        jwks = request.jwks
        jwksURI = request.jwksURI ?? ""
        tokenEndpointAuthSigningAlg = request.tokenEndpointAuthSigningAlg
        dynamicallyRegistered = true
        if let bad = grantTypes.first(where: { !["authorization_code", "refresh_token"].contains($0) }) {
            throw OAuthError(.invalidClientMetadata, "grant type \(bad) is not supported")
        }
        if let bad = responseTypes.first(where: { $0 != "code" }) {
            throw OAuthError(.invalidClientMetadata, "response type \(bad) is not supported")
        }
    }
}

import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

/// The members of an RFC 7592 update request that are not client metadata.
private struct RFC7592UpdateIdentity: Decodable {
    var clientID: String?
    var clientSecret: String?

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", clientSecret = "client_secret"
    }
}

extension IDPServer {
    /// `<issuer>/register/<client_id>`: the RFC 7592 client configuration endpoint of a client.
    static func registrationClientURI(issuer: String, clientID: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove("/")
        return issuer + "/register/" + (clientID.addingPercentEncoding(withAllowedCharacters: allowed) ?? clientID)
    }

    /// The RFC 7591 §3.2.1 / RFC 7592 §3 client information response: the client's metadata, its
    /// configuration endpoint and registration access token, and its secret only when one was
    /// just issued (tsidp keeps secrets as digests, so it cannot show an existing one again).
    static func clientInformation(
        _ client: Client, secret: String?, registrationAccessToken: String, issuer: String,
        status: HTTPResponse.Status
    ) -> Response {
        var members: [(String, JSONValue)] = [
            ("client_id", .string(client.clientID)),
            ("client_id_issued_at", .int(Int64(client.createdAt.timeIntervalSince1970))),
        ]
        if let secret { members.append(("client_secret", .string(secret))) }
        if client.secretHash != nil { members.append(("client_secret_expires_at", .int(0))) }
        members += [
            ("registration_access_token", .string(registrationAccessToken)),
            ("registration_client_uri", .string(registrationClientURI(issuer: issuer, clientID: client.clientID))),
            ("client_name", .string(client.name)),
            ("redirect_uris", .array(client.redirectURIs.map(JSONValue.string))),
            ("token_endpoint_auth_method", .string(client.tokenEndpointAuthMethod)),
            ("grant_types", .array(client.grantTypes.map(JSONValue.string))),
            ("response_types", .array(client.responseTypes.map(JSONValue.string))),
            ("application_type", .string(client.applicationType)),
            ("id_token_signed_response_alg", .string(client.idTokenSignedResponseAlg.rawValue)),
            ("subject_type", .string(client.subjectType)),
        ]
        if let jwks = client.jwks { members.append(("jwks", jwks)) }
        if !client.jwksURI.isEmpty { members.append(("jwks_uri", .string(client.jwksURI))) }
        if let alg = client.tokenEndpointAuthSigningAlg {
            members.append(("token_endpoint_auth_signing_alg", .string(alg)))
        }
        if !client.sectorIdentifierURI.isEmpty {
            members.append(("sector_identifier_uri", .string(client.sectorIdentifierURI)))
        }
        if !client.accessTokenFormat.isEmpty {
            members.append(("access_token_format", .string(client.accessTokenFormat)))
        }
        if !client.resources.isEmpty { members.append(("resources", .array(client.resources.map(JSONValue.string)))) }
        if !client.scope.isEmpty { members.append(("scope", .string(client.scope))) }
        if !client.clientURI.isEmpty { members.append(("client_uri", .string(client.clientURI))) }
        if !client.logoURI.isEmpty { members.append(("logo_uri", .string(client.logoURI))) }
        if !client.contacts.isEmpty { members.append(("contacts", .array(client.contacts.map(JSONValue.string)))) }
        if let alg = client.userInfoSignedResponseAlg {
            members.append(("userinfo_signed_response_alg", .string(alg.rawValue)))
        }
        if !client.postLogoutRedirectURIs.isEmpty {
            members.append(("post_logout_redirect_uris", .array(client.postLogoutRedirectURIs.map(JSONValue.string))))
        }
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        headers[.pragma] = "no-cache"
        return Responses.json(JSONText.objectBytes(members), status: status, headers: headers)
    }

    /// The client a request to `/register/<id>` manages, and the token that proved it.
    ///
    /// - Important: A missing or wrong token, a token of another client and an unknown client all
    ///   answer the same 401 `invalid_token`, so the endpoint reveals no client's existence.
    func registrationCaller(_ request: Request, context: IDPRequestContext) async throws -> (Client, String) {
        let id = context.parameters.get("id") ?? ""
        guard let token = try Self.bearerToken(request.headers[.authorization]) else {
            throw OAuthError(.invalidToken, "a registration access token is required (Authorization: Bearer)")
        }
        guard let client = await provider.clients.client(id, registrationAccessToken: token) else {
            throw OAuthError(.invalidToken, "the registration access token is not valid for this client")
        }
        return (client, token)
    }

    /// RFC 7592: read, replace and delete a dynamically registered client with its registration
    /// access token. Funnel callers never reach these routes (``FunnelGate``).
    func addClientConfigurationRoutes(to router: Router<IDPRequestContext>) {
        let issuer = provider.configuration.issuer
        let answer: @Sendable (() async throws -> Response) async -> Response = { body in
            do {
                return try await body()
            } catch let error as OAuthError {
                return error.status == 401 ? Self.bearerError(error) : Responses.error(error)
            } catch {
                return Responses.error(OAuthError(.serverError, "the request could not be completed"))
            }
        }
        router.get("/register/:id") { request, context -> Response in
            await answer {
                let (client, token) = try await registrationCaller(request, context: context)
                return Self.clientInformation(
                    client, secret: nil, registrationAccessToken: token, issuer: issuer, status: .ok)
            }
        }
        router.put("/register/:id") { request, context -> Response in
            await answer {
                let (client, token) = try await registrationCaller(request, context: context)
                var request = request
                let body = Data(try await Self.readBody(&request, context: context).readableBytesView)
                let asked = try ClientRegistry.Registration(rfc7591JSON: body)
                let identity: RFC7592UpdateIdentity
                do {
                    identity = try JSONDecoder().decode(RFC7592UpdateIdentity.self, from: body)
                } catch {
                    throw OAuthError(.invalidRequest, "client_id and client_secret must be strings")
                }
                guard let bodyID = identity.clientID else {
                    throw OAuthError(.invalidRequest, "client_id is required in the body")
                }
                guard bodyID == client.clientID else {
                    throw OAuthError(.invalidRequest, "client_id in the body does not match the client")
                }
                let updated = try await provider.clients.replaceMetadata(
                    client.clientID, with: asked, presentedSecret: identity.clientSecret)
                logger.info("client metadata replaced (RFC 7592)", metadata: ["client_id": "\(client.clientID)"])
                return Self.clientInformation(
                    updated.client, secret: updated.secret, registrationAccessToken: token, issuer: issuer,
                    status: .ok)
            }
        }
        router.delete("/register/:id") { request, context -> Response in
            await answer {
                let (client, _) = try await registrationCaller(request, context: context)
                guard try await provider.deleteClient(client.clientID) else {
                    throw OAuthError(.invalidToken, "the registration access token is not valid for this client")
                }
                logger.info("client deleted (RFC 7592)", metadata: ["client_id": "\(client.clientID)"])
                var headers = HTTPFields()
                headers[.cacheControl] = "no-store"
                return Response(status: .noContent, headers: headers)
            }
        }
    }
}

import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import IDPServer

/// Over HTTP: every 401 of a client-authenticated endpoint carries `WWW-Authenticate: Basic`.
@Suite("HTTP: client authentication challenges")
struct ClientAuthenticationHTTPTests {
    @Test("malformed Basic credentials get 401 with the challenge at /token, /revoke and /introspect")
    func challenge() async throws {
        try await Harness.run { (_: Harness, client: any TestClientProtocol) async throws in
            for path in ["/token", "/revoke", "/introspect"] {
                for authorization in [
                    "Basic !!!notbase64", "Basic " + Data("no-colon".utf8).base64EncodedString(), nil,
                ] {
                    var (headers, _) = form("")
                    headers[.authorization] = authorization
                    let response = try await client.execute(
                        uri: path, method: .post, headers: headers,
                        body: ByteBuffer(string: "grant_type=authorization_code&code=x&token=x"))
                    #expect(response.status == .unauthorized, "\(path) \(authorization ?? "without credentials")")
                    #expect(
                        response.headers[.wwwAuthenticate] == "Basic realm=\"tsidp\"",
                        "\(path) \(authorization ?? "without credentials")")
                }
            }
        }
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import Testing

@testable import IDPServer

@Suite("HTTP: signed userinfo")
struct SignedUserInfoHTTPTests {
    @Test("a client registered with userinfo_signed_response_alg reads application/jwt from /userinfo")
    func signedUserInfo() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let discovery = try await client.execute(uri: "/.well-known/openid-configuration", method: .get)
            #expect(
                discovery.json["userinfo_signing_alg_values_supported"] as? [String] == ["RS256", "ES256", "EdDSA"])
            var registration = ClientRegistry.Registration(name: "Signed", redirectURIs: ["https://app.example.com/cb"])
            registration.userInfoSignedResponseAlg = "ES256"
            let created = try await harness.provider.clients.register(registration)
            let token = try await LogoutHTTPTests.signIn(
                client, id: created.client.clientID, secret: try #require(created.secret))
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(try #require(token["access_token"] as? String))"
            let info = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
            #expect(info.status == .ok)
            #expect(info.headers[.contentType] == "application/jwt")
            #expect(info.headers[.cacheControl] == "no-store")
            #expect(info.text.split(separator: ".").count == 3)
        }
    }
}

import AnyJSON
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import IDPServer
import NIOCore
import Testing

/// `--cap-name`: grants are read under the configured application capability only.
@Suite("HTTP: capability name")
struct CapabilityNameHTTPTests {
    static let custom = "example.com/cap/idp"
    static let rule: JSONValue = .object([
        "allow_admin_ui": .bool(true), "allow_dcr": .bool(true), "includeInUserInfo": .bool(true),
        "extraClaims": .object(["department": .string("research")]),
    ])

    /// Signs in through /authorize and /token and returns the userinfo document.
    static func userinfo(_ harness: Harness, _ client: any TestClientProtocol) async throws -> [String: Any] {
        let registered = try await harness.client()
        let query =
            "client_id=\(registered.id)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid%20email"
        let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
        let location = try #require(authorize.headers[.location])
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        headers[.authorization] = "Basic " + Data("\(registered.id):\(registered.secret)".utf8).base64EncodedString()
        let token = try await client.execute(
            uri: "/token", method: .post, headers: headers,
            body: ByteBuffer(
                string: "grant_type=authorization_code&code=\(code)&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"))
        #expect(token.status == .ok)
        let access = try #require(token.json["access_token"] as? String)
        var bearer = HTTPFields()
        bearer[.authorization] = "Bearer \(access)"
        let info = try await client.execute(uri: "/userinfo", method: .get, headers: bearer)
        #expect(info.status == .ok)
        return info.json
    }

    @Test(
        "a grant is honoured only when the server reads the capability it is granted under",
        arguments: [
            ("tailscale.com/cap/tsidp", "tailscale.com/cap/tsidp", true),
            ("tailscale.com/cap/tsidp", custom, false),
            (custom, custom, true),
            (custom, "tailscale.com/cap/tsidp", false),
        ])
    func grantReadUnderConfiguredName(serverReads: String, grantedUnder: String, honoured: Bool) async throws {
        try await Harness.run(rules: [Self.rule], capabilityName: serverReads, grantedUnder: grantedUnder) {
            harness, client in
            let clients = try await client.execute(uri: "/clients", method: .get)
            #expect(clients.status == (honoured ? .ok : .forbidden))
            var json = HTTPFields()
            json[.contentType] = "application/json"
            let register = try await client.execute(
                uri: "/register", method: .post, headers: json,
                body: ByteBuffer(string: #"{"redirect_uris":["https://app.example.com/cb"]}"#))
            #expect(register.status == (honoured ? .created : .forbidden))
            let info = try await Self.userinfo(harness, client)
            #expect(info["email"] as? String == "alice@example.com")
            #expect((info["department"] as? String == "research") == honoured)
        }
    }
}

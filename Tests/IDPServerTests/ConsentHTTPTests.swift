import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OIDCProvider
import Testing

@Suite("HTTP: consent and sub-resource loads")
struct ConsentHTTPTests {
    /// A dynamically registered client with a hostile name.
    func hostileClient(_ harness: Harness) async throws -> String {
        var registration = ClientRegistry.Registration(
            name: "<script>alert(1)</script>Grafana", redirectURIs: ["https://grafana.example.com/cb"])
        registration.dynamicallyRegistered = true
        return try await harness.provider.clients.register(registration).client.clientID
    }

    static func authorizePath(_ clientID: String) -> String {
        "/authorize?client_id=\(clientID)&redirect_uri=https%3A%2F%2Fgrafana.example.com%2Fcb&response_type=code"
            + "&scope=openid%20email&state=xyz"
    }

    /// The value of a hidden form field in `html`.
    static func field(_ name: String, in html: String) -> String? {
        guard let start = html.range(of: "name=\"\(name)\" value=\"") else { return nil }
        guard let end = html[start.upperBound...].firstIndex(of: "\"") else { return nil }
        return String(html[start.upperBound..<end])
    }

    @Test("the consent page escapes the client's name, forbids framing, and its Continue issues a code")
    func page() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let id = try await hostileClient(harness)
            let page = try await client.execute(uri: Self.authorizePath(id), method: .get)
            #expect(page.status == .ok)
            #expect(!page.text.contains("<script>"))
            #expect(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;Grafana"))
            #expect(page.text.contains("grafana.example.com"))
            #expect(page.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
            #expect(
                page.headers[.contentSecurityPolicy]?.contains("form-action 'self' https://grafana.example.com") == true
            )
            #expect(page.headers[.cacheControl] == "no-store")
            let request = try #require(Self.field("request", in: page.text))
            let token = try #require(Self.field("csrf_token", in: page.text))

            // A post from another site is refused.
            var (headers, body) = form("request=\(request)&csrf_token=\(token)&decision=allow")
            headers[.origin] = "https://evil.example.com"
            let crossSite = try await client.execute(uri: "/consent", method: .post, headers: headers, body: body)
            #expect(crossSite.status == .forbidden)

            (headers, body) = form("request=\(request)&csrf_token=\(token)&decision=allow")
            let allowed = try await client.execute(uri: "/consent", method: .post, headers: headers, body: body)
            #expect(allowed.status == .seeOther)
            let location = try #require(allowed.headers[.location])
            #expect(location.hasPrefix("https://grafana.example.com/cb?code="))
            #expect(location.contains("state=xyz"))

            // Remembered: the next sign-in redirects at once, and the user's page lists it.
            let second = try await client.execute(uri: Self.authorizePath(id), method: .get)
            #expect(second.status == .found)
            let consents = try await client.execute(uri: "/consents", method: .get)
            #expect(consents.status == .ok)
            #expect(consents.text.contains(id))
            #expect(!consents.text.contains("<script>"))
        }
    }

    @Test("an image, frame or fetch load of /authorize gets 400 and no code, for every client")
    func subresources() async throws {
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let vetted = try await harness.client(redirect: "https://grafana.example.com/cb")
            for destination in ["image", "iframe", "empty", "script"] {
                var headers = HTTPFields()
                headers[HTTPField.Name("Sec-Fetch-Dest")!] = destination
                let response = try await client.execute(
                    uri: Self.authorizePath(vetted.id), method: .get, headers: headers)
                #expect(response.status == .badRequest, "\(destination)")
                #expect(response.headers[.location] == nil)
            }
            var document = HTTPFields()
            document[HTTPField.Name("Sec-Fetch-Dest")!] = "document"
            let page = try await client.execute(uri: Self.authorizePath(vetted.id), method: .get, headers: document)
            #expect(page.status == .found)
            #expect(page.headers[.location]?.contains("code=") == true)
            #expect(harness.provider.grantCounts.codes == 1)
        }
    }

    @Test("the consents page is for tailnet users only, and its form needs its token")
    func consentsPage() async throws {
        try await Harness.run(listener: .local) { (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/consents", method: .get).status == .forbidden)
        }
        try await Harness.run { (harness: Harness, client: any TestClientProtocol) async throws in
            let id = try await hostileClient(harness)
            let page = try await client.execute(uri: Self.authorizePath(id), method: .get)
            let request = try #require(Self.field("request", in: page.text))
            let token = try #require(Self.field("csrf_token", in: page.text))
            let (headers, body) = form("request=\(request)&csrf_token=\(token)&decision=allow")
            _ = try await client.execute(uri: "/consent", method: .post, headers: headers, body: body)
            let forged = form("client_id=\(id)&csrf_token=guess")
            let refused = try await client.execute(
                uri: "/consents/revoke", method: .post, headers: forged.0, body: forged.1)
            #expect(refused.status == .forbidden)
            #expect(await harness.provider.consents(userID: 2001).count == 1)
            let listing = try await client.execute(uri: "/consents", method: .get)
            let formToken = try #require(Self.field("csrf_token", in: listing.text))
            let revoke = form(
                "client_id=\(id)&csrf_token=\(formToken.replacingOccurrences(of: "+", with: "%2B").replacingOccurrences(of: "/", with: "%2F").replacingOccurrences(of: "=", with: "%3D"))"
            )
            let revoked = try await client.execute(
                uri: "/consents/revoke", method: .post, headers: revoke.0, body: revoke.1)
            #expect(revoked.status == .seeOther)
            #expect(await harness.provider.consents(userID: 2001).isEmpty)
        }
    }
}

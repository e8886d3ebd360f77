import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OIDCProvider
import StateStoreTesting
import Telemetry
import Testing

@testable import IDPServer

/// The value of one series in Prometheus text, e.g. `tsidp_logins_total{result="issued"}`.
func sample(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

@Suite("HTTP: metrics and request IDs")
struct ObservabilityHTTPTests {
    static let redirect = "https%3A%2F%2Fapp.example.com%2Fcb"

    /// Signs in (authorize → code → token) and returns the token answer.
    static func signIn(_ client: any TestClientProtocol, _ registered: (id: String, secret: String)) async throws
        -> [String: Any]
    {
        let query = "client_id=\(registered.id)&redirect_uri=\(redirect)&response_type=code&scope=openid%20email"
        let authorize = try await client.execute(uri: "/authorize?\(query)", method: .get)
        let location = try #require(authorize.headers[.location])
        let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
        let (headers, body) = form(
            "grant_type=authorization_code&code=\(code)&redirect_uri=\(redirect)&client_id=\(registered.id)"
                + "&client_secret=\(registered.secret)")
        let token = try await client.execute(uri: "/token", method: .post, headers: headers, body: body)
        #expect(token.status == .ok)
        return token.json
    }

    static func scrape(_ client: any TestClientProtocol) async throws -> String {
        let response = try await client.execute(uri: "/metrics", method: .get)
        #expect(response.status == .ok)
        #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
        return response.text
    }

    @Test("/metrics counts requests by route and status, sign-ins, tokens by grant, WhoIs calls and store writes")
    func counts() async throws {
        try await Harness.run(listener: .local) { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            let before = try await Self.scrape(client)
            #expect(sample(before, "tsidp_logins_total{result=\"issued\"}") == 0)
            #expect(sample(before, "tsidp_refresh_families") == 0)
            #expect(sample(before, "tsidp_clients") == 1)
            #expect(sample(before, "tsidp_build_info{version=\"test\"}") == 1)
            for name in ["tsidp_logins_total", "tsidp_whois_duration_seconds", "tsidp_state_write_duration_seconds"] {
                #expect(before.contains("# HELP \(name) "), "no help text for \(name)")
            }

            let tokens = try await Self.signIn(client, registered)
            let refreshToken = try #require(tokens["refresh_token"] as? String)
            let (headers, body) = form(
                "grant_type=refresh_token&refresh_token=\(refreshToken)&client_id=\(registered.id)"
                    + "&client_secret=\(registered.secret)")
            #expect(try await client.execute(uri: "/token", method: .post, headers: headers, body: body).status == .ok)
            // A refresh token used twice is refused (and ends the family).
            #expect(
                try await client.execute(uri: "/token", method: .post, headers: headers, body: body).status
                    == .badRequest)
            let (wrongHeaders, wrongBody) = form(
                "grant_type=authorization_code&code=nope&client_id=\(registered.id)&client_secret=wrong")
            #expect(
                try await client.execute(uri: "/token", method: .post, headers: wrongHeaders, body: wrongBody).status
                    == .unauthorized)
            _ = try await client.execute(uri: "/no-such-page", method: .get)

            let after = try await Self.scrape(client)
            #expect(after.contains("# HELP tsidp_http_requests_total "))
            #expect(sample(after, "tsidp_logins_total{result=\"issued\"}") == 1)
            #expect(sample(after, "tsidp_tokens_issued_total{grant_type=\"authorization_code\"}") == 1)
            #expect(sample(after, "tsidp_tokens_issued_total{grant_type=\"refresh_token\"}") == 1)
            #expect(
                sample(after, "tsidp_token_errors_total{grant_type=\"refresh_token\",error=\"invalid_grant\"}") == 1)
            #expect(
                sample(after, "tsidp_token_errors_total{grant_type=\"authorization_code\",error=\"invalid_client\"}")
                    == 1)
            #expect(
                sample(after, "tsidp_http_requests_total{listener=\"local\",endpoint=\"/token\",status=\"200\"}") == 2)
            #expect(
                sample(after, "tsidp_http_requests_total{listener=\"local\",endpoint=\"/authorize\",status=\"302\"}")
                    == 1)
            // A path no route serves counts under one label, whatever the path was.
            #expect(!after.contains("no-such-page"))
            #expect(sample(after, "tsidp_whois_duration_seconds_count{result=\"found\"}") == 1)
            #expect((sample(after, "tsidp_state_write_duration_seconds_count") ?? 0) >= 2)
            #expect(sample(after, "tsidp_state_write_failures_total") == 0)
            // The reused refresh token revoked its family: no live login remains.
            #expect(sample(after, "tsidp_refresh_families") == 0)
            #expect((sample(after, "process_resident_memory_bytes") ?? 0) > 0)
        }
    }

    @Test("live logins and failed store writes show in /metrics")
    func gaugesAndFailures() async throws {
        try await Harness.run(listener: .local) { (harness: Harness, client: any TestClientProtocol) async throws in
            let registered = try await harness.client()
            _ = try await Self.signIn(client, registered)
            _ = try await Self.signIn(client, registered)
            let live = try await Self.scrape(client)
            #expect(sample(live, "tsidp_refresh_families") == 2)
            #expect(sample(live, "tsidp_access_tokens") == 2)

            harness.faults.failNextWrite()
            let query = "client_id=\(registered.id)&redirect_uri=\(Self.redirect)&response_type=code&scope=openid"
            let location = try #require(
                try await client.execute(uri: "/authorize?\(query)", method: .get).headers[.location])
            let code = try #require(URLComponents(string: location)?.queryItems?.first { $0.name == "code" }?.value)
            let (headers, body) = form(
                "grant_type=authorization_code&code=\(code)&redirect_uri=\(Self.redirect)&client_id=\(registered.id)"
                    + "&client_secret=\(registered.secret)")
            let refused = try await client.execute(uri: "/token", method: .post, headers: headers, body: body)
            #expect(refused.status.code >= 500)
            let after = try await Self.scrape(client)
            #expect(sample(after, "tsidp_state_write_failures_total") == 1)
            #expect(sample(after, "tsidp_refresh_families") == 2)
        }
    }

    @Test("/metrics is the operator's: the tailnet listener does not serve it")
    func notOnTailnet() async throws {
        try await Harness.run(listener: .tailnet) { (_: Harness, client: any TestClientProtocol) async throws in
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .notFound)
        }
    }

    @Test("every answer carries its own request ID, and lines logged while answering name it")
    func requestIDs() async throws {
        try await Harness.run(listener: .local) { (harness: Harness, client: any TestClientProtocol) async throws in
            let first = try await client.execute(uri: "/healthz/live", method: .get)
            let second = try await client.execute(uri: "/no-such-page", method: .get)
            let firstID = try #require(first.headers[HTTPField.Name("X-Request-Id")!])
            let secondID = try #require(second.headers[HTTPField.Name("X-Request-Id")!])
            #expect(firstID.count == 32 && firstID.allSatisfy(\.isHexDigit))
            // Every ID has 32 digits, whatever the process prefix and counter happen to be.
            for _ in 0..<1_000 {
                let id = RequestLog.nextID()
                #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(id)")
            }
            #expect(firstID != secondID)

            let (headers, body) = form("name=Grafana&redirect_uri=https%3A%2F%2Fgrafana.example.com%2Fcb")
            let created = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(created.status == .ok)
            let id = try #require(created.headers[HTTPField.Name("X-Request-Id")!])
            let line = try #require(
                harness.capture.lines.withLockedValue { $0 }.first { $0.contains("client created") })
            #expect(line.contains("\"request_id\": \(id)"))
            // Outside a request, nothing is added.
            let logger = harness.capture.logger()
            logger.info("outside")
            let outside = try #require(harness.capture.lines.withLockedValue { $0 }.last)
            #expect(!outside.contains("request_id"))
        }
    }
}

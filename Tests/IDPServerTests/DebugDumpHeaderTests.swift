import HTTPTypes
import HummingbirdTesting
import Testing

@testable import IDPServer

/// `--debug-all-requests` logs header values only for an allowlist of header names.
@Suite("Debug dump headers")
struct DebugDumpHeaderTests {
    @Test("header values off the allowlist are redacted, names are kept")
    func allowlist() async throws {
        try await Harness.run(debugAllRequests: true) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            var headers = HTTPFields()
            headers[HTTPField.Name("X-Api-Key")!] = "apikey-1234567890"
            headers[HTTPField.Name("X-Auth-Token")!] = "proxytoken-0987654321"
            headers[.cookie] = "session=cookie-abcdef"
            headers[.authorization] = "Bearer bearer-fedcba"
            headers[.userAgent] = "test-agent/1.0"
            headers[.accept] = "application/json"
            _ = try await client.execute(uri: "/healthz/live", method: .get, headers: headers)
            let log = harness.capture.text
            for secret in ["apikey-1234567890", "proxytoken-0987654321", "cookie-abcdef", "bearer-fedcba"] {
                #expect(!log.contains(secret), "\(secret) reached the log")
            }
            #expect(log.contains("X-Api-Key: [redacted]"))
            #expect(log.contains("X-Auth-Token: [redacted]"))
            #expect(log.contains("User-Agent: test-agent/1.0"))
            #expect(log.contains("Accept: application/json"))
            #expect(log.contains("X-Frame-Options: DENY"), "allowlisted response headers are shown")
        }
    }

    @Test("the redaction rule for a single header")
    func rule() {
        #expect(Redaction.header(name: "X-Api-Key", value: "k") == "[redacted]")
        #expect(Redaction.header(name: "Authorization", value: "Basic x") == "[redacted]")
        #expect(Redaction.header(name: "Content-Type", value: "text/plain") == "text/plain")
        #expect(
            Redaction.header(name: "Referer", value: "https://a.example/cb?code=abc&x=1")
                == "https://a.example/cb?code=[redacted]&x=1")
        #expect(Redaction.loggedHeaders.isDisjoint(with: Redaction.secretHeaders))
    }
}

import Foundation
import Testing

@testable import OIDCProvider

/// RFC 6749 §5.2: a client that tried HTTP Basic (or could have) and failed to authenticate gets
/// a 401 with `WWW-Authenticate: Basic`, at every endpoint that authenticates clients.
@Suite("Basic challenge on 401")
struct BasicChallengeTests {
    static let endpoints = ["token", "revoke", "introspect"]

    func call(_ setup: Fixtures.Setup, _ endpoint: String, _ pairs: [(String, String)], authorization: String?)
        async -> TokenResponse
    {
        let form = Fixtures.query(pairs)
        switch endpoint {
        case "token": return await setup.provider.token(form, authorization: authorization)
        case "revoke": return await setup.provider.revoke(form, authorization: authorization)
        default: return await setup.provider.introspect(form, authorization: authorization)
        }
    }

    @Test("malformed, foreign, missing and wrong credentials all get the challenge", arguments: endpoints)
    func challenged(_ endpoint: String) async throws {
        let setup = try await Fixtures.provider()
        let base: [(String, String)] = [("grant_type", "authorization_code"), ("code", "x"), ("token", "x")]
        let cases: [(String, String?, [(String, String)])] = [
            ("Basic credentials that are not base64", "Basic !!!notbase64", []),
            ("Basic credentials without a colon", "Basic " + Data("no-colon".utf8).base64EncodedString(), []),
            ("another scheme", "Bearer abc", []),
            ("no credentials", nil, []),
            ("a wrong Basic secret", Fixtures.basic(setup.client.clientID, "wrong"), []),
            ("a wrong form secret", nil, [("client_id", setup.client.clientID), ("client_secret", "wrong")]),
            ("an unknown client in the form", nil, [("client_id", "nobody"), ("client_secret", "x")]),
        ]
        for (name, authorization, extra) in cases {
            let answer = await call(setup, endpoint, base + extra, authorization: authorization)
            #expect(answer.status == 401, "\(endpoint): \(name)")
            #expect(answer.wwwAuthenticate == "Basic realm=\"tsidp\"", "\(endpoint): \(name)")
            #expect(Fixtures.json(answer.body)["error"] as? String == "invalid_client", "\(endpoint): \(name)")
        }
    }

    @Test("errors other than 401 carry no challenge", arguments: endpoints)
    func notChallenged(_ endpoint: String) async throws {
        let setup = try await Fixtures.provider()
        let answer = await call(
            setup, endpoint, [("grant_type", "magic")],
            authorization: Fixtures.basic(setup.client.clientID, setup.secret))
        #expect(answer.status == 400)
        #expect(answer.wwwAuthenticate == nil)
    }
}

import Foundation
import OIDCProvider

/// Codes and tokens a fresh provider issued, to be spliced into fuzz inputs by placeholder
/// (`@CODE@`, `@ACCESS@`, …), so that mutations start from requests that get far.
struct Tokens: Sendable {
    /// Unredeemed codes: for `app`, for the public `spa` (PKCE S256 with ``Fixture/verifier``),
    /// and a legacy-flow code bound to node 1001.
    var code: String
    var pkceCode: String
    var legacyCode: String
    /// Tokens of a redeemed `app` login of alice.
    var access: String
    var refresh: String
    var idToken: String
    /// An RFC 9068 access token of client `notes` for bob.
    var jwtAccess: String

    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    static func issue(on provider: Provider, shared: Shared) async throws -> Tokens {
        func authorize(_ pairs: [(String, String)], as identity: UserIdentity, legacy: Int64? = nil) async throws
            -> String
        {
            var result = await provider.authorize(OAuthParameters(pairs), legacyNodeID: legacy) {
                () async throws(IdentityFailure) -> UserIdentity in identity
            }
            // A dynamically registered client asks for consent first: the person agrees.
            if case .consent(let prompt) = result {
                result = await provider.decideConsent(
                    requestID: prompt.requestID, csrfToken: prompt.csrfToken, decision: .allow
                ) { () async throws(IdentityFailure) -> UserIdentity in identity }
            }
            guard case .redirect(let location) = result,
                let code = URLComponents(string: location)?.queryItems?.first(where: { $0.name == "code" })?.value
            else {
                throw SetupError(description: "authorize gave no code: \(result)")
            }
            return code
        }
        func redeem(_ code: String, redirect: String, client: String, secret: String) async throws -> [String: Any] {
            let answer = await provider.token(
                OAuthParameters([("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect)]),
                authorization: Fixture.basic(client, secret))
            guard answer.status == 200,
                let body = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
            else {
                throw SetupError(description: "redemption failed: \(String(decoding: answer.body, as: UTF8.self))")
            }
            return body
        }
        let standard: [(String, String)] = [("response_type", "code"), ("state", "s1"), ("nonce", "n1")]
        let code = try await authorize(
            [("client_id", "app"), ("redirect_uri", Fixture.appRedirect), ("scope", "openid email profile")]
                + standard, as: shared.alice)
        let pkceCode = try await authorize(
            [
                ("client_id", "spa"), ("redirect_uri", Fixture.spaRedirect), ("scope", "openid offline_access"),
                ("code_challenge", Fixture.challenge), ("code_challenge_method", "S256"),
            ] + standard, as: shared.alice)
        let legacyCode = try await authorize(
            [("client_id", "legacy-app"), ("redirect_uri", "https://legacy.example.com/cb"), ("scope", "openid")]
                + standard, as: shared.alice, legacy: 1001)
        let login = try await redeem(
            try await authorize(
                [
                    ("client_id", "app"), ("redirect_uri", Fixture.appRedirect),
                    ("scope", "openid email profile notes.read"), ("resource", "https://api.example.com"),
                ] + standard, as: shared.alice),
            redirect: Fixture.appRedirect, client: "app", secret: "app-secret")
        let notes = try await redeem(
            try await authorize(
                [("client_id", "notes"), ("redirect_uri", Fixture.jwtRedirect), ("scope", "openid email")] + standard,
                as: shared.bob),
            redirect: Fixture.jwtRedirect, client: "notes", secret: "notes-secret")
        guard let access = login["access_token"] as? String, let refresh = login["refresh_token"] as? String,
            let idToken = login["id_token"] as? String, let jwtAccess = notes["access_token"] as? String
        else {
            throw SetupError(description: "a token response lacks a token")
        }
        return Tokens(
            code: code, pkceCode: pkceCode, legacyCode: legacyCode, access: access, refresh: refresh,
            idToken: idToken, jwtAccess: jwtAccess)
    }

    /// `text` with every placeholder replaced.
    func splice(_ text: String) -> String {
        guard text.contains("@") else { return text }
        var result = text
        for (placeholder, value) in [
            ("@CODE@", code), ("@PKCE_CODE@", pkceCode), ("@LEGACY_CODE@", legacyCode), ("@ACCESS@", access),
            ("@REFRESH@", refresh), ("@ID_TOKEN@", idToken), ("@JWT_ACCESS@", jwtAccess),
        ] {
            result = result.replacingOccurrences(of: placeholder, with: value)
        }
        return Fixture.splice(result)
    }
}

extension Fixture {
    /// `text` with the fixed placeholders replaced (`@VERIFIER@`, `@CHALLENGE@`, `@APP_BASIC@`,
    /// `@NOTES_BASIC@`).
    static func splice(_ text: String) -> String {
        guard text.contains("@") else { return text }
        var result = text
        for (placeholder, value) in [
            ("@VERIFIER@", verifier), ("@CHALLENGE@", challenge), ("@APP_BASIC@", basic("app", "app-secret")),
            ("@NOTES_BASIC@", basic("notes", "notes-secret")),
        ] {
            result = result.replacingOccurrences(of: placeholder, with: value)
        }
        return result
    }
}

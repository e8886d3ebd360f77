import Foundation
import OIDCProvider

/// Tokens presented to tsidp: `id_token_hint` at `/authorize`, `subject_token` and
/// `actor_token` in token exchange.
///
/// The first byte chooses: bits 0–1 where the token goes (0 and 1: `id_token_hint`, 2:
/// `subject_token`, 3: `actor_token` beside a valid subject token); bit 2 whether the rest of the
/// input is the token itself or a JWT payload that the harness signs with one of the provider's
/// current keys (bits 3–4 pick RS256, ES256 or EdDSA; bit 5 the `at+jwt` header), so that
/// mutations reach what happens after a signature is accepted; bit 6 adds `prompt=none`.
enum JWTTarget {
    @Sendable static func run(_ input: Data) async {
        guard let mode = input.first else { return }
        let shared = Shared.instance
        let text = String(decoding: input.dropFirst(), as: UTF8.self)
        var token = text
        if mode & 4 != 0 {
            let algorithms = SigningAlgorithm.allCases
            let key = shared.keys.signingKey(for: algorithms[Int(mode >> 3 & 3) % algorithms.count])
            guard let signed = try? (mode & 32 != 0 ? key.signAccessToken(payload: text) : key.sign(payload: text))
            else { return }
            token = signed
        }
        let provider = shared.provider()
        switch mode & 3 {
        case 0, 1:
            var pairs = [
                ("client_id", "app"), ("redirect_uri", Fixture.appRedirect), ("response_type", "code"),
                ("scope", "openid"), ("id_token_hint", token),
            ]
            if mode & 64 != 0 { pairs.append(("prompt", "none")) }
            let alice = shared.alice
            _ = await provider.authorize(OAuthParameters(pairs)) { () async throws(IdentityFailure) -> UserIdentity in
                alice
            }
        default:
            guard let tokens = try? await Tokens.issue(on: provider, shared: shared) else {
                fatalError("the token fixtures cannot be issued")
            }
            var pairs = [
                ("grant_type", TokenType.grantType), ("subject_token_type", TokenType.accessToken),
                ("audience", "https://api.example.com"),
            ]
            if mode & 3 == 2 {
                pairs.append(("subject_token", token))
            } else {
                pairs += [
                    ("subject_token", tokens.access), ("actor_token", token),
                    ("actor_token_type", TokenType.accessToken),
                ]
            }
            _ = await provider.token(OAuthParameters(pairs), authorization: Fixture.basic("app", "app-secret"))
        }
    }
}

import Foundation
import OIDCProvider
import Tailnet

/// LocalAPI `whois` answers: decoded as the client does, turned into an identity as the server
/// does (with its checks), then carried through a whole login: `/authorize`, code redemption,
/// `/userinfo`, introspection, token exchange and a refresh that asks the tailnet again and gets
/// the same answer. Policy grants (`CapMap`) come from this answer, so this is also where
/// malformed grants and extra claims are exercised.
enum WhoIsTarget {
    @Sendable static func run(_ input: Data) async {
        guard let answer = try? JSONDecoder().decode(WhoIsResponse.self, from: input) else { return }
        _ = try? JSONEncoder().encode(answer)
        guard answer.node.id != 0, answer.userProfile.id != 0,
            answer.node.isTagged || !answer.userProfile.loginName.isEmpty
        else { return }
        let identity = Fixture.caller.convert(answer)
        _ = try? identity.rules().count
        _ = identity.realishEmail(idpHost: Fixture.idpHost)
        _ = identity.tailnet
        let provider = Shared.instance.provider { _ async throws(IdentityFailure) -> UserIdentity in identity }
        await Login.run(on: provider, as: identity)
    }
}

/// A login of client `app` as `identity`, and every use of its tokens.
enum Login {
    static func run(on provider: Provider, as identity: UserIdentity) async {
        let result = await provider.authorize(
            OAuthParameters([
                ("client_id", "app"), ("redirect_uri", Fixture.appRedirect), ("response_type", "code"),
                ("scope", "openid email profile groups notes.read"), ("nonce", "n1"),
                ("resource", "https://api.example.com"), ("resource", "notes"),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in identity }
        guard case .redirect(let location) = result,
            let code = URLComponents(string: location)?.queryItems?.first(where: { $0.name == "code" })?.value
        else { return }
        let basic = Fixture.basic("app", "app-secret")
        let answer = await provider.token(
            OAuthParameters([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Fixture.appRedirect),
            ]), authorization: basic)
        guard let body = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
            let access = body["access_token"] as? String, let refresh = body["refresh_token"] as? String
        else { return }
        _ = provider.userInfo(accessToken: access)
        _ = await provider.introspect(OAuthParameters([("token", access)]), authorization: basic)
        _ = await provider.token(
            OAuthParameters([
                ("grant_type", TokenType.grantType), ("subject_token", access),
                ("subject_token_type", TokenType.accessToken), ("audience", "notes"),
            ]), authorization: basic)
        _ = await provider.token(
            OAuthParameters([("grant_type", "refresh_token"), ("refresh_token", refresh)]), authorization: basic)
    }
}

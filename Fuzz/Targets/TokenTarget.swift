import Foundation
import OIDCProvider

/// `/token` (and `/introspect` and `/revoke`, which read client credentials the same way): the
/// first line of the input is the `Authorization` header (an empty line for none), the rest the
/// form body. A fresh provider with token exchange and the legacy flow on issues codes and
/// tokens first, which replace `@CODE@`, `@ACCESS@`, `@REFRESH@` and the other placeholders.
enum TokenTarget {
    @Sendable static func run(_ input: Data) async {
        let shared = Shared.instance
        let provider = shared.provider()
        guard let tokens = try? await Tokens.issue(on: provider, shared: shared) else {
            fatalError("the token fixtures cannot be issued")
        }
        let text = tokens.splice(String(decoding: input, as: UTF8.self))
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let authorization = lines[0].isEmpty ? nil : String(lines[0])
        guard let form = try? OAuthParameters.parse(formEncoded: lines.count > 1 ? String(lines[1]) : "") else {
            return
        }
        _ = await provider.token(form, authorization: authorization) { 1001 }
        _ = await provider.introspect(form, authorization: authorization)
        _ = await provider.revoke(form, authorization: authorization)
        _ = provider.userInfo(accessToken: form.first("access_token"))
    }
}

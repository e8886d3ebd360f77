import Foundation
import HummingbirdCore
import IDPServer
import OIDCProvider

/// Query strings and form bodies: the parser every endpoint uses, the way the routes feed it
/// (a request target's query, a body decoded leniently as UTF-8), and the redaction of both in
/// debug logs.
enum FormTarget {
    @Sendable static func run(_ input: Data) async {
        let text = String(decoding: input, as: UTF8.self)
        _ = Redaction.formEncoded(text)
        _ = Redaction.url(text)
        let fromQuery = try? OAuthParameters.parse(formEncoded: URI(text).query ?? "")
        guard let parameters = try? OAuthParameters.parse(formEncoded: text) else { return }
        for (name, _) in (fromQuery?.pairs ?? []) + parameters.pairs {
            _ = try? parameters.single(name)
            _ = parameters.first(name)
            _ = parameters.all(name)
        }
        let encoded = OAuthParameters.encode(parameters.pairs.map { ($0.name, $0.value) })
        _ = try? OAuthParameters.parse(formEncoded: encoded)
        _ = RedirectURI.appending(parameters.pairs.map { ($0.name, $0.value) }, to: Fixture.appRedirect)
        _ = Scope.parse(parameters.first("scope"))
    }
}

import Foundation
import OIDCProvider
import StateStore

/// Stored clients (`tsidp-client-<id>.json` files, and a Go tsidp `oidc-funnel-clients.json` or
/// `oauth-clients.json` to import), in the ``StateFiles`` format: loaded, each of the first few
/// clients signed in with (the seeds' confidential clients have the secret `fuzz-secret`),
/// changed (a secret regenerated, a client deleted, one registered) and loaded again from what
/// was written.
enum ClientsTarget {
    static let secret = "fuzz-secret"

    @Sendable static func run(_ input: Data) async {
        let store = MemoryStateStore(StateFiles.parse(input))
        guard let registry = try? await ClientRegistry.load(from: StateWriter(store: store)) else { return }
        let clients = await registry.all()
        let shared = Shared.instance
        let provider = shared.provider(clients: registry)
        let alice = shared.alice
        for client in clients.prefix(4) {
            let redirect = client.redirectURIs.first ?? ""
            let result = await provider.authorize(
                OAuthParameters([
                    ("client_id", client.clientID), ("redirect_uri", redirect), ("response_type", "code"),
                    ("scope", client.scope.isEmpty ? "openid" : client.scope), ("code_challenge", Fixture.challenge),
                    ("code_challenge_method", "S256"),
                ])
            ) { () async throws(IdentityFailure) -> UserIdentity in alice }
            guard case .redirect(let location) = result,
                let code = URLComponents(string: location)?.queryItems?.first(where: { $0.name == "code" })?.value
            else { continue }
            var form = [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect),
                ("code_verifier", Fixture.verifier), ("client_id", client.clientID),
            ]
            if !client.isPublic { form.append(("client_secret", secret)) }
            _ = await provider.token(OAuthParameters(form), authorization: nil)
        }
        if let first = clients.first {
            _ = try? await registry.regenerateSecret(first.clientID)
        }
        if clients.count > 1, let last = clients.last {
            _ = try? await provider.deleteClient(last.clientID)
        }
        _ = try? await registry.register(
            ClientRegistry.Registration(name: "Fuzz Registered", redirectURIs: [Fixture.appRedirect]))
        _ = try? await ClientRegistry.load(from: StateWriter(store: store))
    }
}

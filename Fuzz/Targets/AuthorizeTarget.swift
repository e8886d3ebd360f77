import Foundation
import HummingbirdCore
import OIDCProvider

/// `/authorize`: the input is a request target (`/authorize?…` or the legacy `/authorize/<node>?…`),
/// optionally followed by a line break and a form body (as with POST). The caller is always
/// alice. `@ID_TOKEN@`, `@CHALLENGE@` and the other placeholders are replaced first.
enum AuthorizeTarget {
    @Sendable static func run(_ input: Data) async {
        let shared = Shared.instance
        let text = Fixture.splice(String(decoding: input, as: UTF8.self)).replacingOccurrences(
            of: "@ID_TOKEN@", with: shared.idToken)
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let uri = URI(String(lines[0]))
        var parameters: OAuthParameters
        do {
            parameters = try OAuthParameters.parse(formEncoded: uri.query ?? "")
            if lines.count > 1 {
                parameters.append(contentsOf: try OAuthParameters.parse(formEncoded: String(lines[1])))
            }
        } catch {
            return
        }
        var legacyNodeID: Int64?
        let path = uri.path.split(separator: "/", omittingEmptySubsequences: false)
        if path.count == 3, path[1] == "authorize" {
            guard let node = Int64(path[2]), node > 0 else { return }
            legacyNodeID = node
        }
        let provider = shared.provider()
        let alice = shared.alice
        _ = await provider.authorize(parameters, legacyNodeID: legacyNodeID) {
            () async throws(IdentityFailure) -> UserIdentity in alice
        }
    }
}

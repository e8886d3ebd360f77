import Foundation
import IDPServer
import OIDCProvider
import StateStore

/// `/register`: an RFC 7591 JSON body, read and registered the way the route does, in an
/// empty registry; a registered client is then read back from the store as the next start
/// would. The body also goes through the redaction of debug logs.
enum RegisterTarget {
    @Sendable static func run(_ input: Data) async {
        _ = Redaction.json(String(decoding: input, as: UTF8.self))
        guard let registration = try? ClientRegistry.Registration(rfc7591JSON: input) else { return }
        let store = MemoryStateStore()
        do {
            let registry = try await ClientRegistry.load(from: StateWriter(store: store))
            _ = try await registry.register(registration)
            _ = try await ClientRegistry.load(from: StateWriter(store: store))
        } catch {
            return
        }
    }
}

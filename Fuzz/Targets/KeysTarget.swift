import Foundation
import OIDCProvider
import StateStore

/// Stored signing keys (`tsidp-keys.json`, and a Go tsidp `oidc-key.json` to import), in the
/// ``StateFiles`` format: loaded, used to sign and verify, maintained, and loaded again from
/// what was written. Inputs with neither file are skipped: that is a first start, which only
/// generates keys.
enum KeysTarget {
    @Sendable static func run(_ input: Data) async {
        let files = StateFiles.parse(input)
        guard files[KeyRing.ringKey]?.isEmpty == false || files[KeyRing.stateKey]?.isEmpty == false else { return }
        let store = MemoryStateStore(files)
        guard let ring = try? await KeyRing.load(from: StateWriter(store: store), now: Fixture.start) else { return }
        _ = ring.jwksDocument
        for algorithm in SigningAlgorithm.allCases {
            let key = ring.signingKey(for: algorithm)
            if let token = try? key.sign(payload: "{\"sub\":\"userid:2001\"}") {
                _ = ring.key(withID: key.kid)?.verify(token)
            }
        }
        _ = try? await ring.maintain(now: Fixture.start)
        _ = try? await KeyRing.load(from: StateWriter(store: store), now: Fixture.start)
    }
}

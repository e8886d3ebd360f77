import Foundation
import Tailnet

/// LocalAPI `cert/<domain>?type=pair` answers: the split into key and certificate PEM.
enum CertPairTarget {
    @Sendable static func run(_ input: Data) async {
        guard let pair = try? CertPair(pairBody: input) else { return }
        _ = pair.keyPEM.utf8.count + pair.certificatePEM.utf8.count
    }
}

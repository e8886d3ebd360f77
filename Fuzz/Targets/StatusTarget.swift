import Foundation
import Tailnet

/// LocalAPI `status` answers, decoded as the client does, and what start-up reads from them.
enum StatusTarget {
    @Sendable static func run(_ input: Data) async {
        guard let status = try? JSONDecoder().decode(Status.self, from: input) else { return }
        _ = status.selfDNSName
        _ = status.backendState == "Running"
        _ = status.selfNode?.id
        _ = try? JSONEncoder().encode(status)
    }
}

import Foundation
import OIDCProvider
import Tailnet

/// `--dev-identities` files: parsed, turned into identities, and looked up by address the way
/// the simulated tailnet answers WhoIs.
enum DevIdentitiesTarget {
    @Sendable static func run(_ input: Data) async {
        guard let identities = try? DevIdentities.parse(input) else { return }
        let tailnet = SimulatedTailnet(socketPath: "/nonexistent/localapi.sock", identities: identities)
        var addresses = ["127.0.0.1", "127.0.0.2:41000", "127.0.0.254", "[::1]:443", "::ffff:127.0.0.3"]
        for case let answer? in identities {
            addresses += answer.node.addresses.compactMap(SimulatedTailnet.parsePrefixAddress)
            let identity = Fixture.caller.convert(answer)
            _ = try? Grants(identity.rules()).extraClaims(forUserInfo: false)
        }
        for address in addresses.prefix(64) {
            _ = tailnet.resolve(address: address)
        }
    }
}

import AnyJSON
import Foundation

/// The identities a simulated tailnet hands out, loaded from a `--dev-identities` file.
///
/// The file is a JSON array of documents shaped exactly like LocalAPI WhoIs answers (`Node`,
/// `UserProfile`, `CapMap`). Identity N (1-based) is what a caller from `127.0.0.N` gets; a `null`
/// entry makes `127.0.0.N` an address the tailnet does not know.
public enum DevIdentities {
    /// The capability name under which tsidp reads its grants.
    public static let tsidpCapability = "tailscale.com/cap/tsidp"

    /// One demo user, used when no file is given: alice@example.com on alice-laptop, allowed to
    /// use the admin UI and dynamic client registration.
    public static var builtIn: [WhoIsResponse?] { builtIn(capabilityName: tsidpCapability) }

    /// The demo user, with its grant under `capabilityName` (the `--cap-name` tsidp reads).
    public static func builtIn(capabilityName: String) -> [WhoIsResponse?] {
        [
            WhoIsResponse(
                node: Node(
                    id: 1001, stableID: "nDEV1CNTRL", name: "alice-laptop.example-tailnet.ts.net.", user: 2001,
                    key: "nodekey:" + String(repeating: "a1", count: 32),
                    addresses: ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"], computedName: "alice-laptop",
                    hostinfo: Hostinfo(os: "linux", hostname: "alice-laptop")),
                userProfile: UserProfile(id: 2001, loginName: "alice@example.com", displayName: "Alice Example"),
                capMap: [capabilityName: [.object(["allow_admin_ui": .bool(true), "allow_dcr": .bool(true)])]])
        ]
    }

    /// Parses an identities file, with a one-line error naming the entry and field at fault.
    public static func parse(_ data: Data) throws -> [WhoIsResponse?] {
        let raw: Any
        do {
            raw = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw DevIdentitiesError("the file is not valid JSON")
        }
        guard let array = raw as? [Any] else {
            throw DevIdentitiesError("the file must hold a JSON array of WhoIs documents")
        }
        guard !array.isEmpty else {
            throw DevIdentitiesError("the file holds no identity; give at least one")
        }
        guard array.count <= 254 else {
            throw DevIdentitiesError("at most 254 identities fit the loopback range 127.0.0.1-254")
        }
        var result: [WhoIsResponse?] = []
        for (index, element) in array.enumerated() {
            let number = index + 1
            if element is NSNull {
                result.append(nil)
                continue
            }
            guard let object = element as? [String: Any] else {
                throw DevIdentitiesError("identity \(number) is not a JSON object")
            }
            guard object["Node"] is [String: Any] else {
                throw DevIdentitiesError("identity \(number) has no \"Node\" object")
            }
            guard object["UserProfile"] is [String: Any] else {
                throw DevIdentitiesError("identity \(number) has no \"UserProfile\" object")
            }
            let whois: WhoIsResponse
            do {
                let elementData = try JSONSerialization.data(withJSONObject: element)
                whois = try JSONDecoder().decode(WhoIsResponse.self, from: elementData)
            } catch {
                throw DevIdentitiesError("identity \(number): \(LocalAPIClient.describe(error))")
            }
            guard !whois.node.name.isEmpty else {
                throw DevIdentitiesError("identity \(number): Node.Name is empty")
            }
            if !whois.node.isTagged && whois.userProfile.loginName.isEmpty {
                throw DevIdentitiesError("identity \(number): UserProfile.LoginName is empty")
            }
            for address in whois.node.addresses where SimulatedTailnet.parsePrefixAddress(address) == nil {
                throw DevIdentitiesError("identity \(number): Node.Addresses has \"\(address)\", not an IP prefix")
            }
            result.append(whois)
        }
        return result
    }

    /// Reads and parses the identities file at `path`.
    public static func load(path: String) throws -> [WhoIsResponse?] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DevIdentitiesError("cannot read \(path): \((error as NSError).localizedDescription)")
        }
        do {
            return try parse(data)
        } catch let error as DevIdentitiesError {
            throw DevIdentitiesError("\(path): \(error.message)")
        }
    }
}

/// A problem with a `--dev-identities` file.
public struct DevIdentitiesError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

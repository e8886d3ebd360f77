import AnyJSON
import Foundation

/// One rule of the application capability grant `tailscale.com/cap/tsidp`.
///
/// Rules only add rights; booleans are OR-ed across every rule a caller receives, and nothing is
/// allowed unless some rule allows it.
public struct CapabilityRule: Sendable, Equatable {
    public var allowAdminUI = false
    public var allowDCR = false
    /// Login names (or `*`) the `resources` list applies to.
    public var users: [String] = []
    /// Audiences / resource URIs those users may request (or `*`).
    public var resources: [String] = []
    public var extraClaims: [String: JSONValue] = [:]
    public var includeInUserInfo = false
    /// Resource URIs (or `*`) whose access tokens the devices in the grant's `src` may introspect
    /// without client credentials (`introspect`, a tsidp extension): a resource server on the
    /// tailnet is allowed by policy instead of by a registered client.
    public var introspect: [String] = []

    public init() {}

    /// Parses the capability values of a WhoIs answer; any malformed value is an error naming it.
    public static func parse(_ values: [JSONValue]) throws -> [CapabilityRule] {
        try values.enumerated().map { index, value in
            guard let object = value.objectValue else {
                throw CapabilityError("grant value \(index + 1) is not a JSON object")
            }
            var rule = CapabilityRule()
            rule.allowAdminUI = try bool(object, "allow_admin_ui", index)
            rule.allowDCR = try bool(object, "allow_dcr", index)
            rule.includeInUserInfo = try bool(object, "includeInUserInfo", index)
            rule.users = try strings(object, "users", index)
            rule.resources = try strings(object, "resources", index)
            rule.introspect = try strings(object, "introspect", index)
            if let claims = object["extraClaims"] {
                guard let members = claims.objectValue else {
                    throw CapabilityError("grant value \(index + 1): extraClaims is not an object")
                }
                rule.extraClaims = members
            }
            return rule
        }
    }

    private static func bool(_ object: [String: JSONValue], _ key: String, _ index: Int) throws -> Bool {
        guard let value = object[key], value != .null else { return false }
        guard let flag = value.boolValue else {
            throw CapabilityError("grant value \(index + 1): \(key) is not a boolean")
        }
        return flag
    }

    private static func strings(_ object: [String: JSONValue], _ key: String, _ index: Int) throws -> [String] {
        guard let value = object[key], value != .null else { return [] }
        guard let items = value.arrayValue else {
            throw CapabilityError("grant value \(index + 1): \(key) is not a list")
        }
        return try items.map {
            guard let text = $0.stringValue else {
                throw CapabilityError("grant value \(index + 1): \(key) holds a non-string")
            }
            return text
        }
    }
}

/// The combined effect of a set of rules.
public struct Grants: Sendable, Equatable {
    public var rules: [CapabilityRule]

    public init(_ rules: [CapabilityRule]) { self.rules = rules }

    public var allowAdminUI: Bool { rules.contains { $0.allowAdminUI } }
    public var allowDCR: Bool { rules.contains { $0.allowDCR } }
    /// The resources whose tokens the caller may introspect by grant (`*` for any).
    public var introspectableResources: [String] {
        var seen: [String] = []
        for resource in rules.flatMap(\.introspect) where !seen.contains(resource) { seen.append(resource) }
        return seen
    }

    /// Whether `loginName` may request `resource` (RFC 8707) under some rule.
    public func allows(resource: String, for loginName: String) -> Bool {
        rules.contains { rule in
            (rule.users.contains("*") || rule.users.contains(loginName))
                && (rule.resources.contains("*") || rule.resources.contains(resource))
        }
    }

    /// The extra claims of every rule (or only those with `includeInUserInfo`), merged.
    ///
    /// Merging follows the Go tsidp: values for one claim are de-duplicated by their text form;
    /// if any rule gives a list the result is a list, otherwise the first scalar wins. Nested
    /// objects are ignored. Unlike the Go tsidp the order is deterministic (first seen first).
    ///
    /// - Parameter protected: claim names no rule may set. A rule that sets one of them adds no
    ///   claim at all (see ``rulesSettingProtectedClaims(_:)``); the others still apply.
    public func extraClaims(forUserInfo: Bool, protected: Set<String> = []) -> [(String, JSONValue)] {
        var order: [String] = []
        var values: [String: [JSONValue]] = [:]
        var isList: [String: Bool] = [:]
        for rule in rules where !forUserInfo || rule.includeInUserInfo {
            if !protected.isEmpty, rule.extraClaims.keys.contains(where: protected.contains) { continue }
            for name in rule.extraClaims.keys.sorted() {
                let value = rule.extraClaims[name]!
                let items: [JSONValue]
                switch value {
                case .object, .null: continue
                case .array(let elements):
                    items = elements.filter {
                        if case .object = $0 { return false }
                        if case .array = $0 { return false }
                        return $0 != .null
                    }
                    isList[name] = true
                default:
                    items = [value]
                }
                if values[name] == nil {
                    order.append(name)
                    values[name] = []
                }
                for item in items where !values[name]!.contains(where: { $0.canonicalText == item.canonicalText }) {
                    values[name]!.append(item)
                }
            }
        }
        return order.compactMap { name in
            let items = values[name]!
            if isList[name] == true { return (name, .array(items)) }
            guard let first = items.first else { return nil }
            return (name, first)
        }
    }
}

extension Grants {
    /// The rules (1-based, in grant order) whose `extraClaims` set a claim in `protected`, with
    /// the first such claim of each, sorted by name.
    public func rulesSettingProtectedClaims(_ protected: Set<String>) -> [(rule: Int, claim: String)] {
        rules.enumerated().compactMap { index, rule in
            rule.extraClaims.keys.filter(protected.contains).sorted().first.map { (index + 1, $0) }
        }
    }
}

/// A grant that cannot be interpreted.
public struct CapabilityError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Scope values tsidp understands (besides custom scopes a client registered).
public enum Scope {
    public static let openid = "openid"
    public static let profile = "profile"
    public static let email = "email"
    public static let offlineAccess = "offline_access"
    public static let groups = "groups"

    /// The standard scopes, in the order discovery lists them.
    public static let standard = [openid, profile, email, offlineAccess, groups]

    /// Splits a `scope` parameter; an empty one means `openid`, as the Go tsidp does. Duplicates
    /// are dropped, order is kept.
    public static func parse(_ text: String?) -> [String] {
        let values = (text ?? "").split(whereSeparator: { $0 == " " }).map(String.init)
        var seen = Set<String>()
        let unique = values.filter { seen.insert($0).inserted }
        return unique.isEmpty ? [openid] : unique
    }

    /// Whether `value` is a syntactically valid scope token (RFC 6749 §3.3).
    public static func isValidToken(_ value: String) -> Bool {
        !value.isEmpty
            && value.unicodeScalars.allSatisfy {
                $0.value == 0x21 || (0x23...0x5B).contains($0.value) || (0x5D...0x7E).contains($0.value)
            }
    }
}

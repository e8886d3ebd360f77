/// How tsidp's state keys become data keys of a Secret that tailscaled writes too.
///
/// tailscaled keeps its own keys in the same Secret (`_machinekey`, `_profiles`,
/// `profile-<id>`, `<domain>.crt`, …). So that the two never collide, every tsidp key lives under
/// the `tsidp-` prefix:
///
/// - a key already starting with `tsidp-` (but not `tsidp--`) is stored as it is
///   (`tsidp-keys.json`, `tsidp-grants-00.json`);
/// - any other key `K` is stored as `tsidp--K` (`oidc-key.json` → `tsidp--oidc-key.json`);
/// - a key starting with `tsidp--` is refused, since its data key would be ambiguous.
///
/// Data keys that are not the image of a valid state key are not tsidp's: they are never listed,
/// read, changed or removed.
public enum SecretKeyMapping {
    static let prefix = "tsidp-"
    static let escapePrefix = "tsidp--"

    /// The data key for `key`.
    ///
    /// - Throws: ``StateStoreError/Kind/invalidKey`` for a key ``StateKey`` refuses or one that
    ///   starts with `tsidp--`.
    public static func dataKey(for key: String) throws -> String {
        try StateKey.validate(key)
        if key.hasPrefix(escapePrefix) {
            throw StateStoreError(
                .invalidKey, "invalid state key \"\(key)\": keys starting with \"tsidp--\" are reserved in a Secret")
        }
        return key.hasPrefix(prefix) ? key : escapePrefix + key
    }

    /// The state key stored under `dataKey`, or nil when the data key is not tsidp's.
    public static func stateKey(for dataKey: String) -> String? {
        let key: String
        if dataKey.hasPrefix(escapePrefix) {
            key = String(dataKey.dropFirst(escapePrefix.count))
            // `tsidp--tsidp-x` is not the image of any key: `tsidp-x` is stored as itself.
            guard !key.hasPrefix(prefix) else { return nil }
        } else if dataKey.hasPrefix(prefix) {
            key = dataKey
        } else {
            return nil
        }
        guard StateKey.isValid(key) else { return nil }
        return key
    }
}

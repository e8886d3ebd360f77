import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rules for redirect URIs a client may register (RFC 6749 §3.1.2, OAuth 2.0 Security BCP).
public enum RedirectURI {
    /// Schemes that can run code or read local data in a browser; never a redirect target.
    static let forbiddenSchemes: Set<String> = [
        "javascript", "data", "vbscript", "file", "blob", "filesystem", "about", "ftp", "mailto", "chrome",
        "chrome-extension",
    ]

    /// Where a plain `http` redirect URI may point.
    public struct PlainHTTP: Sendable, Equatable {
        private enum Rule { case privateHosts, anyHost }
        private let rule: Rule

        /// Loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) and tailnet hosts (MagicDNS names
        /// under `.ts.net`, `100.64.0.0/10`, `fd7a:115c:a1e0::/48`), whose traffic never crosses
        /// a network in the clear. The rule of every registration path.
        public static let privateHosts = PlainHTTP(rule: .privateHosts)
        /// Any host: `--dev` (which never serves beyond this machine) and the legacy flow
        /// (`--allow-insecure-registration`), where the operator opted out.
        public static let anyHost = PlainHTTP(rule: .anyHost)

        func allows(host: String) -> Bool {
            rule == .anyHost || RedirectURI.isPrivate(host: host)
        }
    }

    /// Whether `host` (as `URLComponents` gives it; IPv6 without brackets) is a loopback or
    /// tailnet host.
    static func isPrivate(host: String) -> Bool {
        let name = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if name == "localhost" || name.hasSuffix(".localhost") || name.hasSuffix(".ts.net") { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        if octets.count == 4, octets.allSatisfy({ $0.count <= 3 && UInt8($0) != nil }) {
            let first = UInt8(octets[0]) ?? 0
            let second = UInt8(octets[1]) ?? 0
            return first == 127 || (first == 100 && (64...127).contains(second))
        }
        if name.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, name, &address) == 1 else { return false }
            let bytes = withUnsafeBytes(of: &address) { Array($0) }
            if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            return Array(bytes.prefix(6)) == [0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]
        }
        return false
    }

    /// Throws `invalid_redirect_uri` unless `uri` is absolute, has no fragment, uses an allowed
    /// scheme, names a host when it is http or https, and, when it is plain `http`, names a host
    /// `plainHTTP` allows.
    ///
    /// - Important: Every path that registers or changes a client (`/register`, RFC 7592
    ///   `PUT /register/<id>`, the `/clients` API, `tsidp clients`) goes through
    ///   ``ClientRegistry``, which calls this with the registry's one rule.
    public static func validate(_ uri: String, plainHTTP: PlainHTTP = .privateHosts) throws {
        guard !uri.isEmpty, uri.count <= 2000 else {
            throw OAuthError(.invalidRedirectURI, "redirect URI is empty or too long")
        }
        guard !uri.contains(where: { $0.isWhitespace }) else {
            throw OAuthError(.invalidRedirectURI, "redirect URI \(uri) contains white space")
        }
        guard let components = URLComponents(string: uri), let scheme = components.scheme?.lowercased(),
            !scheme.isEmpty
        else {
            throw OAuthError(.invalidRedirectURI, "redirect URI \(uri) is not an absolute URI")
        }
        guard !forbiddenSchemes.contains(scheme) else {
            throw OAuthError(.invalidRedirectURI, "redirect URI scheme \(scheme) is not allowed")
        }
        guard components.fragment == nil, !uri.contains("#") else {
            throw OAuthError(.invalidRedirectURI, "redirect URI \(uri) must not contain a fragment")
        }
        if scheme == "http" || scheme == "https" {
            guard let host = components.host, !host.isEmpty else {
                throw OAuthError(.invalidRedirectURI, "redirect URI \(uri) has no host")
            }
            guard scheme == "https" || plainHTTP.allows(host: host) else {
                throw OAuthError(
                    .invalidRedirectURI,
                    "redirect URI \(uri) uses plain http for a host that is neither loopback nor on the tailnet; use https"
                )
            }
        }
    }

    /// Splits a newline- or comma-free textarea value into URIs, dropping blank lines. Browsers
    /// send a textarea's line breaks as CRLF, which Swift counts as one `Character`.
    public static func splitLines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    /// `base` with `parameters` added to its query, keeping the query it already has.
    public static func appending(_ parameters: [(String, String)], to base: String) -> String {
        let encoded = OAuthParameters.encode(parameters)
        guard !encoded.isEmpty else { return base }
        if base.contains("?") {
            return base.hasSuffix("?") || base.hasSuffix("&") ? base + encoded : base + "&" + encoded
        }
        return base + "?" + encoded
    }
}

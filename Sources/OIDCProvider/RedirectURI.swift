import Foundation

/// Rules for redirect URIs a client may register (RFC 6749 §3.1.2, OAuth 2.0 Security BCP).
public enum RedirectURI {
    /// Schemes that can run code or read local data in a browser; never a redirect target.
    static let forbiddenSchemes: Set<String> = [
        "javascript", "data", "vbscript", "file", "blob", "filesystem", "about", "ftp", "mailto", "chrome",
        "chrome-extension",
    ]

    /// Throws `invalid_redirect_uri` unless `uri` is absolute, has no fragment, uses an allowed
    /// scheme, and names a host when it is http or https.
    public static func validate(_ uri: String) throws {
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

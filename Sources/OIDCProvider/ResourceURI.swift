import Foundation

/// Rules for the resource URIs a resource server registers (`resources`): the exact values an
/// RFC 8707 `resource` parameter names and an access token's `aud` carries.
public enum ResourceURI {
    /// Throws `invalid_client_metadata` unless `uri` is an absolute `https` URI with a host and
    /// no fragment (RFC 8707 §2), or plain `http` for a host `plainHTTP` allows, as redirect
    /// URIs may.
    public static func validate(_ uri: String, plainHTTP: RedirectURI.PlainHTTP = .privateHosts) throws {
        func fail(_ reason: String) -> OAuthError {
            OAuthError(.invalidClientMetadata, "resource \(uri.prefix(200)) \(reason)")
        }
        guard !uri.isEmpty, uri.utf8.count <= ClientMetadataLimits.uriLength else {
            throw OAuthError(.invalidClientMetadata, "a resource URI is empty or too long")
        }
        guard !uri.contains(where: { $0.isWhitespace || $0.unicodeScalars.contains { $0.value < 0x20 } }) else {
            throw fail("contains white space or control characters")
        }
        guard let components = URLComponents(string: uri), let scheme = components.scheme?.lowercased() else {
            throw fail("is not an absolute URI")
        }
        guard scheme == "https" || scheme == "http" else { throw fail("must be an https URI") }
        guard components.fragment == nil, !uri.contains("#") else { throw fail("must not contain a fragment") }
        guard let host = components.host, !host.isEmpty else { throw fail("has no host") }
        guard scheme == "https" || plainHTTP.allows(host: host) else {
            throw fail("uses plain http for a host that is neither loopback nor on the tailnet; use https")
        }
    }
}

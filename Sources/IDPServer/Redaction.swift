import Foundation

/// Removes secrets from text before it reaches a log line.
///
/// - Important: Everything `--debug-all-requests` prints passes through here: form and query
///   values and JSON members that carry credentials, codes or tokens are replaced by
///   `[redacted]`, and so is the value of every header not on the ``loggedHeaders`` allowlist
///   (a client's `X-Api-Key` or a proxy's token header is as secret as `Authorization`).
public enum Redaction {
    /// Parameter and member names whose values are secret.
    public static let secretNames: Set<String> = [
        "code", "client_secret", "refresh_token", "access_token", "id_token", "code_verifier", "token",
        "subject_token", "actor_token", "id_token_hint", "password", "client_assertion", "registration_access_token",
        "state", "nonce", "code_challenge",
    ]

    /// Header names whose values are secret. They are also absent from ``loggedHeaders``; the
    /// list says which of the redacted headers are credentials for certain.
    public static let secretHeaders: Set<String> = ["authorization", "cookie", "set-cookie", "proxy-authorization"]

    /// Header names (lower case) whose values are logged; every other header is logged by name
    /// with its value redacted. `Referer` and `Location` are logged with secret query values
    /// redacted.
    public static let loggedHeaders: Set<String> = [
        // Requests
        "host", "user-agent", "accept", "accept-encoding", "accept-language", "content-type", "content-length",
        "transfer-encoding", "connection", "origin", "referer", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
        "sec-fetch-user", "cache-control", "pragma", "if-none-match", "if-modified-since",
        "access-control-request-method", "access-control-request-headers", "tailscale-funnel-request",
        // Responses
        "location", "www-authenticate", "allow", "etag", "last-modified", "date", "server", "vary",
        "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
        "access-control-max-age", "content-security-policy", "x-frame-options", "x-content-type-options",
        "referrer-policy",
    ]

    static let marker = "[redacted]"

    /// A form or query string with secret values replaced.
    public static func formEncoded(_ text: String) -> String {
        text.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = (try? decodeName(parts[0])) ?? String(parts[0])
            guard parts.count == 2, secretNames.contains(name) else { return String(pair) }
            return "\(parts[0])=\(marker)"
        }.joined(separator: "&")
    }

    /// A URL or path with the secret query values replaced.
    public static func url(_ text: String) -> String {
        guard let question = text.firstIndex(of: "?") else { return text }
        return String(text[...question]) + formEncoded(String(text[text.index(after: question)...]))
    }

    /// JSON text with the values of secret members replaced; text that is not JSON is summarized.
    public static func json(_ text: String) -> String {
        guard let data = text.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) else {
            return text.isEmpty ? "" : "(\(text.utf8.count) bytes, not JSON)"
        }
        let cleaned = scrub(object)
        guard let out = try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys]) else { return "" }
        return String(decoding: out, as: UTF8.self)
    }

    static func scrub(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            var result: [String: Any] = [:]
            for (key, member) in object {
                result[key] = secretNames.contains(key) ? marker : scrub(member)
            }
            return result
        }
        if let array = value as? [Any] { return array.map(scrub) }
        return value
    }

    /// A header value as it may be logged: the marker unless the header is on ``loggedHeaders``.
    public static func header(name: String, value: String) -> String {
        let lowered = name.lowercased()
        guard loggedHeaders.contains(lowered), !secretHeaders.contains(lowered) else { return marker }
        return lowered == "location" || lowered == "referer" ? url(value) : value
    }

    private static func decodeName(_ text: Substring) throws -> String {
        text.removingPercentEncoding ?? String(text)
    }
}

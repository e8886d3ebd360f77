import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OIDCProvider

/// Builders for the responses tsidp sends.
enum Responses {
    static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func encoded(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return json(Array(data), status: status)
    }

    /// An OAuth JSON error with its status and `Cache-Control: no-store`.
    static func error(_ error: OAuthError, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.cacheControl] = "no-store"
        headers[.pragma] = "no-cache"
        return json(error.jsonBody, status: .init(code: error.status), headers: headers)
    }

    static func text(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func html(_ html: String, status: HTTPResponse.Status = .ok, csp: String = HTML.defaultCSP) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.contentSecurityPolicy] = csp
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .found, headers: headers)
    }

    static func methodNotAllowed(_ allowed: String) -> Response {
        var headers = HTTPFields()
        headers[.allow] = allowed
        return error(OAuthError(.invalidRequest, "method not allowed; use \(allowed)", status: 405), headers: headers)
    }
}

/// Small HTML pages: errors and the `form_post` response. Every value is escaped.
enum HTML {
    static let defaultCSP =
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static func page(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title)) · tsidp</title>
        <style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
        h1{font-size:1.4rem}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}.muted{color:#59636e}</style>
        </head><body>\(body)</body></html>
        """
    }

    /// The page shown when `/authorize` cannot redirect (unknown client, unregistered URI…).
    static func errorPage(_ error: OAuthError, hint: String? = nil) -> String {
        var body = "<h1>This sign-in request cannot continue</h1>"
        body += "<p>\(escape(error.message))</p>"
        if let hint { body += "<p>\(hint)</p>" }
        body += "<p class=\"muted\">Error code: <code>\(escape(error.code.rawValue))</code></p>"
        return page(title: "Sign-in error", body: body)
    }

    /// The page shown when a logout request cannot be honoured.
    static func logoutErrorPage(_ error: OAuthError) -> String {
        var body = "<h1>This sign-out request cannot continue</h1>"
        body += "<p>\(escape(error.message))</p>"
        body += "<p class=\"muted\">Error code: <code>\(escape(error.code.rawValue))</code></p>"
        return page(title: "Sign-out error", body: body)
    }

    /// The page shown after a logout that does not return to the application.
    static func signedOutPage(clientName: String?, endedLogins: Int) -> String {
        var body = "<h1>Signed out</h1>"
        if let clientName {
            body +=
                endedLogins > 0
                ? "<p>Your sign-in to \(escape(clientName)) has ended. The application must ask you to sign in again.</p>"
                : "<p>You have no sign-in to \(escape(clientName)) left to end.</p>"
        } else {
            body += "<p>The request named no application, so no sign-in was ended.</p>"
        }
        body +=
            "<p class=\"muted\">tsidp signs you in as your device's tailnet user: the next sign-in needs no password.</p>"
        return page(title: "Signed out", body: body)
    }

    static let formPostScript = "document.forms[0].submit();"

    /// The CSP of the form_post page: only its own inline script (by hash) may run, and the form
    /// may only post to the relying party's origin.
    static func formPostCSP(action: String) -> String {
        let hash = Data(SHA256Digest.of(formPostScript)).base64EncodedString()
        return
            "default-src 'none'; script-src 'sha256-\(hash)'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action \(originOf(action) ?? "'none'")"
    }

    static func originOf(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host
        else {
            return nil
        }
        let port = components.port.map { ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(port)"
    }

    static func formPost(action: String, fields: [String: String]) -> String {
        let inputs = fields.keys.sorted().map {
            "<input type=\"hidden\" name=\"\(escape($0))\" value=\"\(escape(fields[$0]!))\">"
        }.joined()
        return page(
            title: "Signing in",
            body: """
                <form method="post" action="\(escape(action))">\(inputs)<noscript><button type="submit">Continue</button></noscript></form>
                <script>\(formPostScript)</script>
                """)
    }
}

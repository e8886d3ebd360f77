import Foundation
import HTTPTypes
import Hummingbird
import OIDCProvider

/// Renders the pages of the admin UI and of the user's own page, with the headers they share.
enum UIPages {
    /// The pages run only the served `/ui.js` and use only the served `/style.css`; forms post to
    /// tsidp itself; nothing frames them.
    static let csp =
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
        + "frame-ancestors 'none'; base-uri 'none'"

    /// What the navigation bar shows.
    struct Navigation {
        var admin: Bool
        var user: Bool
    }

    /// A page from template `name`; never cached, and with `Referrer-Policy: same-origin` so that
    /// browsers send the page's origin with its forms (with `no-referrer` they send `Origin: null`).
    static func page(
        _ name: String, _ values: [String: Any], navigation: Navigation, status: HTTPResponse.Status = .ok
    ) -> Response {
        var values = values
        values["adminNav"] = navigation.admin
        values["userNav"] = navigation.user
        var response = Responses.html(PageTemplates.render(name, values), status: status, csp: csp)
        response.headers[.cacheControl] = "no-store"
        response.headers[.pragma] = "no-cache"
        response.headers[.referrerPolicy] = "same-origin"
        return response
    }

    /// A refusal or failure as a page.
    static func errorPage(_ error: PageError) -> Response {
        var values: [String: Any] = ["title": error.title, "message": error.message]
        if let snippet = error.policySnippet { values["policySnippet"] = snippet }
        return page(
            "uiError", values, navigation: Navigation(admin: false, user: error.policySnippet != nil),
            status: error.status)
    }

    /// The tailnet policy file grant that gives `login` the admin UI.
    static func adminGrantSnippet(login: String, capabilityName: String) -> String {
        """
        {
          "grants": [
            {
              "src": [\(JSONText.quote(login))],
              "dst": ["tag:tsidp"],
              "app": {
                \(JSONText.quote(capabilityName)): [
                  {"allow_admin_ui": true}
                ]
              }
            }
          ]
        }
        """
    }

    /// The issuer and endpoint URLs, for the endpoints panel.
    static func endpoints(issuer: String) -> [[String: Any]] {
        [
            ("issuer", "Issuer", issuer),
            ("discovery", "Discovery", issuer + "/.well-known/openid-configuration"),
            ("authorize", "Authorization", issuer + "/authorize"),
            ("token", "Token", issuer + "/token"),
            ("userinfo", "UserInfo", issuer + "/userinfo"),
            ("jwks", "JWKS", issuer + "/.well-known/jwks.json"),
            ("introspect", "Introspection", issuer + "/introspect"),
            ("revoke", "Revocation", issuer + "/revoke"),
            ("logout", "End session", issuer + "/logout"),
        ].map { ["key": $0.0, "label": $0.1, "url": $0.2] }
    }

    /// A time as the pages show it: `2026-05-01 14:03:07Z`.
    static func when(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(dateTimeSeparator: .space))
    }

    /// The path of a client's edit page (the ID percent-encoded, although tsidp's IDs are hex).
    static func editPath(_ clientID: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "/edit/" + (clientID.addingPercentEncoding(withAllowedCharacters: allowed) ?? clientID)
    }

    /// What the list says about a client's secret.
    static func status(_ client: Client) -> String {
        if client.isPublic { return "Public (PKCE)" }
        return client.secretHash == nil ? "No secret" : "Active"
    }

    /// Option lists of the new-client form, with `chosen` selected.
    static func options(_ choices: [(String, String)], chosen: String) -> [[String: Any]] {
        choices.map { ["value": $0.0, "label": $0.1, "selected": $0.0 == chosen] }
    }

    static let authMethods = [
        ("client_secret_basic", "client_secret_basic (HTTP Basic, the default)"),
        ("client_secret_post", "client_secret_post (secret in the form body)"),
        ("none", "none (public client, PKCE S256 required)"),
    ]
    static let algorithms = SigningAlgorithm.allCases.map {
        ($0.rawValue, $0 == .rs256 ? "RS256 (the default)" : $0.rawValue)
    }
    static let accessTokenFormats = [
        ("", "JWT when a resource is requested, opaque otherwise (the default)"),
        ("opaque", "opaque (checked at /userinfo or /introspect)"),
        ("jwt", "JWT (RFC 9068, verifiable offline)"),
    ]
}

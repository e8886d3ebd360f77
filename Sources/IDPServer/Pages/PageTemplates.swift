import Mustache

/// The server-rendered pages, as Mustache templates. `{{value}}` is HTML-escaped by the engine, so
/// client names, URIs and claims are always text, never markup; nothing here uses the unescaped
/// forms. Pages load no external assets and run no script.
enum PageTemplates {
    static let layout = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · tsidp</title>
        <style>
        body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
        h1{font-size:1.4rem}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}.muted{color:#59636e}
        .card{border:1px solid #d0d7de;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
        .warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .75rem}
        .actions{display:flex;gap:.75rem;margin-top:1.25rem}
        button{font:inherit;padding:.5rem 1.1rem;border-radius:6px;border:1px solid #d0d7de;background:#f6f8fa;cursor:pointer}
        button.primary{background:#1f883d;border-color:#1f883d;color:#fff}
        table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #eaeef2}
        </style>
        </head><body>
        {{$body}}{{/body}}
        <p class="muted">tsidp {{version}}</p>
        </body></html>
        """

    static let consent = """
        {{<layout}}{{$body}}
        <h1>Sign in to {{clientName}}?</h1>
        <div class="card">
        <p><strong>{{clientName}}</strong> wants you to sign in as <strong>{{userLogin}}</strong>.</p>
        <p>After you continue, your browser goes to <code>{{redirectHost}}</code>, and the application learns:</p>
        <ul>{{#claims}}<li>{{.}}</li>{{/claims}}</ul>
        {{#dynamicallyRegistered}}<p class="warn">This application was registered by someone on your tailnet, not
        by the administrator of this identity provider. Continue only if you know it.</p>{{/dynamicallyRegistered}}
        <form method="post" action="/consent">
        <input type="hidden" name="request" value="{{requestID}}">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <div class="actions">
        <button class="primary" type="submit" name="decision" value="allow">Continue</button>
        <button type="submit" name="decision" value="deny">Cancel</button>
        </div>
        </form>
        </div>
        <p class="muted">You are asked once per application. You can take your consent back on
        <a href="/consents">your sign-ins page</a>.</p>
        {{/body}}{{/layout}}
        """

    static let consents = """
        {{<layout}}{{$body}}
        <h1>Applications you signed in to</h1>
        <p>Signed in as <strong>{{userLogin}}</strong>. These applications were not set up by the administrator,
        so tsidp asked you before your first sign-in. Taking your consent back signs you out of the application
        everywhere; it asks again next time.</p>
        {{^consents}}<p class="muted">None.</p>{{/consents}}
        {{#consents}}
        <div class="card">
        <p><strong>{{clientName}}</strong> <span class="muted">({{clientID}})</span></p>
        <p class="muted">Since {{grantedAt}}; {{activeLogins}} active sign-in(s); scopes: {{scopes}}</p>
        <form method="post" action="/consents/revoke">
        <input type="hidden" name="client_id" value="{{clientID}}">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <button type="submit">Take back consent and sign out</button>
        </form>
        </div>
        {{/consents}}
        {{/body}}{{/layout}}
        """

    /// The templates, parsed once.
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        do {
            try library.register(layout, named: "layout")
            try library.register(consent, named: "consent")
            try library.register(consents, named: "consents")
            for (template, name) in [
                (uiLayout, "uiLayout"), (uiError, "uiError"), (endpointsPanel, "endpointsPanel"),
                (uiClients, "uiClients"), (uiNewClient, "uiNewClient"), (uiSecret, "uiSecret"),
                (uiEditClient, "uiEditClient"), (uiDeleteClient, "uiDeleteClient"), (uiMe, "uiMe"),
            ] {
                try library.register(template, named: name)
            }
        } catch {
            preconditionFailure("a built-in page template does not parse: \(error)")
        }
        return library
    }()

    /// Renders `name` with `values`; the version is added for the footer.
    static func render(_ name: String, _ values: [String: Any]) -> String {
        var values = values
        values["version"] = TsidpVersion.current
        return library.render(values, withTemplate: name) ?? ""
    }
}

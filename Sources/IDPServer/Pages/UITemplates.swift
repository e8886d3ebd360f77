/// The templates of the admin UI and of a user's own page (`/me`). Like every page of tsidp they
/// are Mustache templates whose `{{value}}`s the engine escapes; they style themselves with the
/// served `/style.css` and use the served `/ui.js` only for Copy buttons, so their CSP allows no
/// inline code at all, and every action works without script (plain forms).
extension PageTemplates {
    static let uiLayout = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · tsidp</title>
        <link rel="stylesheet" href="/style.css">
        <script src="/ui.js" defer></script>
        </head><body>
        <header><a class="brand" href="{{#adminNav}}/{{/adminNav}}{{^adminNav}}/me{{/adminNav}}">tsidp</a>
        <nav>{{#adminNav}}<a href="/">Clients</a><a href="/new">New client</a>{{/adminNav}}{{#userNav}}<a href="/me">Your account</a>{{/userNav}}</nav></header>
        <main>
        {{$body}}{{/body}}
        </main>
        <footer>tsidp {{version}}</footer>
        </body></html>
        """

    static let uiError = """
        {{<uiLayout}}{{$body}}
        <h1>{{title}}</h1>
        <p>{{message}}</p>
        {{#policySnippet}}
        <p>Grant it in the tailnet policy file (Access controls in the admin console), for example:</p>
        <pre class="snippet"><code id="policy-snippet">{{policySnippet}}</code></pre>
        <p><button type="button" class="copy" data-copy-from="policy-snippet" hidden>Copy</button></p>
        <p class="muted"><code>src</code> names who gets the grant (a user, a group or <code>autogroup:admin</code>);
        <code>dst</code> must match tsidp's own node (its tag, or <code>*</code>).</p>
        {{/policySnippet}}
        {{#userNav}}<p>Your own identity, grants and sign-ins are on <a href="/me">your account page</a>.</p>{{/userNav}}
        {{/body}}{{/uiLayout}}
        """

    static let endpointsPanel = """
        <section class="card" id="endpoints">
        <h2>Endpoints</h2>
        <p class="muted">What a relying party asks for. Most need only the issuer or the discovery URL.</p>
        <dl class="endpoints">
        {{#endpoints}}<dt>{{label}}</dt><dd><code id="endpoint-{{key}}">{{url}}</code>
        <button type="button" class="copy" data-copy-from="endpoint-{{key}}" hidden>Copy</button></dd>
        {{/endpoints}}
        </dl>
        </section>
        """

    static let uiClients = """
        {{<uiLayout}}{{$body}}
        <h1>OIDC clients</h1>
        {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}
        <p><a class="button primary" href="/new">Add a client</a></p>
        {{^clients}}<p class="muted" id="no-clients">No clients yet.</p>{{/clients}}
        {{#hasClients}}<p class="muted">{{count}} client(s)</p>
        <table id="clients"><thead><tr><th>Name</th><th>Client ID</th><th>Redirect URIs</th><th>Created</th>
        <th>Status</th><th></th></tr></thead><tbody>
        {{#clients}}<tr><td>{{name}}{{#dynamic}} <span class="tag">registered by a user</span>{{/dynamic}}</td>
        <td><code>{{clientID}}</code></td>
        <td>{{#redirectURIs}}<div><code>{{.}}</code></div>{{/redirectURIs}}</td>
        <td>{{created}}</td><td>{{status}}</td><td><a href="{{editPath}}">Edit</a></td></tr>
        {{/clients}}
        </tbody></table>{{/hasClients}}
        {{>endpointsPanel}}
        {{/body}}{{/uiLayout}}
        """

    static let uiNewClient = """
        {{<uiLayout}}{{$body}}
        <h1>New client</h1>
        {{#error}}<p class="error" role="alert" id="form-error">{{error}}</p>{{/error}}
        <form method="post" action="/new" class="stack">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <label>Name <input name="name" value="{{name}}" placeholder="Grafana"></label>
        <label>Redirect URIs, one per line
        <textarea name="redirect_uri" rows="4" placeholder="https://grafana.example.com/login/generic_oauth">{{redirectURIs}}</textarea></label>
        <fieldset><legend>Options</legend>
        <label>Logo URI (optional) <input name="logo_uri" value="{{logoURI}}" placeholder="https://…"></label>
        <label>Extra scopes, space-separated (optional) <input name="scope" value="{{scope}}"></label>
        <label>Resource URIs this client serves as a resource server, one per line (optional)
        <textarea name="resources" rows="2" placeholder="https://mcp.example.ts.net/mcp">{{resources}}</textarea></label>
        <label>Token endpoint authentication <select name="token_endpoint_auth_method">
        {{#authMethods}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/authMethods}}
        </select></label>
        <label>ID token signing algorithm <select name="id_token_signed_response_alg">
        {{#algorithms}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/algorithms}}
        </select></label>
        <label>Access tokens <select name="access_token_format">
        {{#formats}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/formats}}
        </select></label>
        <label class="check"><input type="checkbox" name="consent_required" value="true"{{#consentRequired}} checked{{/consentRequired}}>
        Ask each user to confirm before their first sign-in</label>
        </fieldset>
        <div class="actions"><button class="primary" type="submit">Create client</button><a href="/">Cancel</a></div>
        </form>
        {{/body}}{{/uiLayout}}
        """

    static let uiSecret = """
        {{<uiLayout}}{{$body}}
        <h1>{{heading}}</h1>
        {{#secret}}<p class="warn">Copy the client secret now: it is not shown again (tsidp keeps only a digest of it).
        If it is lost, regenerate it.</p>{{/secret}}
        <dl class="credentials">
        <dt>Name</dt><dd>{{name}}</dd>
        <dt>Client ID</dt><dd><code id="client-id">{{clientID}}</code>
        <button type="button" class="copy" data-copy-from="client-id" hidden>Copy</button></dd>
        {{#secret}}<dt>Client secret</dt><dd><code id="client-secret">{{secret}}</code>
        <button type="button" class="copy" data-copy-from="client-secret" hidden>Copy</button></dd>{{/secret}}
        {{^secret}}<dt>Client secret</dt><dd>none: a public client, which must use PKCE (S256)</dd>{{/secret}}
        </dl>
        <p><a href="{{editPath}}">Client settings</a> · <a href="/">All clients</a></p>
        {{>endpointsPanel}}
        {{/body}}{{/uiLayout}}
        """

    static let uiEditClient = """
        {{<uiLayout}}{{$body}}
        <h1>Edit {{displayName}}</h1>
        {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}
        {{#error}}<p class="error" role="alert" id="form-error">{{error}}</p>{{/error}}
        <form method="post" action="{{editPath}}" class="stack">
        <input type="hidden" name="csrf_token" value="{{editToken}}">
        <label>Name <input name="name" value="{{name}}"></label>
        <label>Redirect URIs, one per line <textarea name="redirect_uri" rows="4">{{redirectURIs}}</textarea></label>
        <div class="actions"><button class="primary" type="submit">Save</button><a href="/">Cancel</a></div>
        </form>
        <section class="card"><h2>Settings</h2>
        <dl class="settings">
        <dt>Client ID</dt><dd><code id="client-id">{{clientID}}</code>
        <button type="button" class="copy" data-copy-from="client-id" hidden>Copy</button></dd>
        <dt>Created</dt><dd>{{created}}</dd>
        <dt>Token endpoint authentication</dt><dd>{{authMethod}}</dd>
        <dt>ID token signing algorithm</dt><dd>{{algorithm}}</dd>
        <dt>Access tokens</dt><dd>{{accessTokenFormat}}</dd>
        <dt>Resources served</dt><dd>{{#resources}}<code>{{.}}</code> {{/resources}}{{^resources}}none{{/resources}}</dd>
        <dt>Extra scopes</dt><dd>{{#scope}}{{scope}}{{/scope}}{{^scope}}none{{/scope}}</dd>
        <dt>Logo URI</dt><dd>{{#logoURI}}<code>{{logoURI}}</code>{{/logoURI}}{{^logoURI}}none{{/logoURI}}</dd>
        <dt>Consent page</dt><dd>{{#consent}}users confirm their first sign-in{{/consent}}{{^consent}}no{{/consent}}</dd>
        {{#dynamic}}<dt>Registered</dt><dd>by a user, through dynamic registration</dd>{{/dynamic}}
        <dt>Live logins</dt><dd>{{liveLogins}}</dd>
        </dl></section>
        <section class="card"><h2>Client secret</h2>
        <p>{{secretStatus}}</p>
        <form method="post" action="{{secretPath}}">
        <input type="hidden" name="csrf_token" value="{{secretToken}}">
        <button type="submit" id="regenerate">Regenerate secret</button>
        <span class="muted">The current secret stops working at once.</span>
        </form></section>
        <section class="card danger-zone"><h2>Delete</h2>
        <p>The relying party can no longer sign anyone in, and every login it holds ends.</p>
        <p><a class="button danger" href="{{deletePath}}" id="delete-link">Delete client…</a></p></section>
        {{/body}}{{/uiLayout}}
        """

    static let uiDeleteClient = """
        {{<uiLayout}}{{$body}}
        <h1>Delete {{displayName}}?</h1>
        <p>Client ID <code>{{clientID}}</code>. The application can no longer sign anyone in, and its
        {{liveLogins}} live login(s) end now. This cannot be undone.</p>
        <form method="post" action="{{deletePath}}">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <div class="actions"><button class="danger" type="submit" id="confirm-delete">Delete client</button>
        <a href="{{editPath}}">Cancel</a></div>
        </form>
        {{/body}}{{/uiLayout}}
        """

    static let uiMe = """
        {{<uiLayout}}{{$body}}
        <h1>Your account</h1>
        {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}
        <section class="card" id="whoami"><h2>Who you are</h2>
        <dl>
        <dt>Login</dt><dd>{{login}}</dd>
        <dt>Display name</dt><dd>{{displayName}}</dd>
        <dt>User ID</dt><dd><code>{{userID}}</code></dd>
        <dt>This device</dt><dd>{{nodeName}} <span class="muted">(node {{nodeID}})</span></dd>
        <dt>Addresses</dt><dd>{{#addresses}}<code>{{.}}</code> {{/addresses}}</dd>
        <dt>Tags</dt><dd>{{#tags}}<code>{{.}}</code> {{/tags}}{{^tags}}none{{/tags}}</dd>
        <dt>Groups</dt><dd>{{#groups}}<code>{{.}}</code> {{/groups}}{{^groups}}none{{/groups}}</dd>
        </dl></section>
        <section class="card" id="grants"><h2>Your tsidp grants</h2>
        {{#grantError}}<p class="error">{{grantError}}</p>{{/grantError}}
        <p>Admin UI: <strong>{{adminUI}}</strong> · Dynamic client registration: <strong>{{dcr}}</strong></p>
        {{^rules}}<p class="muted">No grant under <code>{{capabilityName}}</code> reaches you.</p>{{/rules}}
        {{#rules}}<div class="rule"><h3>Rule {{number}}</h3><dl>
        <dt>allow_admin_ui</dt><dd>{{allowAdminUI}}</dd><dt>allow_dcr</dt><dd>{{allowDCR}}</dd>
        <dt>users</dt><dd>{{#users}}<code>{{.}}</code> {{/users}}{{^users}}none{{/users}}</dd>
        <dt>resources</dt><dd>{{#resources}}<code>{{.}}</code> {{/resources}}{{^resources}}none{{/resources}}</dd>
        <dt>extraClaims</dt><dd>{{#extraClaims}}<code>{{extraClaims}}</code>{{/extraClaims}}{{^extraClaims}}none{{/extraClaims}}</dd>
        <dt>includeInUserInfo</dt><dd>{{includeInUserInfo}}</dd>
        </dl></div>{{/rules}}
        </section>
        <section class="card" id="logins"><h2>Where you are signed in</h2>
        <p class="muted">Each line is one login of an application on one device. Ending it stops the application's
        access at once (its refresh token and access tokens stop working); signing in again starts a new one.</p>
        {{^logins}}<p class="muted" id="no-logins">No live logins.</p>{{/logins}}
        {{#hasLogins}}<table><thead><tr><th>Application</th><th>Device</th><th>Signed in</th><th>Last used</th>
        <th>Ends</th><th></th></tr></thead><tbody>
        {{#logins}}<tr><td>{{clientName}}</td><td>{{nodeName}}</td><td>{{signedInAt}}</td><td>{{lastUsedAt}}</td>
        <td>{{expiresAt}}</td><td><form method="post" action="/me/logins/end">
        <input type="hidden" name="login" value="{{handle}}">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <button type="submit">Sign out</button></form></td></tr>
        {{/logins}}</tbody></table>{{/hasLogins}}
        </section>
        <section class="card" id="consents"><h2>Applications you consented to</h2>
        <p class="muted">Applications the administrator did not set up ask before your first sign-in. Taking your
        consent back also ends your logins there; the application asks again next time.</p>
        {{^consents}}<p class="muted">None.</p>{{/consents}}
        {{#consents}}<div class="row"><div><strong>{{clientName}}</strong> <span class="muted">({{clientID}})</span>
        <div class="muted">Since {{grantedAt}}; scopes: {{scopes}}; {{activeLogins}} live login(s)</div></div>
        <form method="post" action="/me/consents/revoke">
        <input type="hidden" name="client_id" value="{{clientID}}">
        <input type="hidden" name="csrf_token" value="{{csrfToken}}">
        <button type="submit">Take back consent</button></form></div>
        {{/consents}}
        </section>
        {{/body}}{{/uiLayout}}
        """

    /// The UI's stylesheet, served at `/style.css`.
    static let stylesheet = """
        :root{--fg:#1f2328;--muted:#59636e;--line:#d0d7de;--soft:#f6f8fa;--green:#1f883d;--red:#cf222e}
        *{box-sizing:border-box}[hidden]{display:none!important}
        body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);margin:0;line-height:1.45}
        header{display:flex;align-items:center;gap:1.5rem;padding:.75rem 1.5rem;border-bottom:1px solid var(--line);background:var(--soft)}
        header .brand{font-weight:700;color:var(--fg);text-decoration:none}
        nav{display:flex;gap:1rem}nav a{color:var(--fg)}
        main{max-width:64rem;margin:1.5rem auto;padding:0 1.5rem}
        footer{max-width:64rem;margin:2rem auto;padding:0 1.5rem;color:var(--muted);font-size:.85rem}
        h1{font-size:1.5rem}h2{font-size:1.15rem}h3{font-size:1rem}
        code{background:#eff1f3;padding:.1rem .3rem;border-radius:4px;word-break:break-all;user-select:all}
        pre.snippet{background:#eff1f3;padding:.75rem;border-radius:6px;overflow:auto}
        pre.snippet code{background:none;padding:0;user-select:text}
        .muted{color:var(--muted)}
        .card{border:1px solid var(--line);border-radius:8px;padding:.75rem 1.25rem;margin:1.25rem 0}
        .warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .75rem}
        .notice{background:#dafbe1;border:1px solid #4ac26b;border-radius:6px;padding:.5rem .75rem}
        .error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.5rem .75rem}
        .tag{font-size:.75rem;border:1px solid var(--line);border-radius:1rem;padding:0 .4rem;color:var(--muted)}
        table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.45rem;border-bottom:1px solid #eaeef2;vertical-align:top}
        dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}dt{font-weight:600}dd{margin:0}
        form.stack{display:flex;flex-direction:column;gap:.85rem;max-width:40rem}
        form.stack label{display:flex;flex-direction:column;gap:.25rem;font-weight:600}
        form.stack label.check{flex-direction:row;align-items:center;font-weight:400}
        fieldset{border:1px solid var(--line);border-radius:8px;display:flex;flex-direction:column;gap:.85rem}
        input,textarea,select{font:inherit;padding:.4rem .5rem;border:1px solid var(--line);border-radius:6px;font-weight:400}
        textarea{font-family:ui-monospace,monospace}
        .actions{display:flex;gap:.75rem;align-items:center}
        .row{display:flex;justify-content:space-between;gap:1rem;align-items:center;padding:.5rem 0;border-bottom:1px solid #eaeef2}
        button,.button{font:inherit;padding:.4rem 1rem;border-radius:6px;border:1px solid var(--line);background:var(--soft);color:var(--fg);cursor:pointer;text-decoration:none;display:inline-block}
        button.primary,.button.primary{background:var(--green);border-color:var(--green);color:#fff}
        button.danger,.button.danger{background:var(--red);border-color:var(--red);color:#fff}
        button.copy{padding:.1rem .5rem;font-size:.8rem}
        """

    /// The UI's only script, served at `/ui.js`: it shows the Copy buttons and copies on click.
    /// Without it the values stay selectable text.
    static let script = """
        "use strict";
        document.querySelectorAll("button.copy[data-copy-from]").forEach(function (button) {
          var source = document.getElementById(button.getAttribute("data-copy-from"));
          if (!source) { return; }
          button.hidden = false;
          button.addEventListener("click", function () {
            var text = source.textContent;
            var select = function () {
              var range = document.createRange();
              range.selectNodeContents(source);
              var selection = window.getSelection();
              selection.removeAllRanges();
              selection.addRange(range);
            };
            if (navigator.clipboard && window.isSecureContext) {
              navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; }, select);
            } else {
              select();
            }
          });
        });
        """
}

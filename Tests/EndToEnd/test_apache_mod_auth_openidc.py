"""Apache httpd + mod_auth_openidc as a relying party of the real tsidp.

A cookie-keeping "browser" asks apache for /protected/, gets sent to tsidp's
/authorize, comes back to apache's redirect URI with a code (which
mod_auth_openidc redeems at tsidp's token endpoint, with PKCE S256 and
client_secret_basic), and finally sees the protected page, which echoes the
email claim that mod_auth_openidc extracted from tsidp's ID token.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlsplit


def login_through_apache(browser, apache, tsidp):
    """GET /protected/ and follow every redirect; returns (final response, history)."""
    response = browser.get(f"{apache.base}/protected/", allow_redirects=True)
    hops = [f"{r.status_code} {r.request.method} {r.url} -> {r.headers.get('Location')}" for r in response.history]
    context = (
        "redirect chain:\n  " + "\n  ".join(hops)
        + f"\nfinal: {response.status_code} {response.url}\n{response.text[:3000]}"
        + f"\n\napache logs:\n{apache.logs()}\n\ntsidp logs:\n{tsidp.process.logs()}"
    )
    return response, context


def assert_went_through_tsidp(response, apache, tsidp, context):
    """The chain must be apache -> tsidp /authorize -> apache redirect_uri -> page."""
    urls = [r.url for r in response.history]
    authorize = [u for u in urls if urlsplit(u).path == "/authorize" and urlsplit(u).port == tsidp.port]
    assert authorize, f"never visited tsidp /authorize\n{context}"
    query = parse_qs(urlsplit(authorize[0]).query)
    assert query.get("client_id") == [apache.client_id], context
    assert query.get("code_challenge_method") == ["S256"], context
    assert query.get("redirect_uri") == [apache.redirect_uri], context

    callbacks = [r for r in response.history if r.url.startswith(apache.redirect_uri)]
    assert callbacks, f"never came back to {apache.redirect_uri}\n{context}"
    callback = parse_qs(urlsplit(callbacks[0].url).query)
    assert "code" in callback and "state" in callback, context
    assert callback.get("iss") == [tsidp.issuer], context
    assert urlsplit(response.url).path.startswith("/protected"), context


def shown_email(page: str):
    match = re.search(r"OIDC email claim: \[([^\]]*)\]", page)
    return match.group(1) if match else None


def test_apache_login_as_alice(tsidp_factory, apache_factory, make_browser, unused_port):
    """Built-in dev identity; client registered through POST /clients/new."""
    tsidp = tsidp_factory()  # no --dev-identities: alice@example.com only
    apache_port = unused_port()
    client = tsidp.register_admin_client("apache-mod-auth-openidc", [f"http://127.0.0.1:{apache_port}/protected/redirect_uri"])
    apache = apache_factory(tsidp, apache_port, client["client_id"], client["client_secret"])

    browser = make_browser("127.0.0.1")
    response, context = login_through_apache(browser, apache, tsidp)

    assert response.status_code == 200, context
    assert_went_through_tsidp(response, apache, tsidp, context)
    assert shown_email(response.text) == "alice@example.com", context
    assert "OIDC sub claim: [userid:2001]" in response.text, context
    assert "REMOTE_USER=alice@example.com" in response.text, context

    # The session cookie now carries the login: a second visit needs no redirect.
    again = browser.get(f"{apache.base}/protected/", allow_redirects=False)
    assert again.status_code == 200, f"{again.status_code} {again.headers}\n{context}"
    assert shown_email(again.text) == "alice@example.com"


def test_apache_login_as_bob(tsidp_factory, apache_factory, make_browser, alice_and_bob, unused_port):
    """Dev identities file (alice, bob); bob connects from 127.0.0.2.

    The apache client is pre-written into the state dir in the Go tsidp's
    oidc-funnel-clients.json format, with a plaintext secret.
    """
    apache_port = unused_port()
    client_id = "apache-" + secrets.token_hex(8)
    client_secret = secrets.token_urlsafe(32)
    clients = {
        client_id: {
            "client_id": client_id,
            "client_secret": client_secret,
            "client_name": "apache",
            "redirect_uris": [f"http://127.0.0.1:{apache_port}/protected/redirect_uri"],
        }
    }
    tsidp = tsidp_factory(identities=alice_and_bob, clients=clients)
    apache = apache_factory(tsidp, apache_port, client_id, client_secret)

    browser = make_browser("127.0.0.2")
    response, context = login_through_apache(browser, apache, tsidp)

    assert response.status_code == 200, context
    assert_went_through_tsidp(response, apache, tsidp, context)
    assert shown_email(response.text) == "bob@example.com", context
    assert "OIDC sub claim: [userid:2002]" in response.text, context
    assert "alice@example.com" not in response.text, context

    # And alice, from 127.0.0.1 with her own cookie jar, is still alice.
    alice_response, alice_context = login_through_apache(make_browser("127.0.0.1"), apache, tsidp)
    assert alice_response.status_code == 200, alice_context
    assert shown_email(alice_response.text) == "alice@example.com", alice_context

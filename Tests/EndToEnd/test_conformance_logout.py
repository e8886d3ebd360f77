"""OpenID Foundation RP-Initiated Logout modules against the real tsidp.

The browser is a session bound to 127.0.0.1 (alice); it stops at tsidp's answer, so a redirect to
the post-logout URI or the signed-out page can be inspected. The client is registered by the admin
with a ``post_logout_redirect_uri``.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest


class LogoutClient:
    """A registered client and the post-logout URI it registered."""

    def __init__(self, client, post_logout_redirect_uri):
        self.client = client
        self.post_logout_redirect_uri = post_logout_redirect_uri

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def logout_client(oidc_op):
    return_uri = oidc_op.new_redirect_uri("signed-out")
    client = oidc_op.static_client("conformance-logout", post_logout_redirect_uri=return_uri)
    assert client.registration.get("post_logout_redirect_uris") == [return_uri], client.registration
    return LogoutClient(client, return_uri)


def logout(op, source="127.0.0.1", **params):
    return op.get(op.metadata["end_session_endpoint"], source=source, params=params, allow_redirects=False)


def alive(op, login) -> bool:
    return op.userinfo(login.token["access_token"]).status_code == 200


def expect_page(response, status, text):
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert "Location" not in response.headers, response.headers
    assert response.headers.get("Content-Type", "").startswith("text/html"), response.headers
    assert text in response.text, response.text[:1000]


def test_rp_initiated_logout_discovery(oidc_op):
    """end_session_endpoint is advertised, on the issuer, https or the issuer's own scheme."""
    endpoint = oidc_op.metadata.get("end_session_endpoint")
    assert endpoint == oidc_op.issuer + "/logout", oidc_op.metadata


def test_rp_initiated_logout(oidc_op, logout_client):
    """With id_token_hint, the login ends and the browser returns to the registered URI with state;
    without post_logout_redirect_uri (and with state only), the signed-out page is shown."""
    login = oidc_op.login(logout_client.client)
    assert alive(oidc_op, login)
    response = logout(
        oidc_op, id_token_hint=login.token["id_token"],
        post_logout_redirect_uri=logout_client.post_logout_redirect_uri, state="bye-1")
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = urlsplit(response.headers["Location"])
    expected = urlsplit(logout_client.post_logout_redirect_uri)
    assert (location.scheme, location.netloc, location.path) == (expected.scheme, expected.netloc, expected.path)
    assert parse_qs(location.query) == {"state": ["bye-1"]}, response.headers["Location"]
    assert not alive(oidc_op, login)
    refreshed = oidc_op.refresh(logout_client.client, login.token["refresh_token"])
    oidc_op.check_token_error(refreshed, "invalid_grant")

    # -no-post-logout-redirect-uri and -only-state: the page, no redirect.
    second = oidc_op.login(logout_client.client)
    expect_page(logout(oidc_op, id_token_hint=second.token["id_token"], state="s"), 200, "Signed out")
    assert not alive(oidc_op, second)
    # -no-state: the redirect carries no state.
    third = oidc_op.login(logout_client.client)
    response = logout(oidc_op, id_token_hint=third.token["id_token"],
                      post_logout_redirect_uri=logout_client.post_logout_redirect_uri)
    assert response.status_code == 302 and response.headers["Location"] == logout_client.post_logout_redirect_uri


def test_rp_initiated_logout_bad_hint(oidc_op, logout_client):
    """A hint tsidp did not sign, or one whose payload was altered: an error page, nothing ends."""
    login = oidc_op.login(logout_client.client)
    head, payload, signature = login.token["id_token"].split(".")
    claims = oidc_op.jwt_unverified(login.token["id_token"])[1] | {"sub": "userid:2002"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for hint in ("not-an-id-token", f"{head}.{forged}.{signature}"):
        response = logout(oidc_op, id_token_hint=hint,
                          post_logout_redirect_uri=logout_client.post_logout_redirect_uri, state="s")
        expect_page(response, 400, "cannot continue")
    assert alive(oidc_op, login)


def test_rp_initiated_logout_without_hint(oidc_op, logout_client):
    """No hint: nothing ends. No parameters: the signed-out page; client_id and a registered URI:
    the redirect; a URI without any application: an error page."""
    login = oidc_op.login(logout_client.client)
    expect_page(logout(oidc_op), 200, "Signed out")
    response = logout(oidc_op, client_id=logout_client.client_id,
                      post_logout_redirect_uri=logout_client.post_logout_redirect_uri, state="x")
    assert response.status_code == 302, response.text[:500]
    expect_page(logout(oidc_op, post_logout_redirect_uri=logout_client.post_logout_redirect_uri), 400, "no application")
    assert alive(oidc_op, login)


def test_rp_initiated_logout_unregistered_uri(oidc_op, logout_client):
    """-bad-post-logout-redirect-uri and -query-added-to-post-logout-redirect-uri: an error page."""
    login = oidc_op.login(logout_client.client)
    for uri in ("https://evil.example.net/", logout_client.post_logout_redirect_uri + "?foo=bar"):
        response = logout(oidc_op, id_token_hint=login.token["id_token"], post_logout_redirect_uri=uri, state="s")
        expect_page(response, 400, "is not registered")
    assert alive(oidc_op, login)


def test_rp_initiated_logout_other_user(oidc_op, logout_client):
    """Bob's ID token from alice's device ends nobody's login."""
    alice = oidc_op.login(logout_client.client)
    bob = oidc_op.login(logout_client.client, source="127.0.0.2")
    expect_page(logout(oidc_op, id_token_hint=bob.token["id_token"]), 403, "another user")
    assert alive(oidc_op, alice) and alive(oidc_op, bob)

"""OpenID Foundation "Basic OP" negative modules (bad requests, code reuse, refresh tokens,
request objects) against the real tsidp.

An "error page" is what the suite accepts when the client or redirect URI
cannot be trusted: an HTML 4xx answer that redirects nowhere.  An "error
redirect" goes to the registered redirect URI with ``error``, ``state`` and
``iss`` and without ``code``.
"""

from __future__ import annotations

import base64
import json
import time

import pytest


@pytest.fixture(scope="module")
def client(oidc_op):
    return oidc_op.static_client("conformance-negative")


def b64url_json(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def unsigned_request_object(op, client, params: dict) -> str:
    """A request object with alg none, as the suite's SerializeRequestObjectWithNullAlgorithm builds it."""
    claims = dict(params, iss=client.client_id, aud=op.issuer)
    return b64url_json({"alg": "none"}) + "." + b64url_json(claims) + "."


def test_oidcc_response_type_missing(oidc_op, client):
    """No response_type: an error page, or a redirect with invalid_request/unsupported_response_type."""
    params = oidc_op.authorization_params(client, response_type=None)
    answer = oidc_op.authorize(params)
    if answer.status in (302, 303):
        oidc_op.expect_error(answer, client.redirect_uri, {"invalid_request", "unsupported_response_type"}, params["state"])
    else:
        oidc_op.expect_error_page(answer)
    # And a response_type tsidp does not offer is refused the same way, never half-served.
    params = oidc_op.authorization_params(client, response_type="id_token token")
    answer = oidc_op.authorize(params)
    oidc_op.expect_error(answer, client.redirect_uri, "unsupported_response_type", params["state"])


def test_oidcc_ensure_registered_redirect_uri(oidc_op, client):
    """An unregistered redirect_uri gets an error page, never a redirect (to it or anywhere)."""
    for bad in (client.redirect_uri + "/unregistered", "https://attacker.example.com/callback",
                client.redirect_uri.replace("127.0.0.1", "localhost")):
        params = oidc_op.authorization_params(client, redirect_uri=bad)
        oidc_op.expect_error_page(oidc_op.authorize(params))
    # An unknown client likewise.
    params = oidc_op.authorization_params(client, client_id="no-such-client")
    oidc_op.expect_error_page(oidc_op.authorize(params))


def test_oidcc_codereuse(oidc_op, client):
    """A code redeemed twice in a row: the second request gets 400 invalid_grant (JSON)."""
    login = oidc_op.login(client)
    again = oidc_op.redeem(client, login.callback["code"])
    oidc_op.check_token_error(again, "invalid_grant")


def test_oidcc_codereuse_30seconds(oidc_op, client):
    """Code reuse after a delay: invalid_grant, and the tokens of the first redemption are revoked
    (the access token no longer works at userinfo, the refresh token is refused).

    The suite waits 30 seconds; this test waits 2 seconds instead.  tsidp's behaviour does not
    depend on the delay (codes live 5 minutes; a used code stays known as used), and the
    assertions say nothing about time.
    """
    login = oidc_op.login(client, scope="openid email")
    access_token = login.token["access_token"]
    oidc_op.check_userinfo(oidc_op.userinfo(access_token), login.claims["sub"])  # works before the reuse
    time.sleep(2)
    again = oidc_op.redeem(client, login.callback["code"])
    oidc_op.check_token_error(again, "invalid_grant")

    revoked = oidc_op.userinfo(access_token)
    assert revoked.status_code == 401, (
        f"access token from the first redemption still works after the code was replayed: "
        f"{revoked.status_code} {revoked.text[:300]}"
    )
    assert "invalid_token" in revoked.headers.get("WWW-Authenticate", ""), revoked.headers
    refresh = oidc_op.refresh(client, login.token["refresh_token"])
    oidc_op.check_token_error(refresh, "invalid_grant")


def test_oidcc_refresh_token(oidc_op, client):
    """Refresh tokens: allowed characters, refresh with the original scope works, the refreshed ID
    token keeps iss/sub/aud/auth_time and has a new iat (OIDC Core 12.2), the new access token
    works, and a refresh token issued to client 2 is refused for client 1."""
    assert "refresh_token" in oidc_op.metadata["grant_types_supported"]  # EnsureServerConfigurationSupportsRefreshToken
    scope = "openid email offline_access"
    first = oidc_op.login(client, scope=scope, prompt="consent")
    refresh_token = first.token.get("refresh_token")
    assert refresh_token, f"no refresh token issued: {sorted(first.token)}"  # the module would be SKIPPED

    oidc_op.wait_for_next_second(first.claims["iat"])  # the suite waits a second so iat can differ
    refreshed = oidc_op.check_token_response(oidc_op.refresh(client, refresh_token, scope=scope), expect_id_token=False)
    assert refreshed["access_token"] != first.token["access_token"]
    if "id_token" in refreshed:  # CompareIdTokenClaims
        _, second = oidc_op.verify_id_token(refreshed["id_token"], client, nonce=None,
                                            access_token=refreshed["access_token"])
        for name in ("iss", "sub", "aud"):
            assert second[name] == first.claims[name], (name, first.claims[name], second[name])
        assert second["iat"] != first.claims["iat"], "the refreshed ID token must have a new iat"
        if "auth_time" in second:
            assert second["auth_time"] == first.claims["auth_time"], "auth_time must stay the original authentication's"
        if "azp" not in first.claims:
            assert "azp" not in second, second
        if "nonce" in second:
            assert second["nonce"] == first.claims.get("nonce"), second
    oidc_op.check_userinfo(oidc_op.userinfo(refreshed["access_token"]), first.claims["sub"])

    # Client 2 (registered the same way) gets its own refresh token ...
    client2 = oidc_op.static_client("conformance-negative-2")
    second_login = oidc_op.login(client2, scope=scope, prompt="consent")
    token2 = second_login.token["refresh_token"]
    # ... which client 1 may not use.
    oidc_op.check_token_error(oidc_op.refresh(client, token2), "invalid_grant")
    # Client 2 itself still can (the refusal did not depend on the token being bad).
    oidc_op.check_token_response(oidc_op.refresh(client2, token2), expect_id_token=False)


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(oidc_op, client):
    """An unsigned request object (request=, alg none) is either processed or refused with
    request_not_supported; tsidp advertises request_parameter_supported=false and refuses it."""
    assert oidc_op.metadata.get("request_parameter_supported") is False
    params = oidc_op.authorization_params(client)
    outer = {name: params[name] for name in ("response_type", "client_id", "scope", "redirect_uri")}
    outer["request"] = unsigned_request_object(oidc_op, client, params)
    answer = oidc_op.authorize(outer)
    # state travels only inside the request object, which tsidp does not read, so it cannot be echoed.
    oidc_op.expect_error(answer, client.redirect_uri, "request_not_supported", state=None)


def test_oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(oidc_op, client):
    """A request_uri is either dereferenced or refused with request_uri_not_supported."""
    assert oidc_op.metadata.get("request_uri_parameter_supported") is False
    params = oidc_op.authorization_params(client)
    outer = {name: params[name] for name in ("response_type", "client_id", "scope", "redirect_uri", "state")}
    outer["request_uri"] = "https://rp.example.com/requests/" + params["state"]
    answer = oidc_op.authorize(outer)
    oidc_op.expect_error(answer, client.redirect_uri, "request_uri_not_supported", params["state"])


def test_oidcc_ensure_request_object_with_redirect_uri(oidc_op, client):
    """The request object carries the registered redirect_uri, the query an unregistered one.
    An OP that supports request objects must use the inner one; one that does not must show
    an error page: it may never redirect to the unregistered URI (or anywhere)."""
    params = oidc_op.authorization_params(client)
    bad = client.redirect_uri + "/not-registered"
    outer = {name: params[name] for name in ("response_type", "client_id", "scope")}
    outer["redirect_uri"] = bad
    outer["request"] = unsigned_request_object(oidc_op, client, params)
    answer = oidc_op.authorize(outer)
    if answer.status in (302, 303):
        # Only acceptable if the request object was honoured: a code to the registered URI.
        oidc_op.expect_code(answer, client.redirect_uri, params["state"])
    else:
        oidc_op.expect_error_page(answer)

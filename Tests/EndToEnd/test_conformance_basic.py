"""OpenID Foundation "Basic OP" modules (happy paths, ID token, userinfo, scopes, request
parameters) against the real tsidp.

Each test is named after the conformance module it stands for and asserts what
that module checks.  The browser is a session bound to 127.0.0.1 (alice); it
stops at tsidp's redirect so the authorization response can be inspected.  The
static clients are registered by the admin with ``POST /clients/new`` and use
client_secret_basic, as the Basic OP plan's default client does.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest

ALICE_SUB = "userid:2001"


@pytest.fixture(scope="module")
def client(oidc_op):
    """The plan's "client": static, client_secret_basic."""
    return oidc_op.static_client("conformance-basic")


def full_flow_checks(op, login, expect_sub=ALICE_SUB):
    """What oidcc-server checks after the authorization response, shared by the happy-path modules."""
    assert login.claims["sub"] == expect_sub, login.claims
    assert "openid" in login.token.get("scope", "").split(), login.token
    info = op.check_userinfo(op.userinfo(login.token["access_token"]), login.claims["sub"])
    op.check_standard_claims(info)
    return info


def test_oidcc_server(oidc_op, client):
    """Code flow with state and nonce: callback (code, state, iss), token response, ID token
    (signature, iss, aud, exp, iat, sub, nonce, at_hash, auth_time), userinfo, distinct kids."""
    params = oidc_op.authorization_params(client)
    answer = oidc_op.authorize(params)
    callback = oidc_op.expect_code(answer, client.redirect_uri, params["state"])
    assert {"code", "state", "iss"} <= set(callback) and "error" not in callback, callback

    token_response = oidc_op.redeem(client, callback["code"])
    token = oidc_op.check_token_response(token_response)
    jwks = oidc_op.jwks()
    oidc_op.check_jwks_document(jwks)  # the server's keys have distinct kids
    header, claims = oidc_op.verify_id_token(
        token["id_token"], client, nonce=params["nonce"], access_token=token["access_token"], jwks=jwks
    )
    assert claims["sub"] == ALICE_SUB
    assert claims.get("at_hash"), "code flow ID token issued with an access token should carry at_hash"
    assert isinstance(claims.get("auth_time"), int), claims
    assert header["alg"] == "RS256"

    info = oidc_op.check_userinfo(oidc_op.userinfo(token["access_token"]), claims["sub"])
    oidc_op.check_standard_claims(info)


def test_oidcc_server_client_secret_post(oidc_op):
    """The same flow with the client credentials in the token request body."""
    post_client = oidc_op.dynamic_client("conformance-secret-post", auth_method="client_secret_post")
    login = oidc_op.login(post_client)
    full_flow_checks(oidc_op, login)
    # The credentials really are checked in the body: a wrong secret there is refused.
    params = oidc_op.authorization_params(post_client)
    callback = oidc_op.expect_code(oidc_op.authorize(params), post_client.redirect_uri, params["state"])
    wrong = type(post_client)(post_client.client_id, "not-the-secret", post_client.redirect_uris,
                              "client_secret_post", post_client.registration)
    oidc_op.check_token_error(oidc_op.redeem(wrong, callback["code"]), "invalid_client", status=(400, 401))


def test_oidcc_alternate_happy_flow(oidc_op, client):
    """Scopes in reverse order and query parameters in reverse order: order must not matter."""
    params = oidc_op.authorization_params(client, scope="email profile openid")
    reversed_query = urlencode(list(reversed(list(params.items()))))
    answer = oidc_op.authorize(params, raw_query=reversed_query)
    callback = oidc_op.expect_code(answer, client.redirect_uri, params["state"])
    token = oidc_op.check_token_response(oidc_op.redeem(client, callback["code"]))
    _, claims = oidc_op.verify_id_token(token["id_token"], client, nonce=params["nonce"], access_token=token["access_token"])
    assert set(token["scope"].split()) == {"openid", "profile", "email"}, token
    assert claims["sub"] == ALICE_SUB and claims.get("email") == "alice@example.com", claims
    oidc_op.check_userinfo(oidc_op.userinfo(token["access_token"]), ALICE_SUB)


def test_oidcc_ensure_post_request_succeeds(oidc_op, client):
    """The authorization request sent as a form POST works like a GET."""
    login = oidc_op.login(client, method="POST")
    full_flow_checks(oidc_op, login)


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(oidc_op, client):
    """An unknown parameter (extra=foobar) is ignored."""
    login = oidc_op.login(client, extra="foobar")
    assert "extra" not in login.callback, login.callback
    full_flow_checks(oidc_op, login)


def test_oidcc_ensure_request_with_valid_pkce_succeeds(oidc_op, client):
    """A valid S256 code_challenge/code_verifier pair never breaks the flow of a confidential client."""
    login = oidc_op.login(client, pkce=True)
    assert login.code_verifier and login.params["code_challenge_method"] == "S256"
    full_flow_checks(oidc_op, login)


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(oidc_op, client):
    """No nonce in a code-flow request: a code is still issued, and the ID token has no nonce."""
    login = oidc_op.login(client, nonce=None)
    assert "nonce" not in login.params
    assert "nonce" not in login.claims, login.claims  # verify_id_token(nonce=ABSENT) checked it too
    full_flow_checks(oidc_op, login)


def test_oidcc_idtoken_signature(oidc_op, client):
    """The ID token is signed with the default algorithm (RS256) by a key of the JWKS, found by kid."""
    login = oidc_op.login(client)
    jwks = oidc_op.jwks()
    header, claims, jwk = oidc_op.verify_jws(login.token["id_token"], jwks)
    assert header["alg"] == "RS256" and jwk["kty"] == "RSA", (header, jwk)
    assert claims["sub"] == ALICE_SUB
    # The check is real: a token whose payload was altered, or whose signature belongs to
    # another token, does not verify.
    head, payload, signature = login.token["id_token"].split(".")
    forged_payload = oidc_op.jwt_unverified(login.token["id_token"])[1] | {"sub": "userid:2002"}
    forged = base64.urlsafe_b64encode(json.dumps(forged_payload).encode()).rstrip(b"=").decode()
    with pytest.raises(AssertionError, match="does not verify"):
        oidc_op.verify_jws(f"{head}.{forged}.{signature}", jwks)
    other = oidc_op.login(client).token["id_token"].split(".")[2]
    with pytest.raises(AssertionError, match="does not verify"):
        oidc_op.verify_jws(f"{head}.{payload}.{other}", jwks)


def _userinfo_module(op, client, style):
    login = op.login(client, scope="openid email profile")
    info = op.check_userinfo(op.userinfo(login.token["access_token"], style), login.claims["sub"])
    op.check_standard_claims(info)
    assert info.get("email") == "alice@example.com", info
    # A bearer token that was never issued is refused the same way.
    refused = op.userinfo("not-an-issued-token-" + "x" * 20, style)
    assert refused.status_code == 401, f"{style} with a bogus token -> {refused.status_code}: {refused.text[:300]}"
    assert refused.headers.get("WWW-Authenticate", "").lower().startswith("bearer"), refused.headers


def test_oidcc_userinfo_get(oidc_op, client):
    """Userinfo with the access token in the Authorization header of a GET."""
    _userinfo_module(oidc_op, client, "get")


def test_oidcc_userinfo_post_header(oidc_op, client):
    """Userinfo with the access token in the Authorization header of a POST."""
    _userinfo_module(oidc_op, client, "post-header")


def test_oidcc_userinfo_post_body(oidc_op, client):
    """Userinfo with the access token as the access_token form parameter of a POST (RFC 6750 2.2)."""
    _userinfo_module(oidc_op, client, "post-body")


def scope_login(op, client, scope):
    login = op.login(client, scope=scope)
    info = op.check_userinfo(op.userinfo(login.token["access_token"]), login.claims["sub"])
    op.check_standard_claims(info)
    op.check_standard_claims(login.claims)
    return login, info


def assert_no_claims_of(op, scope, *documents):
    for document in documents:
        present = [name for name in op.scope_claims[scope] if name in document]
        assert not present, f"{scope} claims {present} returned although tsidp has no such data: {document}"


def test_oidcc_scope_profile(oidc_op, client):
    """scope=openid profile: the profile claims tsidp has (name, preferred_username) are returned."""
    login, info = scope_login(oidc_op, client, "openid profile")
    assert set(login.token["scope"].split()) == {"openid", "profile"}, login.token
    assert info.get("name") == "Alice Example", info
    assert isinstance(info.get("preferred_username"), str) and info["preferred_username"], info
    assert login.claims.get("name") == "Alice Example", login.claims


def test_oidcc_scope_email(oidc_op, client):
    """scope=openid email: the email claim is returned."""
    login, info = scope_login(oidc_op, client, "openid email")
    assert set(login.token["scope"].split()) == {"openid", "email"}, login.token
    assert info.get("email") == "alice@example.com", info
    assert login.claims.get("email") == "alice@example.com", login.claims


def test_oidcc_scope_address(oidc_op, client):
    """scope=openid address: tsidp has no address data; the request still succeeds (the unknown
    scope is ignored, not granted) and no address claim appears."""
    login, info = scope_login(oidc_op, client, "openid address")
    assert login.token["scope"].split() == ["openid"], login.token
    assert_no_claims_of(oidc_op, "address", info, login.claims)


def test_oidcc_scope_phone(oidc_op, client):
    """scope=openid phone: as for address, success without phone claims."""
    login, info = scope_login(oidc_op, client, "openid phone")
    assert login.token["scope"].split() == ["openid"], login.token
    assert_no_claims_of(oidc_op, "phone", info, login.claims)


def test_oidcc_scope_all(oidc_op, client):
    """scope=openid profile email address phone: profile and email claims, nothing invented."""
    login, info = scope_login(oidc_op, client, "openid profile email address phone")
    assert set(login.token["scope"].split()) == {"openid", "profile", "email"}, login.token
    assert info.get("name") == "Alice Example" and info.get("email") == "alice@example.com", info
    assert_no_claims_of(oidc_op, "address", info, login.claims)
    assert_no_claims_of(oidc_op, "phone", info, login.claims)


def test_oidcc_claims_essential(oidc_op, client):
    """A claims request for an essential name must not make the request fail; name is in userinfo."""
    claims_request = json.dumps({"userinfo": {"name": {"essential": True}}})
    login = oidc_op.login(client, claims=claims_request)
    info = full_flow_checks(oidc_op, login)
    assert info.get("name") == "Alice Example", info


def test_oidcc_claims_locales(oidc_op, client):
    """claims_locales is accepted without error."""
    full_flow_checks(oidc_op, oidc_op.login(client, claims_locales="se"))


def test_oidcc_ui_locales(oidc_op, client):
    """ui_locales is accepted without error."""
    full_flow_checks(oidc_op, oidc_op.login(client, ui_locales="se"))


def test_oidcc_login_hint(oidc_op, client):
    """login_hint is accepted; the user is still the one the device belongs to."""
    full_flow_checks(oidc_op, oidc_op.login(client, login_hint="alice@example.com"))


def test_oidcc_display_page(oidc_op, client):
    """display=page must not cause an error."""
    full_flow_checks(oidc_op, oidc_op.login(client, display="page"))


def test_oidcc_display_popup(oidc_op, client):
    """display=popup must not cause an error."""
    full_flow_checks(oidc_op, oidc_op.login(client, display="popup"))


def test_oidcc_ensure_request_with_acr_values_succeeds(oidc_op, client):
    """acr_values is accepted; an acr claim, if returned, is a string (the suite only warns if absent)."""
    login = oidc_op.login(client, acr_values="1 2")
    full_flow_checks(oidc_op, login)
    if "acr" in login.claims:
        assert isinstance(login.claims["acr"], str) and login.claims["acr"], login.claims


def test_oidcc_claims_id_token_and_userinfo(oidc_op, client):
    """The claims parameter (OIDC Core 5.5) releases a claim where it is asked for, without its scope:
    email in the ID token only, name in userinfo only."""
    claims_request = json.dumps({"id_token": {"email": {"essential": True}}, "userinfo": {"name": None}})
    login = oidc_op.login(client, scope="openid", claims=claims_request)
    assert login.claims.get("email") == "alice@example.com", login.claims
    assert "name" not in login.claims, login.claims
    info = full_flow_checks(oidc_op, login)
    assert info.get("name") == "Alice Example" and "email" not in info, info
    assert oidc_op.metadata.get("claims_parameter_supported") is True


def test_claims_parameter_malformed(oidc_op, client):
    """A claims value that is not a JSON object of the 5.5 shape: invalid_request at the redirect URI."""
    for value in ("[]", "not json", json.dumps({"userinfo": {"name": 1}})):
        params = oidc_op.authorization_params(client, claims=value)
        oidc_op.expect_error(oidc_op.authorize(params), client.redirect_uri, "invalid_request", params["state"])


def test_userinfo_limited_to_scopes(oidc_op, client):
    """openid alone: userinfo answers sub only; the email scope adds email and email_verified."""
    login = oidc_op.login(client, scope="openid")
    info = oidc_op.check_userinfo(oidc_op.userinfo(login.token["access_token"]), login.claims["sub"])
    assert set(info) == {"sub"}, info
    assert login.claims.get("amr") == ["tailscale"], login.claims
    login = oidc_op.login(client, scope="openid email")
    info = oidc_op.check_userinfo(oidc_op.userinfo(login.token["access_token"]), login.claims["sub"])
    assert info.get("email_verified") is True and "name" not in info, info

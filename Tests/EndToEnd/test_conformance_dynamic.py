"""OpenID Foundation "Dynamic OP" modules that apply to tsidp (a code-flow provider with RFC 7591
registration): registered signing algorithm, redirect URI rules, registration of a fragment,
and OP key rotation.  Clients here are registered with ``POST /register``, as the Dynamic OP
plan does; alice (127.0.0.1) holds the allow_dcr grant.
"""

from __future__ import annotations

import pytest

ALICE_SUB = "userid:2001"


def test_oidcc_idtoken_rs256(oidc_op):
    """A client registered with id_token_signed_response_alg=RS256 gets RS256 ID tokens."""
    client = oidc_op.dynamic_client("conformance-rs256", id_token_signed_response_alg="RS256")
    assert client.registration.get("id_token_signed_response_alg") == "RS256", client.registration
    login = oidc_op.login(client)
    header, claims, jwk = oidc_op.verify_jws(login.token["id_token"], oidc_op.jwks())
    assert header["alg"] == "RS256" and jwk["kty"] == "RSA", (header, jwk)
    assert claims["sub"] == ALICE_SUB


def test_oidcc_ensure_redirect_uri_in_authorization_request(oidc_op):
    """A client with two registered redirect URIs omits redirect_uri: error page, no redirect."""
    uris = [oidc_op.new_redirect_uri("first"), oidc_op.new_redirect_uri("second")]
    client = oidc_op.dynamic_client("conformance-two-uris", redirect_uris=uris)
    params = oidc_op.authorization_params(client, redirect_uri=None)
    oidc_op.expect_error_page(oidc_op.authorize(params))
    # Each of the two works when named.
    for uri in uris:
        login = oidc_op.login(client, redirect_uri=uri)
        assert login.claims["sub"] == ALICE_SUB


def test_oidcc_redirect_uri_query_OK(oidc_op):
    """A redirect URI registered with a query component, used exactly: success, and the
    registered query is kept next to code, state and iss."""
    uri = oidc_op.new_redirect_uri() + "?foo=bar"
    client = oidc_op.dynamic_client("conformance-query-ok", redirect_uris=[uri])
    params = oidc_op.authorization_params(client)
    answer = oidc_op.authorize(params)
    callback = oidc_op.expect_code(answer, uri, params["state"])  # checks foo=bar is still there
    assert {"code", "state", "iss"} <= set(callback), callback
    token = oidc_op.check_token_response(oidc_op.redeem(client, callback["code"], uri))
    oidc_op.verify_id_token(token["id_token"], client, nonce=params["nonce"], access_token=token["access_token"])


def test_oidcc_redirect_uri_query_mismatch(oidc_op):
    """Registered with ?foo=bar, requested with ?foo=zot: error page, no redirect."""
    base = oidc_op.new_redirect_uri()
    client = oidc_op.dynamic_client("conformance-query-mismatch", redirect_uris=[base + "?foo=bar"])
    params = oidc_op.authorization_params(client, redirect_uri=base + "?foo=zot")
    oidc_op.expect_error_page(oidc_op.authorize(params))


def test_oidcc_redirect_uri_query_added(oidc_op):
    """Registered without a query, requested with ?foo=bar added: error page, no redirect."""
    base = oidc_op.new_redirect_uri()
    client = oidc_op.dynamic_client("conformance-query-added", redirect_uris=[base])
    params = oidc_op.authorization_params(client, redirect_uri=base + "?foo=bar")
    oidc_op.expect_error_page(oidc_op.authorize(params))


def test_oidcc_redirect_uri_regfrag(oidc_op):
    """Registering a redirect URI with a fragment fails at registration (RFC 7591 3.2.2:
    invalid_redirect_uri or invalid_client_metadata), and no client is created."""
    uri = oidc_op.new_redirect_uri() + "#fragment"
    response = oidc_op.register({"client_name": "conformance-regfrag", "redirect_uris": [uri]})
    assert response.status_code == 400, f"{response.status_code}: {response.text[:500]}"
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = response.json()
    assert body.get("error") in ("invalid_redirect_uri", "invalid_client_metadata"), body
    assert "client_id" not in body, body
    # The admin form refuses it too.
    refused = oidc_op.admin_post("/clients/new", {"name": "conformance-regfrag", "redirect_uri": uri})
    assert refused.status_code == 400, f"{refused.status_code}: {refused.text[:500]}"
    listing = oidc_op.get(oidc_op.url("/clients"), headers={"Accept": "application/json"})
    assert listing.status_code == 200, listing.text[:500]
    assert not [c for c in listing.json() if uri in c.get("redirect_uris", [])], "a client with the fragment URI exists"


@pytest.fixture(scope="module")
def rotating_op(oidc_op_factory):
    """A tsidp of its own, so rotating its keys does not touch the other tests' provider."""
    return oidc_op_factory()


def test_oidcc_server_rotate_keys(rotating_op):
    """After an OP key rotation (POST /keys/rotate, the admin's trigger) the JWKS has a new
    signing key, with a kid no old key used, and still lists every old key; ID tokens are
    then signed with a key relying parties already knew before the rotation."""
    op = rotating_op
    client = op.static_client("conformance-rotate")
    before = op.jwks()
    op.check_jwks_document(before)
    old_login = op.login(client)
    old_kid = old_login.header["kid"]

    rotated = op.admin_post("/keys/rotate")
    assert rotated.status_code == 200, f"POST /keys/rotate -> {rotated.status_code}: {rotated.text[:500]}"
    after = op.jwks()
    op.check_jwks_document(after)
    assert rotated.json() == after, "the JWKS /keys/rotate returned differs from the published one"

    def public(key):
        return {name: key[name] for name in ("kid", "kty", "n", "e", "crv", "x", "y") if name in key}

    old_keys = {key["kid"]: public(key) for key in before["keys"]}
    new_keys = {key["kid"]: public(key) for key in after["keys"]}
    # VerifyNewJwksHasNewSigningKey
    added = [kid for kid, key in new_keys.items() if key not in old_keys.values()]
    assert added, f"no new signing key after rotation: {sorted(new_keys)}"
    assert not set(added) & set(old_keys), "a new key reuses the kid of an old key"
    # VerifyNewJwksStillHasOldSigningKey
    missing = [kid for kid, key in old_keys.items() if new_keys.get(kid) != key]
    assert not missing, f"old keys dropped or changed by the rotation: {missing}"

    new_login = op.login(client)
    new_kid = new_login.header["kid"]
    assert new_kid != old_kid, "ID tokens are still signed with the pre-rotation key"
    assert new_kid in old_keys, "the new signing key was not published before it started signing"
    op.verify_id_token(old_login.token["id_token"], client, nonce=old_login.params["nonce"], jwks=after)
    op.verify_id_token(new_login.token["id_token"], client, nonce=new_login.params["nonce"], jwks=after)

"""The Python ``authlib`` OAuth 2.0 / OpenID Connect client against the real tsidp.

authlib does the client side: discovery, the authorization URL with PKCE S256,
the token request (client_secret_basic, client_secret_post, or a public client
with no secret), ID token verification against tsidp's JWKS (authlib.jose +
authlib.oidc.core.CodeIDToken, which checks iss, aud, exp, iat, nonce and
at_hash), userinfo, and refresh-token rotation.  The "browser" is a plain
requests session bound to a loopback source address (127.0.0.1 = alice,
127.0.0.2 = bob) that GETs the authorization URL without following the
redirect, so the test can inspect the authorization response.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import warnings
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

INSTALL_HINT = "install the peers: python3 -m venv .venv-peers && .venv-peers/bin/pip install -r Tests/EndToEnd/requirements.txt"


@pytest.fixture(scope="module")
def authlib(peer_import):
    requests_client = peer_import("authlib.integrations.requests_client", INSTALL_HINT)
    with warnings.catch_warnings():
        # authlib 1.x announces that authlib.jose moves to joserfc in 2.0 (and
        # forces that warning to "always" when authlib.deprecate is imported,
        # so the ignore filter goes in after that import).  It is still
        # authlib's own JOSE API, which is what this suite exercises.
        peer_import("authlib.deprecate", INSTALL_HINT)
        warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
        jose = peer_import("authlib.jose", INSTALL_HINT)
        oidc_core = peer_import("authlib.oidc.core", INSTALL_HINT)
    common_security = peer_import("authlib.common.security", INSTALL_HINT)
    return SimpleNamespace(
        OAuth2Session=requests_client.OAuth2Session,
        OAuthError=requests_client.OAuthError,
        JsonWebKey=jose.JsonWebKey,
        JsonWebToken=jose.JsonWebToken,
        CodeIDToken=oidc_core.CodeIDToken,
        generate_token=common_security.generate_token,
    )


@pytest.fixture(scope="module")
def tsidp(tsidp_two_users):
    return tsidp_two_users


@pytest.fixture(scope="module")
def discovery(tsidp, authlib):
    """OpenID Provider metadata, fetched by an authlib session."""
    with authlib.OAuth2Session(client_id="discovery-only", default_timeout=15) as session:
        response = session.get(tsidp.url("/.well-known/openid-configuration"), withhold_token=True)
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["issuer"] == tsidp.issuer
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert metadata[key].startswith(tsidp.issuer + "/"), (key, metadata[key])
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(metadata["token_endpoint_auth_methods_supported"])
    return metadata


@pytest.fixture(scope="module")
def jwks(discovery, authlib):
    with authlib.OAuth2Session(client_id="jwks-only", default_timeout=15) as session:
        response = session.get(discovery["jwks_uri"], withhold_token=True)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document.get("keys"), document
    return document


def callback_uri(unused_port) -> str:
    # Never served: the browser stops at the redirect and hands the code over.
    return f"http://127.0.0.1:{unused_port()}/callback"


@dataclasses.dataclass
class Login:
    client: object
    token: dict
    claims: dict
    nonce: str


def new_session(authlib, client_id, client_secret, redirect_uri, auth_method):
    return authlib.OAuth2Session(
        client_id=client_id,
        client_secret=client_secret,
        scope="openid email profile",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        default_timeout=15,
    )


def authorize_in_browser(authlib, tsidp, discovery, client, browser, **extra):
    """Build the authorization URL with authlib and let the browser follow it one hop.

    Returns (authorization response query, code_verifier, state, nonce).
    """
    code_verifier = authlib.generate_token(64)
    state = authlib.generate_token(24)
    nonce = authlib.generate_token(24)
    url, returned_state = client.create_authorization_url(
        discovery["authorization_endpoint"], state=state, code_verifier=code_verifier, nonce=nonce, **extra
    )
    assert returned_state == state
    sent = parse_qs(urlsplit(url).query)
    assert sent["code_challenge_method"] == ["S256"] and sent["code_challenge"][0], url

    response = browser.answer_consent(browser.get(url, allow_redirects=False))
    assert response.status_code in (302, 303), f"GET {url} -> {response.status_code}: {response.text[:2000]}"
    location = response.headers["Location"]
    assert location.split("?", 1)[0] == client.redirect_uri, location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert "error" not in query, f"authorization error: {query}"
    assert query.get("state") == state, f"state mismatch in {location}"
    assert query.get("iss") == tsidp.issuer, f"iss (RFC 9207) mismatch in {location}"
    assert query.get("code"), location
    return query, code_verifier, state, nonce


def verify_id_token(authlib, discovery, jwks, token, client_id, nonce):
    """Verify signature (RS256, JWKS) and the OIDC claims of a code-flow ID token."""
    id_token = token["id_token"]
    key_set = authlib.JsonWebKey.import_key_set(jwks)
    claims = authlib.JsonWebToken(["RS256"]).decode(
        id_token,
        key_set,
        claims_cls=authlib.CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": discovery["issuer"]},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate(now=int(time.time()), leeway=30)
    assert claims.header["alg"] == "RS256"
    kids = {key.get("kid") for key in jwks["keys"]}
    assert claims.header.get("kid") in kids, (claims.header, kids)
    assert "at_hash" in claims, "ID token issued with an access token should carry at_hash"
    assert isinstance(claims.get("auth_time"), int), claims
    assert claims["auth_time"] <= int(time.time()) + 30
    return claims


def login(authlib, tsidp, discovery, jwks, make_browser, client, source_ip) -> Login:
    browser = make_browser(source_ip)
    query, code_verifier, _, nonce = authorize_in_browser(authlib, tsidp, discovery, client, browser)
    token = client.fetch_token(discovery["token_endpoint"], code=query["code"], code_verifier=code_verifier)
    assert token.get("token_type", "").lower() == "bearer", token
    assert token.get("access_token") and token.get("id_token"), token
    claims = verify_id_token(authlib, discovery, jwks, token, client.client_id, nonce)
    return Login(client=client, token=token, claims=dict(claims), nonce=nonce)


def userinfo(client, discovery) -> dict:
    response = client.get(discovery["userinfo_endpoint"])  # bearer: the session's current token
    assert response.status_code == 200, f"userinfo -> {response.status_code}: {response.text}"
    return response.json()


# ---------------------------------------------------------------------------


def test_client_secret_basic_full_flow(authlib, tsidp, discovery, jwks, make_browser, unused_port, people):
    registered = tsidp.register_admin_client("authlib-basic", [callback_uri(unused_port)])
    redirect_uri = registered["redirect_uris"][0]
    client = new_session(authlib, registered["client_id"], registered["client_secret"], redirect_uri, "client_secret_basic")

    alice = login(authlib, tsidp, discovery, jwks, make_browser, client, "127.0.0.1")
    assert alice.claims["sub"] == f"userid:{people['alice']['user_id']}"
    assert alice.claims["email"] == "alice@example.com"
    assert alice.claims.get("name") == people["alice"]["display"]
    assert alice.claims.get("preferred_username"), alice.claims

    info = userinfo(client, discovery)
    assert info["sub"] == alice.claims["sub"], info
    assert info["email"] == "alice@example.com", info

    # Refresh: a new refresh token comes back, the old one is dead.
    old_refresh = alice.token.get("refresh_token")
    assert old_refresh, f"no refresh_token in token response: {sorted(alice.token)}"
    refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=old_refresh)
    assert refreshed.get("access_token") and refreshed["access_token"] != alice.token["access_token"], refreshed
    assert refreshed.get("refresh_token"), refreshed
    assert refreshed["refresh_token"] != old_refresh, "refresh token was not rotated"
    info = userinfo(client, discovery)  # with the refreshed access token
    assert info["sub"] == alice.claims["sub"], info
    if refreshed.get("id_token"):  # OIDC Core 12.2: same iss/sub/aud as the original
        key_set = authlib.JsonWebKey.import_key_set(jwks)
        again = authlib.JsonWebToken(["RS256"]).decode(refreshed["id_token"], key_set)
        again.validate(now=int(time.time()), leeway=30)
        assert again["iss"] == alice.claims["iss"] and again["sub"] == alice.claims["sub"], dict(again)
        assert again["aud"] in (client.client_id, [client.client_id]), dict(again)

    with pytest.raises(authlib.OAuthError) as rejected:
        client.refresh_token(discovery["token_endpoint"], refresh_token=old_refresh)
    assert rejected.value.error == "invalid_grant", f"reused refresh token: {rejected.value!r}"

    # Bob, from 127.0.0.2, with the same client: a different subject.
    bob_client = new_session(authlib, registered["client_id"], registered["client_secret"], redirect_uri, "client_secret_basic")
    bob = login(authlib, tsidp, discovery, jwks, make_browser, bob_client, "127.0.0.2")
    assert bob.claims["sub"] == f"userid:{people['bob']['user_id']}"
    assert bob.claims["sub"] != alice.claims["sub"]
    assert bob.claims["email"] == "bob@example.com"
    bob_info = userinfo(bob_client, discovery)
    assert bob_info["sub"] == bob.claims["sub"] and bob_info["email"] == "bob@example.com", bob_info


def test_client_secret_post(authlib, tsidp, discovery, jwks, make_browser, unused_port):
    redirect_uri = callback_uri(unused_port)
    registered = tsidp.register_dynamic_client(
        {
            "redirect_uris": [redirect_uri],
            "client_name": "authlib-post",
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
    )
    assert registered.get("client_secret"), registered
    assert registered.get("token_endpoint_auth_method") == "client_secret_post", registered
    client = new_session(authlib, registered["client_id"], registered["client_secret"], redirect_uri, "client_secret_post")

    alice = login(authlib, tsidp, discovery, jwks, make_browser, client, "127.0.0.1")
    assert alice.claims["sub"] == "userid:2001"
    assert alice.claims["email"] == "alice@example.com"
    info = userinfo(client, discovery)
    assert info["sub"] == alice.claims["sub"] and info["email"] == "alice@example.com", info

    refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=alice.token["refresh_token"])
    assert refreshed["refresh_token"] != alice.token["refresh_token"]


def test_public_client_with_pkce(authlib, tsidp, discovery, jwks, make_browser, unused_port):
    redirect_uri = callback_uri(unused_port)
    registered = tsidp.register_dynamic_client(
        {
            "redirect_uris": [redirect_uri],
            "client_name": "authlib-public",
            "token_endpoint_auth_method": "none",
        }
    )
    assert registered.get("token_endpoint_auth_method") == "none", registered
    assert not registered.get("client_secret"), f"a public client must not get a secret: {registered}"
    client = new_session(authlib, registered["client_id"], None, redirect_uri, "none")

    bob = login(authlib, tsidp, discovery, jwks, make_browser, client, "127.0.0.2")
    assert bob.claims["sub"] == "userid:2002"
    assert bob.claims["email"] == "bob@example.com"
    info = userinfo(client, discovery)
    assert info["sub"] == bob.claims["sub"] and info["email"] == "bob@example.com", info

    old_refresh = bob.token.get("refresh_token")
    if old_refresh:  # public clients may get refresh tokens; if so they must rotate too
        refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=old_refresh)
        assert refreshed["refresh_token"] != old_refresh

    # PKCE is mandatory for a public client: an authorization request without
    # a code_challenge is refused with an error sent back to the redirect URI.
    browser = make_browser("127.0.0.2")
    state = secrets.token_urlsafe(16)
    no_pkce = browser.get(
        discovery["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": registered["client_id"],
            "redirect_uri": redirect_uri,
            "scope": "openid email",
            "state": state,
            "nonce": secrets.token_urlsafe(16),
        },
        allow_redirects=False,
    )
    assert no_pkce.status_code in (302, 303), f"{no_pkce.status_code}: {no_pkce.text[:1000]}"
    location = no_pkce.headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.split("?", 1)[0] == redirect_uri, location
    assert query.get("error") == "invalid_request", location
    assert query.get("state") == state and "code" not in query, location

    # ...and a code obtained with a challenge cannot be redeemed without the verifier.
    fresh = new_session(authlib, registered["client_id"], None, redirect_uri, "none")
    query, _verifier, _, _ = authorize_in_browser(authlib, tsidp, discovery, fresh, make_browser("127.0.0.2"))
    with pytest.raises(authlib.OAuthError) as rejected:
        fresh.fetch_token(discovery["token_endpoint"], code=query["code"])
    assert rejected.value.error in ("invalid_grant", "invalid_request"), repr(rejected.value)

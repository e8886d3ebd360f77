"""OpenID Foundation Dynamic OP modules about client authentication with JWTs (RFC 7523:
``private_key_jwt``, ``client_secret_jwt``), client key sets (``jwks``, ``jwks_uri``), pairwise
subjects (``sector_identifier_uri``), and the provider-surface rules that go with them: registered
``grant_types`` and ``acr``.  Clients are registered with ``POST /register`` from alice's device
(127.0.0.1, which holds the allow_dcr grant); their key sets and sector documents are served by a
small HTTP server on loopback, which tsidp fetches.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from conftest import OIDCClient, browser_session, import_peer, wait_until

ALICE_SUB = "userid:2001"


class DocumentServer:
    """Serves JSON documents on 127.0.0.1 (a client's jwks_uri, a sector_identifier_uri) and
    counts the requests for each path."""

    def __init__(self):
        self.documents: dict = {}
        self.requests: dict = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests[self.path] = owner.requests.get(self.path, 0) + 1
                if self.path not in owner.documents:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(owner.documents[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def documents():
    server = DocumentServer()
    yield server
    server.close()


def new_key(kid: str, kty: str = "RSA"):
    jose = import_peer("authlib.jose", "pip install authlib")
    if kty == "RSA":
        key = jose.JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": kid})
    else:
        key = jose.JsonWebKey.generate_key("EC", "P-256", is_private=True, options={"kid": kid})
    return key


def public_jwks(*keys) -> dict:
    return {"keys": [key.as_dict(is_private=False) for key in keys]}


def key_client(oidc_op, name: str, key, **metadata) -> OIDCClient:
    client = oidc_op.dynamic_client(name, auth_method="private_key_jwt", **metadata)
    assert "client_secret" not in client.registration, client.registration
    client.assertion_key = key
    return client


def test_oidcc_server_private_key_jwt(oidc_op):
    """oidcc-server with private_key_jwt: a client registered with its public key in jwks signs
    in; the assertion is refused once used, and a token request without it fails."""
    key = new_key("rp-key-1")
    client = key_client(oidc_op, "conformance-private-key-jwt", key, jwks=public_jwks(key))
    assert client.registration.get("jwks") == public_jwks(key), client.registration
    login = oidc_op.login(client)
    assert login.claims["sub"] == ALICE_SUB
    metadata = oidc_op.metadata
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"], metadata
    assert "RS256" in metadata["token_endpoint_auth_signing_alg_values_supported"], metadata
    # The same assertion twice: the second use is a replay.
    assertion = client.assertion(metadata["token_endpoint"])
    form = {"grant_type": "refresh_token", "refresh_token": login.token["refresh_token"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    session = browser_session()
    first = session.post(metadata["token_endpoint"], data=form)
    assert first.status_code == 200, first.text[:500]
    form["refresh_token"] = first.json()["refresh_token"]
    replay = session.post(metadata["token_endpoint"], data=form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client", replay.text[:500]
    assert assertion not in replay.text
    # Basic with a made-up secret is not this client's method.
    basic = OIDCClient(client.client_id, "guess", client.redirect_uris, "client_secret_basic", {})
    refused = oidc_op.refresh(basic, form["refresh_token"])
    assert refused.status_code == 401, refused.text[:500]


def test_oidcc_ensure_client_assertion_with_iss_aud_succeeds(oidc_op):
    """An assertion whose aud is the issuer (not the token endpoint) is accepted."""
    key = new_key("rp-key-aud", kty="EC")
    client = key_client(oidc_op, "conformance-assertion-aud", key, jwks=public_jwks(key))
    params = oidc_op.authorization_params(client)
    callback = oidc_op.expect_code(oidc_op.authorize(params), client.redirect_uri, params["state"])
    session = browser_session()
    answer = session.post(oidc_op.metadata["token_endpoint"], data={
        "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": client.redirect_uri,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client.assertion(oidc_op.issuer)})
    token = oidc_op.check_token_response(answer)
    oidc_op.verify_id_token(token["id_token"], client, nonce=params["nonce"], access_token=token["access_token"])


def test_oidcc_registration_jwks_uri(oidc_op, documents):
    """A client registered with jwks_uri signs in; tsidp fetched the key set from it."""
    key = new_key("rp-key-uri")
    documents.documents["/jwks.json"] = public_jwks(key)
    client = key_client(oidc_op, "conformance-jwks-uri", key, jwks_uri=documents.url("/jwks.json"))
    assert client.registration.get("jwks_uri") == documents.url("/jwks.json"), client.registration
    login = oidc_op.login(client)
    assert login.claims["sub"] == ALICE_SUB
    assert documents.requests.get("/jwks.json", 0) >= 1


def test_oidcc_refresh_token_rp_key_rotation(oidc_op, documents):
    """The client rotates its key (publishes a new kid at jwks_uri and signs with it): refreshes
    go on working. tsidp fetches the set again when it sees a kid it does not know, at most
    every ten seconds, so the refresh is retried for a bounded time (the suite waits 60 s)."""
    old = new_key("rp-key-old")
    documents.documents["/jwks.json"] = public_jwks(old)
    client = key_client(oidc_op, "conformance-key-rotation", old, jwks_uri=documents.url("/jwks.json"))
    login = oidc_op.login(client, scope="openid offline_access")
    refresh_token = login.token["refresh_token"]
    new = new_key("rp-key-new")
    documents.documents["/jwks.json"] = public_jwks(old, new)
    client.assertion_key = new
    answers = []

    def refreshed() -> bool:
        answer = oidc_op.refresh(client, refresh_token)
        answers.append(answer)
        return answer.status_code == 200

    assert wait_until(refreshed, timeout=30, interval=1.0), answers[-1].text[:500]
    assert all(a.status_code == 401 for a in answers[:-1]), [a.status_code for a in answers]
    token = oidc_op.check_token_response(answers[-1])
    oidc_op.verify_id_token(token["id_token"], client, nonce=None, access_token=token["access_token"])


def test_client_secret_jwt(oidc_op):
    """client_secret_jwt: the assertion is an HS256 MAC under the secret tsidp issued."""
    client = oidc_op.dynamic_client("conformance-client-secret-jwt", auth_method="client_secret_jwt")
    assert client.client_secret, client.registration
    login = oidc_op.login(client)
    assert login.claims["sub"] == ALICE_SUB
    forged = OIDCClient(client.client_id, "not-the-secret", client.redirect_uris, "client_secret_jwt", {})
    refused = oidc_op.refresh(forged, login.token["refresh_token"])
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text[:500]


def test_private_key_jwt_registration_refusals(oidc_op):
    """private_key_jwt without keys, with a private key in jwks, or with both jwks and jwks_uri is
    invalid_client_metadata, and no client is created."""
    key = new_key("rp-key-bad")
    private = {"keys": [key.as_dict(is_private=True)]}
    for extra in ({}, {"jwks": private}, {"jwks": public_jwks(key), "jwks_uri": "https://app.example.com/jwks"},
                  {"jwks": {"keys": "nope"}}):
        response = oidc_op.register({"client_name": "bad", "redirect_uris": [oidc_op.new_redirect_uri()],
                                     "token_endpoint_auth_method": "private_key_jwt", **extra})
        assert response.status_code == 400, f"{extra}: {response.status_code} {response.text[:300]}"
        assert response.json()["error"] == "invalid_client_metadata", response.text[:300]


def test_oidcc_registration_sector_uri(oidc_op, documents):
    """A pairwise client with redirect URIs on two hosts registers a sector_identifier_uri listing
    them; its users get a pairwise sub (the same in the ID token and at userinfo), shared by
    another client of the same sector, and unlike the public userid:2001."""
    uris = ["https://app-one.example.com/cb", "https://app-two.example.com/cb"]
    documents.documents["/sector.json"] = uris
    first = oidc_op.dynamic_client("conformance-sector", redirect_uris=uris, subject_type="pairwise",
                                   sector_identifier_uri=documents.url("/sector.json"))
    assert first.registration.get("subject_type") == "pairwise", first.registration
    assert first.registration.get("sector_identifier_uri") == documents.url("/sector.json")
    assert "pairwise" in oidc_op.metadata["subject_types_supported"]
    login = oidc_op.login(first)
    sub = login.claims["sub"]
    assert sub != ALICE_SUB and "2001" not in sub, sub
    info = oidc_op.userinfo(login.token["access_token"])
    assert info.status_code == 200 and info.json()["sub"] == sub, info.text[:300]
    second = oidc_op.dynamic_client("conformance-sector-2", redirect_uris=uris[1:], subject_type="pairwise",
                                    sector_identifier_uri=documents.url("/sector.json"))
    assert oidc_op.login(second).claims["sub"] == sub
    # The sector is the sector document's host (127.0.0.1 here); a client on another host is
    # another sector.
    elsewhere = oidc_op.dynamic_client("conformance-sector-3", redirect_uris=["https://wiki.example.com/cb"],
                                       subject_type="pairwise")
    assert oidc_op.login(elsewhere).claims["sub"] not in (sub, ALICE_SUB)


def test_oidcc_registration_sector_bad(oidc_op, documents):
    """A sector document that does not list every redirect URI, or that cannot be fetched, or
    several hosts without one: invalid_client_metadata."""
    uris = ["https://app-one.example.com/cb", "https://app-two.example.com/cb"]
    documents.documents["/short.json"] = uris[:1]
    for extra in ({"sector_identifier_uri": documents.url("/short.json")},
                  {"sector_identifier_uri": documents.url("/missing.json")}, {}):
        response = oidc_op.register({"client_name": "bad-sector", "redirect_uris": uris,
                                     "subject_type": "pairwise", **extra})
        assert response.status_code == 400, f"{extra}: {response.status_code} {response.text[:300]}"
        assert response.json()["error"] == "invalid_client_metadata", response.text[:300]


def test_registered_grant_types_are_enforced(oidc_op):
    """A client registered for authorization_code only gets no refresh token, and a refresh is
    unauthorized_client."""
    client = oidc_op.dynamic_client("conformance-code-only", grant_types=["authorization_code"])
    login = oidc_op.login(client)
    assert "refresh_token" not in login.token, login.token
    refused = oidc_op.refresh(client, "any-token")
    oidc_op.check_token_error(refused, "unauthorized_client")


def test_essential_acr_that_cannot_be_met(oidc_op):
    """acr: every ID token says tailnet-device; an essential acr request for another class is
    access_denied at the redirect URI."""
    client = oidc_op.static_client("conformance-acr")
    assert oidc_op.metadata.get("acr_values_supported") == ["tailnet-device"], oidc_op.metadata
    login = oidc_op.login(client, acr_values="tailnet-device")
    assert login.claims.get("acr") == "tailnet-device", login.claims
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:example:gold"]}}})
    params = oidc_op.authorization_params(client, claims=claims)
    oidc_op.expect_error(oidc_op.authorize(params), client.redirect_uri, "access_denied", params["state"])


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_idtoken_at_hash_follows_the_signing_algorithm(oidc_op, alg):
    """A client registered for EdDSA (or ES256) ID tokens: the signature verifies with Python's
    own implementation against the JWKS, and at_hash is the left half of SHA-512 (EdDSA with
    Ed25519) or SHA-256 (ES256) of the access token, computed here with hashlib."""
    client = oidc_op.dynamic_client(f"conformance-{alg.lower()}", id_token_signed_response_alg=alg)
    params = oidc_op.authorization_params(client)
    callback = oidc_op.expect_code(oidc_op.authorize(params), client.redirect_uri, params["state"])
    token = oidc_op.check_token_response(oidc_op.redeem(client, callback["code"]))
    header, claims = oidc_op.verify_id_token(
        token["id_token"], client, nonce=params["nonce"], access_token=token["access_token"], alg=alg)
    assert "at_hash" in claims, claims
    expected_length = 43 if alg == "EdDSA" else 22
    assert len(claims["at_hash"]) == expected_length, claims["at_hash"]

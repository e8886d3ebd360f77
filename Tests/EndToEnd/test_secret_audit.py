"""Secret audit: no secret a run produced or received ends up in tsidp's logs, or in clear in its state.

One tsidp is started as verbosely as it gets (``--log debug --debug-all-requests
--debug-tailscaled``), with token exchange (``--enable-sts``) and the operator listener
(``--local-port``). A relying party then uses every endpoint that handles a secret, over HTTP on
loopback:

- the clients API (``/clients/new`` on the operator listener) and RFC 7591 ``/register`` (a
  confidential client with JWT access tokens on the tailnet listener, a public client on the
  operator listener);
- logins: ``/authorize`` (GET, and POST with ``response_mode=form_post``; PKCE S256, ``state``,
  ``nonce``) and code redemption with ``client_secret_basic``, ``client_secret_post`` and as a
  public client; a silent re-authorization carrying ``id_token_hint``;
- userinfo (Bearer header, form body), two refreshes in a row (so rotated refresh tokens exist),
  refreshes refused for a wrong secret (Basic and form) and for malformed ``Authorization``
  headers;
- ``/introspect`` of access, refresh and exchanged tokens; RFC 8693 token exchange with an actor
  token; a code replay; a client secret regeneration; ``/keys/rotate``; ``/revoke`` of an access
  token and of a refresh token;
- secrets where they do not belong: an access token in the userinfo query string, JSON and
  multipart token requests, a ``Referer`` holding a callback URL with a code, a client secret in
  the query string of ``/token``;
- on every request, headers whose values are secrets: ``Cookie``, ``Proxy-Authorization``, and
  two headers tsidp has no use for, ``X-Api-Key`` and ``X-Auth-Token``.

Every secret is recorded with its kind and where the run got it. Once tsidp has stopped, each is
looked for in every line of its stdout and stderr, as sent and in the encodings a log could show it
in (percent-encoded, form-encoded, JSON-escaped), and in every file of the state directory, where
tokens and client secrets may appear only as SHA-256 digests. A failure names the kind of secret,
where it came from, the stream and line numbers, and shows the line with every known secret
replaced by its kind: never a secret itself.

``test_unknown_secret_headers_not_logged`` checks ``X-Api-Key`` and ``X-Auth-Token`` on their own:
``--debug-all-requests`` shows the values of an allowlist of headers only.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

import pytest

API_AUDIENCE = "https://api.example.com/"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SCOPE = "openid email profile offline_access"
MIN_SECRET_LENGTH = 16  # shorter values could match unrelated log text by chance
LOCAL_LISTENER_WAIT = 10.0  # seconds for the operator listener to answer once tsidp is ready

# Kinds checked by test_unknown_secret_headers_not_logged instead of test_no_secret_in_logs.
UNKNOWN_HEADER_KINDS = {"X-Api-Key header value", "X-Auth-Token header value"}
# Values that must stay out of the logs but that tsidp may keep: a nonce is rightly stored with
# the grant, for the ID tokens of later refreshes.
LOG_ONLY_KINDS = {"state", "nonce"}


def alice_identity() -> dict:
    """alice@example.com: admin and registration rights, and a grant for the exchange audience."""
    return {
        "Node": {
            "ID": 1001,
            "StableID": "n1001",
            "Name": "alice-laptop.example-tailnet.ts.net.",
            "User": 2001,
            "Key": "nodekey:" + f"{1001:064x}",
            "Addresses": ["100.64.0.1/32"],
        },
        "UserProfile": {"ID": 2001, "LoginName": "alice@example.com", "DisplayName": "Alice Example"},
        "CapMap": {
            "tailscale.com/cap/tsidp": [
                {"allow_admin_ui": True, "allow_dcr": True},
                {"users": ["alice@example.com"], "resources": [API_AUDIENCE]},
            ]
        },
    }


def check(condition: bool, message: str) -> None:
    """Fails with ``message`` only: plain ``assert`` would print the values it compared, and here
    those are tokens."""
    if not condition:
        pytest.fail(message)


# ---------------------------------------------------------------------------
# The secrets of a run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Secret:
    kind: str  # e.g. "refresh token"
    origin: str  # where the run got or sent it, e.g. "login 1, refresh 2"
    value: str

    def forms(self) -> dict:
        """The ways a log could write this value: {description: text}, without duplicates."""
        escaped = json.dumps(self.value)[1:-1]
        candidates = {
            "as is": self.value,
            "percent-encoded": quote(self.value, safe=""),
            "form-encoded": quote_plus(self.value, safe=""),
            "JSON-escaped": escaped,
            "JSON-escaped with \\/": escaped.replace("/", "\\/"),
        }
        forms: dict = {}
        for description, text in candidates.items():
            if text not in forms.values():
                forms[description] = text
        return forms


class SecretBook:
    """Every secret of the run, with its kind."""

    def __init__(self):
        self.entries: list[Secret] = []

    def add(self, kind: str, origin: str, value) -> str:
        check(isinstance(value, str) and value != "", f"{kind} ({origin}) missing from the answer")
        check(len(value) >= MIN_SECRET_LENGTH, f"{kind} ({origin}) is only {len(value)} characters long")
        if not any(entry.value == value for entry in self.entries):
            self.entries.append(Secret(kind, origin, value))
        return value

    def add_jwt(self, kind: str, origin: str, token) -> str:
        """A compact JWS: the whole token, and its signature on its own."""
        self.add(kind, origin, token)
        parts = token.split(".")
        check(len(parts) == 3, f"{kind} ({origin}) is not a compact JWS")
        self.add(f"{kind} signature", origin, parts[2])
        return token

    def add_basic(self, origin: str, client_id: str, secret: str) -> str:
        """An ``Authorization: Basic`` value (RFC 6749 2.3.1); records the pair and its base64."""
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        encoded = base64.b64encode(pair.encode()).decode()
        self.add("Basic credentials", origin, pair)
        self.add("Basic credentials (base64)", origin, encoded)
        return "Basic " + encoded

    def kinds(self) -> set:
        return {entry.kind for entry in self.entries}

    def find(self, kind: str, origin: str) -> Secret:
        return next(entry for entry in self.entries if entry.kind == kind and entry.origin == origin)

    def masker(self):
        """A function that replaces every known secret, in every form, by ``<its kind>``."""
        replacements = sorted(
            ((text, f"<{entry.kind}>") for entry in self.entries for text in entry.forms().values()),
            key=lambda item: -len(item[0]),
        )

        def mask(line: str) -> str:
            for text, label in replacements:
                line = line.replace(text, label)
            return line

        return mask


# ---------------------------------------------------------------------------
# A relying party (and its user's browser) talking to tsidp over HTTP
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe(response) -> str:
    """Status and OAuth error of an answer, for failure messages (never a token)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} ({len(response.content)} bytes, not JSON)"
    if isinstance(body, dict) and "error" in body:
        return f"{response.status_code} {body.get('error')}: {body.get('error_description', '')}"
    return f"{response.status_code} with members {sorted(body) if isinstance(body, dict) else type(body).__name__}"


def oauth_error(response) -> Optional[str]:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def jws_kid(token: str) -> Optional[str]:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid")


@dataclasses.dataclass
class Client:
    client_id: str
    secret: Optional[str]
    redirect_uri: str
    auth: str  # client_secret_basic | client_secret_post | none


class RelyingParty:
    def __init__(self, tsidp, local_port: int, make_browser, book: SecretBook, secret_headers: dict):
        self.tsidp = tsidp
        self.local = f"http://127.0.0.1:{local_port}"
        self.token_url = tsidp.url("/token")
        self.browser = make_browser("127.0.0.1")  # alice's device
        self.browser.headers.update(secret_headers)  # on every request, whatever the endpoint
        self.book = book

    # -- helpers ------------------------------------------------------------------

    def post(self, url: str, origin: str, client: Optional[Client] = None, auth: Optional[str] = None,
             data: Optional[dict] = None):
        """A form POST; ``client`` authenticates the way it registered, or as ``auth`` says."""
        form = dict(data or {})
        headers = {"Accept": "application/json"}
        method = auth or (client.auth if client else None)
        if method == "client_secret_basic":
            headers["Authorization"] = self.book.add_basic(origin, client.client_id, client.secret)
        elif method == "client_secret_post":
            form.update(client_id=client.client_id, client_secret=client.secret)
        elif method == "none":
            form["client_id"] = client.client_id
        return self.browser.post(url, data=form, headers=headers, allow_redirects=False)

    @staticmethod
    def ok_json(response, what: str, status: int = 200) -> dict:
        check(response.status_code == status, f"{what}: expected {status}, got {describe(response)}")
        return response.json()

    @staticmethod
    def refused(response, what: str, status: int, error: str) -> None:
        check(response.status_code == status and oauth_error(response) == error,
              f"{what}: expected {status} {error}, got {describe(response)}")

    # -- registration -------------------------------------------------------------

    @staticmethod
    def redirect_uri(name: str) -> str:
        return f"http://127.0.0.1:9/{name}/callback"  # nobody listens: the browser stops at the redirect

    def operator_client(self, name: str) -> Client:
        """POST /clients/new on the operator listener."""
        uri = self.redirect_uri(name)
        response = self.post(f"{self.local}/clients/new", f"/clients/new {name}",
                             data={"name": name, "redirect_uri": uri})
        body = self.ok_json(response, f"POST /clients/new {name}")
        secret = self.book.add("client secret", f"/clients/new {name}", body.get("client_secret"))
        return Client(body["client_id"], secret, uri, "client_secret_basic")

    def dynamic_client(self, base: str, name: str, auth: str, **metadata) -> Client:
        """RFC 7591 POST /register at ``base`` (the tailnet or the operator listener)."""
        uri = self.redirect_uri(name)
        request = {"client_name": name, "redirect_uris": [uri], "token_endpoint_auth_method": auth, **metadata}
        body = self.ok_json(self.browser.post(f"{base}/register", json=request), f"POST /register {name}", 201)
        secret = None
        if auth == "none":
            check(not body.get("client_secret"), f"public client {name} was given a secret")
        else:
            secret = self.book.add("client secret", f"/register {name}", body.get("client_secret"))
        if body.get("registration_access_token"):
            self.book.add("registration access token", f"/register {name}", body["registration_access_token"])
        return Client(body["client_id"], secret, uri, auth)

    # -- logins -----------------------------------------------------------------------

    def authorize(self, client: Client, origin: str, method: str = "GET", **extra) -> dict:
        """An authorization request from alice's browser: {"code", "verifier", "state"}."""
        verifier = self.book.add("PKCE code verifier", origin, secrets.token_urlsafe(48))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = self.book.add("state", origin, secrets.token_urlsafe(24))
        params = {
            "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
            "scope": SCOPE, "state": state, "nonce": self.book.add("nonce", origin, secrets.token_urlsafe(24)),
            "code_challenge": challenge, "code_challenge_method": "S256", **extra,
        }
        endpoint = self.tsidp.url("/authorize")
        if method == "POST":
            response = self.browser.post(endpoint, data=params, allow_redirects=False)
        else:
            response = self.browser.get(endpoint, params=params, allow_redirects=False)
        response = self.browser.answer_consent(response)
        if params.get("response_mode") == "form_post":
            check(response.status_code == 200, f"authorize ({origin}, form_post) -> {response.status_code}")
            answer = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', response.text))
        else:
            location = response.headers.get("Location", "")
            check(response.status_code in (302, 303) and location.startswith(client.redirect_uri),
                  f"authorize ({origin}) -> {response.status_code}, to {urlsplit(location)._replace(query='').geturl()}")
            answer = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        check("error" not in answer, f"authorize ({origin}) -> {answer.get('error')}: {answer.get('error_description')}")
        check(answer.get("state") == state, f"authorize ({origin}) did not give the state back")
        code = self.book.add("authorization code", origin, answer.get("code"))
        return {"code": code, "verifier": verifier, "state": state}

    def redeem(self, client: Client, code: str, verifier: str, origin: str):
        return self.post(self.token_url, origin, client, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        })

    def record_tokens(self, body: dict, origin: str, jwt_access_tokens: bool = False) -> dict:
        if jwt_access_tokens:
            self.book.add_jwt("access token", origin, body.get("access_token"))
        else:
            self.book.add("access token", origin, body.get("access_token"))
        check("refresh_token" in body, f"no refresh token ({origin}): {sorted(body)}")
        self.book.add("refresh token", origin, body["refresh_token"])
        if "id_token" in body:
            self.book.add_jwt("ID token", origin, body["id_token"])
        return body

    def login(self, client: Client, origin: str, method: str = "GET", jwt_access_tokens: bool = False,
              **extra) -> dict:
        """Authorization, then code redemption: the token response plus code, verifier and state."""
        grant = self.authorize(client, origin, method, **extra)
        body = self.ok_json(self.redeem(client, grant["code"], grant["verifier"], origin), f"code redemption ({origin})")
        check("id_token" in body, f"no ID token ({origin}): {sorted(body)}")
        return self.record_tokens(body, origin, jwt_access_tokens) | grant

    def refresh(self, client: Client, refresh_token: str, origin: str, auth: Optional[str] = None):
        return self.post(self.token_url, origin, client, auth=auth,
                         data={"grant_type": "refresh_token", "refresh_token": refresh_token})

    def refreshed(self, client: Client, refresh_token: str, origin: str) -> dict:
        return self.record_tokens(self.ok_json(self.refresh(client, refresh_token, origin), origin), origin)

    # -- other endpoints ------------------------------------------------------------

    def userinfo(self, access_token: str, style: str = "header"):
        url = self.tsidp.url("/userinfo")
        if style == "header":
            return self.browser.get(url, headers={"Authorization": f"Bearer {access_token}"})
        return self.browser.post(url, data={"access_token": access_token})

    def active(self, client: Client, token: str, origin: str, hint: Optional[str] = None) -> Optional[bool]:
        """RFC 7662: the ``active`` member of the introspection answer."""
        data = {"token": token, **({"token_type_hint": hint} if hint else {})}
        return self.ok_json(self.post(self.tsidp.url("/introspect"), origin, client, data=data),
                            f"introspection ({origin})").get("active")

    def revoke(self, client: Client, token: str, hint: str, origin: str) -> None:
        response = self.post(self.tsidp.url("/revoke"), origin, client, data={"token": token, "token_type_hint": hint})
        check(response.status_code == 200, f"revocation ({origin}) -> {describe(response)}")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class AuditRun:
    book: SecretBook
    logs: dict  # stream name -> its lines
    state_dir: Path
    steps: list  # what the run did
    kept: list  # (kind, origin) of secrets still valid at the end: the state must hold their digests


def exercise(rp: RelyingParty, book: SecretBook, steps: list) -> None:
    """Every secret-handling endpoint, in an order that keeps each token valid where it is needed."""
    tsidp, token_url = rp.tsidp, rp.token_url

    web = rp.operator_client("audit-web")
    dcr = rp.dynamic_client(tsidp.issuer, "audit-dcr-post", "client_secret_post", access_token_format="jwt")
    public = rp.dynamic_client(rp.local, "audit-public", "none")
    steps.append("clients: /clients/new (operator), /register confidential JWT (tailnet), /register public (operator)")

    # Login 1: client_secret_basic with PKCE; userinfo both ways.
    first = rp.login(web, "login 1")
    rp.ok_json(rp.userinfo(first["access_token"], "header"), "userinfo (Bearer header)")
    rp.ok_json(rp.userinfo(first["access_token"], "body"), "userinfo (form body)")
    steps.append("login 1 (GET /authorize, Basic, PKCE), userinfo by header and by form body")

    # A silent re-authorization naming the ID token; its code is never redeemed.
    rp.authorize(web, "silent re-authorization", prompt="none", id_token_hint=first["id_token"])
    steps.append("/authorize prompt=none with id_token_hint")

    # Two refreshes, so that rotated refresh tokens exist.
    second = rp.refreshed(web, first["refresh_token"], "login 1, refresh 1")
    third = rp.refreshed(web, second["refresh_token"], "login 1, refresh 2")
    steps.append("two refreshes")

    # Refreshes refused before the refresh token is looked at: a wrong secret (Basic and form), a
    # garbage Basic header, Basic without a colon, a scheme that is not Basic.
    wrong = dataclasses.replace(web, secret=book.add("wrong client secret", "failed refresh", secrets.token_urlsafe(32)))
    rp.refused(rp.refresh(wrong, third["refresh_token"], "failed refresh, wrong secret (Basic)"),
               "refresh with a wrong secret (Basic)", 401, "invalid_client")
    rp.refused(rp.refresh(wrong, third["refresh_token"], "failed refresh, wrong secret (form)",
                          auth="client_secret_post"),
               "refresh with a wrong secret (form)", 401, "invalid_client")
    garbage = book.add("malformed Authorization header", "garbage Basic", "!!" + secrets.token_hex(20) + "%%")
    no_colon = book.add("malformed Authorization header", "Basic without a colon",
                        base64.b64encode(secrets.token_hex(20).encode()).decode())
    book.add("malformed Authorization header", "Basic without a colon (decoded)", base64.b64decode(no_colon).decode())
    bearer = book.add("malformed Authorization header", "Bearer at /token", secrets.token_urlsafe(32))
    for header, what in ((f"Basic {garbage}", "a garbage Basic header"), (f"Basic {no_colon}", "Basic without a colon"),
                         (f"Bearer {bearer}", "a Bearer header")):
        response = rp.browser.post(token_url,
                                   data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]},
                                   headers={"Authorization": header, "Accept": "application/json"})
        rp.refused(response, f"refresh with {what}", 401, "invalid_client")
    steps.append("refused refreshes: wrong secret (Basic, form), garbage Basic, Basic without colon, Bearer")

    check(rp.active(web, third["access_token"], "introspect access token", "access_token") is True,
          "introspection: the current access token is not active")
    check(rp.active(web, third["refresh_token"], "introspect refresh token", "refresh_token") is True,
          "introspection: the current refresh token is not active (did a refused refresh spend it?)")
    check(rp.active(web, first["refresh_token"], "introspect rotated refresh token") is False,
          "introspection: a rotated refresh token is active")
    steps.append("/introspect: access, refresh and rotated refresh token")

    # Login 2: the public client, POST /authorize with form_post; its access token is the actor below.
    public_login = rp.login(public, "login 2 (public client)", method="POST", response_mode="form_post")
    rp.refreshed(public, public_login["refresh_token"], "login 2, refresh")
    steps.append("login 2: public client, POST /authorize with form_post, PKCE, refresh")

    # RFC 8693: the web client is the audience of its own access token; alice is granted API_AUDIENCE.
    exchanged = rp.ok_json(rp.post(token_url, "token exchange", web, data={
        "grant_type": EXCHANGE, "subject_token": third["access_token"], "subject_token_type": ACCESS_TOKEN_TYPE,
        "actor_token": public_login["access_token"], "actor_token_type": ACCESS_TOKEN_TYPE,
        "audience": API_AUDIENCE, "requested_token_type": ACCESS_TOKEN_TYPE,
    }), "token exchange")
    book.add("exchanged access token", "token exchange", exchanged.get("access_token"))
    check(rp.active(web, exchanged["access_token"], "introspect exchanged token") is True,
          "introspection: the exchanged token is not active")
    steps.append("token exchange with subject and actor token; introspection of the result")

    # Login 3: client_secret_post, JWT access tokens; then the code is replayed.
    dcr_login = rp.login(dcr, "login 3 (client_secret_post)", jwt_access_tokens=True)
    check(rp.active(dcr, dcr_login["access_token"], "introspect JWT access token") is True,
          "introspection: the JWT access token is not active")
    rp.refused(rp.redeem(dcr, dcr_login["code"], dcr_login["verifier"], "code replay"), "code replay",
               400, "invalid_grant")
    check(rp.userinfo(dcr_login["access_token"]).status_code == 401, "the access token of a replayed code still works")
    steps.append("login 3: client_secret_post, JWT access token, introspection, code replay")

    # Secret regeneration: the new secret works, the old one no longer does.
    body = rp.ok_json(rp.post(f"{rp.local}/clients/{web.client_id}/regenerate-secret", "regenerate secret"),
                      "regenerate-secret")
    old_web, web = web, dataclasses.replace(web, secret=book.add("client secret", "regenerate-secret",
                                                                  body.get("client_secret")))
    check(rp.active(web, third["access_token"], "introspect with the new secret") is True,
          "introspection with the regenerated secret failed")
    rp.refused(rp.post(tsidp.url("/introspect"), "introspect with the old secret", old_web,
                       data={"token": third["access_token"]}),
               "introspection with the replaced secret", 401, "invalid_client")
    steps.append("/clients/{id}/regenerate-secret; new and old secret used")

    # Key rotation; the next refresh's ID token is signed with another key.
    rp.ok_json(rp.post(f"{rp.local}/keys/rotate", "keys rotate"), "/keys/rotate")
    fourth = rp.refreshed(web, third["refresh_token"], "login 1, refresh 3 (after key rotation)")
    check(jws_kid(fourth["id_token"]) != jws_kid(third["id_token"]), "/keys/rotate did not change the signing key")
    steps.append("/keys/rotate, refresh signed with the new key")

    # Revocation: the access token alone, then the refresh token and its family.
    rp.revoke(web, fourth["access_token"], "access_token", "revoke access token")
    check(rp.userinfo(fourth["access_token"]).status_code == 401, "a revoked access token still works")
    rp.revoke(web, fourth["refresh_token"], "refresh_token", "revoke refresh token")
    rp.refused(rp.refresh(web, fourth["refresh_token"], "refresh after revocation"), "refresh of a revoked token",
               400, "invalid_grant")
    check(rp.active(web, exchanged["access_token"], "introspect exchanged token after revocation") is False,
          "the exchanged token outlived the revocation of its login")
    steps.append("/revoke access token, /revoke refresh token (the exchanged token dies with it)")

    # Secrets where they do not belong: an access token in the userinfo query, token requests as
    # JSON and as multipart (tsidp refuses both), a Referer holding a callback URL with a code and
    # a state, a client secret in the query string of /token.
    live = rp.login(web, "login 4")
    response = rp.browser.get(tsidp.url("/userinfo"), params={"access_token": live["access_token"]})
    check(response.status_code in (200, 400, 401), f"userinfo with the token in the query -> {describe(response)}")
    misplaced = {"grant_type": "refresh_token", "refresh_token": live["refresh_token"],
                 "client_id": web.client_id, "client_secret": web.secret}
    response = rp.browser.post(token_url, json=misplaced)
    check(response.status_code == 400, f"/token with a JSON body -> {describe(response)}")
    response = rp.browser.post(token_url, files={name: (None, value) for name, value in misplaced.items()})
    check(response.status_code == 400, f"/token with a multipart body -> {describe(response)}")
    callback = f"{web.redirect_uri}?code={quote(live['code'])}&state={quote(live['state'])}"
    response = rp.browser.get(tsidp.url("/.well-known/openid-configuration"), headers={"Referer": callback})
    check(response.status_code == 200, f"discovery with a Referer -> {describe(response)}")
    response = rp.browser.post(f"{token_url}?{urlencode({'client_secret': web.secret})}",
                               data={"grant_type": "refresh_token", "refresh_token": live["refresh_token"],
                                     "client_id": web.client_id})
    check(response.status_code in (400, 401), f"/token with the secret in the query -> {describe(response)}")
    rp.refreshed(web, live["refresh_token"], "login 4, refresh")
    steps.append("misplaced secrets: userinfo query, JSON and multipart /token, Referer, /token query; refresh")

    # The secret headers went with every request above; once more to an endpoint that does not exist.
    response = rp.browser.get(tsidp.url("/no-such-endpoint"))
    check(response.status_code == 404, f"GET /no-such-endpoint -> {describe(response)}")
    steps.append("secret headers on every request, and on a 404")


@pytest.fixture(scope="module")
def audit_run(tsidp_factory, make_browser, bounded_wait) -> AuditRun:
    local_port = free_port()
    tsidp = tsidp_factory(
        identities=[alice_identity()],
        extra_args=["--log", "debug", "--debug-all-requests", "--debug-tailscaled", "--enable-sts",
                    "--local-port", str(local_port)],
    )
    probe = make_browser("127.0.0.1")

    def operator_listener_up() -> bool:
        try:
            return probe.get(f"http://127.0.0.1:{local_port}/healthz/live", timeout=2).status_code == 200
        except Exception:
            return False

    check(bounded_wait(operator_listener_up, LOCAL_LISTENER_WAIT),
          f"the operator listener on {local_port} never answered")

    book = SecretBook()
    proxy_pair = f"proxy-user:{secrets.token_urlsafe(24)}"
    secret_headers = {
        "Cookie": "session=" + book.add("Cookie header value", "secret headers", secrets.token_urlsafe(32)),
        "Proxy-Authorization": "Basic " + book.add("Proxy-Authorization header value", "secret headers",
                                                   base64.b64encode(proxy_pair.encode()).decode()),
        "X-Api-Key": book.add("X-Api-Key header value", "secret headers", secrets.token_urlsafe(32)),
        "X-Auth-Token": book.add("X-Auth-Token header value", "secret headers", secrets.token_hex(24)),
    }
    book.add("Proxy-Authorization header value", "secret headers (decoded)", proxy_pair)

    steps: list = []
    started = time.monotonic()
    try:
        exercise(RelyingParty(tsidp, local_port, make_browser, book, secret_headers), book, steps)
    finally:
        tsidp.process.stop()  # SIGTERM and wait: the logs are complete after this
    steps.append(f"exercise and stop took {time.monotonic() - started:.1f}s")

    logs = {}
    for path in map(Path, tsidp.process.log_paths):
        stream = "stdout" if path.name.endswith(".stdout.log") else "stderr"
        logs[stream] = path.read_text(encoding="utf-8", errors="replace").splitlines()
    requests_logged = sum(1 for lines in logs.values() for line in lines if "path=/token" in line)
    check(requests_logged >= 10,
          f"--debug-all-requests logged {requests_logged} /token requests: the audit would prove nothing")
    kept = [("client secret", "regenerate-secret"), ("refresh token", "login 4, refresh")]
    return AuditRun(book, logs, tsidp.state_dir, steps, kept)


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def excerpt(masked: str, label: str, width: int = 160) -> str:
    """The part of a masked line around the first ``label``."""
    at = max(masked.find(label), 0)
    start, end = max(at - width, 0), min(at + len(label) + width, len(masked))
    return ("…" if start else "") + masked[start:end] + ("…" if end < len(masked) else "")


def log_findings(run: AuditRun, kinds: set) -> list:
    """Where secrets of ``kinds`` occur in the logs: one entry per secret, form and stream, with the
    line numbers and the first such line with every known secret masked."""
    mask = run.book.masker()
    findings = []
    for entry in run.book.entries:
        if entry.kind not in kinds:
            continue
        for form, text in entry.forms().items():
            for stream, lines in run.logs.items():
                numbers = [number for number, line in enumerate(lines, start=1) if text in line]
                if not numbers:
                    continue
                more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
                shown = ", ".join(map(str, numbers[:10])) + more
                findings.append(
                    f"{entry.kind} ({entry.origin}) found {form} in tsidp's {stream}, line(s) {shown}; line "
                    f"{numbers[0]} reads: {excerpt(mask(lines[numbers[0] - 1]), f'<{entry.kind}>')}"
                )
    return findings


def report(findings: list, what: str) -> str:
    return "\n".join([f"{len(findings)} finding(s) of {what}:", *findings[:40], *(["…"] if len(findings) > 40 else [])])


def digests(value: str) -> set:
    """SHA-256 of ``value`` as hex, base64url and base64: how a state file may name it."""
    raw = hashlib.sha256(value.encode()).digest()
    return {raw.hex(), base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), base64.b64encode(raw).rstrip(b"=").decode()}


def test_audit_covers_every_kind_of_secret(audit_run):
    """The run produced every kind of secret the audit is about; otherwise the other tests prove less."""
    expected = {
        "client secret", "wrong client secret", "authorization code", "access token", "access token signature",
        "refresh token", "ID token", "ID token signature", "exchanged access token", "PKCE code verifier",
        "Basic credentials", "Basic credentials (base64)", "malformed Authorization header", "state", "nonce",
        "Cookie header value", "Proxy-Authorization header value", *UNKNOWN_HEADER_KINDS,
    }
    missing = expected - audit_run.book.kinds()
    check(not missing, f"the run recorded no {sorted(missing)}; it did: {audit_run.steps}")
    refresh_tokens = sum(1 for entry in audit_run.book.entries if entry.kind == "refresh token")
    check(refresh_tokens >= 8, f"only {refresh_tokens} refresh tokens recorded")


def test_no_secret_in_logs(audit_run):
    """No client secret, code, token, verifier, credential, state or nonce in any log line."""
    findings = log_findings(audit_run, audit_run.book.kinds() - UNKNOWN_HEADER_KINDS)
    check(not findings, report(findings, "secrets in tsidp's logs"))


def test_unknown_secret_headers_not_logged(audit_run):
    """Secrets in headers tsidp has no use for (X-Api-Key, X-Auth-Token) stay out of the logs too."""
    findings = log_findings(audit_run, UNKNOWN_HEADER_KINDS)
    check(not findings, report(findings, "secret header values in tsidp's logs"))


def test_no_secret_in_state_files(audit_run):
    """The state directory holds tokens and client secrets only as digests, and codes not at all."""
    files = [path for path in sorted(audit_run.state_dir.rglob("*")) if path.is_file()]
    contents = {path: path.read_bytes().decode("latin-1") for path in files}
    findings = [
        f"{entry.kind} ({entry.origin}) found {form} in {path.relative_to(audit_run.state_dir)}"
        for entry in audit_run.book.entries if entry.kind not in LOG_ONLY_KINDS
        for form, value in entry.forms().items()
        for path, text in contents.items() if value in text
    ]
    check(not findings, report(findings, "secrets in clear in the state directory"))
    # The search looked where the secrets are kept: what is still valid is there, as a digest.
    everything = "".join(contents.values())
    for kind, origin in audit_run.kept:
        check(any(digest in everything for digest in digests(audit_run.book.find(kind, origin).value)),
              f"no SHA-256 digest of the {kind} ({origin}) in the state directory, though it is still valid")

"""The integration guides in docs/guides, played against the real tsidp.

Each test reads the settings a guide tells the user to enter (the client registration command, the
product's configuration block, the tailnet policy grant) from the guide's Markdown itself, starts
``tsidp --dev`` with an operator listener (``--local-port``), registers the client exactly as the
guide does, and then logs in the way the product does: the same endpoints (from discovery or the
URLs the guide lists), the same scopes, the same client authentication method, PKCE where the
product uses it. It then checks the claims the product reads (username claim, email, name, groups)
have the values the guide promises. The guide's host names (``https://idp.example-tailnet.ts.net``,
``http://127.0.0.1:9090``) are replaced with the test tsidp's; everything else is taken as written,
so a guide and tsidp cannot drift apart unnoticed.

The "browser" is a requests session bound to a loopback source address (127.0.0.1 = alice,
127.0.0.2 = bob) that stops at tsidp's redirect to the product, as in test_authlib_client.py.
"""

from __future__ import annotations

import base64
import configparser
import copy
import hashlib
import json
import re
import secrets
import shlex
import time
import warnings
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import ALICE, BOB, REPO_ROOT, browser_session, free_port, whois_document

GUIDES = REPO_ROOT / "docs" / "guides"
GUIDE_ISSUER = "https://idp.example-tailnet.ts.net"
GUIDE_OPERATOR = "http://127.0.0.1:9090"
CAPABILITY = "tailscale.com/cap/tsidp"
HTTP_TIMEOUT = 20
INSTALL_HINT = "install the peers: python3 -m venv .venv-peers && .venv-peers/bin/pip install -r Tests/EndToEnd/requirements.txt"


# ---------------------------------------------------------------------------
# Reading the guides
# ---------------------------------------------------------------------------


def read_guide(name: str) -> str:
    path = GUIDES / name
    assert path.is_file(), f"guide {path} is missing"
    return path.read_text()


def fenced_blocks(text: str, lang: str) -> list:
    """The contents of every ```lang fenced block (indented blocks too), indentation removed."""
    blocks = []
    pattern = re.compile(r"^([ \t]*)```" + re.escape(lang) + r"[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
    for match in pattern.finditer(text):
        indent = match.group(1)
        lines = [line[len(indent):] if line.startswith(indent) else line for line in match.group(2).splitlines()]
        blocks.append("\n".join(lines))
    return blocks


def one_block(text: str, lang: str, containing: str) -> str:
    found = [block for block in fenced_blocks(text, lang) if containing in block]
    assert len(found) == 1, f"expected one ```{lang} block containing {containing!r}, found {len(found)}"
    return found[0]


def shell_words(block: str, command: str) -> list:
    """The words of the command in ``block`` that starts with ``command`` (continuations joined,
    comments dropped)."""
    joined = re.sub(r"\\\n", " ", block)
    for line in joined.splitlines():
        if line.strip().startswith(command):
            return shlex.split(line, comments=True)
    raise AssertionError(f"no {command!r} command in:\n{block}")


def registration(text: str) -> dict:
    """The form the guide's ``curl …/clients/new`` sends, and where it sends it."""
    block = one_block(text, "sh", "/clients/new")
    words = shell_words(block, "curl")
    url = next(word for word in words if word.startswith("http"))
    form = {}
    for flag, value in zip(words, words[1:]):
        if flag in ("-d", "--data", "--data-urlencode"):
            key, _, val = value.partition("=")
            assert key not in form, f"{key} given twice in {words}"
            form[key] = val
    assert set(form) == {"name", "redirect_uri"}, form
    return {"url": url, "form": form}


def text_settings(text: str, containing: str) -> dict:
    """``Label: value`` lines of the ```text block holding ``containing`` (an empty value is "")."""
    settings = {}
    for line in one_block(text, "text", containing).splitlines():
        label, sep, value = line.partition(":")
        assert sep, f"not a 'Label: value' line: {line!r}"
        settings[label.strip()] = value.strip()
    return settings


def grant_rules(text: str) -> list:
    """The tsidp capability rules of the guide's tailnet policy grant."""
    policy = json.loads(one_block(text, "json", '"grants"'))
    grants = policy["grants"]
    assert len(grants) == 1, grants
    assert grants[0]["dst"] and grants[0]["src"], grants[0]
    return grants[0]["app"][CAPABILITY]


# ---------------------------------------------------------------------------
# tsidp and the product's side of the login
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peers(peer_import):
    requests_client = peer_import("authlib.integrations.requests_client", INSTALL_HINT)
    with warnings.catch_warnings():
        peer_import("authlib.deprecate", INSTALL_HINT)
        warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
        jose = peer_import("authlib.jose", INSTALL_HINT)
    return SimpleNamespace(
        OAuth2Session=requests_client.OAuth2Session,
        JsonWebKey=jose.JsonWebKey,
        JsonWebToken=jose.JsonWebToken,
    )


class GuideTsidp:
    """A tsidp --dev with an operator listener, and the guide's addresses mapped onto it."""

    def __init__(self, tsidp_factory, identities: list):
        self.local_port = free_port()
        self.tsidp = tsidp_factory(identities=identities, extra_args=["--local-port", str(self.local_port)])
        self.issuer = self.tsidp.issuer

    def localize(self, value: str) -> str:
        return value.replace(GUIDE_ISSUER, self.issuer).replace(GUIDE_OPERATOR, f"http://127.0.0.1:{self.local_port}")

    def register(self, text: str) -> dict:
        """Runs the guide's registration command against the operator listener."""
        reg = registration(text)
        url = self.localize(reg["url"])
        assert url == f"http://127.0.0.1:{self.local_port}/clients/new", reg["url"]
        response = requests.post(url, data=reg["form"], timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, f"{url} -> {response.status_code}: {response.text[:1000]}"
        client = response.json()
        assert client["client_id"] and client["client_secret"], client
        assert client["redirect_uris"] == reg["form"]["redirect_uri"].split("\n"), client
        assert client.get("consent_required") is False, client
        return client

    def discovery(self, url: str) -> dict:
        response = browser_session("127.0.0.1").get(url, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, f"{url} -> {response.status_code}: {response.text[:500]}"
        return response.json()

    def jwks(self, metadata: dict) -> dict:
        response = browser_session("127.0.0.1").get(metadata["jwks_uri"], timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()


def fill(value: str, client: dict) -> str:
    return value.replace("<client_id>", client["client_id"]).replace("<client_secret>", client["client_secret"])


def pkce_pair() -> tuple:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(source_ip: str, url: str, redirect_uri: str) -> str:
    """The person's browser follows the product's authorization URL; returns the code."""
    browser = browser_session(source_ip)
    response = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert response.status_code in (302, 303), (
        f"GET {url} from {source_ip} -> {response.status_code} (a consent or error page?): {response.text[:1500]}"
    )
    location = response.headers["Location"]
    assert location.split("?", 1)[0] == redirect_uri, location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert "error" not in query, query
    return query


def verify_id_token(peers, jwks: dict, id_token: str, issuer: str, client_id: str, nonce) -> dict:
    options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    claims = peers.JsonWebToken(["RS256"]).decode(id_token, peers.JsonWebKey.import_key_set(jwks), claims_options=options)
    claims.validate(now=int(time.time()), leeway=30)
    return dict(claims)


def userinfo(url: str, access_token: str) -> dict:
    response = browser_session("127.0.0.1").get(
        url, headers={"Authorization": f"Bearer {access_token}"}, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200, f"{url} -> {response.status_code}: {response.text[:500]}"
    return response.json()


def oauth_login(peers, *, source_ip, client, auth_url, token_url, redirect_uri, scope, auth_method, pkce, nonce):
    """An authlib client doing the code flow the way a product configured from a guide does."""
    session = peers.OAuth2Session(
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        scope=scope,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method=auth_method,
        code_challenge_method="S256" if pkce else None,
        default_timeout=HTTP_TIMEOUT,
    )
    extra = {}
    verifier = None
    if pkce:
        verifier = secrets.token_urlsafe(48)
        extra["code_verifier"] = verifier
    if nonce:
        extra["nonce"] = nonce
    state = secrets.token_urlsafe(16)
    url, _ = session.create_authorization_url(auth_url, state=state, **extra)
    sent = parse_qs(urlsplit(url).query)
    assert ("code_challenge" in sent) == pkce, url
    query = authorize(source_ip, url, redirect_uri)
    assert query.get("state") == state, query
    fetch = {"code": query["code"]}
    if verifier:
        fetch["code_verifier"] = verifier
    token = session.fetch_token(token_url, **fetch)
    assert token.get("access_token"), token
    return session, token


def people_identities(alice_rules=None, bob_rules=None) -> list:
    alice = whois_document(ALICE)
    alice["CapMap"] = {CAPABILITY: alice_rules} if alice_rules else {}
    bob = whois_document(BOB)
    bob["CapMap"] = {CAPABILITY: bob_rules} if bob_rules else {}
    return [alice, bob]


# ---------------------------------------------------------------------------
# Proxmox VE
# ---------------------------------------------------------------------------

PVE_USER_REGEX = re.compile(r"^([^\s:/]+)@([A-Za-z][A-Za-z0-9.\-_]+)$")


def proxmox_username(claims: dict, username_claim, realm: str) -> str:
    """What Proxmox VE's OpenID login makes of the merged claims (PVE::API2::OpenId): the
    configured claim, with the old names `subject` and `username` falling back to `sub` and
    `preferred_username`, then `<value>@<realm>`, which must pass its user-name check."""
    if username_claim is None or (username_claim == "subject" and "subject" not in claims):
        unique = claims["sub"]
    elif username_claim in claims:
        unique = claims[username_claim]
    elif username_claim == "username" and "preferred_username" in claims:
        unique = claims["preferred_username"]
    else:
        raise ValueError(f"missing configured claim {username_claim!r}")
    name = f"{unique}@{realm}"
    if not (3 <= len(name) <= 64) or not PVE_USER_REGEX.match(name):
        raise ValueError(f"value {name!r} does not look like a valid user name")
    return name


def proxmox_table(text: str) -> list:
    """Rows of the guide's username-claim table: (claim, expected Proxmox user, works)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4:
            continue
        claim = re.match(r"`([^`]+)`", cells[0]).group(1)
        user = re.match(r"`([^`]+)`", cells[2]).group(1)
        works = cells[3].startswith("yes")
        assert works or "no" in cells[3], line
        rows.append((claim, user, works))
    return rows


def proxmox_login(peers, idp, client, options, source_ip):
    """The login of proxmox-openid: discovery from the issuer URL, PKCE S256, nonce, display=page,
    client_secret_basic, a verified ID token, then userinfo filling in missing claims."""
    issuer_url = idp.localize(options["issuer-url"])
    metadata = idp.discovery(issuer_url + "/.well-known/openid-configuration")
    assert metadata["issuer"] == issuer_url, "Proxmox requires the issuer to match the issuer URL exactly"
    jwks = idp.jwks(metadata)
    redirect_uri = client["redirect_uris"][0]
    scopes = ["openid"] + options.get("scopes", "email profile").split()
    verifier, challenge = pkce_pair()
    nonce = secrets.token_urlsafe(16)
    state = secrets.token_urlsafe(16)
    request = requests.Request(
        "GET",
        metadata["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": fill(options["client-id"], client),
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "display": "page",
        },
    ).prepare()
    query = authorize(source_ip, request.url, redirect_uri)
    assert query["state"] == state
    token = browser_session("127.0.0.1").post(
        metadata["token_endpoint"],
        auth=(fill(options["client-id"], client), fill(options["client-key"], client)),
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect_uri,
              "code_verifier": verifier},
        timeout=HTTP_TIMEOUT,
    )
    assert token.status_code == 200, token.text
    token = token.json()
    claims = verify_id_token(peers, jwks, token["id_token"], issuer_url, client["client_id"], nonce)
    info = userinfo(metadata["userinfo_endpoint"], token["access_token"])
    assert info["sub"] == claims["sub"]
    merged = dict(claims)
    for key, value in info.items():
        merged.setdefault(key, value)
    return claims, info, merged


def test_proxmox_guide(peers, tsidp_factory):
    text = read_guide("proxmox.md")
    words = shell_words(one_block(text, "sh", "pveum realm add"), "pveum")
    assert words[:3] == ["pveum", "realm", "add"], words
    realm = words[3]
    options = {}
    rest = words[4:]
    for flag, value in zip(rest[::2], rest[1::2]):
        assert flag.startswith("--"), rest
        options[flag[2:]] = value
    assert options["type"] == "openid" and options["autocreate"] == "1", options
    assert options["issuer-url"] == GUIDE_ISSUER, options

    # The web UI fields say the same as the command.
    ui = text_settings(text, "Issuer URL:")
    assert ui["Issuer URL"] == options["issuer-url"] and ui["Realm"] == realm
    assert ui["Client ID"] == options["client-id"] and ui["Client Key"] == options["client-key"]
    assert ui["Username Claim"] == options["username-claim"] and ui["Autocreate Users"] == "yes"
    assert ui["Scopes"] == options.get("scopes", "email profile")

    idp = GuideTsidp(tsidp_factory, people_identities())
    client = idp.register(text)
    assert client["token_endpoint_auth_method"] == "client_secret_basic", client

    claims, info, merged = proxmox_login(peers, idp, client, options, ALICE["source"])
    # What the guide's table says tsidp sends.
    assert claims["sub"] == "userid:2001" and claims["email"] == "alice@example.com", claims
    assert claims["preferred_username"] == "alice" and "username" not in claims, claims
    assert info["username"] == "alice", info
    assert proxmox_username(merged, options["username-claim"], realm) == f"alice@{realm}"

    rows = proxmox_table(text)
    assert {row[0] for row in rows} >= {"username", "email", "subject"}, rows
    for claim, expected, works in rows:
        if works:
            assert proxmox_username(merged, claim, realm) == expected, claim
        else:
            assert f"{merged['sub']}@{realm}" == expected, (claim, expected)
            with pytest.raises(ValueError, match="valid user name"):
                proxmox_username(merged, claim, realm)
            # Even from the ID token alone (an older Proxmox without userinfo), the same.
            with pytest.raises(ValueError):
                proxmox_username(claims, claim, realm)
        if works and claim in ("username", "preferred_username", "email"):
            # The ID token alone is enough: the login does not depend on userinfo.
            assert proxmox_username(claims, claim, realm) == expected, claim

    _, _, bob = proxmox_login(peers, idp, client, options, BOB["source"])
    assert proxmox_username(bob, options["username-claim"], realm) == f"bob@{realm}"


# ---------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------

AUTH_STYLES = {"InHeader": "client_secret_basic", "InParams": "client_secret_post", "AutoDetect": "client_secret_basic"}


def grafana_attribute(path: str, id_claims: dict, info: dict):
    """Grafana looks an attribute up in the ID token first, then in the api_url answer (the guide's
    paths are plain member names)."""
    assert re.fullmatch(r"[A-Za-z_]+", path), f"not a plain member name: {path!r}"
    return id_claims.get(path, info.get(path))


def grafana_role(expression: str, groups: list) -> str:
    """Evaluates the guide's role_attribute_path, which has the shape
    ``contains(groups[*], 'a') && 'Role' || … || 'Default'`` (JMESPath)."""
    clauses = [clause.strip() for clause in expression.split("||")]
    for clause in clauses[:-1]:
        match = re.fullmatch(r"contains\(groups\[\*\], '([^']+)'\) && '(\w+)'", clause)
        assert match, f"unexpected clause {clause!r}"
        if match.group(1) in groups:
            return match.group(2)
    default = re.fullmatch(r"'(\w+)'", clauses[-1])
    assert default, clauses[-1]
    return default.group(1)


def test_grafana_guide(peers, tsidp_factory):
    text = read_guide("grafana.md")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(one_block(text, "ini", "[auth.generic_oauth]"))
    cfg = parser["auth.generic_oauth"]
    assert cfg.getboolean("enabled") and cfg.getboolean("allow_sign_up") and cfg.getboolean("use_pkce")

    admins = grant_rules(text)
    assert admins[0]["includeInUserInfo"] is True and "groups" in admins[0]["extraClaims"], admins
    # alice is in grafana-admins (the guide's grant) and in grafana-editors (a second grant, as the
    # guide suggests): her groups are merged into one list.
    editors = copy.deepcopy(admins)
    editors[0]["extraClaims"]["groups"] = ["grafana-editors"]
    idp = GuideTsidp(tsidp_factory, people_identities(alice_rules=admins + editors))
    client = idp.register(text)
    redirect_uri = client["redirect_uris"][0]
    assert redirect_uri.endswith("/login/generic_oauth"), redirect_uri

    metadata = idp.discovery(idp.issuer + "/.well-known/openid-configuration")
    auth_url, token_url, api_url = (idp.localize(cfg[key]) for key in ("auth_url", "token_url", "api_url"))
    assert auth_url == metadata["authorization_endpoint"]
    assert token_url == metadata["token_endpoint"]
    assert api_url == metadata["userinfo_endpoint"]
    auth_method = AUTH_STYLES[cfg["auth_style"]]
    assert auth_method in metadata["token_endpoint_auth_methods_supported"]
    assert fill(cfg["client_id"], client) == client["client_id"]
    client = dict(client, client_secret=fill(cfg["client_secret"], client))
    jwks = idp.jwks(metadata)

    results = {}
    for person in (ALICE, BOB):
        nonce = secrets.token_urlsafe(16)
        session, token = oauth_login(
            peers, source_ip=person["source"], client=client, auth_url=auth_url, token_url=token_url,
            redirect_uri=redirect_uri, scope=cfg["scopes"], auth_method=auth_method,
            pkce=cfg.getboolean("use_pkce"), nonce=nonce,
        )
        claims = verify_id_token(peers, jwks, token["id_token"], idp.issuer, client["client_id"], nonce)
        info = userinfo(api_url, token["access_token"])
        attributes = {
            name: grafana_attribute(cfg[f"{name}_attribute_path"], claims, info) for name in ("email", "login", "name")
        }
        groups = claims.get("groups", info.get("groups", []))
        results[person["login"]] = (attributes, groups, grafana_role(cfg["role_attribute_path"], groups))
        if cfg.getboolean("use_refresh_token"):
            assert token.get("refresh_token"), token
            refreshed = session.refresh_token(token_url, refresh_token=token["refresh_token"])
            assert refreshed["access_token"] != token["access_token"], refreshed
            assert userinfo(api_url, refreshed["access_token"])["sub"] == claims["sub"]

    alice_attributes, alice_groups, alice_role = results["alice@example.com"]
    assert alice_attributes == {"email": "alice@example.com", "login": "alice", "name": "Alice Example"}
    assert sorted(alice_groups) == ["grafana-admins", "grafana-editors"], alice_groups
    assert alice_role == "Admin"
    bob_attributes, bob_groups, bob_role = results["bob@example.com"]
    assert bob_attributes == {"email": "bob@example.com", "login": "bob", "name": "Bob Example"}
    assert bob_groups == [] and bob_role == "Viewer"
    # An editor only: the second clause.
    assert grafana_role(cfg["role_attribute_path"], ["grafana-editors"]) == "Editor"


# ---------------------------------------------------------------------------
# Synology DSM
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_synology_guide(peers, tsidp_factory, auth_method):
    text = read_guide("synology.md")
    settings = text_settings(text, "Well-known URL:")
    assert settings["Profile"] == "OIDC"
    idp = GuideTsidp(tsidp_factory, people_identities())
    client = idp.register(text)
    assert settings["Redirect URI"] == client["redirect_uris"][0], "DSM's redirect URI must be the registered one"

    well_known = idp.localize(settings["Well-known URL"])
    metadata = idp.discovery(well_known)
    assert metadata["issuer"] == idp.issuer
    assert set(settings["Authorization scope"].split()) <= set(metadata["scopes_supported"])
    assert auth_method in metadata["token_endpoint_auth_methods_supported"]
    jwks = idp.jwks(metadata)
    client = dict(client, client_id=fill(settings["Application ID"], client),
                  client_secret=fill(settings["Application secret"], client))
    claim = settings["Username claim"]

    for person, expected in ((ALICE, "alice"), (BOB, "bob")):
        nonce = secrets.token_urlsafe(16)
        _, token = oauth_login(
            peers, source_ip=person["source"], client=client, auth_url=metadata["authorization_endpoint"],
            token_url=metadata["token_endpoint"], redirect_uri=settings["Redirect URI"],
            scope=settings["Authorization scope"], auth_method=auth_method, pkce=False, nonce=nonce,
        )
        claims = verify_id_token(peers, jwks, token["id_token"], idp.issuer, client["client_id"], nonce)
        info = userinfo(metadata["userinfo_endpoint"], token["access_token"])
        # The username claim is in both places, as the guide says; `username` only in userinfo.
        assert claims[claim] == expected and info[claim] == expected, (claims, info)
        assert "username" not in claims and info["username"] == expected, (claims, info)
        assert claims["email"] == person["login"] and claims["name"] == person["display"], claims


# ---------------------------------------------------------------------------
# Portainer
# ---------------------------------------------------------------------------

PORTAINER_AUTH_STYLES = {"Auto Detect": "client_secret_basic", "In Params": "client_secret_post", "In Header": "client_secret_basic"}


@pytest.fixture(scope="module")
def portainer(tsidp_factory):
    text = read_guide("portainer.md")
    rules = grant_rules(text)
    assert rules == [{"extraClaims": {"groups": ["portainer-admins"]}, "includeInUserInfo": True}], rules
    # alice is covered by the guide's grant; bob by none.
    idp = GuideTsidp(tsidp_factory, people_identities(alice_rules=rules))
    client = idp.register(text)
    return SimpleNamespace(text=text, settings=text_settings(text, "Resource URL:"), idp=idp, client=client)


@pytest.mark.parametrize("auth_style", ["Auto Detect", "In Params"])
def test_portainer_guide(peers, portainer, auth_style):
    settings, idp = portainer.settings, portainer.idp
    if auth_style == "Auto Detect":
        assert settings["Auth Style"] == auth_style
    metadata = idp.discovery(idp.issuer + "/.well-known/openid-configuration")
    auth_url, token_url, resource_url = (
        idp.localize(settings[key]) for key in ("Authorization URL", "Access token URL", "Resource URL")
    )
    assert auth_url == metadata["authorization_endpoint"]
    assert token_url == metadata["token_endpoint"]
    assert resource_url == metadata["userinfo_endpoint"]
    assert settings["Redirect URL"] == portainer.client["redirect_uris"][0]
    # Portainer opens its Logout URL without an ID token, with which tsidp's /logout ends nothing.
    assert settings["Logout URL"] == "" and "without an ID token" in portainer.text
    client = dict(portainer.client, client_id=fill(settings["Client ID"], portainer.client),
                  client_secret=fill(settings["Client secret"], portainer.client))
    identifier = settings["User identifier"]

    answers = {}
    for person in (ALICE, BOB):
        # Portainer: no PKCE, no nonce; it reads the resource URL with the access token.
        _, token = oauth_login(
            peers, source_ip=person["source"], client=client, auth_url=auth_url, token_url=token_url,
            redirect_uri=settings["Redirect URL"], scope=settings["Scopes"],
            auth_method=PORTAINER_AUTH_STYLES[auth_style], pkce=False, nonce=None,
        )
        answers[person["login"]] = userinfo(resource_url, token["access_token"])

    alice = answers["alice@example.com"]
    assert alice[identifier] == "alice@example.com", alice
    assert alice["groups"] == ["portainer-admins"], alice
    # The userinfo answer the guide shows is tsidp's, member for member.
    shown = json.loads(one_block(portainer.text, "json", '"preferred_username"'))
    assert alice == shown, (alice, shown)
    # The guide's team mapping and admin regexes match alice's group.
    regexes = re.findall(r"regex\*\* `([^`]+)`|regex `([^`]+)`", portainer.text)
    regexes = [a or b for a, b in regexes]
    assert regexes, "no claim value regex in the guide"
    for regex in regexes:
        assert any(re.search(regex, group) for group in alice["groups"]), regex

    bob = answers["bob@example.com"]
    assert bob[identifier] == "bob@example.com", bob
    assert "groups" not in bob, f"bob has no grant and must get no groups: {bob}"
    assert bob["preferred_username"] == "bob" and bob["username"] == "bob", bob

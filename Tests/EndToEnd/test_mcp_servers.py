"""MCP servers that check tsidp's tokens, each against two MCP clients, with tsidp --dev as the
authorization server.

The servers: the guide's Python server that asks tsidp's /introspect (``mcp_server.py``), the
guide's Python server that verifies the JWT access tokens itself (``mcp_server_jwt.py``), both
extracted from docs/guides/mcp.md, and the Swift example in Examples/mcp-whoami-swift (its binary
from ``MCP_SWIFT_SERVER``, default ``Examples/mcp-whoami-swift/.build/debug/mcp-whoami``; missing,
its tests skip, or fail with TSIDP_REQUIRE_INTEROP=1).

The clients: the MCP Python SDK's (the guide's ``mcp_client.py``) and FastMCP's, each unmodified
but for the browser: a test browser signs alice in and presses Continue on tsidp's consent page.
Every pair goes the whole way: 401 from the server, protected-resource metadata, tsidp's
metadata, dynamic registration, code + PKCE S256 + resource, a tool call, a refresh, a tool call.

Then what each server must refuse: a token tsidp issued for another resource, the ID token of the
same sign-in, no token or a garbled one (401 with the resource_metadata challenge), and, at the
servers that introspect, an opaque token once it is revoked and once it has expired.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import (
    ALICE,
    BOB,
    HTTP_TIMEOUT,
    REPO_ROOT,
    STARTUP_TIMEOUT,
    ManagedProcess,
    browser_session,
    free_port,
    import_peer,
    missing_tool,
    start_tsidp,
    wait_until,
    whois_document,
)

GUIDE = REPO_ROOT / "docs" / "guides" / "mcp.md"
EXAMPLE = re.compile(r"<!-- example: (?P<name>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)
DEFAULT_SWIFT_SERVER = REPO_ROOT / "Examples" / "mcp-whoami-swift" / ".build" / "debug" / "mcp-whoami"
RUN_TIMEOUT = 300  # seconds for one client run, on a loaded machine
CALLBACK = "http://127.0.0.1:33421/callback"  # never contacted: codes are read from the redirect

SERVERS = ["python-introspection", "python-jwt", "swift"]
CLIENTS = ["mcp", "fastmcp"]
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}


@dataclasses.dataclass
class McpServer:
    name: str
    url: str
    process: ManagedProcess
    introspects: bool  # checks opaque tokens at tsidp's /introspect

    @property
    def metadata_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}"


@dataclasses.dataclass
class World:
    tsidp: object
    work: Path
    servers: dict  # name -> McpServer, or a str saying why it is missing
    other_resource: str  # a resource alice may ask for that none of the servers serves
    public_client: dict  # a public client for direct sign-ins
    opaque_client: dict  # a public client that gets opaque access tokens
    tokens: list  # every token handed to a server here, to look for in their logs


def examples() -> dict:
    found = {m.group("name"): m.group("body") + "\n" for m in EXAMPLE.finditer(GUIDE.read_text())}
    assert {"mcp_server.py", "mcp_server_jwt.py", "mcp_client.py", "mcp-identities.json"} <= set(found), sorted(found)
    return found


def swift_server_binary() -> Path:
    configured = os.environ.get("MCP_SWIFT_SERVER")
    if not configured:
        return DEFAULT_SWIFT_SERVER
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def wait_for_metadata(server: McpServer) -> None:
    def ready() -> bool:
        if server.process.popen.poll() is not None:
            return True
        try:
            return requests.get(server.metadata_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, STARTUP_TIMEOUT, interval=0.2)
    assert server.process.popen.poll() is None and ready(), f"{server.name} did not start:\n{server.process.logs()}"


@pytest.fixture(scope="module")
def world(tsidp_factory, processes, scratch_dirs) -> World:
    hint = "install the end-to-end peers: .venv-peers/bin/pip install -r Tests/EndToEnd/requirements.txt"
    for module in ("mcp", "uvicorn", "jwt", "fastmcp"):
        import_peer(module, hint)
    work = scratch_dirs("mcp-servers")
    found = examples()
    for name in ("mcp_server.py", "mcp_server_jwt.py", "mcp_client.py"):
        (work / name).write_text(found[name])

    urls = {name: f"http://127.0.0.1:{free_port()}/mcp" for name in SERVERS}
    other_resource = f"http://127.0.0.1:{free_port()}/other"
    # The guide's identity, with this run's resources: alice may ask for each server and for one
    # resource that none of them serves.
    alice = json.loads(found["mcp-identities.json"])[0]
    assert alice["UserProfile"]["LoginName"] == ALICE["login"]
    alice["CapMap"]["tailscale.com/cap/tsidp"][0]["resources"] = [*urls.values(), other_resource]
    alice["CapMap"]["tailscale.com/cap/tsidp"].append({"allow_admin_ui": True})  # for POST /keys/rotate
    # Bob (127.0.0.2) may use the servers too, but not each other's sessions.
    bob = whois_document(BOB)
    bob["CapMap"] = {"tailscale.com/cap/tsidp": [{"users": ["*"], "resources": list(urls.values())}]}
    tsidp = tsidp_factory(identities=[alice, bob])
    admin = browser_session(ALICE["source"])

    def register(metadata: dict) -> dict:
        answer = admin.post(tsidp.url("/register"), json=metadata)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def server_client(name: str) -> dict:
        """The server's own client, declaring its resource, as the guide registers it."""
        port = urlsplit(urls[name]).port
        return register({"client_name": f"MCP server {name}", "redirect_uris": [f"http://127.0.0.1:{port}/unused"],
                         "resources": [urls[name]]})

    def environment(name: str, client: Optional[dict]) -> dict:
        env = {**os.environ, "TSIDP_ISSUER": tsidp.issuer, "MCP_URL": urls[name], "PYTHONUNBUFFERED": "1"}
        if client is not None:
            env.update(MCP_CLIENT_ID=client["client_id"], MCP_CLIENT_SECRET=client["client_secret"])
        return env

    servers: dict = {}
    python = {"python-introspection": ("mcp_server.py", True), "python-jwt": ("mcp_server_jwt.py", False)}
    for name, (script, introspects) in python.items():
        env = environment(name, server_client(name) if introspects else None)
        process = processes.start(name, [sys.executable, script], cwd=work, log_dir=work, env=env)
        servers[name] = McpServer(name, urls[name], process, introspects)

    binary = swift_server_binary()
    if binary.is_file() and os.access(binary, os.X_OK):
        env = environment("swift", server_client("swift"))
        process = processes.start("swift", [str(binary)], cwd=work, log_dir=work, env=env)
        servers["swift"] = McpServer("swift", urls["swift"], process, True)
    else:
        servers["swift"] = (f"the Swift MCP server example is not built at {binary}: "
                            "swift build --package-path Examples/mcp-whoami-swift, or set MCP_SWIFT_SERVER")

    for server in servers.values():
        if isinstance(server, McpServer):
            wait_for_metadata(server)
    public_client = {"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"}
    public = register({**public_client, "client_name": "direct sign-ins"})
    opaque = register({**public_client, "client_name": "opaque tokens", "access_token_format": "opaque"})
    return World(tsidp, work, servers, other_resource, public, opaque, [])


@pytest.fixture(params=SERVERS)
def server(request, world) -> McpServer:
    found = world.servers[request.param]
    if not isinstance(found, McpServer):
        missing_tool(found)
    assert found.process.popen.poll() is None, f"{found.name} has exited:\n{found.process.logs()}"
    return found


# ---------------------------------------------------------------------------
# The browser, and the two clients
# ---------------------------------------------------------------------------


class AliceBrowser:
    """What alice's browser does with an authorization URL: open it from her device and press
    Continue on tsidp's consent page. Returns tsidp's redirect; counts the sign-ins."""

    def __init__(self):
        self.sign_ins = 0

    def __call__(self, url: str) -> str:
        self.sign_ins += 1
        browser = browser_session(ALICE["source"])
        answer = browser.answer_consent(browser.get(url, allow_redirects=False))
        assert answer.status_code in (302, 303), f"{answer.status_code}: {answer.text[:1000]}"
        return answer.headers["Location"]


def run_async(coroutine, timeout: float = RUN_TIMEOUT):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def mcp_sdk_whoami(world: World, url: str, browser: AliceBrowser) -> dict:
    """The guide's client (the MCP Python SDK's OAuthClientProvider), with the test browser."""
    spec = importlib.util.spec_from_file_location("guide_mcp_client_for_servers", world.work / "mcp_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return run_async(module.call_whoami(url, browser=browser))


def fastmcp_whoami(url: str, browser: AliceBrowser, monkeypatch) -> dict:
    """FastMCP's client and its OAuth helper as they are: it registers, listens for the redirect on
    its own callback server and opens "the browser", which here is the test browser in a thread
    that then delivers tsidp's redirect to that callback server."""
    import webbrowser

    from fastmcp import Client
    from fastmcp.client.auth import OAuth

    failures: list = []

    def open_browser(authorization_url: str, *args, **kwargs) -> bool:
        def sign_in() -> None:
            try:
                callback = browser(authorization_url)
                session = browser_session(ALICE["source"])
                deadline = time.monotonic() + 60
                while True:  # the callback server starts right after the browser is opened
                    try:
                        delivered = session.get(callback, allow_redirects=False)
                        break
                    except requests.ConnectionError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                assert delivered.status_code == 200, f"{delivered.status_code}: {delivered.text[:500]}"
            except BaseException as exc:  # reported by the test
                failures.append(exc)

        threading.Thread(target=sign_in, daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", open_browser)

    async def session() -> dict:
        oauth = OAuth(mcp_url=url, client_name="whoami fastmcp test", callback_timeout=120)
        async with Client(url, auth=oauth) as client:
            first = (await client.call_tool("whoami", {})).content[0].text
            first_token = oauth.context.current_tokens.access_token
            oauth.context.token_expiry_time = 1  # as if the access token had expired
            second = (await client.call_tool("whoami", {})).content[0].text
            tokens = oauth.context.current_tokens
        return {"user": first, "after_refresh": second, "refreshed": tokens.access_token != first_token,
                "client_id": oauth.context.client_info.client_id, "scope": tokens.scope}

    try:
        return run_async(session())
    finally:
        assert not failures, failures


# ---------------------------------------------------------------------------
# Direct sign-ins and raw requests, for what the servers must refuse
# ---------------------------------------------------------------------------


def sign_in(world: World, resource: str, client: Optional[dict] = None,
            scope: str = "openid email offline_access", person: dict = ALICE) -> dict:
    """Alice (or ``person``) signs in with code + PKCE S256 + resource; returns tsidp's token
    response."""
    client = client or world.public_client
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = browser_session(person["source"])
    tsidp = world.tsidp
    answer = browser.get(tsidp.url("/authorize"), allow_redirects=False, params={
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": CALLBACK, "scope": scope,
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource})
    answer = browser.answer_consent(answer)
    assert answer.status_code in (302, 303), answer.text[:1000]
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert "code" in query, answer.headers["Location"]
    tokens = browser.post(tsidp.url("/token"), data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": CALLBACK,
        "client_id": client["client_id"], "code_verifier": verifier, "resource": resource})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    world.tokens += [body[name] for name in ("access_token", "id_token", "refresh_token") if name in body]
    return body


def initialize(server: McpServer, authorization: Optional[str], message: dict = INITIALIZE,
               session: Optional[str] = None) -> requests.Response:
    """An MCP initialize request, as the first request of any client (or ``message`` in
    ``session``)."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    if session is not None:
        headers.update({"Mcp-Session-Id": session, "Mcp-Protocol-Version": INITIALIZE["params"]["protocolVersion"]})
    with requests.post(server.url, json=message, headers=headers, timeout=HTTP_TIMEOUT, stream=True) as answer:
        return answer


def assert_accepted(answer: requests.Response, server: McpServer) -> None:
    assert answer.status_code == 200, (
        f"{server.name} refused a good token: {answer.status_code} {answer.headers}\n{server.process.logs()}")


def assert_refused(answer: requests.Response, server: McpServer, invalid_token: bool = True) -> None:
    """401 with an RFC 6750 challenge that points to the protected-resource metadata (RFC 9728)."""
    assert answer.status_code == 401, f"{server.name} did not refuse: {answer.status_code}\n{server.process.logs()}"
    challenge = answer.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    assert f'resource_metadata="{server.metadata_url}"' in challenge, challenge
    if invalid_token:
        assert 'error="invalid_token"' in challenge, challenge


def jwt_part(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---------------------------------------------------------------------------


def test_protected_resource_metadata_names_tsidp(server, world):
    metadata = requests.get(server.metadata_url, timeout=HTTP_TIMEOUT).json()
    assert metadata["resource"] == server.url
    assert metadata["authorization_servers"] == [world.tsidp.issuer]
    assert "openid" in metadata["scopes_supported"], metadata


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.filterwarnings("ignore:Using in-memory token storage")
def test_client_signs_in_calls_and_refreshes(server, client, world, monkeypatch):
    browser = AliceBrowser()
    if client == "mcp":
        result = mcp_sdk_whoami(world, server.url, browser)
    else:
        result = fastmcp_whoami(server.url, browser, monkeypatch)
    assert result["user"] == ALICE["login"], result
    assert result["after_refresh"] == ALICE["login"], result
    assert result["refreshed"], f"{client} did not refresh the access token"
    assert browser.sign_ins == 1, "the refresh went back to the browser instead of using the refresh token"
    assert "offline_access" in result["scope"].split(), result
    # The client registered itself, and tsidp keeps its registration.
    stored = [json.loads(p.read_text()) for p in world.tsidp.state_dir.glob("tsidp-client-*.json")]
    assert any(c.get("client_id") == result["client_id"] for c in stored)


def test_token_for_this_server_is_accepted(server, world):
    """The control for the refusals below: a direct sign-in for this server's resource works."""
    tokens = sign_in(world, server.url)
    assert jwt_part(tokens["access_token"], 1)["aud"] == server.url
    assert_accepted(initialize(server, f"Bearer {tokens['access_token']}"), server)


def test_session_belongs_to_the_user_who_opened_it(server, world):
    """Bob's good token does not reach alice's session, even with its ID."""
    alice = sign_in(world, server.url)["access_token"]
    opened = initialize(server, f"Bearer {alice}")
    assert_accepted(opened, server)
    session = opened.headers["Mcp-Session-Id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert initialize(server, f"Bearer {alice}", ping, session).status_code == 200
    bob = sign_in(world, server.url, person=BOB)["access_token"]
    assert_accepted(initialize(server, f"Bearer {bob}"), server)  # a session of his own is fine
    answer = initialize(server, f"Bearer {bob}", ping, session)
    assert answer.status_code in (403, 404), f"{server.name}: {answer.status_code} {answer.headers}"


def test_token_for_another_resource_is_refused(server, world):
    tokens = sign_in(world, world.other_resource)
    claims = jwt_part(tokens["access_token"], 1)
    assert claims["aud"] == world.other_resource and jwt_part(tokens["access_token"], 0)["typ"] == "at+jwt"
    assert_refused(initialize(server, f"Bearer {tokens['access_token']}"), server)


def test_id_token_is_refused(server, world):
    """The ID token of a sign-in for this very server: signed by tsidp, but no access token."""
    tokens = sign_in(world, server.url)
    assert jwt_part(tokens["id_token"], 0).get("typ") != "at+jwt"
    assert_refused(initialize(server, f"Bearer {tokens['id_token']}"), server)


def test_missing_or_garbled_token_is_refused(server, world):
    assert_refused(initialize(server, None), server, invalid_token=False)
    good = sign_in(world, server.url)["access_token"]
    header, payload, signature = good.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for garbled in ("not-a-tsidp-token", f"{header}.{payload}.{flipped}", f"{header}.{payload[:-4]}.{signature}",
                    good[: len(good) // 2]):
        world.tokens.append(garbled)
        assert_refused(initialize(server, f"Bearer {garbled}"), server)


def test_revoked_opaque_token_is_refused(server, world):
    tokens = sign_in(world, server.url, client=world.opaque_client)
    opaque = tokens["access_token"]
    assert opaque.count(".") != 2, "expected an opaque access token"
    if not server.introspects:
        # Offline verification knows JWTs only.
        assert_refused(initialize(server, f"Bearer {opaque}"), server)
        return
    assert_accepted(initialize(server, f"Bearer {opaque}"), server)
    revoked = requests.post(world.tsidp.url("/revoke"), timeout=HTTP_TIMEOUT,
                            data={"token": opaque, "client_id": world.opaque_client["client_id"]})
    assert revoked.status_code == 200, revoked.text
    assert_refused(initialize(server, f"Bearer {opaque}"), server)


@pytest.mark.parametrize("server", [name for name in SERVERS if name != "python-introspection"], indirect=True)
def test_jwt_verifier_fetches_keys_again_for_an_unknown_kid(server, world):
    """Two rotations in a row: tokens are then signed with a key that was not yet published when
    the server last fetched the JWKS, and the server fetches it again. (The servers fetch at most
    every 10 seconds, so a token with a new kid may be refused for a moment: bounded retries.)"""

    def accepted_in_the_end(token: str) -> None:
        answers: list = []
        wait_until(lambda: answers.append(initialize(server, f"Bearer {token}")) or answers[-1].status_code == 200,
                   STARTUP_TIMEOUT, interval=1.0)
        assert_accepted(answers[-1], server)

    before = sign_in(world, server.url)["access_token"]
    accepted_in_the_end(before)  # an earlier run of this test may have rotated the keys already
    jwks = requests.get(world.tsidp.url("/.well-known/jwks.json"), timeout=HTTP_TIMEOUT).json()
    known = {key["kid"] for key in jwks["keys"]}
    admin = browser_session(ALICE["source"])
    for _ in range(2):
        rotated = admin.post(world.tsidp.url("/keys/rotate"), headers={"Accept": "application/json"})
        assert rotated.status_code == 200, rotated.text[:500]
    after = sign_in(world, server.url)["access_token"]
    assert jwt_part(after, 0)["kid"] not in known, "the token is signed with a key the server may know"
    accepted_in_the_end(after)
    assert_accepted(initialize(server, f"Bearer {before}"), server)  # the old key is still published


def restart_tsidp(world: World, processes, binary: Path, launcher: Optional[list] = None) -> None:
    """Stops the world's tsidp and starts it again on the same port and state (so with the same
    issuer and tokens), under ``launcher`` if given."""
    old = world.tsidp
    old.process.stop()
    for _ in range(20):  # the port may linger for a moment after the old process exits
        new = start_tsidp(processes, binary, old.state_dir.parent, old.identities, port=old.port, launcher=launcher)
        if new.port == old.port:
            world.tsidp = new
            return
        new.process.stop()
        time.sleep(0.25)
    pytest.fail(f"could not restart tsidp on port {old.port}")


@pytest.mark.parametrize("server", [name for name in SERVERS if name != "python-jwt"], indirect=True)
def test_expired_opaque_token_is_refused(server, world, processes, tsidp_binary):
    """tsidp started again with its clock ten minutes ahead (libfaketime): the five-minute access
    token has expired, and /introspect says so to the server. (The JWT-verifying server refuses
    every opaque token: test above.)"""
    assert server.introspects
    faketime = shutil.which("faketime")
    if faketime is None:
        missing_tool("faketime is not installed (apt-get install faketime)")
    opaque = sign_in(world, server.url, client=world.opaque_client)["access_token"]
    assert_accepted(initialize(server, f"Bearer {opaque}"), server)
    restart_tsidp(world, processes, tsidp_binary, ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", faketime, "-f", "+600s"])
    try:
        assert_refused(initialize(server, f"Bearer {opaque}"), server)
    finally:
        restart_tsidp(world, processes, tsidp_binary)


def test_servers_never_log_tokens(world):
    """Runs after the others: no token that reached a server appears in its output."""
    assert world.tokens, "the tests above handed no tokens to the servers"
    for server in world.servers.values():
        if not isinstance(server, McpServer):
            continue
        logs = "".join(Path(p).read_text(errors="replace") for p in server.process.log_paths)
        leaked = [token[:12] + "…" for token in world.tokens if len(token) > 16 and token in logs]
        assert not leaked, f"{server.name} logged tokens: {leaked}"

"""docs/guides/mcp.md: the MCP Python SDK's server and client, unmodified, with tsidp --dev as the
authorization server.

The guide's ``mcp_server.py`` runs as it is (its TokenVerifier asks tsidp's /introspect as a client
that declares the server's resource) and the guide's ``mcp_client.py`` goes through the whole OAuth flow (protected-resource metadata,
authorization-server metadata, dynamic registration, code + PKCE S256 + resource, consent,
tokens, refresh) and calls a tool. What the guide states about checking tokens (audience-bound
JWT access tokens, what /introspect answers a resource server) is checked too, so the guide is
updated when it changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import (
    ALICE,
    BOB,
    HTTP_TIMEOUT,
    REPO_ROOT,
    STARTUP_TIMEOUT,
    browser_session,
    free_port,
    import_peer,
    wait_until,
    whois_document,
)

GUIDE = REPO_ROOT / "docs" / "guides" / "mcp.md"
RUN_TIMEOUT = 300  # seconds for one run of the client, on a loaded machine
EXAMPLE = re.compile(r"<!-- example: (?P<name>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)
CALLBACK = "http://127.0.0.1:33418/callback"


def examples() -> dict:
    found = {m.group("name"): m.group("body") + "\n" for m in EXAMPLE.finditer(GUIDE.read_text())}
    assert {"mcp_server.py", "mcp_client.py", "mcp-identities.json"} <= set(found), sorted(found)
    return found


class Setup:
    def __init__(self, tsidp, mcp_url: str, work: Path, server_client: dict):
        self.tsidp = tsidp
        self.mcp_url = mcp_url
        self.work = work
        # The MCP server's own client (its /register answer), which declares the resource.
        self.server_client = server_client


@pytest.fixture(scope="module")
def mcp_setup(tsidp_factory, processes, scratch_dirs) -> Setup:
    import_peer("mcp", "install the MCP Python SDK: .venv-peers/bin/pip install -r Tests/EndToEnd/requirements.txt")
    import_peer("uvicorn", "install the MCP Python SDK (it brings uvicorn)")
    work = scratch_dirs("mcp-guide")
    found = examples()
    for name in ("mcp_server.py", "mcp_client.py"):
        (work / name).write_text(found[name])

    mcp_port = free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    # The guide's identities, with the resource of this run's server. Bob (127.0.0.2) may register
    # clients but has no resource grant.
    alice = json.loads(found["mcp-identities.json"])[0]
    alice["CapMap"]["tailscale.com/cap/tsidp"][0]["resources"] = [mcp_url]
    assert alice["UserProfile"]["LoginName"] == ALICE["login"]
    bob = whois_document(BOB)
    bob["CapMap"] = {"tailscale.com/cap/tsidp": [{"allow_dcr": True}]}
    tsidp = tsidp_factory(identities=[alice, bob])
    # The MCP server's own client, declaring its resource, as the guide registers it.
    registered = browser_session(ALICE["source"]).post(tsidp.url("/register"), json={
        "client_name": "MCP server", "redirect_uris": [f"http://127.0.0.1:{mcp_port}/unused"],
        "resources": [mcp_url]})
    assert registered.status_code == 201, registered.text
    assert registered.json()["resources"] == [mcp_url]

    env = {**os.environ, "TSIDP_ISSUER": tsidp.issuer, "MCP_URL": mcp_url, "PYTHONUNBUFFERED": "1",
           "MCP_CLIENT_ID": registered.json()["client_id"], "MCP_CLIENT_SECRET": registered.json()["client_secret"]}
    server = processes.start("mcp-server", [sys.executable, "mcp_server.py"], cwd=work, log_dir=work, env=env)
    metadata_url = f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp"

    def ready() -> bool:
        if server.popen.poll() is not None:
            return True
        try:
            return requests.get(metadata_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, STARTUP_TIMEOUT, interval=0.2)
    assert server.popen.poll() is None and ready(), f"the guide's MCP server did not start:\n{server.logs()}"
    return Setup(tsidp, mcp_url, work, registered.json())


def load_client_module(work: Path):
    spec = importlib.util.spec_from_file_location("guide_mcp_client", work / "mcp_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def browser_from(address: str):
    """The guide's browser step done with the suite's browser (connections from `address`)."""

    def sign_in(url: str) -> str:
        browser = browser_session(address)
        answer = browser.get(url, allow_redirects=False)
        assert browser.answer_consent is not None
        consented = browser.answer_consent(answer)
        assert consented.status_code in (302, 303), f"{consented.status_code}: {consented.text[:1000]}"
        return consented.headers["Location"]

    return sign_in


def run_async(coroutine, timeout: float = RUN_TIMEOUT):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


# ---------------------------------------------------------------------------


def test_protected_resource_metadata_names_tsidp(mcp_setup):
    port = urlsplit(mcp_setup.mcp_url).port
    metadata = requests.get(
        f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", timeout=HTTP_TIMEOUT).json()
    assert metadata["resource"] == mcp_setup.mcp_url
    assert metadata["authorization_servers"] == [mcp_setup.tsidp.issuer]
    # tsidp's RFC 8414 document, at the address the SDK asks first, names the same issuer.
    asm = requests.get(
        f"http://127.0.0.1:{mcp_setup.tsidp.port}/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT).json()
    assert asm["issuer"] == mcp_setup.tsidp.issuer
    assert asm["registration_endpoint"] == mcp_setup.tsidp.url("/register")
    assert "S256" in asm["code_challenge_methods_supported"]
    assert "offline_access" in asm["scopes_supported"]


def test_server_refuses_requests_without_a_good_token(mcp_setup):
    for headers in ({}, {"Authorization": "Bearer not-a-tsidp-token"}):
        answer = requests.post(
            mcp_setup.mcp_url, json={}, timeout=HTTP_TIMEOUT,
            headers={**headers, "Accept": "application/json, text/event-stream"})
        assert answer.status_code == 401, answer.text
        assert "resource_metadata=" in answer.headers.get("WWW-Authenticate", ""), answer.headers


def test_guide_client_runs_unchanged(mcp_setup):
    env = {**os.environ, "MCP_URL": mcp_setup.mcp_url}
    process = subprocess.Popen(
        [sys.executable, "mcp_client.py"], cwd=str(mcp_setup.work), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"mcp_client.py did not finish in {RUN_TIMEOUT}s:\n{output.decode(errors='replace')}")
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"mcp_client.py exited {process.returncode}:\n{text}"
    assert "whoami: alice@example.com (after a refresh: alice@example.com)" in text, text


def test_sdk_flow_with_the_suite_browser(mcp_setup):
    client = load_client_module(mcp_setup.work)
    result = run_async(client.call_whoami(mcp_setup.mcp_url, browser=browser_from(ALICE["source"])))
    assert result["user"] == ALICE["login"]
    assert result["after_refresh"] == ALICE["login"]
    assert result["refreshed"], "the SDK did not refresh the access token"
    assert set(result["scope"].split()) >= {"openid", "offline_access"}, result
    # The client was registered dynamically, by the SDK, and tsidp keeps it.
    clients = [json.loads(p.read_text()) for p in mcp_setup.tsidp.state_dir.glob("tsidp-client-*.json")]
    assert any(c.get("client_id") == result["client_id"] for c in clients), clients


def test_user_without_a_resource_grant_is_refused(mcp_setup):
    client = load_client_module(mcp_setup.work)
    with pytest.raises(BaseException) as raised:
        run_async(client.call_whoami(mcp_setup.mcp_url, browser=browser_from(BOB["source"])))
    text = "".join(traceback.format_exception(raised.value))
    # The SDK sent `resource`, and tsidp refused it for bob.
    assert "invalid_target" in text, text[-4000:]


def jwt_part(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_token_checks_for_a_resource_server(mcp_setup):
    """What the guide says about checking tokens: audience-bound JWTs and /introspect."""
    tsidp = mcp_setup.tsidp
    admin = browser_session(ALICE["source"])
    public = admin.post(tsidp.url("/register"), json={
        "client_name": "token checks", "redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"}).json()
    unrelated = admin.post(tsidp.url("/register"), json={
        "client_name": "no resources", "redirect_uris": ["http://127.0.0.1:33419/unused"]}).json()
    assert unrelated.get("client_secret"), unrelated
    server = mcp_setup.server_client

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = browser_session(ALICE["source"])
    answer = browser.get(tsidp.url("/authorize"), allow_redirects=False, params={
        "response_type": "code", "client_id": public["client_id"], "redirect_uri": CALLBACK,
        "scope": "openid email offline_access", "state": "st", "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": mcp_setup.mcp_url})
    answer = browser.answer_consent(answer)
    assert answer.status_code in (302, 303), answer.text[:1000]
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = browser.post(tsidp.url("/token"), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "client_id": public["client_id"], "code_verifier": verifier, "resource": mcp_setup.mcp_url})
    assert tokens.status_code == 200, tokens.text
    access_token = tokens.json()["access_token"]

    # The access token is an RFC 9068 JWT for the resource; the ID token names only the client.
    assert jwt_part(access_token, 0)["typ"] == "at+jwt"
    claims = jwt_part(access_token, 1)
    assert claims["aud"] == mcp_setup.mcp_url and claims["iss"] == tsidp.issuer, claims
    id_token = jwt_part(tokens.json()["id_token"], 1)
    assert id_token["aud"] == public["client_id"] and "azp" not in id_token, id_token

    by_resource_server = browser.post(
        tsidp.url("/introspect"), data={"token": access_token}, auth=(server["client_id"], server["client_secret"]))
    assert by_resource_server.status_code == 200
    introspected = by_resource_server.json()
    assert introspected["active"] is True, introspected
    assert introspected["aud"] == mcp_setup.mcp_url and introspected["client_id"] == public["client_id"]
    assert introspected["username"] == ALICE["login"]

    by_unrelated_client = browser.post(
        tsidp.url("/introspect"), data={"token": access_token},
        auth=(unrelated["client_id"], unrelated["client_secret"]))
    assert by_unrelated_client.json() == {"active": False}
    by_public_client = browser.post(
        tsidp.url("/introspect"), data={"token": access_token, "client_id": public["client_id"]})
    assert by_public_client.status_code in (400, 401) and by_public_client.json()["error"] == "invalid_client"

"""``--funnel``, end to end, with the stand-in ``tailscaled`` (Tests/StandIns/tailscaled).

With ``--funnel`` tsidp does not listen on the node's port itself: it opens a plain-HTTP listener
on ``127.0.0.1:<free port>`` and writes a foreground entry into tailscaled's serve config (under
its IPN-bus session) that makes tailscaled terminate HTTPS for ``<node>:<port>``, proxy every path
to that listener, and let Funnel traffic in (docs/tailnet-modes.md, "Funnel"). These tests play
tailscaled's proxy themselves: they connect to the proxy port with the headers the proxy adds
(``Host``, ``X-Forwarded-For``, ``X-Forwarded-Proto``, and ``Tailscale-Funnel-Request`` for
callers from the internet), and check:

1. embedded mode: the serve-config entry, exactly, next to unrelated content written before the
   start, and no other listener than the proxy's and the operator's; what a Funnel caller may
   reach (discovery without ``registration_endpoint``, JWKS, ``/token``, ``/userinfo``,
   ``/introspect``, ``/revoke``) and the 401s for everything else (and not without the header),
   on the proxy listener and on ``--local-port`` alike; SIGTERM removing the entry and leaving the
   rest as it was. Then a full sign-in whose caller is named by ``X-Forwarded-For`` (last element
   of the last header) on a connection from tailscaled's user (root here), and the same request
   from uid 65534 not identified;
2. embedded mode: a SIGKILLed tailscaled, restarted by tsidp, gets the entry again under a new
   session, pointing at the same proxy port;
3. the refusals (exit 2, one ``tsidp: --funnel:`` line, the serve config as it was), in both modes:
   a node without the ``funnel`` attribute, a port Funnel does not allow, a port another serve
   config already serves (TCP port, Web host:port, another session's foreground entry), and
   tailscaled refusing the write (403, the stand-in's ``read_only`` fault);
4. ``--use-local-tailscaled`` with a stand-in the test starts, running as uid 65534: with
   ``--funnel`` the same entry and gate, the entry removed on SIGTERM, a SIGKILLed tsidp's entry
   gone with its bus session, and the proxy's headers believed only from the stand-in's user (so
   root's connections are the strangers); without ``--funnel`` tsidp binds the node's address and a
   direct peer's ``X-Forwarded-For`` and ``Tailscale-User-Login`` change nothing.

The two tests of who may name the caller run on a "busy host": 64 extra listening sockets, which
the kernel lists in /proc/net/tcp before any connection, so tsidp must read the whole table (the
kernel hands it out a page at a time) to find the proxy connection's owner.

A second local user is played with ``setpriv --reuid=65534 --regid=65534 --clear-groups``; without
root or setpriv the tests that need it skip, or fail under ``TSIDP_REQUIRE_INTEROP=1``. Every
process is stopped (and every stand-in killed by its pid) when its test ends; every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from test_embedded_mode import (  # noqa: F401 - ``embedded`` is a fixture used by name
    ALICE,
    BOB,
    BOB_SOURCE,
    GOOD_KEY,
    HTTP_TIMEOUT,
    IO_TIMEOUT,
    NODE,
    NULL_SOURCE,
    RP_SOURCE,
    STANDIN,
    STANDIN_CONFIG,
    START_TIMEOUT,
    STOP_TIMEOUT,
    BoundedSession,
    Client,
    TailnetAdapter,
    authorization_params,
    embedded,
    free_port,
    local_api_get,
    register_client,
    tailnet_session,
    verify_id_token,
    wait_for,
)
from test_standin_tailscaled import START_PREFS, BusStream, call

ALICE_IP = ALICE["Node"]["Addresses"][0].split("/")[0]  # 100.64.0.1
BOB_IP = BOB["Node"]["Addresses"][0].split("/")[0]  # 100.64.0.2
PUBLIC_IP = "203.0.113.7"  # a relying party on the internet, as Funnel's X-Forwarded-For names it
NOBODY = 65534

FUNNEL_CONFIG = dict(STANDIN_CONFIG, funnel=True)
# --use-local-tailscaled binds the node's addresses: give the node one that can be bound here.
LOCAL_CONFIG = dict(FUNNEL_CONFIG, addresses=["127.0.0.10"])
NODE_ADDRESS = "127.0.0.10"

# Serve-config content that is not tsidp's: another port, served and funnelled by someone else.
UNRELATED = {
    "TCP": {"10000": {"HTTPS": True}},
    "Web": {f"{NODE}:10000": {"Handlers": {"/": {"Proxy": "http://127.0.0.1:9"}}}},
    "AllowFunnel": {f"{NODE}:10000": True},
}

EMBEDDED_SERVING = re.compile(r"^tsidp: serving (https://\S+) through tailscaled's proxy, with Funnel$", re.M)
LOCAL_SERVING = re.compile(r"^.*\bissuer=(\S+) .*\[TsidpCLI\] tsidp is serving$", re.M)
ANY_SERVING = re.compile(r"tsidp: serving |tsidp is serving")
FUNNEL_ON = re.compile(r"^.*\bproxy=http://127\.0\.0\.1:(\d+)\b.*\bFunnel is on\b.*$", re.M)
FUNNEL_OFF = re.compile(r"^.*\bFunnel is off\b.*$", re.M)
SERVE_WRITE = "localapi: POST /localapi/v0/serve-config -> "
SESSION_DROPPED = re.compile(r"serve-config: foreground config of session (\S+) removed")


def expected_entry(port: int, proxy_port: int) -> dict:
    """The foreground serve config tsidp writes for ``--port port``."""
    host_port = f"{NODE}:{port}"
    return {
        "TCP": {str(port): {"HTTPS": True}},
        "Web": {host_port: {"Handlers": {"/": {"Proxy": f"http://127.0.0.1:{proxy_port}"}}}},
        "AllowFunnel": {host_port: True},
    }


def split_foreground(config: Optional[dict]) -> tuple:
    """(the config without ``Foreground``, the ``Foreground`` map)."""
    config = dict(config or {})
    foreground = config.pop("Foreground", None) or {}
    return config, foreground


# ---------------------------------------------------------------------------
# A second local user (uid 65534)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class SecondUser:
    prefix: list  # setpriv … --
    python: str  # an interpreter that uid 65534 can run


_second_user: list = []


def second_user(missing_tool_policy) -> SecondUser:
    """``setpriv`` to uid/gid 65534 and a Python it can run; skips, or fails under
    ``TSIDP_REQUIRE_INTEROP=1``, when this is impossible here."""
    if _second_user:
        return _second_user[0]
    if os.geteuid() != 0:
        missing_tool_policy("acting as a second local user (uid 65534) needs root")
    setpriv = shutil.which("setpriv") or next((p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)), None)
    if setpriv is None:
        missing_tool_policy("setpriv (util-linux) is not installed; it runs the second local user's programs")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3",
                  shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    problems = []
    for python in dict.fromkeys(c for c in candidates if c):
        try:
            result = subprocess.run([*prefix, python, "-I", "-c", "import os; print(os.geteuid(), os.getegid())"],
                                    capture_output=True, text=True, timeout=IO_TIMEOUT, cwd="/")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{python}: {exc}")
            continue
        if result.returncode == 0 and result.stdout.split() == [str(NOBODY), str(NOBODY)]:
            _second_user.append(SecondUser(prefix, python))
            return _second_user[0]
        problems.append(f"{python}: status {result.returncode}, {result.stdout.strip()!r} {result.stderr.strip()[:200]!r}")
    missing_tool_policy(f"no Python that uid {NOBODY} can run through setpriv: {problems}")
    raise AssertionError("unreachable")


# One request to tsidp's proxy listener, from a separate process (so that its socket belongs to the
# user the process runs as). Prints the answer as JSON.
PROXY_REQUEST = r"""
import http.client, json, os, sys
port, path, headers = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
for name, value in headers:
    connection.putheader(name, value)
connection.endheaders()
response = connection.getresponse()
body = response.read()
print(json.dumps({"uid": os.geteuid(), "status": response.status, "location": response.getheader("Location"),
                  "body": body[:500].decode("utf-8", "replace")}))
"""


def request_as(user: SecondUser, uid: int, proxy_port: int, path: str, headers: list) -> dict:
    """GET ``path`` on the proxy listener from a process running as ``uid`` (0 or 65534)."""
    argv = [user.python, "-I", "-c", PROXY_REQUEST, str(proxy_port), path, json.dumps(headers)]
    if uid != 0:
        assert uid == NOBODY
        argv = user.prefix + argv
    result = subprocess.run(argv, capture_output=True, text=True, timeout=HTTP_TIMEOUT + 5, cwd="/")
    assert result.returncode == 0, (result.returncode, result.stderr)
    answer = json.loads(result.stdout)
    assert answer["uid"] == uid, answer
    return answer


def proxy_headers(forwarded_for: str, port: int = 443, funnel: Optional[str] = None) -> list:
    host = NODE if port == 443 else f"{NODE}:{port}"
    headers = [("Host", host), ("X-Forwarded-For", forwarded_for), ("X-Forwarded-Proto", "https"),
               ("X-Forwarded-Host", host)]
    if funnel is not None:
        headers.append(("Tailscale-Funnel-Request", funnel))
    return headers


# ---------------------------------------------------------------------------
# Playing tailscaled's serve proxy
# ---------------------------------------------------------------------------


class ServeProxyAdapter(HTTPAdapter):
    """Sends a request for ``https://<node>[:port]/…`` as plain HTTP to tsidp's proxy listener on
    127.0.0.1, as tailscaled's serve proxy does after terminating TLS: ``Host`` kept, the caller's
    address in ``X-Forwarded-For``, ``X-Forwarded-Proto: https``, and for a caller from the internet
    ``Tailscale-Funnel-Request``. The caller's request and URL stay as they were (cookies, errors)."""

    def __init__(self, proxy_port: int, forwarded_for: str, funnel: Optional[str] = None, **kwargs):
        self.proxy_port = proxy_port
        self.forwarded_for = forwarded_for
        self.funnel = funnel
        super().__init__(**kwargs)

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        assert parts.scheme == "https" and parts.hostname == NODE, f"not a request for the node: {request.url}"
        original = request
        request = request.copy()
        request.url = urlunsplit(("http", f"127.0.0.1:{self.proxy_port}", parts.path or "/", parts.query, ""))
        for name, value in proxy_headers(self.forwarded_for, parts.port or 443, self.funnel):
            request.headers[name] = value
        response = super().send(request, **kwargs)
        response.request = original
        response.url = original.url
        return response


def proxy_session(proxy_port: int, forwarded_for: str, funnel: Optional[str] = None) -> requests.Session:
    session = BoundedSession()
    session.trust_env = False
    session.mount("https://", ServeProxyAdapter(proxy_port, forwarded_for, funnel))
    return session


# ---------------------------------------------------------------------------
# The relying party's side
# ---------------------------------------------------------------------------


def register_operator_client(local_port: int, name: str = "funnel-rp") -> Client:
    """``POST /clients/new`` on the ``--local-port`` listener, as the operator."""
    redirect_uri = f"https://rp.example.com/callback/{os.urandom(4).hex()}"
    response = tailnet_session(RP_SOURCE, None).post(
        f"http://127.0.0.1:{local_port}/clients/new", data={"name": name, "redirect_uri": redirect_uri},
        headers={"Accept": "application/json"})
    assert response.status_code == 200, f"POST /clients/new -> {response.status_code}: {response.text[:1000]}"
    body = response.json()
    return Client(body["client_id"], body["client_secret"], redirect_uri)


def callback(status: int, location: Optional[str], client: Client, params: dict, issuer: str) -> dict:
    """The parameters of an authorization response redirecting to the client (state and iss checked)."""
    location = location or ""
    assert status in (302, 303) and location.split("?", 1)[0] == client.redirect_uri, (status, location)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query.get("state") == params["state"] and query.get("iss") == issuer, location
    return query


def expect_code(status: int, location: Optional[str], client: Client, params: dict, issuer: str) -> str:
    query = callback(status, location, client, params, issuer)
    assert "error" not in query and query.get("code"), f"no code: {location}"
    return query["code"]


def expect_unknown_caller(status: int, location: Optional[str], client: Client, params: dict, issuer: str) -> None:
    query = callback(status, location, client, params, issuer)
    assert query.get("error") == "access_denied" and "code" not in query, f"caller was identified: {location}"


def redeem(rp: requests.Session, issuer: str, client: Client, code: str, verifier: str, params: dict) -> dict:
    """Redeems ``code`` as the relying party (over Funnel, in these tests) and checks the ID token
    against the JWKS; returns its claims."""
    response = rp.post(issuer + "/token", auth=(client.client_id, client.client_secret),
                       data={"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
                             "code_verifier": verifier})
    assert response.status_code == 200, f"/token -> {response.status_code}: {response.text[:1000]}"
    token = response.json()
    jwks = rp.get(issuer + "/.well-known/jwks.json")
    assert jwks.status_code == 200, jwks.text[:500]
    claims = verify_id_token(token["id_token"], jwks.json())
    assert claims["iss"] == issuer and claims.get("nonce") == params["nonce"], claims
    assert client.client_id in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]), claims
    claims["_access_token"] = token["access_token"]
    return claims


def sign_in_as_child(user: SecondUser, uid: int, proxy_port: int, client: Client, headers: list) -> tuple:
    """``/authorize`` from a process running as ``uid``; returns (status, location, params, verifier)."""
    params, verifier = authorization_params(client)
    answer = request_as(user, uid, proxy_port, "/authorize?" + urlencode(params), headers)
    return answer["status"], answer["location"], params, verifier


# ---------------------------------------------------------------------------
# Processes: tsidp's listening sockets, stand-ins the test starts, tsidp with --use-local-tailscaled
# ---------------------------------------------------------------------------


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets(pid: int) -> set:
    """The TCP (address, port) pairs process ``pid`` listens on (Linux: its fds and /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if found:
            inodes.add(found.group(1))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                address, port = fields[1].split(":")
                listening.add((_address(address), int(port, 16)))
    return listening


class OwnStandIn:
    """A stand-in tailscaled started by the test (``user``: run it as uid 65534)."""

    def __init__(self, workdir: Path, name: str, config: dict, socket_path: Path, statedir: Path,
                 user: Optional[SecondUser] = None):
        self.workdir = workdir
        self.socket = str(socket_path)
        self.statedir = statedir
        self.config_path = workdir / f"{name}.json"
        self.config = config
        self.write_config(config)
        self.stderr_path = workdir / f"{name}.stderr"
        argv = [str(STANDIN), "--tun=userspace-networking", f"--socket={socket_path}", f"--statedir={statedir}"]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "TSNET_", "TSIDP_", "TAILSCALE_"))}
        environment["TSIDP_STANDIN_CONFIG"] = str(self.config_path)
        if user is not None:
            argv = user.prefix + [user.python] + argv
            environment["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        with open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                          env=environment, cwd=str(workdir), start_new_session=True)

    def wait_ready(self) -> "OwnStandIn":
        wait_for(self.ready, START_TIMEOUT, f"the stand-in's socket {self.socket}")
        return self

    def write_config(self, config: dict) -> None:
        self.config_path.write_text(json.dumps(config))
        self.config_path.chmod(0o644)

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def ready(self) -> bool:
        assert self.popen.poll() is None, f"stand-in exited with {self.popen.returncode}:\n{self.log}"
        try:
            return call(self.socket, "GET", "/localapi/v0/status?peers=false").status == 200
        except OSError:
            return False

    def login(self, key: str = GOOD_KEY) -> None:
        bus = BusStream(self.socket, 2)
        try:
            if bus.next().get("State") == 6:
                return  # a saved login: already running
            answer = call(self.socket, "POST", "/localapi/v0/start",
                          {"FrontendLogID": "", "UpdatePrefs": START_PREFS, "AuthKey": key})
            assert answer.status == 204, answer
            bus.until_state(6)
        finally:
            bus.close()

    def serve_config_body(self) -> bytes:
        answer = call(self.socket, "GET", "/localapi/v0/serve-config")
        assert answer.status == 200, answer
        return answer.body

    def serve_config(self) -> Optional[dict]:
        return json.loads(self.serve_config_body())

    def set_serve_config(self, config: Optional[dict]) -> None:
        etag = call(self.socket, "GET", "/localapi/v0/serve-config").headers["Etag"]
        answer = call(self.socket, "POST", "/localapi/v0/serve-config", config, headers={"If-Match": etag})
        assert answer.status == 200, answer

    def reload(self, config: dict) -> None:
        """Rewrites the config file and sends SIGHUP; returns once the stand-in says it reloaded."""
        done = self.log.count("SIGHUP: config reloaded")
        self.write_config(config)
        self.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log.count("SIGHUP: config reloaded") > done, STOP_TIMEOUT, "the stand-in to reload")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                assert self.popen.wait(timeout=STOP_TIMEOUT) == 0, self.log
            except subprocess.TimeoutExpired:
                raise AssertionError(f"stand-in ignored SIGTERM\n{self.log}") from None


@pytest.fixture
def own_standins(scratch_dirs, missing_tool_policy) -> Iterator[Callable[..., OwnStandIn]]:
    """``own_standins(config, socket_path=None, statedir=None, user=None)`` starts a stand-in; all
    of them are killed (by pid) when the test ends."""
    if shutil.which("openssl") is None:
        missing_tool_policy("openssl is not on PATH; the stand-in tailscaled needs it to make certificates")
    started: list = []

    def make(config: dict, socket_path: Optional[Path] = None, statedir: Optional[Path] = None,
             user: Optional[SecondUser] = None) -> OwnStandIn:
        workdir = scratch_dirs("funnel-standin")
        if user is not None:
            os.chown(workdir, NOBODY, NOBODY)
        if statedir is None:
            statedir = workdir / "state"
        process = OwnStandIn(workdir, f"standin-{len(started)}", config, socket_path or workdir / "ts.sock",
                             statedir, user)
        started.append(process)
        return process.wait_ready()

    yield make
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
        process.popen.wait(timeout=STOP_TIMEOUT)


def seed_serve_config(own_standins, state_dir: Path, content: Optional[dict]) -> None:
    """Before tsidp's first start on ``state_dir``: logs the node in there and writes ``content``
    into its serve config (kept in the state, as tailscaled keeps it), with a stand-in of our own."""
    seeder = own_standins(FUNNEL_CONFIG, socket_path=state_dir / "tailscaled.sock", statedir=state_dir)
    seeder.login()
    if content is not None:
        seeder.set_serve_config(content)
        assert seeder.serve_config() == content
    seeder.stop()


def persisted_serve_config(own_standins, state_dir: Path) -> Optional[dict]:
    """The serve config kept in ``state_dir`` (after tsidp and its tailscaled have exited)."""
    reader = own_standins(FUNNEL_CONFIG, statedir=state_dir)
    try:
        return reader.serve_config()
    finally:
        reader.stop()


@dataclasses.dataclass
class LocalTsidp:
    """tsidp with ``--use-local-tailscaled``."""

    process: object  # conftest's ManagedProcess
    argv: list
    port: int
    local_port: int

    def stderr(self) -> str:
        return Path(self.process.log_paths[1]).read_text(errors="replace")

    def logs(self) -> str:
        return self.process.logs()

    def exited(self) -> Optional[int]:
        return self.process.popen.poll()

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        try:
            return self.process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tsidp still runs after {timeout:.0f}s\n{self.logs()}") from None

    def wait_serving(self) -> str:
        wait_for(lambda: self.exited() is not None or LOCAL_SERVING.search(self.stderr()) is not None,
                 START_TIMEOUT, f"tsidp to serve ({' '.join(self.argv)})")
        found = LOCAL_SERVING.search(self.stderr())
        assert found and self.exited() is None, f"tsidp did not serve (exit status {self.exited()})\n{self.logs()}"
        return found.group(1)


@pytest.fixture
def local_tsidp(processes, tsidp_binary, scratch_dirs) -> Iterator[Callable[..., LocalTsidp]]:
    """``local_tsidp(socket, port, args=(), state_dir=None)`` starts ``tsidp --use-local-tailscaled``
    with ``--local-port``; each is stopped when the test ends."""
    started: list = []

    def make(socket_path: str, port: int, args=(), state_dir: Optional[Path] = None) -> LocalTsidp:
        workdir = scratch_dirs("funnel-local")
        if state_dir is None:
            state_dir = workdir / "state"
            state_dir.mkdir(mode=0o700)
        local_port = free_port()
        argv = [str(tsidp_binary), "--use-local-tailscaled", "--socket", socket_path, "--dir", str(state_dir),
                "--port", str(port), "--local-port", str(local_port), *args]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "TSNET_", "TSIDP_", "TAILSCALE_"))}
        environment["TAILSCALE_USE_WIP_CODE"] = "1"
        process = processes.start(f"tsidp-local-{len(started)}", argv, cwd=workdir, log_dir=workdir, env=environment)
        node = LocalTsidp(process, argv, port, local_port)
        started.append(node)
        return node

    yield make
    for node in reversed(started):
        node.process.stop()


def start_embedded_funnel(embedded, port: int = 443, config: Optional[dict] = None,
                          state_dir: Optional[Path] = None) -> tuple:
    """tsidp in embedded mode with ``--funnel``; returns (node, proxy port) once it serves, after
    checking that "Funnel is on" was logged before the serving line."""
    node = embedded(config=config or FUNNEL_CONFIG, port=port, state_dir=state_dir, wait=False,
                    args=["--funnel", "--debug-tailscaled"])
    wait_for(lambda: node.exited() is not None or EMBEDDED_SERVING.search(node.stderr()) is not None,
             START_TIMEOUT, f"tsidp to serve ({' '.join(node.argv)})")
    log = node.stderr()
    serving = EMBEDDED_SERVING.search(log)
    assert serving and node.exited() is None, f"tsidp did not serve (exit status {node.exited()})\n{node.logs()}"
    assert serving.group(1) == node.issuer(), serving.group(0)
    funnel_on = FUNNEL_ON.search(log)
    assert funnel_on and funnel_on.start() < serving.start(), f"no 'Funnel is on' before serving\n{log}"
    return node, int(funnel_on.group(1))


def check_no_direct_listener(pid: int, proxy_port: int, local_port: int) -> None:
    """tsidp listens only on the proxy port and the operator's port, both on 127.0.0.1."""
    assert listening_sockets(pid) == {("127.0.0.1", proxy_port), ("127.0.0.1", local_port)}, (
        listening_sockets(pid), proxy_port, local_port)


# ---------------------------------------------------------------------------
# What a Funnel caller may reach
# ---------------------------------------------------------------------------


FUNNEL_REFUSAL = {"error": "access_denied", "error_description": "not available over Funnel"}
SIGN_IN_REFUSAL = "Signing in is only possible from a device on the tailnet, not over Funnel."


def denied_requests(client: Client) -> list:
    """(method, path, keyword arguments, HTML page?) of requests a Funnel caller may not make."""
    params, _ = authorization_params(client)
    return [
        ("GET", "/authorize?" + urlencode(params), {}, True),
        ("POST", "/authorize", {"data": params}, True),
        ("GET", f"/authorize/{ALICE['Node']['ID']}?" + urlencode(params), {}, True),
        ("GET", "/clients", {}, False),
        ("GET", "/clients/", {}, False),
        ("GET", f"/clients/{client.client_id}", {}, False),
        ("POST", "/clients/new", {"data": {"name": "x", "redirect_uri": "https://x.example.com/cb"}}, False),
        ("POST", "/register", {"json": {"redirect_uris": ["https://x.example.com/cb"]}}, False),
        ("GET", "/consents", {}, False),
        ("POST", "/consent", {"data": {"decision": "allow"}}, False),
        ("POST", "/keys/rotate", {}, False),
        ("GET", "/healthz/ready", {}, False),
        ("GET", "/healthz/live", {}, False),
        ("GET", "/", {}, False),
        ("GET", "/new", {}, False),
        ("POST", "/new", {"data": {"name": "x", "redirect_uri": "https://x.example.com/cb"}}, False),
        ("GET", f"/edit/{client.client_id}", {}, False),
        ("POST", f"/edit/{client.client_id}/delete", {}, False),
        ("GET", "/me", {}, False),
        ("POST", "/me/logins/end", {"data": {"login": "x"}}, False),
        ("GET", "/style.css", {}, False),
    ]


def is_funnel_refusal(answer: requests.Response, page: bool) -> bool:
    if answer.status_code != 401:
        return False
    if page:
        return (answer.headers.get("Content-Type", "").startswith("text/html") and SIGN_IN_REFUSAL in answer.text
                and "Location" not in answer.headers and "code=" not in answer.text)
    try:
        return answer.json() == FUNNEL_REFUSAL
    except ValueError:
        return False


def check_funnel_gate(issuer: str, proxy_port: int, client: Client) -> None:
    """Through the proxy: a Funnel caller reaches discovery (without registration), the JWKS and
    the endpoints a relying party authenticates to, and gets 401 ``access_denied`` everywhere else.
    The control: the same requests without the Funnel header (from an address WhoIs does not know,
    so that they change nothing) are not refused that way."""
    unmarked = proxy_session(proxy_port, PUBLIC_IP)
    public = proxy_session(proxy_port, PUBLIC_IP, funnel="?1")

    # Allowed over Funnel.
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        answer = public.get(issuer + path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
        document = answer.json()
        assert document["issuer"] == issuer and "registration_endpoint" not in document, (path, document)
        assert document["token_endpoint"] == issuer + "/token", document
        from_tailnet = unmarked.get(issuer + path).json()
        assert from_tailnet.get("registration_endpoint") == issuer + "/register", from_tailnet
    jwks = public.get(issuer + "/.well-known/jwks.json")
    assert jwks.status_code == 200 and jwks.json().get("keys"), jwks.text[:500]
    token = public.post(issuer + "/token", auth=(client.client_id, client.client_secret),
                        data={"grant_type": "authorization_code", "code": "not-a-code-" + os.urandom(8).hex(),
                              "redirect_uri": client.redirect_uri})
    assert token.status_code == 400 and token.json().get("error") == "invalid_grant", (
        token.status_code, token.text[:500])
    for path in ("/introspect", "/revoke"):
        answer = public.post(issuer + path, auth=(client.client_id, client.client_secret),
                             data={"token": "not-a-token-" + os.urandom(8).hex()})
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    assert public.post(issuer + "/introspect", auth=(client.client_id, client.client_secret),
                       data={"token": "not-a-token"}).json() == {"active": False}
    userinfo = public.get(issuer + "/userinfo", headers={"Authorization": "Bearer not-a-token"})
    assert userinfo.status_code == 401 and not is_funnel_refusal(userinfo, False), (
        userinfo.status_code, userinfo.text[:500])

    # Refused over Funnel, and only over Funnel.
    for method, path, kwargs, page in denied_requests(client):
        answer = public.request(method, issuer + path, headers={"Accept": "application/json"},
                                allow_redirects=False, **kwargs)
        assert is_funnel_refusal(answer, page), (method, path, answer.status_code, answer.headers, answer.text[:500])
        control = unmarked.request(method, issuer + path, headers={"Accept": "application/json"},
                                  allow_redirects=False, **kwargs)
        assert not is_funnel_refusal(control, page), (method, path, control.status_code, control.text[:500])
    assert unmarked.get(issuer + "/healthz/ready").status_code == 200

    # Any non-empty value marks a Funnel request, and it takes rights away even from alice's address.
    marked = proxy_session(proxy_port, ALICE_IP, funnel="yes")
    assert is_funnel_refusal(marked.get(issuer + "/clients", headers={"Accept": "application/json"}), False)


# ---------------------------------------------------------------------------
# Who may name the caller
# ---------------------------------------------------------------------------


# tsidp finds the owner of a proxy connection in /proc/net/tcp, which the kernel hands out a page
# (about 27 rows) at a time and in which every listening socket comes before any connection: the
# tests of who may name the caller open many listening sockets first, so that a reader that stops
# after the first page never finds the connection.


class ManyListeningSockets:
    """A host like a busy server: ``count`` listening TCP sockets on 127.0.0.1 (/proc/net/tcp then
    lists them all before any connection)."""

    def __init__(self, count: int = 64):
        self.sockets = []
        try:
            for _ in range(count):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.sockets.append(listener)
                listener.bind(("127.0.0.1", 0))
                listener.listen(1)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        for listener in self.sockets:
            listener.close()
        self.sockets = []


@pytest.fixture
def busy_host() -> Iterator[ManyListeningSockets]:
    host = ManyListeningSockets()
    assert len(Path("/proc/net/tcp").read_text().splitlines()) > 64
    yield host
    host.close()


def check_caller_named_by_proxy(user: SecondUser, proxy: int, port: int, issuer: str, client: Client,
                                trusted: int, stranger: int) -> None:
    """``/authorize`` through the proxy naming alice (``X-Forwarded-For`` and
    ``Tailscale-User-Login``): from a process of uid ``stranger`` the caller is unknown (127.0.0.1
    is not in the stand-in's loopback table); from uid ``trusted`` (tailscaled's user) it is alice,
    whose tokens the relying party then gets over Funnel; the caller is the last element of the
    last ``X-Forwarded-For`` header."""
    rp = proxy_session(proxy, PUBLIC_IP, funnel="?1")
    forged = proxy_headers(ALICE_IP, port) + [("Tailscale-User-Login", "alice@example.com")]
    status, location, params, _ = sign_in_as_child(user, stranger, proxy, client, forged)
    expect_unknown_caller(status, location, client, params, issuer)

    status, location, params, verifier = sign_in_as_child(user, trusted, proxy, client, forged)
    code = expect_code(status, location, client, params, issuer)
    claims = redeem(rp, issuer, client, code, verifier, params)
    assert claims["email"] == "alice@example.com", claims
    access_token = claims["_access_token"]
    info = rp.get(issuer + "/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert info.status_code == 200 and info.json().get("email") == "alice@example.com", info.text[:500]
    assert info.json()["sub"] == claims["sub"]
    introspection = rp.post(issuer + "/introspect", auth=(client.client_id, client.client_secret),
                            data={"token": access_token})
    assert introspection.status_code == 200 and introspection.json().get("active") is True, introspection.text[:500]
    assert introspection.json().get("sub") == claims["sub"], introspection.json()
    revoked = rp.post(issuer + "/revoke", auth=(client.client_id, client.client_secret), data={"token": access_token})
    assert revoked.status_code == 200, (revoked.status_code, revoked.text[:500])
    after = rp.post(issuer + "/introspect", auth=(client.client_id, client.client_secret), data={"token": access_token})
    assert after.status_code == 200 and after.json().get("active") is False, after.text[:500]

    several = proxy_headers(ALICE_IP, port) + [("X-Forwarded-For", f"{PUBLIC_IP}, {BOB_IP}")]
    status, location, params, verifier = sign_in_as_child(user, trusted, proxy, client, several)
    code = expect_code(status, location, client, params, issuer)
    assert redeem(rp, issuer, client, code, verifier, params)["email"] == "bob@example.com"


# ---------------------------------------------------------------------------
# 1. Embedded mode: the entry, the gate, shutdown; the caller named by the proxy
# ---------------------------------------------------------------------------


def test_embedded_funnel_entry_gate_and_shutdown(embedded, own_standins, scratch_dirs, missing_tool_policy):
    user = second_user(missing_tool_policy)
    state_dir = scratch_dirs("funnel") / "state"
    state_dir.mkdir(mode=0o700)
    seed_serve_config(own_standins, state_dir, UNRELATED)

    node, proxy = start_embedded_funnel(embedded, port=443, state_dir=state_dir)
    issuer = node.issuer()
    assert issuer == f"https://{NODE}"

    # The serve config: the unrelated content untouched, and one foreground entry, exactly tsidp's.
    rest, foreground = split_foreground(local_api_get(node.socket_path, "/localapi/v0/serve-config"))
    assert rest == UNRELATED, rest
    assert len(foreground) == 1, foreground
    assert list(foreground.values()) == [expected_entry(443, proxy)], foreground
    # Every request arrives through the proxy: no loopback HTTPS listener, no other bind.
    check_no_direct_listener(node.process.popen.pid, proxy, node.local_port)
    assert proxy_session(proxy, ALICE_IP).get(issuer + "/healthz/ready").status_code == 200

    client = register_client(node, "funnel-rp")
    check_funnel_gate(issuer, proxy, client)

    # Another local user's program (uid 65534) on the proxy port, naming alice: its headers are
    # ignored and the caller is unknown (127.0.0.1 is not in the stand-in's loopback table).
    forged = proxy_headers(ALICE_IP) + [("Tailscale-User-Login", "alice@example.com")]
    status, location, params, _ = sign_in_as_child(user, NOBODY, proxy, client, forged)
    expect_unknown_caller(status, location, client, params, issuer)

    # The header only takes rights away, on the operator's listener too.
    operator = tailnet_session(RP_SOURCE, None)
    assert "registration_endpoint" in operator.get(node.local("/.well-known/openid-configuration")).json()
    marked = operator.get(node.local("/.well-known/openid-configuration"), headers={"Tailscale-Funnel-Request": "?1"})
    assert marked.status_code == 200 and "registration_endpoint" not in marked.json(), marked.text[:500]
    listed = operator.get(node.local("/clients"), headers={"Accept": "application/json"})
    assert listed.status_code == 200 and client.client_id in listed.text, listed.text[:500]
    refused = operator.get(node.local("/clients"), headers={"Accept": "application/json",
                                                            "Tailscale-Funnel-Request": "?1"})
    assert is_funnel_refusal(refused, False), (refused.status_code, refused.text[:500])

    # SIGTERM: tsidp removes its entry itself (a second serve-config write), then exits 0.
    os.kill(node.process.popen.pid, signal.SIGTERM)
    assert node.wait_exit(STOP_TIMEOUT) == 0, node.logs()
    log = node.stderr()
    off = FUNNEL_OFF.search(log)
    assert off, f"no 'Funnel is off'\n{log}"
    stopped = re.search(r"status=0\b.*tailscaled stopped", log)
    assert stopped and off.start() < stopped.start(), log
    writes = re.findall(re.escape(SERVE_WRITE) + r"(\d+)", log)
    assert writes == ["200", "200"], f"serve-config writes: {writes}\n{log}"
    assert not SESSION_DROPPED.search(log), f"tailscaled had to drop the entry itself\n{log}"
    # What is left in the state is exactly what was there before tsidp started.
    assert persisted_serve_config(own_standins, state_dir) == UNRELATED


def test_embedded_funnel_caller_named_by_the_proxy(embedded, busy_host, missing_tool_policy):
    """A full tailnet sign-in through the proxy port: tsidp's own user (root here) is tailscaled's."""
    user = second_user(missing_tool_policy)
    node, proxy = start_embedded_funnel(embedded, port=443)
    client = register_client(node, "funnel-rp")
    check_caller_named_by_proxy(user, proxy, 443, node.issuer(), client, trusted=0, stranger=NOBODY)


# ---------------------------------------------------------------------------
# 2. tailscaled restarted by tsidp: the entry comes back under a new session
# ---------------------------------------------------------------------------


def test_entry_is_written_again_after_tailscaled_restarts(embedded):
    node, proxy = start_embedded_funnel(embedded, port=443)
    issuer = node.issuer()
    _, foreground = split_foreground(local_api_get(node.socket_path, "/localapi/v0/serve-config"))
    assert list(foreground.values()) == [expected_entry(443, proxy)], foreground
    [first_session] = foreground

    crashed = node.current_standin()
    os.kill(crashed, signal.SIGKILL)

    def foreground_now() -> dict:
        try:
            return split_foreground(local_api_get(node.socket_path, "/localapi/v0/serve-config"))[1]
        except (AssertionError, OSError, ValueError):
            return {}  # tailscaled is down or not running yet

    wait_for(lambda: node.exited() is not None or (foreground_now() and first_session not in foreground_now()),
             START_TIMEOUT, "the Funnel entry under a new session")
    assert node.exited() is None, node.logs()
    foreground = foreground_now()
    assert len(foreground) == 1 and first_session not in foreground, foreground
    assert list(foreground.values()) == [expected_entry(443, proxy)], foreground
    assert node.current_standin() != crashed
    assert FUNNEL_ON.findall(node.stderr()) == [str(proxy), str(proxy)], node.stderr()
    assert re.search(r"tailscaled ended the Funnel session; publishing again|Funnel session lost", node.stderr())

    # The same proxy port serves again, with the new tailscaled behind readiness; Funnel still gated.
    tailnet = proxy_session(proxy, ALICE_IP)
    wait_for(lambda: tailnet.get(issuer + "/healthz/ready").status_code == 200, START_TIMEOUT, "readiness")
    public = proxy_session(proxy, PUBLIC_IP, funnel="?1")
    discovery = public.get(issuer + "/.well-known/openid-configuration")
    assert discovery.status_code == 200 and "registration_endpoint" not in discovery.json(), discovery.text[:500]
    assert is_funnel_refusal(public.get(issuer + "/healthz/ready"), False)


# ---------------------------------------------------------------------------
# 3. Refusals
# ---------------------------------------------------------------------------


TAKEN = ("tailscaled already serves port 443 (its serve config): remove that with `tailscale serve reset`, "
         "or choose another --port")
REFUSALS = {
    "no-funnel-attribute": {
        "config": {"funnel": False},
        "message": 'the tailnet policy does not allow this node to use Funnel (add a "funnel" node attribute for it)'},
    "port-not-allowed": {
        "port": 8080,
        "message": "Funnel is not allowed on port 8080; this node may use Funnel on ports 443,8443,10000"},
    "tcp-port-served": {"seed": {"TCP": {"443": {"HTTPS": True}}}, "message": TAKEN},
    "web-host-served": {"seed": {"Web": {f"{NODE}:443": {"Handlers": {"/": {"Text": "hello"}}}}}, "message": TAKEN},
    "other-session-serves": {"other_session": True, "message": TAKEN},  # --use-local-tailscaled only
    "serve-config-read-only": {
        "read_only": True,
        "message": re.compile(r"tailscaled refused to change its serve config \(.+\); run tsidp as root or as the "
                              r"operator user \(`tailscale set --operator=\$USER`\)")},
}
# How long the stand-in holds each serve-config call in the read_only case: tsidp reads the config,
# then writes it, so the fault switched on once the certificate is issued is in place in time.
SERVE_CONFIG_DELAY = 2.5


def check_refusal(stderr: str, status: int, message) -> None:
    assert status == 2, f"exit status {status}\n{stderr}"
    lines = stderr.rstrip("\n").splitlines()
    refusals = [line for line in lines if line.startswith("tsidp: --funnel:")]
    assert len(refusals) == 1 and refusals[0] == lines[-1], stderr
    text = refusals[0][len("tsidp: --funnel: "):]
    if isinstance(message, str):
        assert text == message, refusals[0]
    else:
        assert message.fullmatch(text), refusals[0]
    assert not ANY_SERVING.search(stderr), stderr


def refusal_config(case: dict, base: dict) -> dict:
    config = dict(base, **case.get("config", {}))
    if case.get("read_only"):
        config["faults"] = {"delays": {"/localapi/v0/serve-config": SERVE_CONFIG_DELAY}}
    return config


def switch_on_read_only(cert_file: Path, exited: Callable[[], Optional[int]], reload: Callable[[dict], None],
                        config: dict) -> None:
    """Once tailscaled has issued the certificate (tsidp fetches it before touching the serve
    config), makes every write answer 403."""
    wait_for(lambda: exited() is not None or cert_file.is_file(), START_TIMEOUT, f"the certificate {cert_file}")
    assert exited() is None, "tsidp exited before fetching the certificate"
    reload(dict(config, faults=dict(config["faults"], read_only=True)))


def check_read_only_order(log: str) -> None:
    reloaded = log.find("SIGHUP: config reloaded")
    refused = log.find(SERVE_WRITE + "403")
    assert 0 <= reloaded < refused, f"the write was not refused after the fault was switched on\n{log}"
    assert SERVE_WRITE + "200" not in log, log


@pytest.mark.parametrize("case", [name for name in REFUSALS if name != "other-session-serves"])
def test_embedded_refusals(embedded, own_standins, scratch_dirs, case):
    refusal = REFUSALS[case]
    state_dir = scratch_dirs("funnel-refusal") / "state"
    state_dir.mkdir(mode=0o700)
    seed = refusal.get("seed")
    if seed is not None:
        seed_serve_config(own_standins, state_dir, seed)
    config = refusal_config(refusal, FUNNEL_CONFIG)
    node = embedded(config=config, port=refusal.get("port", 443), state_dir=state_dir, wait=False,
                    args=["--funnel", "--debug-tailscaled"])
    if refusal.get("read_only"):
        def reload(new: dict) -> None:
            (node.workdir / "standin.json").write_text(json.dumps(new))
            os.kill(node.current_standin(), signal.SIGHUP)
        switch_on_read_only(node.cert_file(), node.exited, reload, config)
    status = node.wait_exit()
    check_refusal(node.stderr(), status, refusal["message"])
    if refusal.get("read_only"):
        check_read_only_order(node.stderr())
    else:
        assert SERVE_WRITE not in node.stderr(), node.stderr()
    assert persisted_serve_config(own_standins, state_dir) == seed


@pytest.mark.parametrize("case", list(REFUSALS))
def test_local_tailscaled_refusals(own_standins, local_tsidp, case):
    refusal = REFUSALS[case]
    config = refusal_config(refusal, LOCAL_CONFIG)
    standin = own_standins(config)
    standin.login()
    if "seed" in refusal:
        standin.set_serve_config(refusal["seed"])
    bus = None
    try:
        if refusal.get("other_session"):
            # Someone else's foreground session (a `tailscale serve` in a terminal) serves the port.
            bus = BusStream(standin.socket, 2)
            session = bus.next()["SessionID"]
            standin.set_serve_config({"Foreground": {session: {"TCP": {"443": {"HTTPS": True}}}}})
        before = standin.serve_config_body()
        earlier = len(standin.log)
        tsidp = local_tsidp(standin.socket, refusal.get("port", 443), args=["--funnel"])
        if refusal.get("read_only"):
            switch_on_read_only(standin.statedir / "certs" / f"{NODE}.crt", tsidp.exited, standin.reload, config)
        status = tsidp.wait_exit()
        check_refusal(tsidp.stderr(), status, refusal["message"])
        if refusal.get("read_only"):
            check_read_only_order(standin.log[earlier:])
        else:
            assert SERVE_WRITE not in standin.log[earlier:], standin.log
        assert standin.serve_config_body() == before
    finally:
        if bus is not None:
            bus.close()


# ---------------------------------------------------------------------------
# 4. --use-local-tailscaled
# ---------------------------------------------------------------------------


def start_local_funnel(own_standins, local_tsidp, user: SecondUser) -> tuple:
    """A stand-in running as uid 65534 (with UNRELATED in its serve config) and tsidp (root) with
    ``--use-local-tailscaled --funnel --port 8443``; returns (stand-in, tsidp, proxy port)."""
    standin = own_standins(LOCAL_CONFIG, user=user)
    assert os.stat(standin.socket).st_uid == NOBODY
    standin.login()
    standin.set_serve_config(UNRELATED)
    tsidp = local_tsidp(standin.socket, 8443, args=["--funnel"])
    issuer = tsidp.wait_serving()
    assert issuer == f"https://{NODE}:8443"
    log = tsidp.stderr()
    funnel_on = FUNNEL_ON.search(log)
    assert funnel_on and funnel_on.start() < LOCAL_SERVING.search(log).start(), log
    return standin, tsidp, int(funnel_on.group(1))


def test_local_tailscaled_funnel_entry_and_session(own_standins, local_tsidp, missing_tool_policy):
    """The host's tailscaled (a stand-in of uid 65534): the same entry, the gate, the entry removed
    on SIGTERM, and a SIGKILLed tsidp's entry gone with its bus session."""
    user = second_user(missing_tool_policy)
    standin, tsidp, proxy = start_local_funnel(own_standins, local_tsidp, user)
    issuer = f"https://{NODE}:8443"
    rest, foreground = split_foreground(standin.serve_config())
    assert rest == UNRELATED and list(foreground.values()) == [expected_entry(8443, proxy)], standin.serve_config()
    [session] = foreground
    # The node's address (127.0.0.10) is not bound: tailscaled owns the port.
    check_no_direct_listener(tsidp.process.popen.pid, proxy, tsidp.local_port)
    client = register_operator_client(tsidp.local_port)
    check_funnel_gate(issuer, proxy, client)
    # Root (this test, and tsidp's own user) is not tailscaled's user here: naming alice changes nothing.
    params, _ = authorization_params(client)
    answer = proxy_session(proxy, ALICE_IP).get(issuer + "/authorize", params=params, allow_redirects=False)
    expect_unknown_caller(answer.status_code, answer.headers.get("Location"), client, params, issuer)

    tsidp.process.popen.send_signal(signal.SIGTERM)
    assert tsidp.wait_exit(STOP_TIMEOUT) == 0, tsidp.logs()
    assert FUNNEL_OFF.search(tsidp.stderr()), tsidp.stderr()
    assert split_foreground(standin.serve_config()) == (UNRELATED, {}), standin.serve_config()
    assert session not in SESSION_DROPPED.findall(standin.log), standin.log

    # A SIGKILLed tsidp cannot remove its entry; it goes with its bus session.
    killed = local_tsidp(standin.socket, 8443, args=["--funnel"])
    killed.wait_serving()
    _, foreground = split_foreground(standin.serve_config())
    assert len(foreground) == 1, foreground
    [session] = foreground
    assert killed.process.kill() == -signal.SIGKILL
    wait_for(lambda: session in SESSION_DROPPED.findall(standin.log), STOP_TIMEOUT,
             "tailscaled to drop the killed tsidp's entry")
    assert split_foreground(standin.serve_config()) == (UNRELATED, {}), standin.serve_config()


def test_local_tailscaled_funnel_trusts_the_daemons_user(own_standins, local_tsidp, busy_host,
                                                        missing_tool_policy):
    """tailscaled (uid 65534) and tsidp (root) are different users: only uid 65534's connections to
    the proxy listener may name the caller, and root's (this test's, tsidp's own user's) may not."""
    user = second_user(missing_tool_policy)
    standin, tsidp, proxy = start_local_funnel(own_standins, local_tsidp, user)
    issuer = f"https://{NODE}:8443"
    client = register_operator_client(tsidp.local_port)
    check_caller_named_by_proxy(user, proxy, 8443, issuer, client, trusted=NOBODY, stranger=0)


def test_local_tailscaled_without_funnel_ignores_forwarded_headers(own_standins, local_tsidp):
    """Without --funnel tsidp binds the node's address and asks WhoIs about the connection's peer;
    headers naming another user change nothing."""
    standin = own_standins(LOCAL_CONFIG)
    standin.login()
    before = standin.serve_config_body()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((NODE_ADDRESS, 0))
        port = probe.getsockname()[1]
    tsidp = local_tsidp(standin.socket, port)
    issuer = tsidp.wait_serving()
    assert issuer == f"https://{NODE}:{port}"
    assert (NODE_ADDRESS, port) in listening_sockets(tsidp.process.popen.pid)
    assert not FUNNEL_ON.search(tsidp.stderr())

    cert_file = standin.statedir / "certs" / f"{NODE}.crt"
    client = register_operator_client(tsidp.local_port)

    def direct(source: str) -> requests.Session:
        session = BoundedSession()
        session.trust_env = False
        session.mount("https://", TailnetAdapter(source, {NODE: NODE_ADDRESS}))
        session.verify = str(cert_file)
        session.headers.update({"X-Forwarded-For": ALICE_IP, "X-Forwarded-Proto": "https",
                                "Tailscale-User-Login": "alice@example.com", "Tailscale-User-Name": "Alice Example"})
        return session

    # Bob's device (127.0.0.3 in the stand-in's loopback table) claims to be alice: he is bob.
    bob = direct(BOB_SOURCE)
    params, verifier = authorization_params(client)
    answer = bob.get(issuer + "/authorize", params=params, allow_redirects=False)
    code = expect_code(answer.status_code, answer.headers.get("Location"), client, params, issuer)
    claims = redeem(direct(RP_SOURCE), issuer, client, code, verifier, params)
    assert claims["email"] == "bob@example.com", claims
    denied = bob.get(issuer + "/clients", headers={"Accept": "application/json"})
    assert denied.status_code == 403, (denied.status_code, denied.text[:500])  # alice would be allowed

    # A peer WhoIs knows nothing about stays unknown, whatever it sends.
    stranger = direct(NULL_SOURCE)
    params, _ = authorization_params(client)
    answer = stranger.get(issuer + "/authorize", params=params, allow_redirects=False)
    expect_unknown_caller(answer.status_code, answer.headers.get("Location"), client, params, issuer)

    assert standin.serve_config_body() == before
    tsidp.process.popen.send_signal(signal.SIGTERM)
    assert tsidp.wait_exit(STOP_TIMEOUT) == 0, tsidp.logs()
    assert standin.serve_config_body() == before

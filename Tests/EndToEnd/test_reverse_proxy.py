"""tsidp behind a reverse proxy: Debian's nginx in front of the real binary.

The simulated tailnet says who each caller is from the address it connects from (127.0.0.N is
identity N: 1 alice, 2 bob). nginx itself always reaches tsidp from 127.0.0.1 (alice's address)
or over a unix socket, and appends the address it saw to X-Forwarded-For. So a person at
127.0.0.2 signing in through nginx is bob only if tsidp believes nginx's X-Forwarded-For, and
alice (or nobody) if it does not. tsidp runs with ``--server-url http://localhost:<nginx port>``:
every URL it announces names the proxy, never tsidp's own port.

Also here: a forged X-Forwarded-For straight to tsidp (from a peer that is not a trusted proxy)
or through nginx (where nginx's own appended value comes last), nginx over ``--unix-socket`` with
``--trusted-proxy unix``, and systemd socket activation through a small launcher
(``socket_activate.py``) that binds the sockets and execs tsidp with LISTEN_FDS.

nginx runs with its own configuration, pid file, temporary directories and logs in a scratch
directory, listens on loopback only and logs errors to stderr. Without nginx these tests skip
(``apt-get install nginx``); with TSIDP_REQUIRE_INTEROP=1 they fail instead. Every wait is
bounded; nothing is asserted about how long anything took.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import verify_jws

HERE = Path(__file__).resolve().parent
REDIRECT_URI = "https://app.example.com/callback"
STARTUP_WAIT = 60.0  # seconds for nginx to accept connections
EXIT_WAIT = 60.0  # seconds for a refused tsidp to exit


# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nginx_binary(missing_tool_policy) -> str:
    for candidate in (os.environ.get("NGINX_BINARY"), "nginx", "/usr/sbin/nginx"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    missing_tool_policy("nginx is not installed (Debian: apt-get install nginx)")


@dataclasses.dataclass
class Nginx:
    port: int
    root: Path
    process: object

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    def logs(self) -> str:
        return self.process.logs() + f"\n--- access.log ---\n{(self.root / 'access.log').read_text(errors='replace')[-3000:]}"


def nginx_config(root: Path, port: int, upstream: str) -> str:
    # Started as root, nginx runs its worker as another user. `nobody` in root's group may
    # connect to tsidp's unix socket (mode 0660), as a proxy in tsidp's group would.
    user = "user nobody root;\n" if os.geteuid() == 0 else ""
    return f"""# Written by Tests/EndToEnd/test_reverse_proxy.py
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log stderr notice;
{user}
events {{
    worker_connections 64;
}}

http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;

        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@pytest.fixture(scope="session")
def nginx_factory(processes, scratch_dirs, nginx_binary, bounded_wait):
    """``nginx_factory(port, upstream)``: nginx on 127.0.0.1:port proxying everything to
    ``upstream`` (``http://127.0.0.1:8080`` or ``http://unix:/path:``)."""

    def make(port: int, upstream: str) -> Nginx:
        root = scratch_dirs("nginx")
        conf = root / "nginx.conf"
        conf.write_text(nginx_config(root, port, upstream))
        check = subprocess.run(
            [nginx_binary, "-p", str(root), "-e", "stderr", "-c", str(conf), "-t"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{conf.read_text()}"
        proc = processes.start(
            f"nginx-{port}", [nginx_binary, "-p", str(root), "-e", "stderr", "-c", str(conf)], cwd=root, log_dir=root
        )
        nginx = Nginx(port=port, root=root, process=proc)

        def listening() -> bool:
            if proc.popen.poll() is not None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        bounded_wait(listening, STARTUP_WAIT, 0.1)
        if proc.popen.poll() is not None or not listening():
            pytest.fail(f"nginx did not start (status {proc.popen.poll()}):\n{nginx.logs()}", pytrace=False)
        return nginx

    return make


# ---------------------------------------------------------------------------
# Signing in
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Stack:
    """tsidp (with an operator listener for registering clients) and the issuer it announces."""

    tsidp: object
    issuer: str
    local_port: int

    def register(self) -> dict:
        """A client, registered by the operator on the --local-port listener."""
        response = requests.post(
            f"http://127.0.0.1:{self.local_port}/clients/new",
            data={"name": "Proxy test app", "redirect_uri": REDIRECT_URI},
            timeout=15,
        )
        assert response.status_code == 200, response.text[:1000]
        return response.json()


def sign_in(make_browser, stack: Stack, client: dict, source: str, base: str = None, headers: dict = None) -> str:
    """A person at ``source`` opens the authorization URL under ``base`` (default: the issuer, i.e.
    through the proxy). Returns the email of the ID token the code yields (verified against the
    JWKS, and equal to userinfo's), or ``error: <code>`` when tsidp redirects with an error."""
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "client_id": client["client_id"], "redirect_uri": REDIRECT_URI, "response_type": "code",
        "scope": "openid email profile", "state": state, "nonce": nonce,
    }
    answer = make_browser(source).get(
        f"{base or stack.issuer}/authorize", params=params, headers=headers or {}, allow_redirects=False
    )
    assert answer.status_code == 302, f"{answer.status_code}: {answer.text[:1000]}\n{stack.tsidp.process.logs()}"
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI, answer.headers["Location"]
    query = parse_qs(location.query)
    assert query.get("state") == [state] and query.get("iss") == [stack.issuer], answer.headers["Location"]
    if "error" in query:
        assert "code" not in query
        return "error: " + query["error"][0]

    relying_party = make_browser("127.0.0.1")
    tokens = relying_party.post(
        f"{stack.issuer}/token",
        data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert tokens.status_code == 200, tokens.text[:1000]
    body = tokens.json()
    jwks = relying_party.get(f"{stack.issuer}/.well-known/jwks.json").json()
    _, claims, _ = verify_jws(body["id_token"], jwks)
    assert claims["iss"] == stack.issuer and claims["nonce"] == nonce and claims["aud"] in (
        client["client_id"], [client["client_id"]],
    ), claims
    userinfo = relying_party.get(
        f"{stack.issuer}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert userinfo.status_code == 200, userinfo.text[:1000]
    assert userinfo.json()["email"] == claims["email"]
    return claims["email"]


def start_stack(tsidp_factory, identities, unused_port, nginx_port: int, extra_args: list, **kwargs) -> Stack:
    local_port = unused_port()
    issuer = f"http://localhost:{nginx_port}"
    tsidp = tsidp_factory(
        identities=identities,
        extra_args=["--server-url", issuer + "/", "--local-port", str(local_port), *extra_args],
        **kwargs,
    )
    return Stack(tsidp=tsidp, issuer=issuer, local_port=local_port)


@pytest.fixture(scope="module")
def tcp_stack(tsidp_factory, nginx_factory, alice_and_bob):
    """nginx on a loopback port in front of tsidp's TCP listener; only 127.0.0.1 (nginx) trusted."""
    from conftest import free_port

    nginx_port = free_port()
    stack = start_stack(
        tsidp_factory, alice_and_bob, free_port, nginx_port, ["--trusted-proxy", "127.0.0.1/32"]
    )
    nginx = nginx_factory(nginx_port, f"http://127.0.0.1:{stack.tsidp.port}")
    return stack, nginx


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_sign_in_through_nginx_names_the_forwarded_caller(tcp_stack, make_browser, people):
    stack, nginx = tcp_stack
    client = stack.register()
    # nginx reaches tsidp from alice's address; the person behind it at 127.0.0.2 is bob.
    assert sign_in(make_browser, stack, client, "127.0.0.2") == people["bob"]["login"], nginx.logs()
    assert sign_in(make_browser, stack, client, "127.0.0.1") == people["alice"]["login"]
    forwarded = [line for line in (nginx.root / "access.log").read_text().splitlines() if "/authorize" in line]
    assert any(line.startswith("127.0.0.2 ") for line in forwarded), forwarded


def test_discovery_names_the_server_url_whatever_the_request_says(tcp_stack, make_browser):
    stack, _ = tcp_stack
    through_proxy = make_browser("127.0.0.2").get(f"{stack.issuer}/.well-known/openid-configuration")
    assert through_proxy.status_code == 200, through_proxy.text[:500]
    document = through_proxy.json()
    assert document["issuer"] == stack.issuer
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert document[name].startswith(stack.issuer + "/"), (name, document[name])
    # Straight to tsidp, from the trusted proxy's own address, with forwarded host and scheme
    # headers: the issuer is still the configured one, and nothing of the headers shows.
    direct = requests.get(
        f"http://127.0.0.1:{stack.tsidp.port}/.well-known/openid-configuration",
        headers={
            "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.2",
            "Forwarded": "for=127.0.0.2;host=evil.example;proto=https",
        },
        timeout=15,
    )
    assert direct.status_code == 200
    assert direct.json() == document
    assert "evil" not in direct.text and str(stack.tsidp.port) not in direct.text


def test_forged_header_straight_to_tsidp_is_ignored(tcp_stack, make_browser, people):
    stack, _ = tcp_stack
    client = stack.register()
    direct = f"http://localhost:{stack.tsidp.port}"
    # 127.0.0.2 is no trusted proxy: its X-Forwarded-For is ignored and it stays bob.
    for claimed in ("127.0.0.1", "127.0.0.1, 127.0.0.1"):
        assert (
            sign_in(make_browser, stack, client, "127.0.0.2", base=direct, headers={"X-Forwarded-For": claimed})
            == people["bob"]["login"]
        )
    # The trusted proxy's address itself, without a forwarded address, is nobody (not alice).
    assert sign_in(make_browser, stack, client, "127.0.0.1", base=direct) == "error: access_denied"


def test_forged_header_through_nginx_does_not_win(tcp_stack, make_browser, people):
    stack, _ = tcp_stack
    client = stack.register()
    for claimed in ("127.0.0.1", "127.0.0.3, 127.0.0.1", "not an address"):
        assert (
            sign_in(make_browser, stack, client, "127.0.0.2", headers={"X-Forwarded-For": claimed})
            == people["bob"]["login"]
        ), claimed


def test_nginx_over_the_unix_socket(tsidp_factory, nginx_factory, alice_and_bob, make_browser, people, scratch_dirs,
                                    unused_port, tsidp_binary):
    sockets = scratch_dirs("sock")
    path = sockets / "tsidp.sock"
    nginx_port = unused_port()
    stack = start_stack(
        tsidp_factory, alice_and_bob, unused_port, nginx_port,
        ["--unix-socket", str(path), "--trusted-proxy", "unix"],
    )
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    nginx_factory(nginx_port, f"http://unix:{path}:")
    client = stack.register()
    assert sign_in(make_browser, stack, client, "127.0.0.2") == people["bob"]["login"]
    assert sign_in(make_browser, stack, client, "127.0.0.1") == people["alice"]["login"]
    # Only unix-socket peers are trusted: on the TCP listener the header is ignored.
    direct = f"http://localhost:{stack.tsidp.port}"
    assert (
        sign_in(make_browser, stack, client, "127.0.0.1", base=direct, headers={"X-Forwarded-For": "127.0.0.2"})
        == people["alice"]["login"]
    )

    # A second tsidp cannot take the socket of a running one.
    workdir = scratch_dirs("tsidp-second")
    second = subprocess.run(
        [str(tsidp_binary), "--dev", "--port", str(unused_port()), "--dir", str(workdir / "state"),
         "--unix-socket", str(path)],
        cwd=workdir, capture_output=True, text=True, timeout=EXIT_WAIT, stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 2, second.stderr
    assert f"tsidp: cannot listen on unix socket {path}: another program is listening on it" in second.stderr
    assert stat.S_ISSOCK(path.lstat().st_mode), "the running tsidp's socket must stay"
    assert sign_in(make_browser, stack, client, "127.0.0.2") == people["bob"]["login"]

    # On SIGTERM tsidp removes its socket file.
    stack.tsidp.process.stop()
    assert stack.tsidp.process.popen.returncode == 0, stack.tsidp.process.logs()
    assert not path.exists()


def test_socket_activation(tsidp_factory, nginx_factory, alice_and_bob, make_browser, people, scratch_dirs,
                           unused_port):
    sockets = scratch_dirs("sock")
    activated_port, nginx_port, unix_nginx_port = unused_port(), unused_port(), unused_port()
    while len({activated_port, nginx_port, unix_nginx_port}) < 3:
        unix_nginx_port = unused_port()
    path = sockets / "activated.sock"
    launcher = [
        sys.executable, str(HERE / "socket_activate.py"),
        "--tcp", f"web=127.0.0.1:{activated_port}", "--unix", f"proxy={path}", "--",
    ]
    stack = start_stack(
        tsidp_factory, alice_and_bob, unused_port, nginx_port, ["--trusted-proxy", "127.0.0.1/32,unix"],
        launcher=launcher,
    )
    nginx_factory(nginx_port, f"http://127.0.0.1:{activated_port}")
    nginx_factory(unix_nginx_port, f"http://unix:{path}:")
    client = stack.register()
    # Through the passed TCP socket (nginx connects from alice's address, bob is behind it)...
    assert sign_in(make_browser, stack, client, "127.0.0.2") == people["bob"]["login"]
    # ...and through the passed unix socket.
    via_unix = f"http://localhost:{unix_nginx_port}"
    assert sign_in(make_browser, stack, client, "127.0.0.2", base=via_unix) == people["bob"]["login"]
    logs = stack.tsidp.process.logs()
    assert f"socket 3 (web) on 127.0.0.1:{activated_port}" in logs, logs
    assert f"socket 4 (proxy) on unix socket {path}" in logs, logs
    # The socket file belongs to the service manager (here, the launcher): tsidp leaves it.
    stack.tsidp.process.stop()
    assert stack.tsidp.process.popen.returncode == 0, stack.tsidp.process.logs()
    assert stat.S_ISSOCK(path.lstat().st_mode)

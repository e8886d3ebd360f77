"""Shared fixtures for the tsidp end-to-end interoperability suite.

The suite drives the real ``tsidp`` binary in ``--dev`` mode (plain HTTP on
127.0.0.1, a simulated tailnet that maps the caller's loopback source address
to an identity) against relying parties that this project did not write:
Apache httpd with mod_auth_openidc, and the Python ``authlib`` client.

Everything runs on loopback addresses only; ports are picked dynamically, all
waits are bounded, and every process started here is stopped when the session
ends, whether the tests passed or not.

Environment:
  TSIDP_BINARY            path to the tsidp binary (default:
                          <repo>/.build/debug/tsidp)
  TSIDP_REQUIRE_INTEROP   "1" (set by CI): a missing peer (apache2,
                          mod_auth_openidc, authlib) is a failure, not a skip
  TSIDP_BINARY_WAIT       seconds to wait for a missing binary (default 180)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / ".build" / "debug" / "tsidp"

STARTUP_TIMEOUT = 60.0  # seconds for a process to become ready
STOP_TIMEOUT = 10.0  # seconds for a process to exit after SIGTERM
HTTP_TIMEOUT = 15.0  # seconds for any single HTTP request made by the tests

ALICE = {
    "login": "alice@example.com",
    "display": "Alice Example",
    "user_id": 2001,
    "node_id": 1001,
    "node": "alice-laptop.example-tailnet.ts.net.",
    "address": "100.64.0.1/32",
    "source": "127.0.0.1",
    "admin": True,
}
BOB = {
    "login": "bob@example.com",
    "display": "Bob Example",
    "user_id": 2002,
    "node_id": 1002,
    "node": "bob-desktop.example-tailnet.ts.net.",
    "address": "100.64.0.2/32",
    "source": "127.0.0.2",
    "admin": False,
}


# ---------------------------------------------------------------------------
# "Tool missing" policy
# ---------------------------------------------------------------------------


def interop_required() -> bool:
    """True when CI demands that every interop peer is present."""
    return os.environ.get("TSIDP_REQUIRE_INTEROP", "").strip().lower() in {"1", "true", "yes", "on"}


def missing_tool(message: str) -> None:
    """Skip (locally) or fail (TSIDP_REQUIRE_INTEROP=1) because a peer is absent."""
    if interop_required():
        pytest.fail(f"{message} (TSIDP_REQUIRE_INTEROP=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(f"{message} [skipped; TSIDP_REQUIRE_INTEROP=1 makes this a failure]")


def import_peer(module: str, install_hint: str):
    """Import a peer library or skip/fail with a clear message."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # depends on the machine
        problem = f"Python module {module!r} is not importable ({exc}); {install_hint}"
    missing_tool(problem)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def make_world_readable_tempdir(prefix: str) -> Path:
    """A temp dir that apache's unprivileged children can read (0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-limit:]


def whois_document(person: dict) -> dict:
    """A Tailscale LocalAPI WhoIs answer for one of the test people."""
    caps = {"tailscale.com/cap/tsidp": [{"allow_admin_ui": True, "allow_dcr": True}]} if person["admin"] else {}
    return {
        "Node": {
            "ID": person["node_id"],
            "StableID": f"n{person['node_id']}",
            "Name": person["node"],
            "User": person["user_id"],
            "Key": "nodekey:" + f"{person['node_id']:064x}",
            "Addresses": [person["address"]],
        },
        "UserProfile": {
            "ID": person["user_id"],
            "LoginName": person["login"],
            "DisplayName": person["display"],
        },
        "CapMap": caps,
    }


# ---------------------------------------------------------------------------
# Browser-side HTTP client bound to a loopback source address
# ---------------------------------------------------------------------------


class SourceAddressAdapter(HTTPAdapter):
    """Binds every connection to a given loopback source address.

    tsidp --dev decides who the caller is from the source address of the TCP
    connection (127.0.0.N -> identity N), so "being bob" means connecting from
    127.0.0.2.  Because ``localhost`` may resolve to ::1 first (and an IPv6
    socket cannot be bound to 127.0.0.2), requests to ``localhost`` are sent
    to 127.0.0.1 while keeping ``Host: localhost:PORT`` so that the issuer and
    all URLs stay exactly as tsidp advertises them.
    """

    def __init__(self, source_ip: str, **kwargs):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def send(self, request, **kwargs):
        original = request
        parts = urlsplit(request.url)
        if parts.hostname == "localhost":
            # Rewrite a copy: the caller's request (and so the redirect chain
            # and the cookie jar) must keep seeing the real URL, and the Host
            # header must not leak into the next hop of a redirect.
            request = request.copy()
            netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
            request.headers["Host"] = parts.netloc
            request.url = urlunsplit(parts._replace(netloc=netloc))
        response = super().send(request, **kwargs)
        response.request = original
        response.url = original.url
        return response


class TimeoutSession(requests.Session):
    """A requests.Session whose requests always carry a timeout."""

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return super().request(method, url, **kwargs)


def browser_session(source_ip: str = "127.0.0.1") -> requests.Session:
    """A cookie-keeping session whose connections come from ``source_ip``."""
    session = TimeoutSession()
    adapter = SourceAddressAdapter(source_ip)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 15
    return session


# ---------------------------------------------------------------------------
# Process management
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log_paths: list

    def logs(self) -> str:
        return "\n".join(f"--- {p} ---\n{tail(Path(p))}" for p in self.log_paths)

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=STOP_TIMEOUT)


class ProcessRegistry:
    """Keeps every started process so the session can stop them all."""

    def __init__(self):
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, argv: list, cwd: Path, log_dir: Path, env: Optional[dict] = None) -> ManagedProcess:
        out_path = log_dir / f"{name}.stdout.log"
        err_path = log_dir / f"{name}.stderr.log"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                argv,
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # own process group: killpg reaches children
            )
        proc = ManagedProcess(name, popen, [out_path, err_path])
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        errors = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{proc.name}: {exc!r}")
        self.processes.clear()
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def processes() -> Iterator[ProcessRegistry]:
    registry = ProcessRegistry()
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture(scope="session")
def scratch_dirs() -> Iterator[Callable[[str], Path]]:
    """World-readable temp dirs, removed at the end of the session."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        path = make_world_readable_tempdir(f"tsidp-e2e-{prefix}-")
        made.append(path)
        return path

    yield make
    if os.environ.get("TSIDP_E2E_KEEP_TMP") != "1":
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------
# tsidp
# ---------------------------------------------------------------------------


def binary_path() -> Path:
    configured = os.environ.get("TSIDP_BINARY")
    if configured:
        path = Path(configured)
        return path if path.is_absolute() else (REPO_ROOT / path)
    return DEFAULT_BINARY


@pytest.fixture(scope="session")
def tsidp_binary() -> Path:
    """The tsidp binary; waits (bounded) if it is briefly absent during a rebuild."""
    path = binary_path()
    wait = float(os.environ.get("TSIDP_BINARY_WAIT", "180"))

    def ready() -> bool:
        return path.is_file() and os.access(path, os.X_OK)

    if not wait_until(ready, wait, interval=1.0):
        pytest.fail(
            f"tsidp binary not found or not executable at {path} after waiting {wait:.0f}s; "
            "build it (swift build) or set TSIDP_BINARY",
            pytrace=False,
        )
    return path


@dataclasses.dataclass
class Tsidp:
    port: int
    state_dir: Path
    process: ManagedProcess
    identities: list

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def url(self, path: str) -> str:
        return self.issuer + path

    def metadata(self) -> dict:
        response = browser_session("127.0.0.1").get(self.url("/.well-known/openid-configuration"))
        response.raise_for_status()
        return response.json()

    def register_admin_client(self, name: str, redirect_uris: list, admin_source: str = "127.0.0.1") -> dict:
        """POST /clients/new as the admin identity (identity 1 by default)."""
        session = browser_session(admin_source)
        response = session.post(
            self.url("/clients/new"),
            data={"name": name, "redirect_uri": "\n".join(redirect_uris)},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 200, (
            f"POST /clients/new -> {response.status_code}: {response.text[:2000]}"
        )
        body = response.json()
        assert body.get("client_id") and body.get("client_secret"), body
        return body

    def register_dynamic_client(self, metadata: dict, source: str = "127.0.0.1") -> dict:
        """POST /register (RFC 7591)."""
        session = browser_session(source)
        response = session.post(self.url("/register"), json=metadata)
        assert response.status_code == 201, (
            f"POST /register {metadata} -> {response.status_code}: {response.text[:2000]}"
        )
        body = response.json()
        assert body.get("client_id"), body
        return body


def start_tsidp(
    processes: ProcessRegistry,
    binary: Path,
    workdir: Path,
    identities: Optional[list] = None,
    clients: Optional[dict] = None,
    port: Optional[int] = None,
) -> Tsidp:
    """Start ``tsidp --dev`` with a fresh state dir and wait until it is ready.

    ``clients`` (keyed by client ID, Go tsidp format) is pre-written as
    ``oidc-funnel-clients.json`` in the state dir before start.
    """
    state_dir = workdir / "state"
    state_dir.mkdir(exist_ok=True)
    argv_extra = []
    if identities is not None:
        ident_file = workdir / "dev-identities.json"
        ident_file.write_text(json.dumps(identities, indent=2))
        argv_extra += ["--dev-identities", str(ident_file)]
    if clients is not None:
        (state_dir / "oidc-funnel-clients.json").write_text(json.dumps(clients, indent=2))

    last_error = ""
    for attempt in range(3):
        chosen = port if (port is not None and attempt == 0) else free_port()
        argv = [str(binary), "--dev", "--port", str(chosen), "--dir", str(state_dir), *argv_extra]
        try:
            proc = processes.start(f"tsidp-{chosen}", argv, cwd=workdir, log_dir=workdir)
        except OSError as exc:  # e.g. ETXTBSY / ENOENT while the binary is being rebuilt
            last_error = f"exec {argv[0]} failed: {exc}"
            time.sleep(3)
            continue

        ready_url = f"http://127.0.0.1:{chosen}/healthz/ready"

        def is_ready() -> bool:
            if proc.popen.poll() is not None:
                return True  # exited: stop waiting, reported below
            try:
                r = requests.get(ready_url, timeout=2)
                return r.status_code == 200 and r.text.strip() == "ok"
            except requests.RequestException:
                return False

        wait_until(is_ready, STARTUP_TIMEOUT, interval=0.2)
        if proc.popen.poll() is None and is_ready():
            return Tsidp(port=chosen, state_dir=state_dir, process=proc, identities=identities or [])
        exited = proc.popen.poll()
        proc.stop()
        last_error = (
            f"tsidp ({' '.join(argv)}) "
            + (f"exited with status {exited}" if exited is not None else f"not ready after {STARTUP_TIMEOUT}s")
            + f"\n{proc.logs()}"
        )
    pytest.fail(f"could not start tsidp: {last_error}", pytrace=False)


@pytest.fixture(scope="session")
def tsidp_factory(processes, tsidp_binary, scratch_dirs) -> Callable[..., Tsidp]:
    """Start a fresh tsidp: ``tsidp_factory(identities=None, clients=None)``."""

    def make(identities: Optional[list] = None, clients: Optional[dict] = None, port: Optional[int] = None) -> Tsidp:
        return start_tsidp(processes, tsidp_binary, scratch_dirs("tsidp"), identities, clients, port)

    return make


@pytest.fixture(scope="session")
def alice_and_bob() -> list:
    """Dev identities: 127.0.0.1 -> alice (admin), 127.0.0.2 -> bob."""
    return [whois_document(ALICE), whois_document(BOB)]


@pytest.fixture(scope="session")
def tsidp_two_users(tsidp_factory, alice_and_bob) -> Tsidp:
    """One shared tsidp whose simulated tailnet knows alice and bob."""
    return tsidp_factory(identities=alice_and_bob)


# ---------------------------------------------------------------------------
# Apache httpd + mod_auth_openidc
# ---------------------------------------------------------------------------

APACHE_MODULE_DIRS = [
    "/usr/lib/apache2/modules",
    "/usr/lib64/httpd/modules",
    "/usr/lib/httpd/modules",
    "/usr/libexec/apache2",
]

APACHE_MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("unixd_module", "mod_unixd.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("log_config_module", "mod_log_config.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("include_module", "mod_include.so"),
    ("auth_openidc_module", "mod_auth_openidc.so"),
]


@dataclasses.dataclass
class ApacheTools:
    binary: str
    module_dir: Path
    modules: list
    run_user: str
    run_group: str


@pytest.fixture(scope="session")
def apache_tools() -> ApacheTools:
    """Locate apache2/httpd and mod_auth_openidc, or skip/fail."""
    binary = None
    for candidate in (os.environ.get("APACHE_BINARY"), "apache2", "httpd", "/usr/sbin/apache2", "/usr/sbin/httpd"):
        if candidate and shutil.which(candidate):
            binary = shutil.which(candidate)
            break
    if binary is None:
        missing_tool("Apache httpd (apache2/httpd) is not installed (Debian: apt-get install apache2)")

    dirs = [os.environ["APACHE_MODULES_DIR"]] if os.environ.get("APACHE_MODULES_DIR") else APACHE_MODULE_DIRS
    module_dir = next((Path(d) for d in dirs if (Path(d) / "mod_auth_openidc.so").is_file()), None)
    if module_dir is None:
        missing_tool(
            "mod_auth_openidc.so not found in " + ", ".join(dirs)
            + " (Debian: apt-get install libapache2-mod-auth-openidc)"
        )
    # Debian compiles some modules (unixd, log_config) into the binary.
    listed = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    static = set(re.findall(r"(mod_\w+)\.c", listed.stdout))
    modules = [(name, so) for name, so in APACHE_MODULES if so[: -len(".so")] not in static]
    absent = [so for _, so in modules if not (module_dir / so).is_file()]
    if absent:
        missing_tool(f"Apache modules missing from {module_dir}: {', '.join(absent)}")

    import grp
    import pwd

    run_user, run_group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    if os.geteuid() == 0:
        for name in ("www-data", "apache", "daemon", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            run_user, run_group = name, grp.getgrgid(entry.pw_gid).gr_name
            break
    return ApacheTools(binary=binary, module_dir=module_dir, modules=modules, run_user=run_user, run_group=run_group)


PROTECTED_PAGE = """<!DOCTYPE html>
<html><head><title>protected</title></head><body>
<p>REMOTE_USER=<!--#echo var="REMOTE_USER" --></p>
<p id="email">OIDC email claim: [<!--#echo var="OIDC_CLAIM_email" -->]</p>
<p id="sub">OIDC sub claim: [<!--#echo var="OIDC_CLAIM_sub" -->]</p>
<p id="name">OIDC name claim: [<!--#echo var="OIDC_CLAIM_name" -->]</p>
</body></html>
"""


@dataclasses.dataclass
class Apache:
    port: int
    root: Path
    process: ManagedProcess
    client_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return apache_redirect_uri(self.port)

    def logs(self) -> str:
        return self.process.logs() + f"\n--- error_log ---\n{tail(self.root / 'error_log', 8000)}"


def apache_redirect_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/protected/redirect_uri"


def apache_config(tools: ApacheTools, root: Path, port: int, tsidp: Tsidp, client_id: str, client_secret: str) -> str:
    loads = "\n".join(f"LoadModule {name} {tools.module_dir / so}" for name, so in tools.modules)
    user_lines = ""
    if os.geteuid() == 0:
        # Started as root, apache drops privileges for its children; the
        # temp dir is world-readable so that user can serve the page.
        user_lines = f"User {tools.run_user}\nGroup {tools.run_group}\n"
    return f"""# Generated by Tests/EndToEnd/conftest.py
ServerRoot "{root}"
DefaultRuntimeDir "{root}"
PidFile "{root}/httpd.pid"
Mutex file:{root} default
ServerName 127.0.0.1:{port}
Listen 127.0.0.1:{port}
{loads}
{user_lines}
ErrorLog "{root}/error_log"
LogLevel warn auth_openidc:debug
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog "{root}/access_log" common
TypesConfig /dev/null
AddType text/html .shtml
DocumentRoot "{root}/htdocs"
DirectoryIndex index.shtml

<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{root}/htdocs">
    Options +Includes
    AddOutputFilter INCLUDES .shtml
    Require all granted
</Directory>

OIDCProviderMetadataURL {tsidp.url("/.well-known/openid-configuration")}
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI {apache_redirect_uri(port)}
OIDCCryptoPassphrase {secrets.token_hex(24)}
OIDCScope "openid email profile"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRemoteUserClaim email
OIDCPassClaimsAs environment
OIDCHTTPTimeoutShort 10
OIDCHTTPTimeoutLong 20

<Location /protected>
    AuthType openid-connect
    Require valid-user
</Location>
"""


@pytest.fixture(scope="session")
def apache_factory(processes, scratch_dirs, apache_tools) -> Callable[..., Apache]:
    """Start apache+mod_auth_openidc for a tsidp: ``apache_factory(tsidp, port, client_id, secret)``."""

    def make(tsidp: Tsidp, port: int, client_id: str, client_secret: str) -> Apache:
        root = scratch_dirs("apache")
        htdocs = root / "htdocs" / "protected"
        htdocs.mkdir(parents=True)
        (htdocs / "index.shtml").write_text(PROTECTED_PAGE)
        for path in (root / "htdocs", htdocs):
            path.chmod(0o755)
        (htdocs / "index.shtml").chmod(0o644)
        conf = root / "httpd.conf"
        conf.write_text(apache_config(apache_tools, root, port, tsidp, client_id, client_secret))
        conf.chmod(0o600)

        check = subprocess.run(
            [apache_tools.binary, "-f", str(conf), "-t"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        assert check.returncode == 0, f"apache config test failed:\n{check.stdout}\n{check.stderr}\n{conf.read_text()}"

        proc = processes.start(
            f"apache-{port}", [apache_tools.binary, "-f", str(conf), "-DFOREGROUND"], cwd=root, log_dir=root
        )
        apache = Apache(port=port, root=root, process=proc, client_id=client_id)

        def listening() -> bool:
            if proc.popen.poll() is not None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, STARTUP_TIMEOUT, interval=0.2)
        if proc.popen.poll() is not None or not listening():
            status = proc.popen.poll()
            proc.stop()
            pytest.fail(f"apache did not start (status {status}):\n{apache.logs()}", pytrace=False)
        return apache

    return make


# ---------------------------------------------------------------------------
# Helpers exposed as fixtures so test modules need not import conftest
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def make_browser() -> Callable[[str], requests.Session]:
    """``make_browser("127.0.0.2")`` -> a cookie-keeping session acting as that address's identity."""
    return browser_session


@pytest.fixture(scope="session")
def peer_import() -> Callable[[str, str], object]:
    """``peer_import("authlib.jose", hint)`` -> module, or skip/fail if not installed."""
    return import_peer


@pytest.fixture(scope="session")
def people() -> dict:
    return {"alice": ALICE, "bob": BOB}


@pytest.fixture
def unused_port() -> Callable[[], int]:
    return free_port

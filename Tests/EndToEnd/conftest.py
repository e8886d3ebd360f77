"""Shared fixtures for the tsidp end-to-end interoperability suite.

The suite drives the real ``tsidp`` binary in ``--dev`` mode (plain HTTP on
127.0.0.1, a simulated tailnet that maps the caller's loopback source address
to an identity) against relying parties that this project did not write:
Apache httpd with mod_auth_openidc, and the Python ``authlib`` client.  The
test_conformance_*.py and test_restart_and_rotation.py modules reproduce the
OpenID Foundation conformance suite's OP test modules (see
docs/conformance.md) with the helpers at the end of this file.

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
import html
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
from typing import Callable, Iterator, Optional, Sequence
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


CONSENT_FIELD = re.compile(r'<input type="hidden" name="(request|csrf_token)" value="([^"]*)">')


def is_consent_page(response: requests.Response) -> bool:
    """Whether ``response`` is tsidp's consent page (a client the operator did not vet)."""
    return response.status_code == 200 and 'action="/consent"' in response.text


def answer_consent(session: requests.Session, response: requests.Response, decision: str = "allow") -> requests.Response:
    """If ``response`` is the consent page, press Continue (``allow``) or Cancel (``deny``) in the
    same browser, as the person would, and return tsidp's answer (a redirect, not followed);
    otherwise return ``response`` unchanged."""
    if not is_consent_page(response):
        return response
    fields = {name: html.unescape(value) for name, value in CONSENT_FIELD.findall(response.text)}
    assert set(fields) == {"request", "csrf_token"}, f"consent page without its form fields: {response.text[:2000]}"
    base = response.url.split("/authorize", 1)[0]
    return session.post(f"{base}/consent", data={**fields, "decision": decision}, allow_redirects=False)


def browser_session(source_ip: str = "127.0.0.1") -> requests.Session:
    """A cookie-keeping session whose connections come from ``source_ip``."""
    session = TimeoutSession()
    adapter = SourceAddressAdapter(source_ip)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 15
    # What the person does on a consent page: ``browser.answer_consent(response)`` presses Continue.
    session.answer_consent = lambda response, decision="allow": answer_consent(session, response, decision)
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

    def kill(self) -> Optional[int]:
        """SIGKILL the process group and reap it; returns the exit status (``-SIGKILL`` unless the
        process had already exited on its own)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=STOP_TIMEOUT)
        return self.popen.poll()


class ProcessRegistry:
    """Keeps every started process so the session can stop them all."""

    def __init__(self):
        self.processes: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: list,
        cwd: Path,
        log_dir: Path,
        env: Optional[dict] = None,
        preexec_fn: Optional[Callable[[], None]] = None,
    ) -> ManagedProcess:
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
                preexec_fn=preexec_fn,  # e.g. a lowered resource limit for the child only
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

    def get(self, url: str, source: str = "127.0.0.1", **kwargs) -> requests.Response:
        return browser_session(source).get(url, **kwargs)

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
    extra_args: Optional[Sequence[str]] = None,
    preexec_fn: Optional[Callable[[], None]] = None,
    launcher: Optional[Sequence[str]] = None,
) -> Tsidp:
    """Start ``tsidp --dev`` with a fresh state dir and wait until it is ready.

    ``clients`` (keyed by client ID, Go tsidp format) is pre-written as
    ``oidc-funnel-clients.json`` in the state dir before start; ``extra_args`` are appended to the
    command line (e.g. ``["--enable-sts", "--local-port", "9001"]``); ``preexec_fn`` runs in the
    child before exec (to lower a resource limit, say); ``launcher`` is a command that runs first
    and execs tsidp's command line, which it gets as its trailing arguments (a socket-activation
    launcher, say).
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
        argv = [
            *(launcher or []), str(binary), "--dev", "--port", str(chosen), "--dir", str(state_dir), *argv_extra,
            *(extra_args or []),
        ]
        try:
            proc = processes.start(f"tsidp-{chosen}", argv, cwd=workdir, log_dir=workdir, preexec_fn=preexec_fn)
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
    """Start a fresh tsidp: ``tsidp_factory(identities=None, clients=None)``; ``workdir`` (default: a
    new scratch dir) holds the logs and the state dir ``workdir/state``, which may be prepared (e.g.
    a mount point) beforehand; ``extra_args`` are more command-line flags; ``preexec_fn`` runs in the
    child before exec; ``launcher`` is a command that execs tsidp (see ``start_tsidp``)."""

    def make(
        identities: Optional[list] = None,
        clients: Optional[dict] = None,
        port: Optional[int] = None,
        workdir: Optional[Path] = None,
        extra_args: Optional[Sequence[str]] = None,
        preexec_fn: Optional[Callable[[], None]] = None,
        launcher: Optional[Sequence[str]] = None,
    ) -> Tsidp:
        return start_tsidp(
            processes, tsidp_binary, workdir or scratch_dirs("tsidp"), identities, clients, port, extra_args,
            preexec_fn, launcher,
        )

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
def missing_tool_policy() -> Callable[[str], None]:
    """``missing_tool_policy(message)``: skip, or fail under TSIDP_REQUIRE_INTEROP=1."""
    return missing_tool


@pytest.fixture(scope="session")
def bounded_wait() -> Callable[..., bool]:
    """``bounded_wait(predicate, timeout, interval=0.1)`` -> whether it became true in time."""
    return wait_until


@pytest.fixture(scope="session")
def people() -> dict:
    return {"alice": ALICE, "bob": BOB}


@pytest.fixture
def unused_port() -> Callable[[], int]:
    return free_port


# ---------------------------------------------------------------------------
# OpenID Connect conformance helpers (test_conformance_*.py,
# test_restart_and_rotation.py)
#
# These tests play the OpenID Foundation conformance suite's part themselves:
# a "browser" (a session bound to 127.0.0.N) sends the authorization request
# and stops at tsidp's redirect, and a "relying party" redeems the code,
# verifies the ID token against the JWKS with `cryptography`, and calls
# userinfo.  Nothing here trusts tsidp: every value is checked.
# ---------------------------------------------------------------------------

PEERS_HINT = ".venv-peers/bin/pip install -r Tests/EndToEnd/requirements.txt"
CLOCK_LEEWAY = 60  # seconds of clock skew tolerated in exp/iat/nbf/auth_time checks
TAGGED = {
    "login": "tagged-devices",
    "display": "Tagged Devices",
    "user_id": 2999,
    "node_id": 1004,
    "node": "build-server.example-tailnet.ts.net.",
    "address": "100.64.0.4/32",
    "source": "127.0.0.4",
    "admin": False,
}
# RFC 6749 appendix A: access and refresh tokens are VSCHAR (%x20-7E) strings.
VSCHAR = re.compile(r"^[\x20-\x7e]+$")
NQCHAR = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
UNPADDED_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def tagged_whois_document(person: dict) -> dict:
    """A WhoIs answer for a tagged device (no user identity)."""
    document = whois_document(person)
    document["Node"]["Tags"] = ["tag:server"]
    return document


@pytest.fixture(scope="session")
def conformance_identities() -> list:
    """127.0.0.1 alice (admin), .2 bob, .3 unknown device, .4 a tagged device."""
    return [whois_document(ALICE), whois_document(BOB), None, tagged_whois_document(TAGGED)]


def b64url_decode(text: str) -> bytes:
    assert UNPADDED_B64URL.match(text or "x"), f"not unpadded base64url: {text[:80]!r}"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def jwt_unverified(token: str) -> tuple:
    """(header, claims) of a compact JWS, without checking the signature."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a compact JWS: {token[:80]!r}"
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))


def verify_jws(token: str, jwks: dict) -> tuple:
    """Verifies a compact JWS against a JWKS (by ``kid``); returns (header, claims, jwk).

    RS256 (RSASSA-PKCS1-v1_5 / SHA-256), ES256 (P-256) and EdDSA (Ed25519);
    anything else, a missing or unknown ``kid``, a key of the wrong type or a
    bad signature is an assertion failure.
    """
    import_peer("cryptography", "install the peers (cryptography comes with authlib): " + PEERS_HINT)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    header_b64, payload_b64, signature_b64 = token.split(".")
    header, claims = jwt_unverified(token)
    alg, kid = header.get("alg"), header.get("kid")
    assert alg and alg != "none", f"JWS header has no usable alg: {header}"
    assert kid, f"JWS header has no kid: {header}"
    matching = [key for key in jwks.get("keys", []) if key.get("kid") == kid]
    assert len(matching) == 1, f"kid {kid!r} matches {len(matching)} keys of the JWKS {[k.get('kid') for k in jwks.get('keys', [])]}"
    jwk = matching[0]
    if "alg" in jwk:
        assert jwk["alg"] == alg, f"JWK {kid} is for {jwk['alg']}, token header says {alg}"
    assert jwk.get("use", "sig") == "sig", jwk
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    signature = b64url_decode(signature_b64)
    try:
        if alg == "RS256":
            assert jwk["kty"] == "RSA", jwk
            public = rsa.RSAPublicNumbers(b64url_int(jwk["e"]), b64url_int(jwk["n"])).public_key()
            public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256":
            assert jwk["kty"] == "EC" and jwk["crv"] == "P-256", jwk
            assert len(signature) == 64, f"ES256 signature must be 64 bytes (r||s), got {len(signature)}"
            public = ec.EllipticCurvePublicNumbers(b64url_int(jwk["x"]), b64url_int(jwk["y"]), ec.SECP256R1()).public_key()
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA":
            assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519", jwk
            Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(signature, signing_input)
        else:
            raise AssertionError(f"unexpected JWS alg {alg!r}")
    except InvalidSignature:
        raise AssertionError(f"signature of the {alg} JWS with kid {kid} does not verify against the JWKS") from None
    return header, claims, jwk


def token_hash(value: str, alg: str) -> str:
    """at_hash / c_hash: left half of the hash of the ASCII value (OIDC Core 3.1.3.6)."""
    assert alg in ("RS256", "ES256", "EdDSA"), f"no hash rule checked here for {alg}"
    # EdDSA here is Ed25519, whose signatures hash with SHA-512.
    digest = (hashlib.sha512 if alg == "EdDSA" else hashlib.sha256)(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def check_jwks_document(jwks: dict) -> None:
    """What the suite's ValidateServerJWKs / CheckDistinctKeyIdValueInServerJWKs /
    EnsureServerJwksDoesNotContainPrivateOrSymmetricKeys check."""
    keys = jwks.get("keys")
    assert isinstance(keys, list) and keys, f"JWKS has no keys: {jwks}"
    kids = [key.get("kid") for key in keys]
    assert all(isinstance(kid, str) and kid for kid in kids), f"every key needs a kid: {kids}"
    assert len(set(kids)) == len(kids), f"kids are not distinct: {kids}"
    required = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
    for key in keys:
        assert key.get("kty") in required, f"unexpected kty: {key}"
        for member in required[key["kty"]]:
            assert isinstance(key.get(member), str) and key[member], f"{key['kid']}: {member} missing"
            if member != "crv":
                b64url_decode(key[member])
        private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(key)
        assert not private, f"JWKS publishes private or symmetric key material {private} in {key['kid']}"
        assert key.get("use", "sig") == "sig", key


def assert_allowed_token_chars(name: str, value) -> None:
    assert isinstance(value, str) and value, f"{name} missing or not a string: {value!r}"
    assert VSCHAR.match(value), f"{name} has characters outside %x20-7E"
    assert len(value) >= 22, f"{name} is too short to carry 128 bits: {len(value)} characters"


def first_values(query: str) -> dict:
    parsed = parse_qs(query, keep_blank_values=True)
    for name, values in parsed.items():
        assert len(values) == 1, f"parameter {name} appears {len(values)} times in {query}"
    return {name: values[0] for name, values in parsed.items()}


def wait_for_next_second(after: int) -> None:
    """Sleeps until the clock shows a whole second later than ``after`` (a JWT time)."""
    while int(time.time()) <= after:
        time.sleep(max(0.02, after + 1 - time.time() + 0.02))


@dataclasses.dataclass
class OIDCClient:
    client_id: str
    client_secret: Optional[str]
    redirect_uris: list
    auth_method: str  # client_secret_basic | client_secret_post | none | private_key_jwt | client_secret_jwt
    registration: dict
    # private_key_jwt: the client's private key (an authlib JsonWebKey with a kid), which signs
    # its assertions; client_secret_jwt MACs them with client_secret.
    assertion_key: object = None

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def assertion(self, audience: str, **claims) -> str:
        """An RFC 7523 client assertion for ``audience`` (``claims`` override the defaults)."""
        from authlib.jose import jwt

        now = int(time.time())
        payload = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "jti": secrets.token_urlsafe(16),
                   "iat": now, "exp": now + 60, **claims}
        if self.auth_method == "client_secret_jwt":
            return jwt.encode({"alg": "HS256"}, payload, self.client_secret).decode()
        key = self.assertion_key
        jwk = key.as_dict()
        default_alg = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[jwk["kty"]]
        header = {"alg": jwk.get("alg", default_alg), "kid": jwk["kid"]}
        return jwt.encode(header, payload, key).decode()


@dataclasses.dataclass
class AuthorizationResponse:
    """tsidp's answer to an authorization request (redirects are not followed)."""

    response: requests.Response
    params: dict

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def location(self) -> Optional[str]:
        return self.response.headers.get("Location")

    def describe(self) -> str:
        return (
            f"authorization request {self.params} -> {self.status} "
            f"Location={self.location!r} body={self.response.text[:600]!r}"
        )


@dataclasses.dataclass
class Login:
    client: OIDCClient
    params: dict
    callback: dict
    token_response: requests.Response
    token: dict
    header: dict
    claims: dict
    code_verifier: Optional[str]


ABSENT = object()  # "the authorization request had no nonce"

# OIDC Core 5.1 standard claims and the JSON type each must have when present.
STANDARD_CLAIM_TYPES = {
    "sub": str, "name": str, "given_name": str, "family_name": str, "middle_name": str, "nickname": str,
    "preferred_username": str, "profile": str, "picture": str, "website": str, "email": str,
    "email_verified": bool, "gender": str, "birthdate": str, "zoneinfo": str, "locale": str,
    "phone_number": str, "phone_number_verified": bool, "address": dict, "updated_at": int,
}
SCOPE_CLAIMS = {
    "profile": ("name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile",
                "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}


def check_standard_claims(claims: dict) -> None:
    """Every standard claim present has its OIDC Core 5.1 type (the suite's ValidateOpenIdStandardClaims)."""
    for name, kind in STANDARD_CLAIM_TYPES.items():
        if name in claims:
            value = claims[name]
            assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), (
                f"claim {name} should be {kind.__name__}: {value!r}"
            )
    for name in ("picture", "profile", "website"):
        if name in claims:
            assert urlsplit(claims[name]).scheme in ("http", "https"), f"{name} is not a URL: {claims[name]!r}"
    if "email" in claims:
        assert re.match(r"^[^@\s]+@[^@\s]+$", claims["email"]), claims["email"]


class OpenIDProvider:
    """A black-box driver for one running tsidp, as a conformance suite sees it."""

    # Module-level helpers, reachable from the test modules (which do not import conftest).
    verify_jws = staticmethod(verify_jws)
    jwt_unverified = staticmethod(jwt_unverified)
    check_jwks_document = staticmethod(check_jwks_document)
    check_standard_claims = staticmethod(check_standard_claims)
    wait_for_next_second = staticmethod(wait_for_next_second)
    first_values = staticmethod(first_values)
    scope_claims = SCOPE_CLAIMS
    ABSENT = ABSENT

    def __init__(self, tsidp: Tsidp):
        self.tsidp = tsidp
        self._metadata: Optional[dict] = None

    # -- discovery --------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.tsidp.issuer

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            response = browser_session().get(self.discovery_url)
            assert response.status_code == 200, f"discovery -> {response.status_code}: {response.text[:500]}"
            self._metadata = response.json()
        return self._metadata

    def jwks(self) -> dict:
        """The JWKS as published right now (never cached)."""
        response = browser_session().get(self.metadata["jwks_uri"])
        assert response.status_code == 200, f"jwks -> {response.status_code}: {response.text[:500]}"
        return response.json()

    # -- clients ----------------------------------------------------------

    def new_redirect_uri(self, path: str = "callback") -> str:
        """A redirect URI nobody listens on: the browser stops at the redirect."""
        return f"http://127.0.0.1:{free_port()}/{path}/{secrets.token_hex(4)}"

    def static_client(self, name: str, redirect_uris: Optional[list] = None, **form) -> OIDCClient:
        """A client registered by the admin (alice) with POST /clients/new (client_secret_basic)."""
        uris = redirect_uris or [self.new_redirect_uri()]
        response = self.admin_post("/clients/new", {"name": name, "redirect_uri": "\n".join(uris), **form})
        assert response.status_code == 200, f"POST /clients/new -> {response.status_code}: {response.text[:1000]}"
        body = response.json()
        assert body.get("client_id") and body.get("client_secret"), body
        assert body.get("redirect_uris") == uris, body
        return OIDCClient(body["client_id"], body["client_secret"], uris, "client_secret_basic", body)

    def register(self, metadata: dict, source: str = "127.0.0.1") -> requests.Response:
        return browser_session(source).post(self.url("/register"), json=metadata)

    def dynamic_client(
        self, name: str, redirect_uris: Optional[list] = None, auth_method: str = "client_secret_basic", **metadata
    ) -> OIDCClient:
        """A client registered with RFC 7591 POST /register."""
        uris = redirect_uris or [self.new_redirect_uri()]
        request = {"client_name": name, "redirect_uris": uris, "token_endpoint_auth_method": auth_method, **metadata}
        response = self.register(request)
        assert response.status_code == 201, f"POST /register {request} -> {response.status_code}: {response.text[:1000]}"
        body = response.json()
        assert body.get("client_id"), body
        assert body.get("redirect_uris") == uris, body
        assert body.get("token_endpoint_auth_method") == auth_method, body
        if auth_method in ("none", "private_key_jwt"):
            assert not body.get("client_secret"), body
        else:
            assert body.get("client_secret"), body
        return OIDCClient(body["client_id"], body.get("client_secret"), uris, auth_method, body)

    def url(self, path: str) -> str:
        return self.issuer + path

    def get(self, url: str, source: str = "127.0.0.1", **kwargs) -> requests.Response:
        return browser_session(source).get(url, **kwargs)

    def admin_post(self, path: str, data: Optional[dict] = None, source: str = "127.0.0.1") -> requests.Response:
        return browser_session(source).post(self.url(path), data=data or {}, headers={"Accept": "application/json"})

    # -- authorization endpoint -------------------------------------------

    def authorization_params(self, client: OIDCClient, **overrides) -> dict:
        """A code-flow request with state and nonce; an override of None drops the parameter."""
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "scope": "openid",
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
        }
        params.update(overrides)
        return {name: value for name, value in params.items() if value is not None}

    def authorize(
        self,
        params,
        source: str = "127.0.0.1",
        method: str = "GET",
        raw_query: Optional[str] = None,
        consent: Optional[str] = "allow",
    ) -> AuthorizationResponse:
        """Sends the authorization request from the browser at ``source``; never follows redirects.

        ``params`` may be a dict or a list of pairs (to control their order);
        ``raw_query`` sends an exact query string instead. A consent page (dynamically registered
        clients) is answered with ``consent`` (``allow`` or ``deny``), or returned as it is when
        ``consent`` is None.
        """
        browser = browser_session(source)
        endpoint = self.metadata["authorization_endpoint"]
        if method == "POST":
            response = browser.post(endpoint, data=params, allow_redirects=False)
        elif raw_query is not None:
            response = browser.get(f"{endpoint}?{raw_query}", allow_redirects=False)
        else:
            response = browser.get(endpoint, params=params, allow_redirects=False)
        if consent is not None:
            response = answer_consent(browser, response, consent)
        return AuthorizationResponse(response, dict(params) if params is not None else {})

    def expect_redirect(self, answer: AuthorizationResponse, redirect_uri: str) -> dict:
        """The answer is a redirect to exactly ``redirect_uri`` (whose own query is kept); returns
        the parameters tsidp added, with ``iss`` checked (RFC 9207)."""
        assert answer.status in (302, 303), answer.describe()
        location = answer.location or ""
        registered = urlsplit(redirect_uri)
        got = urlsplit(location)
        assert (got.scheme, got.netloc, got.path) == (registered.scheme, registered.netloc, registered.path), (
            f"redirected to {location}, expected {redirect_uri}"
        )
        assert got.fragment == "", location
        query = first_values(got.query)
        for name, value in first_values(registered.query).items():
            assert query.pop(name, None) == value, f"registered query {name}={value} not kept in {location}"
        assert query.get("iss") == self.issuer, f"iss (RFC 9207) missing or wrong in {location}"
        return query

    def expect_code(self, answer: AuthorizationResponse, redirect_uri: str, state: Optional[str]) -> dict:
        query = self.expect_redirect(answer, redirect_uri)
        assert "error" not in query, f"authorization failed: {query} ({answer.describe()})"
        assert query.get("code"), f"no code in {answer.location}"
        if state is None:
            assert "state" not in query, answer.location
        else:
            assert query.get("state") == state, f"state not echoed: {answer.location}"
        return query

    def expect_error(self, answer: AuthorizationResponse, redirect_uri: str, errors, state: Optional[str]) -> dict:
        """A redirect carrying ``error`` (one of ``errors``), the state and iss, and no code."""
        query = self.expect_redirect(answer, redirect_uri)
        allowed = {errors} if isinstance(errors, str) else set(errors)
        assert query.get("error") in allowed, f"expected error in {sorted(allowed)}, got {answer.location}"
        assert "code" not in query, answer.location
        if state is not None:
            assert query.get("state") == state, f"state not echoed in error response: {answer.location}"
        if "error_description" in query:
            assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in query["error_description"]), query
        return query

    def expect_error_page(self, answer: AuthorizationResponse) -> None:
        """An error shown to the user: no redirect to anywhere, an HTML 4xx page."""
        assert answer.status not in (301, 302, 303, 307, 308), f"must not redirect: {answer.describe()}"
        assert "Location" not in answer.response.headers, answer.describe()
        assert 400 <= answer.status < 500, answer.describe()
        assert answer.response.headers.get("Content-Type", "").startswith("text/html"), answer.describe()
        assert "code=" not in answer.response.text, "error page leaks an authorization code"

    # -- token endpoint ---------------------------------------------------

    def token_request(self, client: OIDCClient, form: dict, auth_method: Optional[str] = None) -> requests.Response:
        method = auth_method or client.auth_method
        form = dict(form)
        headers = {"Accept": "application/json"}
        if method == "client_secret_basic":
            # RFC 6749 2.3.1: form-urlencode id and secret before Basic encoding.
            pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret or '', safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif method == "client_secret_post":
            form.update(client_id=client.client_id, client_secret=client.client_secret)
        elif method == "none":
            form["client_id"] = client.client_id
        elif method in ("private_key_jwt", "client_secret_jwt"):
            form.update(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        client_assertion=client.assertion(self.metadata["token_endpoint"]))
        else:
            raise AssertionError(f"unknown auth method {method}")
        return browser_session().post(self.metadata["token_endpoint"], data=form, headers=headers)

    def redeem(self, client: OIDCClient, code: str, redirect_uri: Optional[str] = None,
               code_verifier: Optional[str] = None, auth_method: Optional[str] = None) -> requests.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or client.redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        return self.token_request(client, form, auth_method)

    def refresh(self, client: OIDCClient, refresh_token: str, scope: Optional[str] = None) -> requests.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope is not None:
            form["scope"] = scope
        return self.token_request(client, form)

    @staticmethod
    def check_token_response(response: requests.Response, expect_id_token: bool = True) -> dict:
        """RFC 6749 5.1 / OIDC Core 3.1.3.3 checks the suite makes on a successful token response."""
        assert response.status_code == 200, f"token endpoint -> {response.status_code}: {response.text[:1000]}"
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
        assert "no-store" in response.headers.get("Cache-Control", ""), response.headers
        body = response.json()
        assert_allowed_token_chars("access_token", body.get("access_token"))
        assert str(body.get("token_type", "")).lower() == "bearer", body
        expires_in = body.get("expires_in")
        assert isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0, body
        if "refresh_token" in body:
            assert_allowed_token_chars("refresh_token", body["refresh_token"])
        if expect_id_token:
            assert isinstance(body.get("id_token"), str) and body["id_token"].count(".") == 2, body
        return body

    @staticmethod
    def check_token_error(response: requests.Response, error: str, status=400) -> dict:
        """RFC 6749 5.2 error response with the given code (``status``: a code or a tuple of codes)."""
        statuses = status if isinstance(status, tuple) else (status,)
        assert response.status_code in statuses, f"expected {status} {error}, got {response.status_code}: {response.text[:1000]}"
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
        body = response.json()
        assert body.get("error") == error, f"expected error {error}, got {body}"
        if "error_description" in body:
            assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in body["error_description"]), body
        return body

    # -- ID token ---------------------------------------------------------

    def verify_id_token(self, id_token: str, client: OIDCClient, nonce=ABSENT, access_token: Optional[str] = None,
                        jwks: Optional[dict] = None, alg: str = "RS256") -> tuple:
        """Signature against the JWKS plus the OIDC Core 3.1.3.7 claim checks; returns (header, claims)."""
        header, claims, _ = verify_jws(id_token, jwks or self.jwks())
        assert header["alg"] == alg, f"ID token alg {header['alg']}, expected {alg}"
        assert header.get("typ") in (None, "JWT"), header
        now = int(time.time())
        assert claims.get("iss") == self.issuer, claims
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        assert client.client_id in audiences, f"aud {aud} lacks {client.client_id}"
        if len(audiences) > 1 or "azp" in claims:
            assert claims.get("azp") == client.client_id, claims
        sub = claims.get("sub")
        assert isinstance(sub, str) and 0 < len(sub) <= 255 and sub.isascii(), claims
        for name in ("exp", "iat"):
            assert isinstance(claims.get(name), int) and not isinstance(claims[name], bool), f"{name}: {claims}"
        assert claims["exp"] > now - CLOCK_LEEWAY, f"ID token expired: exp={claims['exp']} now={now}"
        assert claims["exp"] > claims["iat"], claims
        assert claims["iat"] <= now + CLOCK_LEEWAY, f"iat in the future: {claims['iat']} now={now}"
        if "nbf" in claims:
            assert isinstance(claims["nbf"], int) and claims["nbf"] <= now + CLOCK_LEEWAY, claims
        if "auth_time" in claims:
            assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= now + CLOCK_LEEWAY, claims
        if nonce is ABSENT:
            assert "nonce" not in claims, f"nonce in ID token although none was sent: {claims}"
        elif nonce is not None:
            assert claims.get("nonce") == nonce, f"nonce {claims.get('nonce')!r}, sent {nonce!r}"
        if "acr" in claims:
            assert isinstance(claims["acr"], str), claims
        if "amr" in claims:
            assert isinstance(claims["amr"], list), claims
        if "updated_at" in claims:
            assert isinstance(claims["updated_at"], int), claims
        if access_token is not None and "at_hash" in claims:
            assert claims["at_hash"] == token_hash(access_token, alg), "at_hash does not match the access token"
        return header, claims

    # -- userinfo ---------------------------------------------------------

    def userinfo(self, access_token: str, style: str = "get") -> requests.Response:
        endpoint = self.metadata["userinfo_endpoint"]
        session = browser_session()
        bearer = {"Authorization": f"Bearer {access_token}"}
        if style == "get":
            return session.get(endpoint, headers=bearer)
        if style == "post-header":
            return session.post(endpoint, headers=bearer)
        if style == "post-body":
            return session.post(endpoint, data={"access_token": access_token})
        raise AssertionError(style)

    @staticmethod
    def check_userinfo(response: requests.Response, sub: str) -> dict:
        assert response.status_code == 200, f"userinfo -> {response.status_code}: {response.text[:1000]}"
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
        body = response.json()
        assert body.get("sub") == sub, f"userinfo sub {body.get('sub')!r} differs from the ID token's {sub!r}"
        return body

    # -- whole flows ------------------------------------------------------

    def login(self, client: OIDCClient, source: str = "127.0.0.1", method: str = "GET", pkce: bool = False,
              **overrides) -> Login:
        """Authorization request, callback checks, code redemption and ID token validation."""
        verifier = None
        if pkce or client.auth_method == "none":
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            overrides.setdefault("code_challenge", challenge)
            overrides.setdefault("code_challenge_method", "S256")
        params = self.authorization_params(client, **overrides)
        answer = self.authorize(params, source=source, method=method)
        callback = self.expect_code(answer, params["redirect_uri"], params.get("state"))
        token_response = self.redeem(client, callback["code"], params["redirect_uri"], verifier)
        openid = "openid" in params.get("scope", "").split()
        token = self.check_token_response(token_response, expect_id_token=openid)
        header, claims = {}, {}
        if openid:
            header, claims = self.verify_id_token(
                token["id_token"], client, nonce=params.get("nonce", ABSENT), access_token=token["access_token"]
            )
        return Login(client, params, callback, token_response, token, header, claims, verifier)


@pytest.fixture(scope="session")
def oidc_op_factory(tsidp_factory, conformance_identities) -> Callable[..., OpenIDProvider]:
    """``oidc_op_factory()`` -> a driver for a fresh tsidp (own state dir) with the conformance identities;
    ``oidc_op_factory(workdir=path)`` starts it in a prepared work dir (see ``tsidp_factory``)."""

    def make(workdir: Optional[Path] = None) -> OpenIDProvider:
        return OpenIDProvider(tsidp_factory(identities=conformance_identities, workdir=workdir))

    return make


@pytest.fixture(scope="session")
def oidc_op(oidc_op_factory) -> OpenIDProvider:
    """The tsidp shared by the conformance tests (127.0.0.1 alice, .2 bob, .3 unknown, .4 tagged)."""
    return oidc_op_factory()


@pytest.fixture(scope="session")
def restart_tsidp(processes, tsidp_binary) -> Callable[..., Tsidp]:
    """``restart_tsidp(old)``: SIGTERM ``old`` and start tsidp again on the same --dir and port
    (the same port keeps the issuer, and so every token's ``iss``, unchanged).
    ``restart_tsidp(old, kill=True)`` SIGKILLs it instead, as a crash would."""

    def restart(old: Tsidp, kill: bool = False) -> Tsidp:
        if kill:
            status = old.process.kill()
            assert status == -signal.SIGKILL, f"tsidp had exited on its own (status {status})\n{old.process.logs()}"
        else:
            old.process.stop()
            status = old.process.popen.poll()
            assert status is not None, "tsidp did not stop"
            assert status != -signal.SIGKILL, f"tsidp ignored SIGTERM and had to be killed\n{old.process.logs()}"
        workdir = old.state_dir.parent
        new = None
        for _ in range(20):  # the port may linger for a moment after the old process exits
            candidate = start_tsidp(processes, tsidp_binary, workdir, old.identities or None, port=old.port)
            if candidate.port == old.port:
                new = candidate
                break
            candidate.process.stop()
            time.sleep(0.25)
        assert new is not None, f"could not restart tsidp on port {old.port}"
        return new

    return restart

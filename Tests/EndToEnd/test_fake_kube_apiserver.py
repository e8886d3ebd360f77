"""The stand-in Kubernetes API server (Tests/StandIns/kube-apiserver) against the real one.

tsidp's Kubernetes state store will be tested against this stand-in, so these tests pin down that
it answers the way a real API server does where tsidp can tell: the Secret verbs and their Status
errors (404, 409 AlreadyExists and Conflict, 422 Invalid, 415, 401, 403), JSON patch with its
atomicity, merge and strategic merge patch, the 1 MiB limit, Events, SelfSubjectAccessReviews,
and `kubectl` (a real client) reading and editing what the API wrote. They also cover what only
the stand-in has: token rotation through the service-account file, the RBAC table, faults and the
request log.

Each test starts its own stand-in through conftest's process registry, so it is always stopped.
Loopback only; every wait is bounded; nothing is judged by the clock (a delay fault is checked by
the order in which requests completed).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = REPO_ROOT / "Tests" / "StandIns" / "kube-apiserver"

READY_TIMEOUT = 30.0  # seconds for the stand-in to write DIR/url
HTTP_TIMEOUT = 15.0  # seconds for any one request
KUBECTL_TIMEOUT = 60.0  # seconds for one kubectl run
MIB = 1024 * 1024

SECRETS = "/api/v1/namespaces/default/secrets"
EVENTS = "/api/v1/namespaces/default/events"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
STRATEGIC_PATCH = {"Content-Type": "application/strategic-merge-patch+json"}

# Values that must never reach the stand-in's log.
SECRET_VALUE = b"standin-state-value-7f3a9c"
POD = "idp-0"
POD_UID = "6f1c2e7a-0000-4bbb-9ccc-1234567890ab"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------
# Fixture: one stand-in per test
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class FakeAPI:
    directory: Path
    url: str
    process: Any  # conftest.ManagedProcess
    api: requests.Session  # authenticated with the service-account token
    anonymous: requests.Session

    @property
    def ca(self) -> str:
        return str(self.directory / "ca.crt")

    def token(self) -> str:
        return (self.directory / "serviceaccount" / "token").read_text().strip()

    def admin_token(self) -> str:
        return (self.directory / "admin-token").read_text().strip()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.api.get(self.url + path, **kwargs)

    def post(self, path: str, body: Any, **kwargs) -> requests.Response:
        return self.api.post(self.url + path, json=body, **kwargs)

    def put(self, path: str, body: Any, **kwargs) -> requests.Response:
        return self.api.put(self.url + path, json=body, **kwargs)

    def patch(self, path: str, body: Any, headers: dict) -> requests.Response:
        return self.api.patch(self.url + path, data=json.dumps(body) + "\n", headers=headers)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.api.delete(self.url + path, **kwargs)

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.anonymous.request(method, self.url + "/fake/v1/" + path, json=body,
                                      headers={"Authorization": f"Bearer {self.admin_token()}"})

    def configure(self, config: dict) -> dict:
        answer = self.control("POST", "config", config)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def requests_seen(self, clear: bool = False) -> list:
        answer = self.control("GET", "requests" + ("?clear=1" if clear else ""))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def create_secret(self, name: str, data: Optional[dict] = None) -> dict:
        body: dict = {"kind": "Secret", "apiVersion": "v1",
                      "metadata": {"name": name, "namespace": "default", "creationTimestamp": "0001-01-01T00:00:00Z"}}
        if data is not None:
            body["data"] = {k: b64(v) for k, v in data.items()}
        answer = self.post(SECRETS, body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def secret(self, name: str) -> dict:
        answer = self.get(f"{SECRETS}/{name}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def log(self) -> str:
        return self.process.logs()


def session(verify: str, token: Optional[str] = None) -> requests.Session:
    """A session that trusts only the stand-in's CA. ``trust_env`` is off: REQUESTS_CA_BUNDLE in the
    environment would otherwise replace ``verify``."""
    result = requests.Session()
    result.trust_env = False
    result.verify = verify
    if token:
        result.headers["Authorization"] = f"Bearer {token}"
    original = result.request

    def request(method, url, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return original(method, url, **kwargs)

    result.request = request  # type: ignore[method-assign]
    return result


@pytest.fixture
def start_fake(processes, scratch_dirs, missing_tool_policy, bounded_wait) -> Callable[..., FakeAPI]:
    if not shutil.which("openssl"):
        missing_tool_policy("the openssl command-line tool is not installed (Debian: apt-get install openssl); "
                            "the stand-in API server makes its certificates with it")
    counter = [0]

    def start(namespace: Optional[str] = None) -> FakeAPI:
        counter[0] += 1
        root = scratch_dirs("kubeapi")
        directory = root / "api"
        argv = [str(STANDIN), "--dir", str(directory)] + (["--namespace", namespace] if namespace else [])
        process = processes.start(f"kube-apiserver-{counter[0]}", argv, cwd=root, log_dir=root)
        url_file = directory / "url"
        ready = bounded_wait(lambda: url_file.exists() or process.popen.poll() is not None, READY_TIMEOUT)
        assert ready and process.popen.poll() is None, f"stand-in did not start:\n{process.logs()}"
        url = url_file.read_text().strip()
        ca = str(directory / "ca.crt")
        token = (directory / "serviceaccount" / "token").read_text().strip()
        return FakeAPI(directory, url, process, session(ca, token), session(ca))

    return start


@pytest.fixture
def fake(start_fake) -> Iterator[FakeAPI]:
    api = start_fake()
    yield api
    api.process.stop()
    log = api.log()
    for secret in (api.token(), api.admin_token(), b64(SECRET_VALUE), SECRET_VALUE.decode()):
        assert secret not in log, "a token or Secret value reached the stand-in's log"


@pytest.fixture
def kubectl(fake, missing_tool_policy) -> Callable[..., subprocess.CompletedProcess]:
    tool = shutil.which("kubectl")
    if not tool:
        missing_tool_policy("kubectl is not installed (Debian: the kubectl package; not kubernetes-client)")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [tool, "--kubeconfig", str(fake.directory / "kubeconfig"),
                "--cache-dir", str(fake.directory / "kubectl-cache"), "--request-timeout=20s", *args]
        environment = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        environment["HOME"] = str(fake.directory)  # no ~/.kube of the machine's
        result = subprocess.run(argv, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT, env=environment)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def status_of(answer: requests.Response) -> dict:
    body = answer.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["metadata"] == {}, body
    assert body["status"] == "Failure" and body["code"] == answer.status_code, body
    assert answer.headers["Content-Type"] == "application/json"
    return body


def new_version(before: dict, after: dict) -> bool:
    """resourceVersion is a string of digits and went up."""
    old, new = before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"]
    return old.isdigit() and new.isdigit() and int(new) > int(old)


# ---------------------------------------------------------------------------
# Start-up: files, certificate, kubeconfig, SIGTERM
# ---------------------------------------------------------------------------


def test_start_writes_the_cluster_files_and_the_url_last(fake):
    d = fake.directory
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", fake.url)
    for name in ("ca.crt", "ca.key", "server.crt", "server.key", "admin-token", "kubeconfig",
                 "serviceaccount/token", "serviceaccount/ca.crt", "serviceaccount/namespace"):
        assert (d / name).stat().st_size > 0, name
        assert (d / name).stat().st_mtime_ns <= (d / "url").stat().st_mtime_ns, f"{name} written after url"
    assert (d / "serviceaccount" / "ca.crt").read_text() == (d / "ca.crt").read_text()
    assert (d / "serviceaccount" / "namespace").read_text() == "default"
    assert fake.token() != fake.admin_token() and len(fake.token()) >= 32
    for key in ("ca.key", "server.key", "serviceaccount/token", "admin-token"):
        assert (d / key).stat().st_mode & 0o077 == 0, f"{key} is readable by others"

    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(d / "server.crt")], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    for san in ("IP Address:127.0.0.1", "DNS:localhost", "DNS:kubernetes.default.svc"):
        assert san in text
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "server.crt")],
                              capture_output=True, text=True, timeout=30)
    assert verified.returncode == 0, verified.stderr

    kubeconfig = (d / "kubeconfig").read_text()
    assert f'server: "{fake.url}"' in kubeconfig
    assert f'certificate-authority: "{d / "ca.crt"}"' in kubeconfig
    assert f'tokenFile: "{d / "serviceaccount" / "token"}"' in kubeconfig
    assert 'namespace: "default"' in kubeconfig and "current-context: standin" in kubeconfig

    version = fake.get("/version")
    assert version.status_code == 200 and version.json()["major"] == "1"


def test_namespace_flag_and_sigterm(start_fake):
    api = start_fake(namespace="idp-system")
    assert (api.directory / "serviceaccount" / "namespace").read_text() == "idp-system"
    assert 'namespace: "idp-system"' in (api.directory / "kubeconfig").read_text()
    created = api.post("/api/v1/namespaces/idp-system/secrets", {"metadata": {"name": "s"}})
    assert created.status_code == 201 and created.json()["metadata"]["namespace"] == "idp-system"
    denied = api.configure({"rbac": {"secrets/patch": False}})
    assert denied["rbac"] == {"secrets/patch": False}
    answer = api.patch("/api/v1/namespaces/idp-system/secrets/s", {}, MERGE_PATCH)
    assert 'User "system:serviceaccount:idp-system:tsidp" cannot patch' in status_of(answer)["message"]

    api.process.popen.send_signal(signal.SIGTERM)
    assert api.process.popen.wait(timeout=30) == 0
    assert not (api.directory / "url").exists()
    assert "kube-apiserver stopped" in api.log()


def test_keep_alive_and_body_limit(fake):
    """Several requests on one TLS connection (HTTP/1.1 keep-alive), a Go-style body with a trailing
    newline, and the API server's 3 MiB request-body limit."""
    address = urlsplit(fake.url)
    context = ssl.create_default_context(cafile=fake.ca)
    connection = http.client.HTTPSConnection(address.hostname, address.port, context=context, timeout=HTTP_TIMEOUT)
    try:
        headers = {"Authorization": f"Bearer {fake.token()}", "Accept": "application/json",
                   "Content-Type": "application/json"}
        connection.request("POST", SECRETS, body=json.dumps({"metadata": {"name": "tailscale"}}) + "\n",
                           headers=headers)
        first = connection.getresponse()
        assert first.status == 201 and first.getheader("Connection") != "close"
        first.read()
        socket_before = connection.sock
        assert socket_before is not None
        for _ in range(3):
            connection.request("GET", f"{SECRETS}/tailscale", headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["metadata"]["name"] == "tailscale"
            assert connection.sock is socket_before  # the same connection served them all
        # A body sent with chunked transfer encoding, as a streaming client would.
        chunks = iter([b'{"data":{"k":', b'"dg=="}}', b"\n"])
        connection.request("PATCH", f"{SECRETS}/tailscale", body=chunks, encode_chunked=True,
                           headers=dict(headers, **MERGE_PATCH))
        patched = connection.getresponse()
        assert patched.status == 200 and json.loads(patched.read())["data"] == {"k": "dg=="}
        assert connection.sock is socket_before
    finally:
        connection.close()

    too_big = fake.api.post(fake.url + SECRETS, data=b"{" + b" " * (3 * MIB) + b"}",
                            headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and status_of(too_big)["reason"] == "RequestEntityTooLarge"
    assert fake.requests_seen()[-1]["status"] == 413


def test_dry_run_stores_nothing(fake):
    created = fake.create_secret("tailscale", {"k": b"v"})
    dry_create = fake.post(SECRETS + "?dryRun=All", {"metadata": {"name": "dry"}})
    assert dry_create.status_code == 201 and dry_create.json()["metadata"]["name"] == "dry"
    assert fake.get(f"{SECRETS}/dry").status_code == 404
    dry_patch = fake.api.patch(fake.url + f"{SECRETS}/tailscale?dryRun=All", data=json.dumps({"data": {"k": None}}),
                               headers=MERGE_PATCH)
    assert dry_patch.status_code == 200 and "data" not in dry_patch.json()
    assert fake.secret("tailscale") == created
    assert fake.delete(f"{SECRETS}/tailscale?dryRun=All").status_code == 200
    assert fake.secret("tailscale") == created


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_create_get_put_delete(fake):
    created = fake.create_secret("tailscale", {"_machinekey": SECRET_VALUE})
    meta = created["metadata"]
    assert created["kind"] == "Secret" and created["apiVersion"] == "v1" and created["type"] == "Opaque"
    assert meta["name"] == "tailscale" and meta["namespace"] == "default"
    assert meta["resourceVersion"].isdigit() and re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert created["data"] == {"_machinekey": b64(SECRET_VALUE)}
    assert fake.secret("tailscale") == created

    again = fake.post(SECRETS, {"metadata": {"name": "tailscale"}})
    assert again.status_code == 409
    assert status_of(again) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'secrets "tailscale" already exists', "reason": "AlreadyExists",
        "details": {"name": "tailscale", "kind": "secrets"}, "code": 409}

    missing = fake.get(f"{SECRETS}/absent")
    assert missing.status_code == 404
    assert status_of(missing) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'secrets "absent" not found', "reason": "NotFound",
        "details": {"name": "absent", "kind": "secrets"}, "code": 404}

    # PUT with the current resourceVersion replaces data and keeps uid, creationTimestamp, namespace, name.
    replacement = dict(created, data={"profile-a1b2": b64(b"{}")})
    replaced = fake.put(f"{SECRETS}/tailscale", replacement)
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    assert after["data"] == {"profile-a1b2": b64(b"{}")} and new_version(created, after)
    for kept in ("uid", "creationTimestamp", "namespace", "name"):
        assert after["metadata"][kept] == meta[kept]

    # The same body again carries a resourceVersion that is no longer current.
    stale = fake.put(f"{SECRETS}/tailscale", replacement)
    assert stale.status_code == 409
    assert status_of(stale) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Operation cannot be fulfilled on secrets "tailscale": the object has been modified; please '
                   'apply your changes to the latest version and try again',
        "reason": "Conflict", "details": {"name": "tailscale", "kind": "secrets"}, "code": 409}
    assert fake.secret("tailscale") == after

    # As on a real server, a PUT without resourceVersion is an unconditional update for Secrets.
    unconditional = fake.put(f"{SECRETS}/tailscale", {"metadata": {"name": "tailscale"}, "data": {"k": b64(b"v")}})
    assert unconditional.status_code == 200 and new_version(after, unconditional.json())
    wrong_name = fake.put(f"{SECRETS}/tailscale", {"metadata": {"name": "other"}})
    assert wrong_name.status_code == 400 and status_of(wrong_name)["reason"] == "BadRequest"
    put_missing = fake.put(f"{SECRETS}/absent", {"metadata": {"name": "absent"}})
    assert put_missing.status_code == 404 and status_of(put_missing)["reason"] == "NotFound"

    deleted = fake.delete(f"{SECRETS}/tailscale")
    assert deleted.status_code == 200
    assert deleted.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": {"name": "tailscale", "kind": "secrets", "uid": meta["uid"]}}
    assert fake.get(f"{SECRETS}/tailscale").status_code == 404
    assert fake.delete(f"{SECRETS}/tailscale").status_code == 404
    assert fake.control("GET", "objects").json() == []


def test_create_needs_json_and_a_valid_name(fake):
    protobuf = fake.api.post(fake.url + SECRETS, data=b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret",
                             headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert protobuf.status_code == 415 and status_of(protobuf)["reason"] == "UnsupportedMediaType"
    unnamed = fake.post(SECRETS, {"metadata": {}})
    assert unnamed.status_code == 422
    assert status_of(unnamed)["message"] == \
        'Secret "" is invalid: metadata.name: Required value: name or generateName is required'
    bad_name = fake.post(SECRETS, {"metadata": {"name": "Not_A_Name"}})
    assert bad_name.status_code == 422
    body = status_of(bad_name)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"
    other_namespace = fake.post(SECRETS, {"metadata": {"name": "x", "namespace": "kube-system"}})
    assert other_namespace.status_code == 400 and status_of(other_namespace)["reason"] == "BadRequest"
    string_data = fake.post(SECRETS, {"metadata": {"name": "from-strings"}, "stringData": {"k": "v"}})
    assert string_data.status_code == 201 and string_data.json()["data"] == {"k": b64(b"v")}
    assert "stringData" not in string_data.json()


def test_json_patch_operations_and_pointer_escaping(fake):
    created = fake.create_secret("tailscale")
    assert "data" not in created  # an empty Secret has no data field, so /data/<key> cannot be added yet
    no_parent = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data/k", "value": b64(b"v")}], JSON_PATCH)
    assert no_parent.status_code == 422

    # What the Kubernetes state store sends: one op creating /data, then one add per key.
    first = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data",
                                                 "value": {"profile-a1b2": b64(SECRET_VALUE)}}], JSON_PATCH)
    assert first.status_code == 200, first.text
    assert first.json()["data"] == {"profile-a1b2": b64(SECRET_VALUE)} and new_version(created, first.json())
    second = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data/_current-profile",
                                                  "value": b64(b"profile-a1b2")},
                                                 {"op": "add", "path": "/data/profile-a1b2", "value": b64(b"new")}],
                        JSON_PATCH)
    assert second.status_code == 200
    assert second.json()["data"] == {"_current-profile": b64(b"profile-a1b2"), "profile-a1b2": b64(b"new")}
    assert new_version(first.json(), second.json())

    # replace, test, copy, move, remove; "~1" is "/" and "~0" is "~" in a pointer.
    ops = [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/example.com~1note", "value": "a/b"},
        {"op": "add", "path": "/metadata/annotations/tilde~0key", "value": "a~b"},
        {"op": "test", "path": "/data/profile-a1b2", "value": b64(b"new")},
        {"op": "replace", "path": "/data/profile-a1b2", "value": b64(b"replaced")},
        {"op": "copy", "from": "/data/profile-a1b2", "path": "/data/copied"},
        {"op": "move", "from": "/data/_current-profile", "path": "/data/moved"},
        {"op": "remove", "path": "/data/copied"},
    ]
    third = fake.patch(f"{SECRETS}/tailscale", ops, JSON_PATCH)
    assert third.status_code == 200, third.text
    assert third.json()["metadata"]["annotations"] == {"example.com/note": "a/b", "tilde~key": "a~b"}
    assert third.json()["data"] == {"moved": b64(b"profile-a1b2"), "profile-a1b2": b64(b"replaced")}

    # The deletion the store sends: remove with no value.
    removed = fake.patch(f"{SECRETS}/tailscale", [{"op": "remove", "path": "/data/moved"}], JSON_PATCH)
    assert removed.status_code == 200 and removed.json()["data"] == {"profile-a1b2": b64(b"replaced")}


def test_json_patch_is_all_or_nothing(fake):
    fake.create_secret("tailscale", {"keep": b"1"})
    before = fake.secret("tailscale")
    failing = [
        [{"op": "add", "path": "/data/new", "value": b64(b"x")}, {"op": "test", "path": "/data/keep", "value": "eA=="}],
        [{"op": "add", "path": "/data/new", "value": b64(b"x")}, {"op": "remove", "path": "/data/absent"}],
        [{"op": "replace", "path": "/data/absent", "value": b64(b"x")}],
        [{"op": "test", "path": "/data/absent", "value": "eA=="}],
        [{"op": "move", "from": "/data/absent", "path": "/data/new"}],
        [{"op": "add", "path": "/data/new~2", "value": b64(b"x")}],
        [{"op": "frobnicate", "path": "/data/keep"}],
    ]
    for ops in failing:
        answer = fake.patch(f"{SECRETS}/tailscale", ops, JSON_PATCH)
        assert answer.status_code == 422, (ops, answer.text)
        assert status_of(answer) == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server rejected our request due to an error in our request", "reason": "Invalid",
            "details": {}, "code": 422}
        assert fake.secret("tailscale") == before, ops
    not_a_list = fake.patch(f"{SECRETS}/tailscale", {"op": "add"}, JSON_PATCH)
    assert not_a_list.status_code == 400 and status_of(not_a_list)["reason"] == "BadRequest"
    # A test on resourceVersion is the JSON-patch way of a conditional write.
    guarded = [{"op": "test", "path": "/metadata/resourceVersion", "value": before["metadata"]["resourceVersion"]},
               {"op": "add", "path": "/data/new", "value": b64(b"x")}]
    assert fake.patch(f"{SECRETS}/tailscale", guarded, JSON_PATCH).status_code == 200
    assert fake.patch(f"{SECRETS}/tailscale", guarded, JSON_PATCH).status_code == 422
    missing = fake.patch(f"{SECRETS}/absent", [{"op": "add", "path": "/data", "value": {}}], JSON_PATCH)
    assert missing.status_code == 404 and status_of(missing)["message"] == 'secrets "absent" not found'


def test_merge_and_strategic_merge_patch(fake):
    created = fake.create_secret("tailscale", {"a": b"1", "b": b"2"})
    merged = fake.patch(f"{SECRETS}/tailscale", {"data": {"a": None, "c": b64(b"3")},
                                                 "metadata": {"labels": {"app": "idp"}}}, MERGE_PATCH)
    assert merged.status_code == 200, merged.text
    assert merged.json()["data"] == {"b": b64(b"2"), "c": b64(b"3")}
    assert merged.json()["metadata"]["labels"] == {"app": "idp"} and new_version(created, merged.json())

    # What containerboot sends (strategic merge patch with a field manager).
    strategic = fake.api.patch(fake.url + f"{SECRETS}/tailscale?fieldManager=tailscale-container",
                               data=json.dumps({"kind": "Secret", "apiVersion": "v1",
                                                "metadata": {"name": "tailscale", "namespace": "default"},
                                                "data": {"device_id": b64(b"n123")}}),
                               headers=STRATEGIC_PATCH)
    assert strategic.status_code == 200, strategic.text
    assert strategic.json()["data"] == {"b": b64(b"2"), "c": b64(b"3"), "device_id": b64(b"n123")}

    # A patch that changes nothing keeps the resourceVersion, as the real server does.
    same = fake.patch(f"{SECRETS}/tailscale", {"data": {"b": b64(b"2")}}, MERGE_PATCH)
    assert same.status_code == 200 and same.json() == strategic.json()

    # A merge patch naming an old resourceVersion is refused; the current one is accepted.
    stale = fake.patch(f"{SECRETS}/tailscale", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                                "data": {"b": None}}, MERGE_PATCH)
    assert stale.status_code == 409 and status_of(stale)["reason"] == "Conflict"
    current = strategic.json()["metadata"]["resourceVersion"]
    fresh = fake.patch(f"{SECRETS}/tailscale", {"metadata": {"resourceVersion": current}, "data": {"b": None}},
                       MERGE_PATCH)
    assert fresh.status_code == 200 and "b" not in fresh.json()["data"]

    unknown = fake.api.patch(fake.url + f"{SECRETS}/tailscale", data="{}",
                             headers={"Content-Type": "application/apply-patch+yaml"})
    assert unknown.status_code == 415 and status_of(unknown)["reason"] == "UnsupportedMediaType"


def test_data_must_be_base64_with_valid_keys(fake):
    fake.create_secret("tailscale", {"k": b"v"})
    before = fake.secret("tailscale")
    # In a patch the result fails to decode: 422, as for any patch whose result is not a Secret.
    bad_value = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data/x", "value": "not base64!"}],
                           JSON_PATCH)
    assert bad_value.status_code == 422
    body = status_of(bad_value)
    assert body["reason"] == "Invalid" and "illegal base64 data at input byte" in body["message"]
    assert body["details"]["causes"][0]["field"] == "patch"
    # In a POST or PUT body the object does not decode: the real server says 400 BadRequest.
    bad_body = fake.post(SECRETS, {"metadata": {"name": "other"}, "data": {"x": "abc"}})
    assert bad_body.status_code == 400
    assert status_of(bad_body)["message"].startswith(
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte')

    bad_key = fake.patch(f"{SECRETS}/tailscale", {"data": {"dirty@key": b64(b"v")}}, MERGE_PATCH)
    assert bad_key.status_code == 422
    assert status_of(bad_key) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Secret \"tailscale\" is invalid: data[dirty@key]: Invalid value: \"dirty@key\": a valid config "
                   "key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  "
                   "or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        "reason": "Invalid",
        "details": {"name": "tailscale", "kind": "Secret", "causes": [{
            "reason": "FieldValueInvalid",
            "message": "Invalid value: \"dirty@key\": a valid config key must consist of alphanumeric characters, "
                       "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                       "is '[-._a-zA-Z0-9]+')",
            "field": "data[dirty@key]"}]},
        "code": 422}
    for key in ("_serve/a1b2", "..x", "a b"):
        answer = fake.patch(f"{SECRETS}/tailscale", {"data": {key: b64(b"v")}}, MERGE_PATCH)
        assert answer.status_code == 422, key
    assert fake.secret("tailscale") == before
    # Every character the state store's key sanitizing keeps is accepted.
    good = fake.patch(f"{SECRETS}/tailscale", {"data": {"_serve_a1b2": b64(b"v"), "Key-1.x": b64(b"v")}}, MERGE_PATCH)
    assert good.status_code == 200


def test_one_mebibyte_limit(fake):
    message = 'Secret "tailscale" is invalid: data: Too long: must have at most 1048576 bytes'
    too_long_cause = {"reason": "FieldValueTooLong", "message": "Too long: must have at most 1048576 bytes",
                      "field": "data"}
    # Exactly 1 MiB of values is accepted: the real server counts decoded value bytes only, not keys.
    fake.create_secret("tailscale", {"a": b"x" * (MIB - 10), "b": b"y" * 10})
    before = fake.secret("tailscale")
    one_more = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data/c", "value": b64(b"z")}], JSON_PATCH)
    assert one_more.status_code == 422
    assert status_of(one_more) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": "Invalid", "details": {"name": "tailscale", "kind": "Secret", "causes": [too_long_cause]},
        "code": 422}
    assert fake.secret("tailscale") == before
    too_big = fake.post(SECRETS, {"metadata": {"name": "big"}, "data": {"k": b64(b"x" * (MIB + 1))}})
    assert too_big.status_code == 422
    assert status_of(too_big)["message"] == message.replace('"tailscale"', '"big"')
    assert fake.get(f"{SECRETS}/big").status_code == 404
    # Replacing a value with a smaller one is fine again.
    smaller = fake.patch(f"{SECRETS}/tailscale", [{"op": "replace", "path": "/data/b", "value": b64(b"")},
                                                  {"op": "add", "path": "/data/c", "value": b64(b"z" * 10)}], JSON_PATCH)
    assert smaller.status_code == 200


# ---------------------------------------------------------------------------
# Authentication, RBAC, SelfSubjectAccessReviews
# ---------------------------------------------------------------------------


def test_bearer_token_required_and_rotation(fake):
    fake.create_secret("tailscale")
    unauthorized = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    anonymous = fake.anonymous.get(fake.url + f"{SECRETS}/tailscale")
    assert anonymous.status_code == 401 and status_of(anonymous) == unauthorized
    wrong = fake.anonymous.get(fake.url + f"{SECRETS}/tailscale", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and status_of(wrong) == unauthorized
    admin_on_api = fake.anonymous.get(fake.url + f"{SECRETS}/tailscale",
                                      headers={"Authorization": f"Bearer {fake.admin_token()}"})
    assert admin_on_api.status_code == 401
    api_on_control = fake.anonymous.get(fake.url + "/fake/v1/objects",
                                        headers={"Authorization": f"Bearer {fake.token()}"})
    assert api_on_control.status_code == 401

    # Rotation: the file is read on every request.
    old = fake.token()
    new = "rotated-" + old[::-1]
    token_file = fake.directory / "serviceaccount" / "token"
    temporary = token_file.with_name("token.new")
    temporary.write_text(new)
    temporary.replace(token_file)
    assert fake.get(f"{SECRETS}/tailscale").status_code == 401  # the session still sends the old one
    rotated = fake.anonymous.get(fake.url + f"{SECRETS}/tailscale", headers={"Authorization": f"Bearer {new}"})
    assert rotated.status_code == 200
    statuses = [entry["status"] for entry in fake.requests_seen() if entry["path"] == f"{SECRETS}/tailscale"]
    assert statuses == [401, 401, 401, 401, 200]


def test_kubectl_follows_token_rotation(fake, kubectl):
    fake.create_secret("tailscale")
    kubectl("get", "secret", "tailscale", "-o", "name")
    token_file = fake.directory / "serviceaccount" / "token"
    token_file.write_text("rotated-token-for-kubectl")
    assert kubectl("get", "secret", "tailscale", "-o", "name").stdout.strip() == "secret/tailscale"
    fake.api.headers["Authorization"] = "Bearer rotated-token-for-kubectl"
    assert fake.get(f"{SECRETS}/tailscale").status_code == 200


def review(fake: FakeAPI, verb: str, resource: str, name: str = "") -> requests.Response:
    attributes = {"namespace": "default", "resource": resource, "verb": verb}
    if name:
        attributes["name"] = name
    return fake.post(SSAR, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                            "spec": {"resourceAttributes": attributes}})


def test_access_reviews_and_denials(fake):
    # The state store's start-up checks: all allowed by default.
    for verb, resource, name in [("get", "events", ""), ("create", "events", ""), ("patch", "events", ""),
                                 ("get", "secrets", "tailscale"), ("update", "secrets", "tailscale"),
                                 ("patch", "secrets", "tailscale"), ("create", "secrets", "tailscale")]:
        answer = review(fake, verb, resource, name)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["kind"] == "SelfSubjectAccessReview" and body["apiVersion"] == "authorization.k8s.io/v1"
        assert body["status"]["allowed"] is True
        assert body["spec"]["resourceAttributes"]["verb"] == verb

    fake.create_secret("tailscale", {"k": b"v"})
    config = fake.configure({"rbac": {"secrets/patch": False, "events/create": False}})
    assert config["rbac"] == {"events/create": False, "secrets/patch": False}
    assert review(fake, "patch", "secrets", "tailscale").json()["status"] == {"allowed": False}
    assert review(fake, "create", "events").json()["status"] == {"allowed": False}
    assert review(fake, "get", "secrets", "tailscale").json()["status"]["allowed"] is True

    denied = fake.patch(f"{SECRETS}/tailscale", [{"op": "add", "path": "/data/x", "value": "eA=="}], JSON_PATCH)
    assert denied.status_code == 403
    assert status_of(denied) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'secrets "tailscale" is forbidden: User "system:serviceaccount:default:tsidp" cannot patch '
                   'resource "secrets" in API group "" in the namespace "default"',
        "reason": "Forbidden", "details": {"name": "tailscale", "kind": "secrets"}, "code": 403}
    # The fallback the state store takes without patch: GET then PUT.
    current = fake.secret("tailscale")
    current["data"]["x"] = b64(b"x")
    assert fake.put(f"{SECRETS}/tailscale", current).status_code == 200
    event = fake.post(EVENTS, {"metadata": {"name": "e1"}, "reason": "R"})
    assert event.status_code == 403
    assert status_of(event)["message"] == ('events is forbidden: User "system:serviceaccount:default:tsidp" cannot '
                                           'create resource "events" in API group "" in the namespace "default"')
    assert status_of(event)["details"] == {"kind": "events"}

    # Denial is checked before existence, as RBAC runs before the handler.
    fake.configure({"rbac": {"secrets/get": False}})
    assert fake.get(f"{SECRETS}/absent").status_code == 403

    # A "<resource>/<verb>/<name>" entry narrows a rule to one object; null removes an entry.
    fake.configure({"rbac": {"secrets/get": None, "secrets/update/tailscale": False}})
    assert review(fake, "update", "secrets", "tailscale").json()["status"] == {"allowed": False}
    assert review(fake, "update", "secrets", "other").json()["status"]["allowed"] is True
    assert fake.put(f"{SECRETS}/tailscale", fake.secret("tailscale")).status_code == 403
    assert fake.configure({"rbac": {"secrets/patch": None, "events/create": None,
                                    "secrets/update/tailscale": None}})["rbac"] == {}
    assert review(fake, "patch", "secrets", "tailscale").json()["status"]["allowed"] is True

    fake.configure({"rbac": {"selfsubjectaccessreviews/create": False}})
    refused = review(fake, "get", "secrets", "tailscale")
    assert refused.status_code == 403 and status_of(refused)["details"] == {
        "group": "authorization.k8s.io", "kind": "selfsubjectaccessreviews"}

    bad = fake.control("POST", "config", {"rbac": {"secrets/patch": "no"}})
    assert bad.status_code == 400
    assert fake.control("POST", "config", {"surprise": 1}).status_code == 400
    assert fake.control("POST", "config", {"faults": [{"path": "x"}]}).status_code == 400
    assert fake.control("GET", "config").json()["faults"] == []


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


def test_status_faults(fake):
    fake.create_secret("tailscale")
    fake.configure({"faults": [
        {"method": "PATCH", "path": r"/secrets/tailscale$", "status": 500, "times": 1},
        {"method": "GET", "path": r"/secrets/tailscale$", "status": 409, "times": 2},
        {"method": "*", "path": r"^/api/v1/namespaces/default/events", "status": 503, "retry_after": 3},
    ]})
    failed = fake.patch(f"{SECRETS}/tailscale", {"data": {"k": b64(b"v")}}, MERGE_PATCH)
    assert failed.status_code == 500
    assert status_of(failed)["reason"] == "InternalError"
    assert "data" not in fake.control("GET", "objects").json()[0]  # the failed request changed nothing
    assert fake.patch(f"{SECRETS}/tailscale", {"data": {"k": b64(b"v")}}, MERGE_PATCH).status_code == 200
    for _ in range(2):
        conflict = fake.get(f"{SECRETS}/tailscale")
        assert conflict.status_code == 409 and status_of(conflict)["reason"] == "Conflict"
    assert fake.get(f"{SECRETS}/tailscale").status_code == 200
    unavailable = fake.get(f"{EVENTS}/x")
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "3"
    assert status_of(unavailable)["reason"] == "ServiceUnavailable"
    # A fault answers before authentication, like a proxy in front of the server would.
    assert fake.anonymous.get(fake.url + f"{EVENTS}/x").status_code == 503

    remaining = fake.control("GET", "config").json()["faults"]
    assert [f["times"] for f in remaining] == [0, 0, None]
    seen = [(e["method"], e["status"], e["fault"]) for e in fake.requests_seen()]
    assert seen == [("POST", 201, None), ("PATCH", 500, "status"), ("PATCH", 200, None),
                    ("GET", 409, "status"), ("GET", 409, "status"), ("GET", 200, None), ("GET", 503, "status"),
                    ("GET", 503, "status")]


def test_drop_fault_closes_the_connection_without_an_answer(fake):
    fake.create_secret("tailscale")
    fake.configure({"faults": [{"method": "PATCH", "path": "/secrets/tailscale$", "drop": True, "times": 1}]})
    with pytest.raises(requests.ConnectionError):
        fake.patch(f"{SECRETS}/tailscale", {"data": {"k": b64(b"v")}}, MERGE_PATCH)
    assert "data" not in fake.secret("tailscale")
    assert fake.patch(f"{SECRETS}/tailscale", {"data": {"k": b64(b"v")}}, MERGE_PATCH).status_code == 200
    dropped = [e for e in fake.requests_seen() if e["fault"] == "drop"]
    assert len(dropped) == 1 and dropped[0]["status"] is None and dropped[0]["method"] == "PATCH"
    assert dropped[0]["body"] == json.dumps({"data": {"k": b64(b"v")}}) + "\n"


def test_delay_fault_answers_normally_after_later_requests(fake, bounded_wait):
    fake.create_secret("tailscale", {"k": b"v"})
    fake.configure({"faults": [{"method": "GET", "path": "/secrets/tailscale$", "delay_seconds": 2.5, "times": 1}]})
    result: dict = {}
    slow_session = session(fake.ca, fake.token())

    def slow() -> None:
        result["answer"] = slow_session.get(fake.url + f"{SECRETS}/tailscale")

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()

    def in_flight() -> bool:
        return any(e["fault"] == "delay" and e["status"] is None for e in fake.requests_seen())

    assert bounded_wait(in_flight, 20), fake.requests_seen()
    quick = fake.get(f"{SECRETS}/absent")  # another request, sent while the first one waits
    assert quick.status_code == 404
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result["answer"].status_code == 200 and result["answer"].json() == fake.secret("tailscale")
    entries = fake.requests_seen()
    delayed = next(e for e in entries if e["fault"] == "delay")
    other = next(e for e in entries if e["path"] == f"{SECRETS}/absent")
    assert entries.index(delayed) < entries.index(other)  # it arrived first
    assert delayed["completed"] > other["completed"]  # and was answered after
    assert delayed["status"] == 200


# ---------------------------------------------------------------------------
# Events, lists, request log
# ---------------------------------------------------------------------------


def test_event_create_then_patch_count(fake):
    name = f"{POD}.{POD_UID}.tailscaledstateupdated"
    missing = fake.get(f"{EVENTS}/{name}")
    assert missing.status_code == 404 and status_of(missing)["message"] == f'events "{name}" not found'
    event = {"metadata": {"name": name, "namespace": "default", "creationTimestamp": "0001-01-01T00:00:00Z"},
             "message": "Successfully updated tailscaled state Secret", "reason": "TailscaledStateUpdated",
             "source": {"component": "tailscale-state-store"}, "type": "Normal",
             "involvedObject": {"kind": "Pod", "namespace": "default", "name": POD, "uid": POD_UID,
                                "apiVersion": "v1"},
             "count": 1, "firstTimestamp": "2026-08-22T15:04:05.123456789Z",
             "lastTimestamp": "2026-08-22T15:04:05.123456789Z"}
    created = fake.post(EVENTS, event)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["kind"] == "Event" and body["count"] == 1 and body["reason"] == "TailscaledStateUpdated"
    assert body["metadata"]["creationTimestamp"] != "0001-01-01T00:00:00Z"
    assert fake.post(EVENTS, event).status_code == 409

    fetched = fake.get(f"{EVENTS}/{name}").json()
    patched = fake.patch(f"{EVENTS}/{name}", [{"op": "replace", "path": "/count", "value": fetched["count"] + 1},
                                              {"op": "replace", "path": "/lastTimestamp",
                                               "value": "2026-08-22T15:05:00.000000001Z"}], JSON_PATCH)
    assert patched.status_code == 200, patched.text
    assert patched.json()["count"] == 2 and patched.json()["lastTimestamp"] == "2026-08-22T15:05:00.000000001Z"
    assert patched.json()["firstTimestamp"] == event["firstTimestamp"] and new_version(fetched, patched.json())
    assert fake.get(f"{EVENTS}/{name}").json() == patched.json()

    mismatched = dict(event, metadata={"name": "other"}, involvedObject={"namespace": "elsewhere"})
    assert fake.post(EVENTS, mismatched).status_code == 422
    listing = fake.get(EVENTS).json()
    assert listing["kind"] == "EventList" and [i["metadata"]["name"] for i in listing["items"]] == [name]


def test_list_with_label_selector(fake):
    for name, labels in [("a", {"tailscale.com/secret-type": "certs", "tailscale.com/managed": "true"}),
                         ("b", {"tailscale.com/secret-type": "state"}), ("c", {})]:
        assert fake.post(SECRETS, {"metadata": {"name": name, "labels": labels}}).status_code == 201
    listing = fake.get(SECRETS, params={"labelSelector": "tailscale.com/secret-type=certs,tailscale.com/managed=true"})
    assert listing.status_code == 200
    body = listing.json()
    assert body["kind"] == "SecretList" and body["metadata"]["resourceVersion"].isdigit()
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]
    assert "kind" not in body["items"][0]
    everything = fake.get(SECRETS).json()["items"]
    assert [item["metadata"]["name"] for item in everything] == ["a", "b", "c"]
    fake.configure({"rbac": {"secrets/list": False}})
    assert fake.get(SECRETS).status_code == 403


def test_request_log_and_objects(fake):
    fake.create_secret("tailscale", {"k": SECRET_VALUE})
    fake.get(f"{SECRETS}/tailscale")
    seen = fake.requests_seen(clear=True)
    assert [(e["method"], e["path"], e["status"]) for e in seen] == [
        ("POST", SECRETS, 201), ("GET", f"{SECRETS}/tailscale", 200)]
    assert seen[0]["content_type"] == "application/json" and seen[0]["query"] == ""
    assert json.loads(seen[0]["body"])["data"] == {"k": b64(SECRET_VALUE)}
    assert set(seen[0]) >= {"method", "path", "query", "content_type", "status"}
    assert fake.requests_seen() == []
    fake.get(f"{SECRETS}/tailscale", params={"labelSelector": "x=y"})
    assert fake.requests_seen()[0]["query"] == "labelSelector=x%3Dy"

    objects = fake.control("GET", "objects").json()
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("Secret", "tailscale")]
    assert fake.control("DELETE", "objects").status_code == 200
    assert fake.control("GET", "objects").json() == []
    assert fake.control("GET", "nothing-here").status_code == 404
    log = fake.log()
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d POST /api/v1/namespaces/default/secrets 201$", log, re.M)


# ---------------------------------------------------------------------------
# kubectl
# ---------------------------------------------------------------------------


def test_kubectl_reads_and_edits_what_the_api_wrote(fake, kubectl):
    created = fake.create_secret("tailscale", {"_machinekey": SECRET_VALUE, "profile-a1b2": b"{}"})
    shown = json.loads(kubectl("get", "secret", "tailscale", "-o", "json").stdout)
    assert shown["data"] == created["data"] and shown["metadata"]["uid"] == created["metadata"]["uid"]
    assert shown["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert "tailscale" in kubectl("get", "secrets").stdout  # the table view (client-side columns)

    patched = kubectl("patch", "secret", "tailscale", "--type=json",
                      "-p", json.dumps([{"op": "add", "path": "/data/_current-profile", "value": b64(b"profile-a1b2")},
                                        {"op": "remove", "path": "/data/_machinekey"}]))
    assert "secret/tailscale patched" in patched.stdout
    after_json = fake.secret("tailscale")
    assert after_json["data"] == {"_current-profile": b64(b"profile-a1b2"), "profile-a1b2": b64(b"{}")}
    assert new_version(created, after_json)

    kubectl("patch", "secret", "tailscale", "--type=merge", "-p", json.dumps({"data": {"profile-a1b2": None,
                                                                                       "extra": b64(b"x")}}))
    after_merge = fake.secret("tailscale")
    assert after_merge["data"] == {"_current-profile": b64(b"profile-a1b2"), "extra": b64(b"x")}
    assert new_version(after_json, after_merge)

    # kubectl's default patch type is a strategic merge patch.
    kubectl("patch", "secret", "tailscale", "-p", json.dumps({"metadata": {"labels": {"app": "idp"}}}))
    after_strategic = fake.secret("tailscale")
    assert after_strategic["metadata"]["labels"] == {"app": "idp"} and after_strategic["data"] == after_merge["data"]
    assert new_version(after_merge, after_strategic)
    after_merge = after_strategic

    patches = [e for e in fake.requests_seen() if e["method"] == "PATCH"]
    assert [e["content_type"] for e in patches] == ["application/json-patch+json", "application/merge-patch+json",
                                                    "application/strategic-merge-patch+json"]

    failing = kubectl("patch", "secret", "tailscale", "--type=json",
                      "-p", '[{"op":"test","path":"/data/extra","value":"bm8="}]', check=False)
    assert failing.returncode != 0 and "the server rejected our request due to an error in our request" in failing.stderr
    fake.configure({"rbac": {"secrets/patch": False}})
    forbidden = kubectl("patch", "secret", "tailscale", "--type=merge", "-p", '{"data":{"x":"eA=="}}', check=False)
    assert forbidden.returncode != 0 and "Error from server (Forbidden)" in forbidden.stderr
    missing = kubectl("get", "secret", "absent", check=False)
    assert missing.returncode != 0 and 'Error from server (NotFound): secrets "absent" not found' in missing.stderr
    assert fake.secret("tailscale") == after_merge

    kubectl("delete", "secret", "tailscale")
    assert fake.get(f"{SECRETS}/tailscale").status_code == 404


def test_kubectl_create(fake, kubectl):
    # `kubectl create secret generic` sends protobuf, which the stand-in does not decode: refused with 415.
    refused = kubectl("create", "secret", "generic", "made-by-kubectl", "--from-literal=k=v", check=False)
    assert refused.returncode != 0 and "unknown format" in refused.stderr
    assert fake.get(f"{SECRETS}/made-by-kubectl").status_code == 404
    # `kubectl create -f` sends JSON and works (the stand-in's OpenAPI stub tells kubectl to let the
    # server validate, so no schema is needed).
    manifest = fake.directory / "secret.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "from-file"},
                                    "data": {"k": b64(b"v")}}))
    kubectl("create", "-f", str(manifest))
    assert fake.secret("from-file")["data"] == {"k": b64(b"v")}
    again = kubectl("create", "-f", str(manifest), check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr

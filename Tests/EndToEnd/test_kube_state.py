"""tsidp's state in a Kubernetes Secret (``--state kube:<name>``), against the stand-in API server
(Tests/StandIns/kube-apiserver) and checked with ``kubectl``.

``tsidp --dev --state kube:tsidp-0`` with ``TSIDP_KUBE_API_URL`` and ``TSIDP_KUBE_SERVICEACCOUNT_DIR``
pointing at the stand-in keeps its signing keys, clients and logins in the Secret, and nothing in
``--dir``: a restart (a new pod) keeps the ``kid`` relying parties know, the clients, and the refresh
tokens. ``kubectl get secret`` reads what tsidp wrote; ``kubectl patch`` between two starts is seen
by the second. Missing permissions stop start-up with one line naming each; an API outage during a
write fails that request with 503 and loses nothing acknowledged; Events are recorded on the pod.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Iterator, Optional

import pytest

from conftest import OpenIDProvider, Tsidp, free_port, wait_until
from test_fake_kube_apiserver import FakeAPI, kubectl, fake, start_fake  # noqa: F401 (fixtures)

SECRET = "tsidp-0"
POD_UID = "0b7c5a3e-0000-4ddd-8eee-1234567890ab"
READY_TIMEOUT = 60.0

ALICE = {
    "Node": {"ID": 1001, "StableID": "n1001", "Name": "alice-laptop.example-tailnet.ts.net.", "User": 2001,
             "Addresses": ["100.64.0.1/32"]},
    "UserProfile": {"ID": 2001, "LoginName": "alice@example.com", "DisplayName": "Alice Example"},
    "CapMap": {"tailscale.com/cap/tsidp": [{"allow_admin_ui": True, "allow_dcr": True}]},
}


class KubeTsidp:
    """Starts ``tsidp --dev --state kube:<SECRET>`` against one stand-in API server, again and again
    on the same port (so the issuer stays the same) and an empty --dir each time (a new pod)."""

    def __init__(self, processes, scratch_dirs, tsidp_binary, fake: FakeAPI):
        self.processes = processes
        self.scratch_dirs = scratch_dirs
        self.binary = tsidp_binary
        self.fake = fake
        self.port = free_port()
        self.starts = 0
        self.current: Optional[Tsidp] = None

    def environment(self) -> dict:
        environment = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        environment.update({
            "TSIDP_KUBE_API_URL": self.fake.url,
            "TSIDP_KUBE_SERVICEACCOUNT_DIR": str(self.fake.directory / "serviceaccount"),
            "POD_NAME": SECRET, "POD_UID": POD_UID,
        })
        return environment

    def start(self, expect_ready: bool = True) -> Tsidp:
        self.starts += 1
        workdir = self.scratch_dirs("kube-tsidp")
        state_dir = workdir / "state"
        identities = workdir / "identities.json"
        identities.write_text(json.dumps([ALICE]))
        argv = [str(self.binary), "--dev", "--port", str(self.port), "--dir", str(state_dir),
                "--dev-identities", str(identities), "--state", f"kube:{SECRET}"]
        process = self.processes.start(f"tsidp-kube-{self.starts}", argv, cwd=workdir, log_dir=workdir,
                                       env=self.environment())
        node = Tsidp(port=self.port, state_dir=state_dir, process=process, identities=[ALICE])
        if expect_ready:
            import requests

            def ready() -> bool:
                if process.popen.poll() is not None:
                    return True
                try:
                    return requests.get(f"http://127.0.0.1:{self.port}/healthz/ready", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            assert wait_until(ready, READY_TIMEOUT), f"tsidp not ready\n{process.logs()}"
            assert process.popen.poll() is None, f"tsidp exited with {process.popen.poll()}\n{process.logs()}"
        self.current = node
        return node

    def stop(self) -> None:
        assert self.current is not None
        self.current.process.stop()
        assert self.current.process.popen.poll() == 0, self.current.process.logs()

    def secret(self) -> dict:
        return self.fake.secret(SECRET)

    def data_keys(self) -> set:
        return set((self.secret().get("data") or {}).keys())


@pytest.fixture
def kube_tsidp(processes, scratch_dirs, tsidp_binary, fake) -> Iterator[KubeTsidp]:
    runner = KubeTsidp(processes, scratch_dirs, tsidp_binary, fake)
    yield runner
    if runner.current is not None:
        runner.current.process.stop()


def kid_of(op: OpenIDProvider) -> set:
    return {key["kid"] for key in op.jwks()["keys"]}


def test_everything_lives_in_the_secret_and_survives_a_new_pod(kube_tsidp, kubectl):
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    client = op.static_client("kube-rp")
    login = op.login(client)
    refresh_token = login.token["refresh_token"]
    kids = kid_of(op)
    kube_tsidp.stop()

    # Nothing of tsidp's in --dir; everything in the Secret, readable with kubectl.
    leftovers = [p.name for p in node.state_dir.iterdir()] if node.state_dir.exists() else []
    assert not [name for name in leftovers if name.startswith(("tsidp-", "oidc-"))], leftovers
    shown = json.loads(kubectl("get", "secret", SECRET, "-o", "json").stdout)
    keys = set(shown["data"])
    assert "tsidp-keys.json" in keys, keys
    assert any(k.startswith("tsidp-client-") for k in keys), keys
    assert any(k.startswith("tsidp-grants-") for k in keys), keys
    assert all(k.startswith("tsidp-") for k in keys), keys
    ring = json.loads(base64.b64decode(shown["data"]["tsidp-keys.json"]))
    assert ring, "the key ring is empty"

    # Something else's key (tailscaled shares the Secret) is added with kubectl between the starts.
    kubectl("patch", "secret", SECRET, "--type=json",
            "-p", json.dumps([{"op": "add", "path": "/data/_machinekey", "value": base64.b64encode(b"mk").decode()}]))

    # A new pod: same signing keys, same client, and the refresh token still works.
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    assert kid_of(op) == kids
    refreshed = op.refresh(client, refresh_token)
    token = op.check_token_response(refreshed, expect_id_token=True)
    assert token["refresh_token"] != refresh_token
    kube_tsidp.stop()
    assert base64.b64decode(kube_tsidp.secret()["data"]["_machinekey"]) == b"mk", "tsidp touched another key"


def test_a_client_removed_with_kubectl_is_gone_after_restart(kube_tsidp, kubectl):
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    client = op.static_client("short-lived")
    kube_tsidp.stop()
    key = next(k for k in kube_tsidp.data_keys() if k.startswith("tsidp-client-"))
    kubectl("patch", "secret", SECRET, "--type=json", "-p", json.dumps([{"op": "remove", "path": f"/data/{key}"}]))
    node = kube_tsidp.start()
    answer = OpenIDProvider(node).token_request(
        client, {"grant_type": "authorization_code", "code": "unused", "redirect_uri": client.redirect_uris[0]})
    assert answer.status_code == 401 and answer.json().get("error") == "invalid_client", answer.text


def test_missing_permissions_are_named_at_start(kube_tsidp, fake):
    fake.configure({"rbac": {"secrets/get": False, "secrets/create": False}})
    node = kube_tsidp.start(expect_ready=False)
    assert wait_until(lambda: node.process.popen.poll() is not None, READY_TIMEOUT), node.process.logs()
    assert node.process.popen.poll() == 2, node.process.logs()
    lines = [line for line in node.process.logs().splitlines() if line.startswith("tsidp:")]
    assert len(lines) == 1, node.process.logs()
    assert "get" in lines[0] and "create" in lines[0] and SECRET in lines[0], lines[0]


def test_api_outage_during_a_write_fails_the_request_and_loses_nothing(kube_tsidp, fake):
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    client = op.static_client("outage-rp")
    kept = op.login(client)
    fake.configure({"faults": [{"method": "*", "path": f"/secrets/{SECRET}$", "status": 500}]})
    params = op.authorization_params(client)
    answer = op.authorize(params)
    callback = op.expect_code(answer, params["redirect_uri"], params.get("state"))
    failed = op.redeem(client, callback["code"], params["redirect_uri"])
    assert failed.status_code == 503 and failed.json().get("error") == "temporarily_unavailable", failed.text
    fake.configure({"faults": []})
    # Once the API answers again, tsidp works, and after a restart the acknowledged login is there.
    again = op.login(client)
    kube_tsidp.stop()
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    for login in (kept, again):
        op.check_token_response(op.refresh(client, login.token["refresh_token"]), expect_id_token=True)


def test_events_are_recorded_on_the_pod(kube_tsidp, fake):
    node = kube_tsidp.start()
    OpenIDProvider(node).static_client("evented")
    kube_tsidp.stop()
    answer = fake.control("GET", "objects")
    assert answer.status_code == 200, answer.text
    text = json.dumps(answer.json())
    assert f"{SECRET}.{POD_UID}.tsidpstateloaded" in text, text[:2000]
    assert "TsidpStateLoaded" in text


def test_api_faults_during_grant_writes_keep_every_acknowledged_token(kube_tsidp, fake, make_browser):
    """The grant-state fault cases against the Secret: API errors (500), a dropped connection and
    a conflict on the Secret's writes while logins, refreshes and revocations go on. A request whose
    write failed answers 503 and changes nothing; after the faults, and again after a restart
    (a new pod), every confirmed refresh token works exactly once, every rotated or revoked one is
    refused, and every confirmed login's access token still works."""
    from test_state_faults import RelyingParty, all_refused, is_refused, login_kept, oauth_error, works_exactly_once

    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    rp = RelyingParty(op, op.static_client("faulty-rp"), make_browser)
    families = [rp.login(f"login-{n}") for n in range(4)]
    rp.rotate(families[0])

    secret_writes = f"/secrets/{SECRET}$"
    faults = [
        {"method": "PATCH", "path": secret_writes, "status": 500, "times": 2},
        {"method": "PATCH", "path": secret_writes, "drop": True, "times": 2},
        {"method": "PATCH", "path": secret_writes, "status": 409, "times": 2},
    ]
    for fault in faults:
        fake.configure({"faults": [fault]})
        for family in families[:2]:
            response = rp.refresh(family.token)
            if response.status_code == 200:  # the store's retry after re-reading got through
                body = response.json()
                family.rotated.append(family.token)
                family.token, family.access_token = body["refresh_token"], body["access_token"]
                continue
            assert response.status_code == 503 and oauth_error(response) == "temporarily_unavailable", (
                fault, response.status_code, response.text[:300])
        fake.configure({"faults": []})
    # A revocation confirmed, and a login made, after the faults.
    assert rp.revoke(families[3].token).status_code == 200
    families[3].revoked = True
    families.append(rp.login("after-faults"))

    def kept(rp: RelyingParty) -> list:
        # Without side effects: presenting a rotated refresh token is reuse, which ends its family.
        problems = []
        for family in families:
            if family.revoked:
                problems += all_refused(rp, family, [family.token], "revoked")
            else:
                problems += login_kept(rp, family)
        return problems

    problems = kept(rp)
    assert not problems, problems
    kube_tsidp.stop()
    node = kube_tsidp.start()
    op = OpenIDProvider(node)
    rp = RelyingParty(op, rp.client, make_browser)
    problems = kept(rp)
    for family in families:
        if not family.revoked:
            problems += works_exactly_once(rp, family)
        problems += all_refused(rp, family, list(reversed(family.rotated)), "rotated")
    assert not problems, problems
    assert is_refused(rp.refresh(families[3].token))

"""The Kubernetes manifests under deploy/kubernetes: valid against the Kubernetes API schema
(``kubernetes-validate``, strict), assembled by ``kubectl kustomize``, and saying what tsidp needs:
the Role grants exactly the verbs the Secret store checks at start, and the StatefulSet keeps each
pod's state in the Secret named after the pod.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
FILES = ["serviceaccount.yaml", "role.yaml", "rolebinding.yaml", "statefulset.yaml"]


def load_all() -> dict:
    import yaml

    documents = {}
    for name in FILES:
        for document in yaml.safe_load_all((MANIFESTS / name).read_text()):
            documents[(document["kind"], document["metadata"]["name"])] = document
    return documents


def test_manifests_validate_against_the_schema():
    validator = Path(sys.executable).with_name("kubernetes-validate")
    if not validator.exists():
        missing_tool("kubernetes-validate is not installed: pip install -r Tests/EndToEnd/requirements.txt")
    result = subprocess.run([str(validator), "--strict", *FILES], cwd=MANIFESTS, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in FILES:
        assert f"{name} passed" in result.stdout + result.stderr, result.stdout + result.stderr


def test_kustomization_assembles_every_manifest():
    if shutil.which("kubectl") is None:
        missing_tool("kubectl is not on PATH")
    result = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for kind in ("ServiceAccount", "Role", "RoleBinding", "StatefulSet"):
        assert f"kind: {kind}" in result.stdout, result.stdout


def test_role_grants_what_the_secret_store_checks():
    documents = load_all()
    rules = documents[("Role", "tsidp")]["rules"]
    secrets_named = [r for r in rules if r["resources"] == ["secrets"] and r.get("resourceNames")]
    secrets_any = [r for r in rules if r["resources"] == ["secrets"] and not r.get("resourceNames")]
    events = [r for r in rules if r["resources"] == ["events"]]
    assert len(secrets_named) == 1 and set(secrets_named[0]["verbs"]) == {"get", "update", "patch"}, rules
    assert secrets_named[0]["resourceNames"] == ["tsidp-0"], "the StatefulSet's first pod names its Secret"
    assert len(secrets_any) == 1 and secrets_any[0]["verbs"] == ["create"], rules
    assert len(events) == 1 and set(events[0]["verbs"]) == {"get", "create", "patch"}, rules
    binding = documents[("RoleBinding", "tsidp")]
    assert binding["roleRef"]["name"] == "tsidp" and binding["subjects"][0]["name"] == "tsidp"


def test_statefulset_keeps_state_in_the_pods_secret():
    documents = load_all()
    pod = documents[("StatefulSet", "tsidp")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tsidp"
    container = pod["containers"][0]
    assert "--state=kube:$(POD_NAME)" in container["args"], container["args"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert env["TS_AUTHKEY"]["valueFrom"]["secretKeyRef"]["name"] == "tsidp-auth"
    assert env["TAILSCALE_USE_WIP_CODE"]["value"] == "1"
    assert "/healthz/ready" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert "/healthz/live" in " ".join(container["livenessProbe"]["exec"]["command"])
    assert "--local-port=9090" in container["args"]
    # kubelet's httpGet and tcpSocket probes connect to the pod's IP, where nothing of tsidp's
    # listens that could answer them: the operator's listener is on loopback only.
    for probe in ("readinessProbe", "livenessProbe"):
        assert "httpGet" not in container[probe] and "tcpSocket" not in container[probe], container[probe]


def test_probes_ask_the_operators_listener_from_inside_the_container(tsidp_factory, alice_and_bob, unused_port):
    """Each probe's exec command, run with the image's bash against a real tsidp on a loopback
    --local-port, succeeds while tsidp serves and fails once it is gone."""
    documents = load_all()
    container = documents[("StatefulSet", "tsidp")]["spec"]["template"]["spec"]["containers"][0]
    port = unused_port()
    tsidp = tsidp_factory(identities=alice_and_bob, extra_args=["--local-port", str(port)])
    commands = {
        probe: [part.replace("/9090", f"/{port}") for part in container[probe]["exec"]["command"]]
        for probe in ("readinessProbe", "livenessProbe")
    }
    for probe, command in commands.items():
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, (probe, command, result.stdout, result.stderr)
    tsidp.process.stop()
    for probe, command in commands.items():
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
        assert result.returncode != 0, (probe, "succeeded with tsidp stopped")

"""deploy/systemd/tsidp.service: accepted by ``systemd-analyze verify`` without a warning, carrying
the hardening options docs/systemd.md promises, and rated at most "MEDIUM" by
``systemd-analyze security --offline=yes``.

``verify`` checks that ExecStart's binary exists, so it runs on a copy of the unit whose ExecStart
names the binary under test (``TSIDP_BINARY``, default ``.build/debug/tsidp``) instead of
``/usr/local/bin/tsidp``. A missing ``systemd-analyze`` (Debian's ``systemd`` package) skips, or
fails with ``TSIDP_REQUIRE_INTEROP=1``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT = REPO_ROOT / "deploy" / "systemd" / "tsidp.service"
INSTALLED_BINARY = "/usr/local/bin/tsidp"

# Exposure levels of `systemd-analyze security`, best first.
LEVELS = ["PERFECT", "SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS"]
WORST_ALLOWED = "MEDIUM"

# Option -> the value it must have (None: present with any value).
REQUIRED = {
    ("Unit", "After"): "tailscaled.service",
    ("Unit", "Wants"): "tailscaled.service",
    ("Service", "Environment"): "TAILSCALE_USE_WIP_CODE=1",
    ("Service", "EnvironmentFile"): "-/etc/default/tsidp",
    ("Service", "DynamicUser"): "yes",
    ("Service", "StateDirectory"): "tsidp",
    ("Service", "StateDirectoryMode"): "0700",
    ("Service", "NoNewPrivileges"): "yes",
    ("Service", "AmbientCapabilities"): "CAP_NET_BIND_SERVICE",
    ("Service", "CapabilityBoundingSet"): "CAP_NET_BIND_SERVICE",
    ("Service", "ProtectSystem"): "strict",
    ("Service", "ProtectHome"): "yes",
    ("Service", "PrivateTmp"): "yes",
    ("Service", "PrivateDevices"): "yes",
    ("Service", "ProtectKernelTunables"): "yes",
    ("Service", "ProtectKernelModules"): "yes",
    ("Service", "ProtectKernelLogs"): "yes",
    ("Service", "ProtectControlGroups"): "yes",
    ("Service", "RestrictAddressFamilies"): "AF_UNIX AF_INET AF_INET6",
    ("Service", "RestrictNamespaces"): "yes",
    ("Service", "LockPersonality"): "yes",
    ("Service", "MemoryDenyWriteExecute"): "yes",
    ("Service", "SystemCallArchitectures"): "native",
    ("Service", "Restart"): "on-failure",
    ("Service", "KillSignal"): "SIGTERM",
    ("Service", "TimeoutStopSec"): "30",
    ("Service", "LimitNOFILE"): "65536",
}


def parse_unit(text: str) -> dict[tuple[str, str], list[str]]:
    """A unit file as (section, key) -> every value given, in order (keys may repeat)."""
    options: dict[tuple[str, str], list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line in {UNIT.name}: {raw!r}"
        options.setdefault((section, key.strip()), []).append(value.strip())
    return options


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        missing_tool("systemd-analyze not found (Debian package: systemd)")
    return path


@pytest.fixture()
def unit_under_test(tmp_path: Path, tsidp_binary: Path) -> Path:
    """A copy of the unit, named tsidp.service, whose ExecStart names the binary under test."""
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    copy = tmp_path / "tsidp.service"
    copy.write_text(text.replace(INSTALLED_BINARY, str(tsidp_binary.resolve())))
    return copy


def test_unit_has_the_documented_options():
    options = parse_unit(UNIT.read_text())
    missing = []
    for (section, key), wanted in REQUIRED.items():
        values = options.get((section, key))
        if not values:
            missing.append(f"[{section}] {key}= is absent")
        elif wanted is not None and not any(wanted in value.split() or value == wanted for value in values):
            missing.append(f"[{section}] {key}= is {values}, expected {wanted!r}")
    assert not missing, "\n".join(missing)
    exec_start = options[("Service", "ExecStart")]
    assert exec_start == [f"{INSTALLED_BINARY} --use-local-tailscaled --dir ${{STATE_DIRECTORY}}"], exec_start
    assert options.get(("Install", "WantedBy")) == ["multi-user.target"]


def test_systemd_analyze_verify_prints_no_warning(unit_under_test: Path):
    analyze = systemd_analyze()
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit_under_test)],
        capture_output=True, text=True, timeout=60, cwd=unit_under_test.parent,
    )
    output = (result.stdout + result.stderr).strip()
    ours = [line for line in output.splitlines() if "tsidp" in line]
    assert result.returncode == 0 and not ours, (
        f"systemd-analyze verify exited {result.returncode}:\n{output}"
    )


def test_systemd_analyze_security_rates_it_at_most_medium(unit_under_test: Path):
    analyze = systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit_under_test)],
        capture_output=True, text=True, timeout=60, cwd=unit_under_test.parent,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and re.search(r"unrecognized option|unknown option", output):
        version = subprocess.run([analyze, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        pytest.skip(f"systemd-analyze security --offline needs systemd 250 or newer ({version})")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) ([A-Z]+)", output)
    assert match, f"no overall exposure level in the output (exit {result.returncode}):\n{output}"
    score, level = float(match.group(1)), match.group(2)
    print(f"systemd-analyze security: exposure {score} {level}")
    assert level in LEVELS, f"unknown exposure level {level!r}"
    assert LEVELS.index(level) <= LEVELS.index(WORST_ALLOWED), (
        f"exposure {score} {level}, worse than {WORST_ALLOWED}:\n{output}"
    )

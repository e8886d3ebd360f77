"""Runs the examples of docs/guides/testing-with-dev.md against the real binary, so the guide
cannot drift from what tsidp --dev does.

The guide marks each runnable block with an HTML comment ``<!-- example: NAME -->`` on the line
before its fence; the blocks are written out under NAME and run as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, free_port, missing_tool

GUIDE = REPO_ROOT / "docs" / "guides" / "testing-with-dev.md"
RUN_TIMEOUT = 300  # seconds for one example, on a loaded machine

EXAMPLE = re.compile(r"<!-- example: (?P<name>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)


def examples() -> dict:
    found = {m.group("name"): m.group("body") + "\n" for m in EXAMPLE.finditer(GUIDE.read_text())}
    assert {"people.json", "dev-ci.sh", "test_with_tsidp.py"} <= set(found), sorted(found)
    return found


def run_example(argv: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Runs an example in a process group of its own; whatever it leaves behind is killed."""
    process = subprocess.Popen(
        argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"{argv} did not finish in {RUN_TIMEOUT}s:\n{output.decode(errors='replace')}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, process.returncode, output.decode(errors="replace"), "")


def no_tsidp_left(binary: Path, workdir: Path) -> list:
    """tsidp processes started from `workdir` that are still running."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cmdline and cmdline[0] == str(binary).encode() and cwd.startswith(str(workdir)):
            left.append(int(proc.name))
    return left


@pytest.fixture
def example_env(tsidp_binary) -> dict:
    env = dict(os.environ)
    env["TSIDP"] = str(tsidp_binary)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_identities_example_is_what_the_scripts_use():
    people = json.loads(examples()["people.json"])
    assert [p["UserProfile"]["LoginName"] for p in people] == ["alice@example.com", "bob@example.com"]
    script = examples()["test_with_tsidp.py"]
    namespace: dict = {}
    # The pytest example carries the same identities inline.
    match = re.search(r"^PEOPLE = (\[.*?\n\])\n", script, re.S | re.M)
    assert match, "PEOPLE not found in the pytest example"
    exec("PEOPLE = " + match.group(1), namespace)
    assert namespace["PEOPLE"] == people


def test_shell_example_runs(scratch_dirs, example_env, tsidp_binary):
    for tool in ("curl", "sh"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not installed; the guide's shell example needs it")
    work = scratch_dirs("dev-guide-sh")
    found = examples()
    (work / "people.json").write_text(found["people.json"])
    (work / "dev-ci.sh").write_text(found["dev-ci.sh"])
    env = {**example_env, "PORT": str(free_port()), "LOCAL_PORT": str(free_port()), "STATE": str(work / "state")}
    result = run_example(["sh", "dev-ci.sh"], work, env)
    log = (work / "tsidp.log").read_text(errors="replace") if (work / "tsidp.log").exists() else "<no log>"
    assert result.returncode == 0, f"dev-ci.sh exited {result.returncode}:\n{result.stdout}\n--- tsidp.log ---\n{log}"
    assert f"signed in as bob@example.com at http://localhost:{env['PORT']}" in result.stdout, result.stdout
    # The script's state directory holds the signing key and the client it registered.
    assert (work / "state" / "oidc-key.json").is_file()
    assert list((work / "state").glob("tsidp-client-*.json"))
    assert not no_tsidp_left(tsidp_binary, work), "the shell example left tsidp running"

    # Run again on the same state: the same signing key, and a second client next to the first.
    key = (work / "state" / "oidc-key.json").read_text()
    env.update(PORT=str(free_port()), LOCAL_PORT=str(free_port()))
    again = run_example(["sh", "dev-ci.sh"], work, env)
    assert again.returncode == 0, again.stdout
    assert (work / "state" / "oidc-key.json").read_text() == key
    assert len(list((work / "state").glob("tsidp-client-*.json"))) == 2
    assert not no_tsidp_left(tsidp_binary, work)


def test_pytest_example_runs(scratch_dirs, example_env, tsidp_binary):
    work = scratch_dirs("dev-guide-pytest")
    (work / "test_with_tsidp.py").write_text(examples()["test_with_tsidp.py"])
    result = run_example(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(work), "--basetemp",
         str(work / "tmp"), "test_with_tsidp.py"],
        work, example_env,
    )
    assert result.returncode == 0, f"the guide's pytest example failed:\n{result.stdout}"
    assert "2 passed" in result.stdout, result.stdout
    assert not no_tsidp_left(tsidp_binary, work), "the pytest example left tsidp running"

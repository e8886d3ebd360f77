"""The external benchmark's driver (Benchmarks/external/driver.py) runs end to end.

A smoke test, not a benchmark: the driver runs once in its quick mode with one-second windows and
a few hundred logins against the binary under test, and the test checks that every row of the
table produced a number and that the JSON report was written. It asserts nothing about speed.
Needs wrk, nginx, openssl and strace (skipped without them, a failure under
TSIDP_REQUIRE_INTEROP=1).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, missing_tool

DRIVER = REPO_ROOT / "Benchmarks" / "external" / "driver.py"


def test_quick_run_fills_every_row(tsidp_binary, tmp_path):
    for tool in ("wrk", "nginx", "openssl", "strace"):
        if shutil.which(tool) is None and not (tool == "nginx" and os.path.exists("/usr/sbin/nginx")):
            missing_tool(f"{tool} is not installed (Debian: apt-get install wrk nginx-light openssl strace)")
    report = tmp_path / "report.json"
    argv = [
        sys.executable, str(DRIVER), "--binary", str(tsidp_binary), "--quick", "--duration", "1",
        "--fsync-seconds", "1", "--logins", "300", "--rss-logins", "150", "--tail-concurrency", "20",
        "--concurrency", "8", "--probe-codes", "300", "--state-parent", str(tmp_path), "--output", str(report),
    ]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, f"driver failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    document = json.loads(report.read_text())
    rows = document["summary"]["rows"]
    assert len(rows) == 11, rows
    for row in rows:
        assert isinstance(row["median"], (int, float)) and math.isfinite(row["median"]), row
        assert row["median"] > 0, row
    assert "met" in completed.stdout or "NOT MET" in completed.stdout, completed.stdout
    assert document["measured"]["rounds"][0]["load_average_1m"] >= 0

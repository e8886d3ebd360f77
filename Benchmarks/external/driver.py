#!/usr/bin/env python3
"""External benchmark of tsidp: what users see.

Started by ``scripts/benchmark`` (which builds the release binary first). It runs the ``tsidp``
binary in ``--dev`` mode with fresh state directories on disk, drives it from separate ``wrk``
processes with the Lua scripts in ``Benchmarks/wrk/``, and measures each row of the table in
``Benchmarks/README.md`` against its baseline taken in the same round: ``openssl speed -multi``
for signing, nginx (one worker) serving the same bytes for the static documents, tsidp's own
``/healthz/live`` for introspection. Rounds are interleaved (every round measures every row and
its baseline back to back); the report gives the median and the min–max of each ratio and the
1-minute load average at the start of each round.

Only the Python standard library is used. Progress goes to standard error, the table to standard
output, the JSON report to ``benchmark-results/``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, quote, urlsplit

REPO = Path(__file__).resolve().parents[2]
WRK_DIR = REPO / "Benchmarks" / "wrk"
REDIRECT_URI = "http://127.0.0.1:9/callback"
ENCODED_REDIRECT = quote(REDIRECT_URI, safe="")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CODES_PER_CLIENT = 32  # tsidp's limit of unredeemed codes per user and client
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[benchmark {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def http_call(port: int, method: str, path: str, headers: Optional[dict] = None, body: Optional[bytes] = None,
              host: Optional[str] = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def basic(client_id: str, secret: str) -> str:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def stop_group(process: Optional[subprocess.Popen], grace: float) -> None:
    """SIGTERM to the process group ``process`` leads, SIGKILL if it has not exited after ``grace`` s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class Server:
    """One ``tsidp --dev`` process with its own state directory."""

    def __init__(self, binary: Path, state_dir: Path, name: str, strace_output: Optional[Path] = None,
                 port: Optional[int] = None):
        self.binary = binary
        self.state_dir = state_dir
        self.name = name
        self.port = port or free_port()
        self.local_port = free_port()
        self.strace_output = strace_output
        self.process: Optional[subprocess.Popen] = None
        self.log_path = state_dir.parent / f"{name}.log"

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def start(self) -> float:
        """Starts tsidp and waits until it is ready; returns the seconds that took."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "--dev", "--port", str(self.port), "--local-port", str(self.local_port),
                "--dir", str(self.state_dir), "--max-connections-per-peer", "1024", "--log", "warn"]
        if self.strace_output is not None:
            # seccomp-bpf: only the traced calls stop the process, every other call runs at full
            # speed, so the count costs little besides the fsyncs themselves.
            argv = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-ttt",
                    "-e", "trace=fsync,fdatasync,sync_file_range,syncfs,msync", "-o", str(self.strace_output),
                    *argv]
        began = time.monotonic()
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                            start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                status, _, body = http_call(self.port, "GET", "/healthz/ready", timeout=2)
                if status == 200:
                    return time.monotonic() - began
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after 180 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        if self.strace_output is None:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def rss_mib(self) -> float:
        return self.memory_mib()["VmRSS"]

    def memory_mib(self) -> dict:
        """VmRSS and its parts: RssAnon (the process's own memory: heap, stacks, written pages)
        and RssFile (pages of the binary and shared libraries mapped in, shared with every other
        process using them and reclaimable)."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[name] = int(rest.split()[0]) / 1024
        if "VmRSS" not in fields:
            raise RuntimeError("no VmRSS")
        return fields

    def stop(self) -> None:
        stop_group(self.process, grace=60)

    def metric(self, name: str) -> float:
        status, _, body = http_call(self.local_port, "GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise RuntimeError(f"{name} not in /metrics")

    def live_logins(self) -> int:
        return int(self.metric("tsidp_refresh_families"))

    def register_client(self, name: str) -> tuple[str, str]:
        form = f"name={quote(name)}&redirect_uri={ENCODED_REDIRECT}".encode()
        status, _, body = http_call(self.local_port, "POST", "/clients/new", body=form, headers={
            "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"POST /clients/new -> {status}: {body[:500]!r}")
        document = json.loads(body)
        return document["client_id"], document["client_secret"]

    def register_clients(self, count: int, prefix: str) -> list[tuple[str, str]]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda i: self.register_client(f"{prefix}-{i}"), range(count)))

    def sign_in(self, client: tuple[str, str]) -> dict:
        """One sign-in as the dev identity from 127.0.0.1: authorize, then redeem the code."""
        client_id, secret = client
        status, headers, body = http_call(
            self.port, "GET",
            f"/authorize?response_type=code&client_id={client_id}&redirect_uri={ENCODED_REDIRECT}"
            "&scope=openid%20email%20profile&state=s", host=self.host)
        if status != 302:
            raise RuntimeError(f"/authorize -> {status}: {body[:500]!r}")
        code = parse_qs(urlsplit(headers["location"]).query)["code"][0]
        form = f"grant_type=authorization_code&code={quote(code, safe='')}&redirect_uri={ENCODED_REDIRECT}"
        status, _, body = http_call(self.port, "POST", "/token", body=form.encode(), host=self.host, headers={
            "Authorization": basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"/token -> {status}: {body[:500]!r}")
        return json.loads(body)


class HelloWorld:
    """The smallest Hummingbird server (Benchmarks/HelloWorld): the baseline of the HTTP layer's
    per-request cost, next to tsidp's ``/healthz/live``."""

    def __init__(self, binary: Path):
        self.binary = binary
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.process = subprocess.Popen([str(self.binary), str(self.port)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hello-world exited ({self.process.returncode})")
            try:
                if http_call(self.port, "GET", "/hello", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("hello-world not ready after 30 s")

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> None:
        stop_group(self.process, grace=10)


class Nginx:
    """nginx with one worker serving fixed files on loopback."""

    def __init__(self, root: Path, files: dict[str, bytes]):
        self.root = root
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        (root / "html" / ".well-known").mkdir(parents=True, exist_ok=True)
        for path, data in files.items():
            (root / "html" / path.lstrip("/")).write_bytes(data)
        import grp
        import pwd

        # The worker runs as whoever runs the benchmark, so it can read the private scratch folder.
        user = f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
        (root / "nginx.conf").write_text(f"""
daemon off;
{"user " + user + ";" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {root}/html;
    }}
}}
""")

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(self.root / "stdout.log", "wb") as output:
            self.process = subprocess.Popen([binary, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
                                            stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"nginx exited: {(self.root / 'error.log').read_text(errors='replace')}")
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def cpu_seconds(self) -> float:
        """CPU of the master and its worker together."""
        assert self.process is not None
        total = 0.0
        pids = [str(self.process.pid)]
        pids += Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------


class CompactionWatch:
    """Counts grant-ledger compactions while it runs, from the outside: a compaction rewrites
    bucket files (`tsidp-grants-NN.json`), journal entries are other files. It looks at the
    bucket files' modification times four times a second (a few dozen stat calls, next to
    nothing beside the load); rewrites seen in consecutive looks count as one compaction, since
    writing 32 large files can take longer than a look."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.compactions = 0
        self.buckets_rewritten = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def snapshot(self) -> dict[str, int]:
        times = {}
        for index in range(32):
            path = self.state_dir / f"tsidp-grants-{index:02d}.json"
            try:
                times[path.name] = path.stat().st_mtime_ns
            except FileNotFoundError:
                pass
        return times

    def watch(self) -> None:
        previous = self.snapshot()
        rewriting = False
        while not self.stopping.wait(0.25):
            current = self.snapshot()
            changed = sum(1 for name, value in current.items() if previous.get(name) != value)
            if changed and not rewriting:
                self.compactions += 1
            self.buckets_rewritten += changed
            rewriting = changed > 0
            previous = current

    def __enter__(self) -> "CompactionWatch":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        self.thread.join()


class Load:
    """Runs wrk and reads the JSON line its Lua done() prints."""

    def __init__(self, options: argparse.Namespace, scratch: Path):
        self.options = options
        self.scratch = scratch
        self.counter = 0

    def run(self, script: str, url: str, seconds: float, connections: int, args: dict,
            server=None, host: Optional[str] = None, threads: Optional[int] = None,
            until_finished: bool = False) -> dict:
        """One wrk run. With ``until_finished`` the script stops its threads itself (a count reached)
        and ``seconds`` is only a limit: wrk is interrupted once every thread has said so."""
        threads = min(threads or self.options.threads, connections)
        duration = max(1, int(round(seconds)))
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s",
                "-s", str(WRK_DIR / script)]
        if host:
            argv += ["-H", f"Host: {host}"]
        self.counter += 1
        finished = self.scratch / f"finished-{self.counter}"
        if until_finished:
            args = {**args, "finished": finished}
        argv += [url, "--", f"threads={threads}", *(f"{k}={v}" for k, v in args.items())]
        cpu_before = server.cpu_seconds() if server else 0.0
        busy_before, total_before = busy_jiffies()
        children_before = os.times()
        began = time.monotonic()
        watch = CompactionWatch(server.state_dir) if isinstance(server, Server) else None
        if watch:
            watch.__enter__()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if until_finished:
            markers = [Path(f"{finished}.{i}") for i in range(threads)]
            while process.poll() is None and not all(m.exists() for m in markers):
                time.sleep(0.1)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            for marker in markers:
                marker.unlink(missing_ok=True)
        stdout, stderr = process.communicate(timeout=duration + 300)
        if watch:
            watch.__exit__()
        completed = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        elapsed = time.monotonic() - began
        children_after = os.times()
        busy_after, total_after = busy_jiffies()
        cpu_after = server.cpu_seconds() if server else 0.0
        line = next((x for x in completed.stdout.splitlines() if x.startswith("WRK-RESULT ")), None)
        if completed.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({completed.returncode}): {' '.join(argv)}\n{completed.stdout}\n"
                               f"{completed.stderr}")
        result = json.loads(line[len("WRK-RESULT "):])
        result["seconds"] = result["duration_us"] / 1e6
        result["rate"] = result["requests"] / result["seconds"] if result["seconds"] > 0 else 0.0
        result["server_cpu_seconds"] = cpu_after - cpu_before
        client_cpu = (children_after.children_user + children_after.children_system
                      - children_before.children_user - children_before.children_system)
        result["wrk_cpu_seconds"] = client_cpu
        cores = os.cpu_count() or 1
        wall = (total_after - total_before) / cores / CLOCK_TICKS
        busy = (busy_after - busy_before) / cores / CLOCK_TICKS
        # Share of all cores that neither the server nor wrk used: the rest of the machine.
        others = busy - (result["server_cpu_seconds"] + client_cpu) / cores
        result["others_share"] = max(0.0, others / wall) if wall > 0 else 0.0
        result["elapsed"] = elapsed
        if watch:
            result["compactions"] = watch.compactions
            result["buckets_rewritten"] = watch.buckets_rewritten
        return result


def check_errors(name: str, result: dict, allowed_status: int = 0) -> None:
    errors = result["errors"]
    total = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    if total or errors["status"] > allowed_status:
        log(f"WARNING {name}: socket errors {errors}; requests {result['requests']}")
        result["warning"] = f"errors: {errors}"


# ---------------------------------------------------------------------------
# Preparing single-use requests
# ---------------------------------------------------------------------------


def mint_codes(server: Server, load: Load, count: int, tag: str) -> list[tuple[str, str, str]]:
    """``count`` (or a few more) unredeemed codes as (code, client_id, secret), minted by wrk with
    one client per 32 codes (tsidp allows 32 unredeemed codes per user and client)."""
    began = time.monotonic()
    clients = server.register_clients(math.ceil(count / CODES_PER_CLIENT), f"bench-{tag}")
    registered = time.monotonic() - began
    secrets_by_id = dict(clients)
    clients_file = load.scratch / f"clients-{tag}.txt"
    clients_file.write_text("".join(f"{client_id}\n" for client_id, _ in clients))
    out_prefix = load.scratch / f"codes-{tag}"
    threads = min(load.options.threads, len(clients))
    result = load.run("mint.lua", f"http://127.0.0.1:{server.port}", 600, max(threads, min(64, len(clients))),
                      {"clients": clients_file, "out": out_prefix, "per_client": CODES_PER_CLIENT,
                       "redirect_uri": ENCODED_REDIRECT, "scope": "openid%20email%20profile"},
                      host=server.host, threads=threads, until_finished=True)
    codes = []
    for index in range(threads):
        path = Path(f"{out_prefix}.{index}")
        for line in path.read_text().splitlines():
            code, client_id = line.split("\t")
            codes.append((code, client_id, secrets_by_id[client_id]))
        path.unlink()
    refused = result["counters"].get("refused", 0)
    log(f"  minted {len(codes)} codes with {len(clients)} clients in {time.monotonic() - began:.1f} s "
        f"(registering {registered:.1f} s){f', {refused} refused' if refused else ''}")
    return codes


def write_token_requests(codes: list[tuple[str, str, str]], path: Path) -> None:
    with open(path, "w") as output:
        for code, client_id, secret in codes:
            output.write(f"/token\t{basic(client_id, secret)}\tgrant_type=authorization_code&code={code}"
                         f"&redirect_uri={ENCODED_REDIRECT}\n")


# ---------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------


class Benchmark:
    def __init__(self, options: argparse.Namespace):
        self.options = options
        parent = Path(options.state_parent) if options.state_parent else REPO / "benchmark-results"
        parent.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix="external-", dir=parent))
        self.load = Load(options, self.scratch)
        self.binary = Path(options.binary)
        self.token_estimate = 0.0  # tokens per second, for sizing the code pools
        self.rounds: list[dict] = []
        self.population: dict = {}
        self.servers: list = []

    # -- helpers --------------------------------------------------------------

    def new_server(self, name: str, strace_output: Optional[Path] = None) -> Server:
        server = Server(self.binary, self.scratch / name / "state", name, strace_output)
        self.servers.append(server)
        return server

    def codes_needed(self, seconds: float) -> int:
        return int(self.token_estimate * seconds * 1.8) + 4 * self.options.tail_concurrency

    def token_window(self, server: Server, tag: str, connections: int) -> dict:
        """Mints codes, then a warm-up and a measured window of code redemptions."""
        o = self.options
        warm = self.codes_needed(o.warmup) if o.warmup > 0 else 0
        window = self.codes_needed(o.duration)
        codes = mint_codes(server, self.load, warm + window, tag)
        warm_file, window_file = self.scratch / f"warm-{tag}.txt", self.scratch / f"window-{tag}.txt"
        write_token_requests(codes[:warm], warm_file)
        write_token_requests(codes[warm:], window_file)
        url = f"http://127.0.0.1:{server.port}"
        if warm:
            self.load.run("replay.lua", url, o.warmup, connections, {"file": warm_file}, host=server.host)
        result = self.load.run("replay.lua", url, o.duration, connections, {"file": window_file}, server=server,
                               host=server.host)
        counters = result["counters"]
        if counters.get("exhausted"):
            result["warning"] = "ran out of prepared codes: the rate is a lower bound"
            log(f"WARNING {tag}: ran out of prepared codes")
        check_errors(tag, result)
        result["ok"] = counters["sent"] - counters["rejected"]
        result["ok_rate"] = result["ok"] / result["seconds"]
        result["cpu_us_per_op"] = result["server_cpu_seconds"] / max(1, result["ok"]) * 1e6
        self.token_estimate = max(self.token_estimate, result["ok_rate"])
        for path in (warm_file, window_file):
            path.unlink(missing_ok=True)
        log(f"  {tag}: {result['ok_rate']:.0f}/s, p50 {result['latency_us']['p50'] / 1000:.1f} ms, "
            f"p99 {result['latency_us']['p99'] / 1000:.1f} ms, server CPU {result['cpu_us_per_op']:.0f} µs/op, "
            f"{result['compactions']} compaction(s), others {result['others_share'] * 100:.0f} %")
        return result

    def get_window(self, name: str, url: str, host: Optional[str] = None, server=None) -> dict:
        o = self.options
        if o.warmup > 0:
            self.load.run("get.lua", url, o.warmup, o.concurrency, {}, host=host)
        result = self.load.run("get.lua", url, o.duration, o.concurrency, {}, host=host, server=server)
        check_errors(name, result)
        log(f"  {name}: {result['rate']:.0f}/s, others {result['others_share'] * 100:.0f} %")
        return result

    def sign_ins(self, server: Server, count: int) -> tuple[tuple[str, str], list[str]]:
        """``count`` sign-ins with one new client; returns the client and the refresh tokens."""
        client = server.register_client("bench-refresh")
        tokens = [server.sign_in(client)["refresh_token"] for _ in range(count)]
        return client, tokens

    def refresh_window(self, server: Server, seconds: float, connections: int, warmup: float) -> dict:
        threads = min(self.options.threads, connections)
        url = f"http://127.0.0.1:{server.port}"

        def run(length: float, measured: bool) -> dict:
            client, tokens = self.sign_ins(server, connections + threads)
            path = self.scratch / "refresh.txt"
            path.write_text("".join(t + "\n" for t in tokens))
            result = self.load.run("refresh.lua", url, length, connections,
                                   {"file": path, "authorization": basic(*client)},
                                   server=server if measured else None, host=server.host)
            return result

        if warmup > 0:
            run(warmup, False)
        result = run(seconds, True)
        counters = result["counters"]
        if counters["failed"] or counters["starved"]:
            result["warning"] = f"refresh failures {counters['failed']}, starved {counters['starved']}"
            log(f"WARNING refresh: {result['warning']}")
        result["ok"] = counters["rotated"]
        result["ok_rate"] = result["ok"] / result["seconds"]
        result["cpu_us_per_op"] = result["server_cpu_seconds"] / max(1, result["ok"]) * 1e6
        return result

    # -- the phases -----------------------------------------------------------

    def openssl(self) -> dict:
        cores = os.cpu_count() or 1
        argv = ["openssl", "speed", "-multi", str(cores), "-seconds", str(self.options.openssl_seconds), "rsa2048"]
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        match = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", completed.stdout, re.M)
        if not match:
            raise RuntimeError(f"cannot read openssl speed output:\n{completed.stdout}\n{completed.stderr}")
        signs = float(match.group(1))
        log(f"  openssl speed -multi {cores} rsa2048: {signs:.0f} signs/s")
        return {"command": " ".join(argv), "signs_per_second": signs, "verifies_per_second": float(match.group(2))}

    def populate(self) -> None:
        """Server B: the live logins for the /token-with-stored-logins row, and the RSS rows."""
        o = self.options
        server = self.new_server("stored")
        server.start()
        population: dict = {"server": server}
        threads = o.threads
        clients = server.register_clients(threads, "bench-populate")
        clients_file = self.scratch / "populate-clients.txt"
        clients_file.write_text("".join(f"{cid}\t{basic(cid, secret)}\n" for cid, secret in clients))
        url = f"http://127.0.0.1:{server.port}"
        connections = min(threads * 16, 32)

        def grow_to(target: int) -> float:
            began = time.monotonic()
            while True:
                have = server.live_logins()
                missing = target - have
                if missing <= 0:
                    return time.monotonic() - began
                per_thread = math.ceil(missing / threads)
                self.load.run("login.lua", url, 3600, connections,
                              {"clients": clients_file, "redirect_uri": ENCODED_REDIRECT, "userinfo": 0,
                               "limit": per_thread}, host=server.host, until_finished=True)

        def restart() -> float:
            server.stop()
            return server.start()

        log(f"creating {o.rss_logins} live logins on a fresh server")
        population["rss_idle_before_logins_mib"] = server.rss_mib()
        population["create_small_seconds"] = grow_to(o.rss_logins)
        population["logins_small"] = server.live_logins()
        memory = server.memory_mib()
        population["rss_small_after_creating_mib"] = memory["VmRSS"]
        population["rss_small_after_creating_anon_mib"] = memory.get("RssAnon")
        population["rss_small_after_creating_file_mib"] = memory.get("RssFile")
        population["restart_small_seconds"] = restart()
        time.sleep(1)
        population["rss_small_after_restart_mib"] = server.rss_mib()
        log(f"  {population['logins_small']} logins in {population['create_small_seconds']:.1f} s; RSS "
            f"{population['rss_small_after_creating_mib']:.1f} MiB after creating them, "
            f"{population['rss_small_after_restart_mib']:.1f} MiB after a restart "
            f"({population['restart_small_seconds']:.1f} s)")
        log(f"creating {o.logins} live logins (tsidp keeps every code, redeemed or not, for five minutes "
            f"and at most 100,000 of them)")
        population["create_large_seconds"] = grow_to(o.logins)
        population["logins_large"] = server.live_logins()
        population["rss_large_after_creating_mib"] = server.rss_mib()
        # A restart empties the in-memory code book, which creating the logins filled.
        population["restart_large_seconds"] = restart()
        time.sleep(1)
        population["rss_large_after_restart_mib"] = server.rss_mib()
        population["state_bytes"] = sum(p.stat().st_size for p in server.state_dir.rglob("*") if p.is_file())
        log(f"  {population['logins_large']} logins after {population['create_large_seconds']:.1f} s more; RSS "
            f"{population['rss_large_after_creating_mib']:.1f} MiB, {population['rss_large_after_restart_mib']:.1f} "
            f"MiB after a restart ({population['restart_large_seconds']:.1f} s); state "
            f"{population['state_bytes'] / 1e6:.1f} MB on disk")
        self.population = population

    def probe(self, server: Server) -> None:
        """A short redemption run to size the code pools."""
        self.token_estimate = 300.0
        codes = mint_codes(server, self.load, self.options.probe_codes, "probe")
        path = self.scratch / "probe.txt"
        write_token_requests(codes, path)
        result = self.load.run("replay.lua", f"http://127.0.0.1:{server.port}", 2, self.options.concurrency,
                               {"file": path}, host=server.host)
        rate = (result["counters"]["sent"] - result["counters"]["rejected"]) / result["seconds"]
        self.token_estimate = max(rate, 100.0)
        log(f"  probe: about {rate:.0f} tokens/s")

    def fsync_window(self, round_index: int) -> dict:
        o = self.options
        trace = self.scratch / f"fsync-{round_index}.strace"
        server = self.new_server(f"fsync-{round_index}", strace_output=trace)
        server.start()
        try:
            connections = o.fsync_concurrency
            threads = min(o.threads, connections)
            client, tokens = self.sign_ins(server, connections + threads)
            path = self.scratch / "refresh-fsync.txt"
            path.write_text("".join(t + "\n" for t in tokens))
            began = time.time()
            result = self.load.run("refresh.lua", f"http://127.0.0.1:{server.port}", o.fsync_seconds, connections,
                                   {"file": path, "authorization": basic(*client)}, host=server.host)
            ended = time.time()
        finally:
            server.stop()
        calls = 0
        for line in trace.read_text(errors="replace").splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and began <= float(parts[1]) <= ended and re.match(
                    r"(fsync|fdatasync|sync_file_range|syncfs|msync)\(", parts[2]):
                calls += 1
        rotated = result["counters"]["rotated"]
        shutil.rmtree(server.state_dir.parent, ignore_errors=True)
        trace.unlink(missing_ok=True)
        log(f"  fsync window: {calls} sync calls for {rotated} refreshes at {connections} concurrent "
            f"({rotated / result['seconds']:.0f}/s under strace)")
        return {"sync_calls": calls, "refreshes": rotated, "per_refresh": calls / max(1, rotated),
                "rate_under_strace": rotated / result["seconds"]}

    def run_round(self, index: int) -> dict:
        o = self.options
        round_result: dict = {"index": index, "load_average_1m": load_average(),
                              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        log(f"round {index + 1}/{o.rounds}: load average {round_result['load_average_1m']:.2f}")
        # The stored-logins server idles between its windows; its CPU total shows whether it does.
        round_result["stored_server_cpu_seconds_total"] = self.population["server"].cpu_seconds()
        round_result["openssl"] = self.openssl()
        server = self.new_server(f"round-{index}")
        server.start()
        time.sleep(1)
        memory = server.memory_mib()
        round_result["rss_idle_mib"] = memory["VmRSS"]
        round_result["rss_idle_anon_mib"] = memory.get("RssAnon")
        round_result["rss_idle_file_mib"] = memory.get("RssFile")
        log(f"  idle RSS {round_result['rss_idle_mib']:.1f} MiB")
        url = f"http://127.0.0.1:{server.port}"
        try:
            if self.token_estimate == 0:
                self.probe(server)
            round_result["token"] = self.token_window(server, f"token-{index}", o.concurrency)
            stored = self.population["server"]
            round_result["token_stored"] = self.token_window(stored, f"token-stored-{index}", o.concurrency)
            round_result["stored_logins"] = stored.live_logins()

            clients = server.register_clients(o.threads, f"bench-login-{index}")
            clients_file = self.scratch / f"login-clients-{index}.txt"
            clients_file.write_text("".join(f"{cid}\t{basic(cid, secret)}\n" for cid, secret in clients))
            login_args = {"clients": clients_file, "redirect_uri": ENCODED_REDIRECT, "userinfo": 1}
            login_connections = min(o.concurrency, 32 * o.threads)
            if o.warmup > 0:
                self.load.run("login.lua", url, o.warmup, login_connections, login_args, host=server.host)
            login = self.load.run("login.lua", url, o.duration, login_connections, login_args, server=server,
                                  host=server.host)
            failures = {k: v for k, v in login["counters"].items() if k != "completed" and v}
            if failures:
                login["warning"] = f"failures {failures}"
                log(f"WARNING login: {failures}")
            login["ok_rate"] = login["counters"]["completed"] / login["seconds"]
            login["cpu_us_per_op"] = login["server_cpu_seconds"] / max(1, login["counters"]["completed"]) * 1e6
            round_result["login"] = login
            log(f"  login flows: {login['ok_rate']:.0f}/s, server CPU {login['cpu_us_per_op']:.0f} µs per flow")

            round_result["token_tail"] = self.token_window(server, f"token-tail-{index}", o.tail_concurrency)

            refresh = self.refresh_window(server, o.duration, o.concurrency, o.warmup)
            round_result["refresh"] = refresh
            log(f"  refresh: {refresh['ok_rate']:.0f}/s, server CPU {refresh['cpu_us_per_op']:.0f} µs/op, "
                f"{refresh['compactions']} compaction(s)")

            round_result["fsync"] = self.fsync_window(index)

            # Introspection of a live access token by its client, against /healthz/live.
            client = server.register_client("bench-introspect")
            access = server.sign_in(client)["access_token"]
            if o.warmup > 0:
                self.load.run("post.lua", url + "/introspect", o.warmup, o.concurrency,
                              {"body": f"token={access}", "authorization": basic(*client)}, host=server.host)
            introspect = self.load.run("post.lua", url + "/introspect", o.duration, o.concurrency,
                                       {"body": f"token={access}", "authorization": basic(*client)},
                                       host=server.host, server=server)
            check_errors("introspect", introspect)
            log(f"  introspect: {introspect['rate']:.0f}/s")
            round_result["introspect"] = introspect
            if o.hello_world:
                hello = HelloWorld(Path(o.hello_world))
                hello.start()
                try:
                    round_result["hello"] = self.get_window("hello world (Hummingbird)",
                                                            f"http://127.0.0.1:{hello.port}/hello", server=hello)
                finally:
                    hello.stop()
            round_result["healthz"] = self.get_window("healthz/live", url + "/healthz/live", host=server.host,
                                                      server=server)

            # Discovery and JWKS, each right before nginx serving the same bytes.
            documents = {}
            for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
                status, _, body = http_call(server.port, "GET", path, host=server.host)
                if status != 200:
                    raise RuntimeError(f"GET {path} -> {status}")
                documents[path] = body
            nginx = Nginx(self.scratch / f"nginx-{index}", documents)
            nginx.start()
            try:
                for path, key in (("/.well-known/openid-configuration", "discovery"),
                                  ("/.well-known/jwks.json", "jwks")):
                    status, _, body = http_call(nginx.port, "GET", path)
                    if status != 200 or body != documents[path]:
                        raise RuntimeError(f"nginx does not serve the same bytes for {path}")
                    round_result[key] = self.get_window(key, url + path, host=server.host, server=server)
                    round_result[f"{key}_nginx"] = self.get_window(f"{key} (nginx)",
                                                                   f"http://127.0.0.1:{nginx.port}{path}",
                                                                   server=nginx)
                    round_result[f"{key}_bytes"] = len(documents[path])
            finally:
                nginx.stop()
            round_result["rss_after_round_mib"] = server.rss_mib()
        finally:
            server.stop()
            shutil.rmtree(server.state_dir.parent, ignore_errors=True)
        return round_result

    def run(self) -> dict:
        began = time.monotonic()
        try:
            self.populate()
            for index in range(self.options.rounds):
                self.rounds.append(self.run_round(index))
        finally:
            for server in self.servers:
                server.stop()
            if not self.options.keep_state:
                shutil.rmtree(self.scratch, ignore_errors=True)
        population = {k: v for k, v in self.population.items() if k != "server"}
        return {"rounds": self.rounds, "population": population, "seconds": time.monotonic() - began}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def spread(values: list[float]) -> dict:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "values": []}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "values": clean}


ROWS: list[tuple[str, str, str, float, Callable[[dict, dict], Optional[float]], str]] = [
    # key, title, comparison, target, per-round value, unit
    ("token_vs_openssl", "POST /token (code, RS256) / openssl -multi rsa2048 signs", ">=", 0.8,
     lambda r, p: r["token"]["ok_rate"] / r["openssl"]["signs_per_second"], "ratio"),
    ("login_vs_openssl", "full login (authorize, token, userinfo) / the same", ">=", 0.5,
     lambda r, p: r["login"]["ok_rate"] / r["openssl"]["signs_per_second"], "ratio"),
    ("token_stored_vs_empty", "/token with >= N live logins / with none", ">=", 0.9,
     lambda r, p: r["token_stored"]["ok_rate"] / r["token"]["ok_rate"], "ratio"),
    ("discovery_vs_nginx", "discovery / nginx (1 worker), same bytes", ">=", 0.8,
     lambda r, p: r["discovery"]["rate"] / r["discovery_nginx"]["rate"], "ratio"),
    ("jwks_vs_nginx", "JWKS / nginx (1 worker), same bytes", ">=", 0.8,
     lambda r, p: r["jwks"]["rate"] / r["jwks_nginx"]["rate"], "ratio"),
    ("introspect_vs_healthz", "introspection / /healthz/live", ">=", 0.7,
     lambda r, p: r["introspect"]["rate"] / r["healthz"]["rate"], "ratio"),
    ("refresh_cpu_vs_code_cpu", "server CPU per refresh / per code redemption", "<=", 1.25,
     lambda r, p: r["refresh"]["cpu_us_per_op"] / r["token"]["cpu_us_per_op"], "ratio"),
    ("fsyncs_per_refresh", "fsyncs per refresh at C concurrent", "<=", 0.2,
     lambda r, p: r["fsync"]["per_refresh"], "count"),
    ("token_p99_over_p50", "/token p99 / p50 at T concurrent", "<=", 2.0,
     lambda r, p: r["token_tail"]["latency_us"]["p99"] / r["token_tail"]["latency_us"]["p50"], "ratio"),
    ("rss_idle_mib", "RSS idle (MiB)", "<", 35.0, lambda r, p: r["rss_idle_mib"], "MiB"),
    ("rss_small_mib", "RSS with N live logins (MiB, after creating them)", "<", 80.0,
     lambda r, p: p.get("rss_small_after_creating_mib"), "MiB"),
]

DETAILS: list[tuple[str, Callable[[dict], float], str]] = [
    ("openssl -multi rsa2048 signs/s", lambda r: r["openssl"]["signs_per_second"], "{:.0f}"),
    ("POST /token (code) /s", lambda r: r["token"]["ok_rate"], "{:.0f}"),
    ("  server CPU µs per token", lambda r: r["token"]["cpu_us_per_op"], "{:.0f}"),
    ("  p50 ms", lambda r: r["token"]["latency_us"]["p50"] / 1000, "{:.1f}"),
    ("  p99 ms", lambda r: r["token"]["latency_us"]["p99"] / 1000, "{:.1f}"),
    ("  other processes' share of the cores", lambda r: r["token"]["others_share"] * 100, "{:.0f} %"),
    ("  compactions in the window", lambda r: r["token"]["compactions"], "{:.0f}"),
    ("POST /token with stored logins /s", lambda r: r["token_stored"]["ok_rate"], "{:.0f}"),
    ("  server CPU µs per token", lambda r: r["token_stored"]["cpu_us_per_op"], "{:.0f}"),
    ("  p50 ms", lambda r: r["token_stored"]["latency_us"]["p50"] / 1000, "{:.1f}"),
    ("  p99 ms", lambda r: r["token_stored"]["latency_us"]["p99"] / 1000, "{:.1f}"),
    ("  compactions in the window", lambda r: r["token_stored"]["compactions"], "{:.0f}"),
    ("  other processes' share of the cores", lambda r: r["token_stored"]["others_share"] * 100, "{:.0f} %"),
    ("login flows /s", lambda r: r["login"]["ok_rate"], "{:.0f}"),
    ("  server CPU µs per flow", lambda r: r["login"]["cpu_us_per_op"], "{:.0f}"),
    ("POST /token at tail concurrency /s", lambda r: r["token_tail"]["ok_rate"], "{:.0f}"),
    ("  p50 ms", lambda r: r["token_tail"]["latency_us"]["p50"] / 1000, "{:.1f}"),
    ("  p99 ms", lambda r: r["token_tail"]["latency_us"]["p99"] / 1000, "{:.1f}"),
    ("  compactions in the window", lambda r: r["token_tail"]["compactions"], "{:.0f}"),
    ("refresh /s", lambda r: r["refresh"]["ok_rate"], "{:.0f}"),
    ("  server CPU µs per refresh", lambda r: r["refresh"]["cpu_us_per_op"], "{:.0f}"),
    ("  p50 ms", lambda r: r["refresh"]["latency_us"]["p50"] / 1000, "{:.1f}"),
    ("  p99 ms", lambda r: r["refresh"]["latency_us"]["p99"] / 1000, "{:.1f}"),
    ("  compactions in the window", lambda r: r["refresh"]["compactions"], "{:.0f}"),
    ("refresh /s under strace (fsync count)", lambda r: r["fsync"]["rate_under_strace"], "{:.0f}"),
    ("introspection /s", lambda r: r["introspect"]["rate"], "{:.0f}"),
    ("  server CPU µs per call", lambda r: r["introspect"]["server_cpu_seconds"] / r["introspect"]["requests"] * 1e6,
     "{:.0f}"),
    ("/healthz/live /s", lambda r: r["healthz"]["rate"], "{:.0f}"),
    ("  server CPU µs per call", lambda r: r["healthz"]["server_cpu_seconds"] / r["healthz"]["requests"] * 1e6,
     "{:.0f}"),
    ("Hummingbird hello world /s (Benchmarks/HelloWorld)", lambda r: r["hello"]["rate"], "{:.0f}"),
    ("  server CPU µs per call", lambda r: r["hello"]["server_cpu_seconds"] / r["hello"]["requests"] * 1e6,
     "{:.0f}"),
    ("discovery /s (tsidp)", lambda r: r["discovery"]["rate"], "{:.0f}"),
    ("discovery /s (nginx)", lambda r: r["discovery_nginx"]["rate"], "{:.0f}"),
    ("JWKS /s (tsidp)", lambda r: r["jwks"]["rate"], "{:.0f}"),
    ("JWKS /s (nginx)", lambda r: r["jwks_nginx"]["rate"], "{:.0f}"),
    ("RSS idle: own memory (RssAnon, MiB)", lambda r: r["rss_idle_anon_mib"], "{:.1f}"),
    ("RSS idle: mapped binary and libraries (RssFile, MiB)", lambda r: r["rss_idle_file_mib"], "{:.1f}"),
    ("RSS after the round (MiB)", lambda r: r["rss_after_round_mib"], "{:.1f}"),
    ("stored-logins server CPU s, total at round start", lambda r: r["stored_server_cpu_seconds_total"], "{:.1f}"),
]


def met(comparison: str, value: float, target: float) -> bool:
    if math.isnan(value):
        return False
    return {">=": value >= target, "<=": value <= target, "<": value < target}[comparison]


def summarize(options: argparse.Namespace, measured: dict) -> dict:
    rounds, population = measured["rounds"], measured["population"]
    rows = []
    for key, title, comparison, target, value, unit in ROWS:
        values = []
        for r in rounds:
            try:
                values.append(value(r, population))
            except (KeyError, ZeroDivisionError, TypeError):
                values.append(None)
        s = spread(values)
        title = (title.replace(">= N", f">= {population.get('logins_large', options.logins):,}")
                 .replace("with N", f"with {population.get('logins_small', options.rss_logins):,}")
                 .replace("at C concurrent", f"at {options.fsync_concurrency} concurrent")
                 .replace("at T concurrent", f"at {options.tail_concurrency} concurrent"))
        rows.append({"key": key, "title": title, "comparison": comparison, "target": target, "unit": unit,
                     **s, "met": met(comparison, s["median"], target)})
    details = []
    for title, value, fmt in DETAILS:
        values = []
        for r in rounds:
            try:
                values.append(value(r))
            except (KeyError, ZeroDivisionError, TypeError):
                values.append(None)
        details.append({"title": title, "format": fmt, **spread(values)})
    return {"rows": rows, "details": details}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def render(options: argparse.Namespace, measured: dict, summary: dict, machine: dict) -> str:
    lines = []
    lines.append(f"tsidp external benchmark, {machine['date']}, {machine['cores']} cores ({machine['cpu']}), "
                 f"{options.rounds} round(s) of {options.duration:g} s windows")
    lines.append("load average (1 min) at the start of each round: "
                 + ", ".join(f"{r['load_average_1m']:.2f}" for r in measured["rounds"]))
    lines.append("")
    width = max(len(r["title"]) for r in summary["rows"])
    lines.append(f"{'measure':<{width}}  {'median':>8}  {'min - max':>17}  {'target':>8}  result")
    for row in summary["rows"]:
        fmt = "{:.1f}" if row["unit"] == "MiB" else "{:.3f}"
        median = fmt.format(row["median"])
        low_high = f"{fmt.format(row['min'])} - {fmt.format(row['max'])}"
        target = f"{row['comparison']} {row['target']:g}"
        lines.append(f"{row['title']:<{width}}  {median:>8}  {low_high:>17}  {target:>8}  "
                     f"{'met' if row['met'] else 'NOT MET'}")
    lines.append("")
    lines.append("details (median, min - max over rounds):")
    width = max(len(d["title"]) for d in summary["details"])
    for detail in summary["details"]:
        if not detail["values"]:
            continue
        fmt = detail["format"]
        lines.append(f"  {detail['title']:<{width}}  {fmt.format(detail['median']):>10}  "
                     f"({fmt.format(detail['min'])} - {fmt.format(detail['max'])})")
    p = measured["population"]
    if p:
        lines.append("")
        lines.append(f"live logins: {p['logins_small']:,} created in {p['create_small_seconds']:.0f} s "
                     f"(RSS {p['rss_small_after_creating_mib']:.1f} MiB, of it "
                     f"{p.get('rss_small_after_creating_anon_mib') or 0:.1f} own and "
                     f"{p.get('rss_small_after_creating_file_mib') or 0:.1f} mapped files; "
                     f"{p['rss_small_after_restart_mib']:.1f} MiB after a restart), {p['logins_large']:,} after {p['create_large_seconds']:.0f} s more "
                     f"(RSS {p['rss_large_after_creating_mib']:.1f} MiB; {p['rss_large_after_restart_mib']:.1f} MiB "
                     f"after a restart that took {p['restart_large_seconds']:.1f} s); state on disk "
                     f"{p['state_bytes'] / 1e6:.1f} MB")
    warnings = [f"round {r['index'] + 1} {name}: {value['warning']}" for r in measured["rounds"]
                for name, value in r.items() if isinstance(value, dict) and value.get("warning")]
    if warnings:
        lines.append("")
        lines.extend("warning: " + w for w in warnings)
    lines.append(f"\nwhole run: {measured['seconds']:.0f} s")
    return "\n".join(lines)


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/benchmark", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / ".build-bench" / "release" / "tsidp"),
                        help="the tsidp binary")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load before a window")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="wrk threads")
    parser.add_argument("--concurrency", type=int, default=32, help="connections for the rate windows")
    parser.add_argument("--tail-concurrency", type=int, default=100, help="connections for the p99/p50 window")
    parser.add_argument("--fsync-concurrency", type=int, default=32, help="connections for the fsync count")
    parser.add_argument("--fsync-seconds", type=float, default=5, help="seconds of the fsync-count window")
    parser.add_argument("--logins", type=int, default=100_000, help="live logins for the stored-logins row")
    parser.add_argument("--rss-logins", type=int, default=10_000, help="live logins for the RSS row")
    parser.add_argument("--hello-world", default=None,
                        help="a Benchmarks/HelloWorld binary: measure it beside /healthz/live")
    parser.add_argument("--probe-codes", type=int, default=8000,
                        help="codes for the first, unmeasured run that sizes the code pools")
    parser.add_argument("--openssl-seconds", type=int, default=5, help="seconds of openssl speed per round")
    parser.add_argument("--state-parent", default=None,
                        help="where the state directories go (a disk, not tmpfs; default benchmark-results/)")
    parser.add_argument("--output", default=None, help="JSON report path (default benchmark-results/external-*.json)")
    parser.add_argument("--keep-state", action="store_true", help="keep the state directories and logs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 round, 2 s windows, 2,000 logins (explicit options still win)")
    defaults = {a.dest: a.default for a in parser._actions}
    options = parser.parse_args(argv)
    if options.quick:
        quick = {"rounds": 1, "duration": 2, "warmup": 0, "fsync_seconds": 2, "logins": 2000, "rss_logins": 1000,
                 "openssl_seconds": 1}
        for key, value in quick.items():
            if getattr(options, key) == defaults[key]:
                setattr(options, key, value)
    return options


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    # SIGTERM (a timeout, say) unwinds like ^C, so every server and nginx started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("wrk", "nginx", "openssl", "strace"):
        if not shutil.which(tool) and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            print(f"{tool} is not installed (Debian: apt-get install wrk nginx-light openssl strace)", file=sys.stderr)
            return 2
    if not Path(options.binary).is_file():
        print(f"no tsidp binary at {options.binary}", file=sys.stderr)
        return 2
    machine = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines() or [""])[0],
        "command": os.environ.get("TSIDP_BENCHMARK_COMMAND", "Benchmarks/external/driver.py " + " ".join(argv)),
        "revision": os.environ.get("TSIDP_BENCHMARK_REVISION", ""),
        "binary": options.binary,
    }
    measured = Benchmark(options).run()
    summary = summarize(options, measured)
    text = render(options, measured, summary, machine)
    print(text)
    if options.output:
        output = Path(options.output)
    else:
        results = REPO / "benchmark-results"
        results.mkdir(exist_ok=True)
        output = results / (
            "external-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    output.write_text(json.dumps({"machine": machine, "options": vars(options), "summary": summary,
                                  "measured": measured}, indent=2, default=str))
    log(f"JSON report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

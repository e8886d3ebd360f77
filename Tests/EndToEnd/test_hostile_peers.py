"""Hostile peers against the real binary.

A few hundred idle connections from one address, with tsidp held to a small open-file limit,
must not keep another address (or the operator's --local-port listener) from being served, and
every one of them is closed in the end. A newline or escape sequence in a client name or a
request body must not forge a log line.

Every wait is bounded; nothing is asserted about how long anything took.

Environment (for a long run outside CI):
  TSIDP_FLOOD_CONNECTIONS  idle connections in the flood (default 400; e.g. 5000)
  TSIDP_FLOOD_FILE_LIMIT   tsidp's open-file limit during the flood (default 256; e.g. 1024)
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import time

import requests

# tsidp's open-file limit, soft and hard: it cannot raise it
FILE_LIMIT = int(os.environ.get("TSIDP_FLOOD_FILE_LIMIT", "256"))
# idle connections from 127.0.0.1, more than the limit leaves room for
FLOOD = int(os.environ.get("TSIDP_FLOOD_CONNECTIONS", "400"))
IDLE_TIMEOUT = "3s"
CLOSE_WAIT = 20.0 + FLOOD / 100  # seconds to wait for the server to close every flood connection
LOG_WAIT = 10.0  # seconds to wait for a log line to reach tsidp's stderr


def lowered_file_limit() -> None:
    """Runs in the tsidp child before exec."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def ensure_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def open_idle(port: int, count: int, source: str) -> list:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def wait_for_closes(sockets: list, timeout: float) -> set:
    """Waits (bounded) until the server has closed every socket; returns those still open."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    still_open = set(sockets)
    deadline = time.monotonic() + timeout
    try:
        while still_open and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except (ConnectionResetError, BlockingIOError) as exc:
                    data = b"" if isinstance(exc, ConnectionResetError) else None
                if data == b"":
                    still_open.discard(sock)
                    selector.unregister(sock)
    finally:
        selector.close()
    return still_open


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_idle_flood_from_one_address_does_not_starve_another(tsidp_factory, alice_and_bob, make_browser, unused_port):
    ensure_own_file_limit(FLOOD + 256)
    local_port = unused_port()
    tsidp = tsidp_factory(
        identities=alice_and_bob,
        extra_args=["--idle-timeout", IDLE_TIMEOUT, "--local-port", str(local_port)],
        preexec_fn=lowered_file_limit,
    )
    flood = open_idle(tsidp.port, FLOOD, "127.0.0.1")
    try:
        # Another tailnet address is served while the flood holds its connections...
        response = make_browser("127.0.0.2").get(tsidp.url("/.well-known/openid-configuration"), timeout=5)
        assert response.status_code == 200, response.text[:500]
        assert response.json()["issuer"] == tsidp.issuer
        # ...and so is the operator's door.
        local = requests.get(f"http://127.0.0.1:{local_port}/healthz/live", timeout=5)
        assert local.status_code == 200
        # Connections beyond the caps were closed on arrival, the rest once idle too long.
        still_open = wait_for_closes(flood, CLOSE_WAIT)
        assert not still_open, f"{len(still_open)} of {FLOOD} idle connections are still open"
    finally:
        for sock in flood:
            sock.close()
    # tsidp is still healthy afterwards.
    assert make_browser("127.0.0.1").get(tsidp.url("/healthz/live"), timeout=5).status_code == 200


def test_half_sent_request_gets_408(tsidp_factory):
    tsidp = tsidp_factory(extra_args=["--read-header-timeout", "1s"])
    with socket.create_connection(("127.0.0.1", tsidp.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        received = b""
        while True:  # until the server closes (bounded by the socket timeout)
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received[:200]


def test_log_lines_cannot_be_forged(tsidp_factory, alice_and_bob, make_browser):
    tsidp = tsidp_factory(identities=alice_and_bob, extra_args=["--debug-all-requests"])
    session = make_browser("127.0.0.1")
    created = session.post(
        tsidp.url("/clients/new"),
        data={"name": "demo\nFORGED-LINE error admin rights granted", "redirect_uri": "https://app.example.com/cb"},
    )
    # A control character in a client name is refused (registration limits) before anything is
    # stored; the request is still dumped by --debug-all-requests, on one line.
    assert created.status_code == 400, created.text[:500]
    assert created.json()["error"] == "invalid_client_metadata"
    session.post(
        tsidp.url("/token"),
        data=b"grant_type=x\nFORGED-BODY warning\r\n\x1b[2J",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    stderr = tsidp.process.log_paths[1]

    def logged() -> bool:
        text = stderr.read_text(errors="replace")
        return "FORGED-LINE" in text and "FORGED-BODY" in text

    assert wait_until(logged, LOG_WAIT), stderr.read_text(errors="replace")[-3000:]
    lines = stderr.read_text(errors="replace").splitlines()
    forged = [line for line in lines if line.startswith("FORGED") or "\x1b" in line]
    assert not forged, forged
    assert any("FORGED-LINE" in line and "demo" in line for line in lines)

"""Operating tsidp: Prometheus metrics on the --local-port listener, request IDs in answers and
log lines (text and --log-format json), and SIGTERM draining requests in progress.

Everything runs against the real binary in --dev mode; docs/operations.md names every series and
behaviour checked here.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import HTTP_TIMEOUT, browser_session, free_port, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
REDIRECT = "https://grafana.example.com/login/generic_oauth"


def scrape(local_port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{local_port}/metrics", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.text


def value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line[len(series) + 1 :])
    return None


def sign_in(tsidp, client: dict, source: str = "127.0.0.1") -> dict:
    browser = browser_session(source)
    answer = browser.get(
        tsidp.url("/authorize"),
        params={
            "client_id": client["client_id"], "redirect_uri": REDIRECT, "response_type": "code",
            "scope": "openid email profile", "state": secrets.token_urlsafe(8),
        },
        allow_redirects=False, timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = requests.post(
        tsidp.url("/token"),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(client["client_id"], client["client_secret"]), timeout=HTTP_TIMEOUT,
    )
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


@pytest.fixture
def operated(tsidp_factory, alice_and_bob):
    local_port = free_port()
    # 127.0.0.3 is a device the simulated tailnet does not know.
    tsidp = tsidp_factory(identities=[*alice_and_bob, None], extra_args=["--local-port", str(local_port)])
    return tsidp, local_port


def test_metrics_follow_sign_ins_refreshes_and_revocations(operated):
    tsidp, local_port = operated
    client = tsidp.register_admin_client("Grafana", [REDIRECT])
    before = scrape(local_port)
    assert value(before, 'tsidp_logins_total{result="issued"}') == 0
    assert value(before, "tsidp_refresh_families") == 0
    assert value(before, "tsidp_clients") == 1

    alice = sign_in(tsidp, client, "127.0.0.1")
    sign_in(tsidp, client, "127.0.0.2")
    refreshed = requests.post(
        tsidp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]},
        auth=(client["client_id"], client["client_secret"]), timeout=HTTP_TIMEOUT,
    )
    assert refreshed.status_code == 200, refreshed.text
    wrong = requests.post(
        tsidp.url("/token"), data={"grant_type": "refresh_token", "refresh_token": "not-a-token"},
        auth=(client["client_id"], client["client_secret"]), timeout=HTTP_TIMEOUT,
    )
    assert wrong.status_code == 400
    stranger = browser_session("127.0.0.3").get(
        tsidp.url("/authorize"),
        params={"client_id": client["client_id"], "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid"},
        allow_redirects=False, timeout=HTTP_TIMEOUT,
    )
    assert "error=access_denied" in stranger.headers.get("Location", "")

    after = scrape(local_port)
    assert value(after, 'tsidp_logins_total{result="issued"}') == 2
    assert value(after, 'tsidp_logins_total{result="unknown_device"}') == 1
    assert value(after, 'tsidp_tokens_issued_total{grant_type="authorization_code"}') == 2
    assert value(after, 'tsidp_tokens_issued_total{grant_type="refresh_token"}') == 1
    assert value(after, 'tsidp_token_errors_total{grant_type="refresh_token",error="invalid_grant"}') == 1
    assert value(after, 'tsidp_http_requests_total{listener="tailnet",endpoint="/token",status="200"}') == 3
    assert value(after, 'tsidp_http_requests_total{listener="local",endpoint="/metrics",status="200"}') == 1
    # WhoIs: two sign-ins, one refresh (the device is asked again), one stranger.
    assert value(after, 'tsidp_whois_duration_seconds_count{result="found"}') >= 3
    assert value(after, 'tsidp_whois_duration_seconds_count{result="not_found"}') == 1
    assert value(after, "tsidp_state_write_duration_seconds_count") >= 3
    assert value(after, "tsidp_state_write_failures_total") == 0
    assert value(after, "tsidp_refresh_families") == 2
    assert value(after, "process_resident_memory_bytes") > 1_000_000
    assert value(after, "process_open_fds") > 3

    revoked = requests.post(
        tsidp.url("/revoke"), data={"token": refreshed.json()["refresh_token"]},
        auth=(client["client_id"], client["client_secret"]), timeout=HTTP_TIMEOUT,
    )
    assert revoked.status_code == 200
    assert value(scrape(local_port), "tsidp_refresh_families") == 1


def test_metrics_are_only_on_the_operators_listener(operated):
    tsidp, _ = operated
    answer = requests.get(tsidp.url("/metrics"), timeout=HTTP_TIMEOUT)
    assert answer.status_code == 404


def test_every_series_is_documented(operated):
    """The operations guide names every series /metrics exports (after some traffic)."""
    tsidp, local_port = operated
    client = tsidp.register_admin_client("Grafana", [REDIRECT])
    sign_in(tsidp, client)
    names = set(re.findall(r"^# TYPE (\S+) ", scrape(local_port), re.M))
    assert len(names) >= 12, names
    doc = DOC.read_text()
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"docs/operations.md does not name {missing}"


def test_request_ids_reach_the_json_log(tsidp_factory, alice_and_bob, scratch_dirs):
    workdir = scratch_dirs("json-log")
    tsidp = tsidp_factory(identities=alice_and_bob, workdir=workdir, extra_args=["--log-format", "json", "--log", "debug"])
    client = tsidp.register_admin_client("Portainer", [REDIRECT])
    answer = requests.get(tsidp.url("/.well-known/openid-configuration"), timeout=HTTP_TIMEOUT)
    request_id = answer.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    def logged() -> list:
        lines = []
        for path in tsidp.process.log_paths:
            for line in Path(path).read_text().splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
        return lines

    assert wait_until(lambda: any(entry.get("request_id") == request_id for entry in logged()), 10)
    access = next(entry for entry in logged() if entry.get("request_id") == request_id)
    assert access["message"] == "request"
    assert access["endpoint"] == "/.well-known/openid-configuration"
    assert access["status"] == "200"
    created = [entry for entry in logged() if entry.get("message") == "client created"]
    assert created and created[0]["client_id"] == client["client_id"] and "request_id" in created[0]
    for entry in logged():
        assert {"time", "level", "logger", "message"} <= entry.keys()
    # No secret reaches a line.
    text = "\n".join(Path(path).read_text() for path in tsidp.process.log_paths)
    assert client["client_secret"] not in text


def test_sigterm_answers_requests_in_progress_then_exits(tsidp_factory, alice_and_bob):
    """SIGTERM: the listener stops accepting, an idle keep-alive connection is closed, and a
    request whose body is still arriving is answered before tsidp exits 0."""
    tsidp = tsidp_factory(identities=alice_and_bob)
    client = tsidp.register_admin_client("Proxmox", [REDIRECT])
    body = (
        f"grant_type=authorization_code&code=unknown&redirect_uri={REDIRECT}"
        f"&client_id={client['client_id']}&client_secret={client['client_secret']}"
    ).encode()
    in_flight = socket.create_connection(("127.0.0.1", tsidp.port), timeout=HTTP_TIMEOUT)
    in_flight.sendall(
        b"POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20]
    )
    idle = socket.create_connection(("127.0.0.1", tsidp.port), timeout=HTTP_TIMEOUT)
    idle.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"200 OK" in idle.recv(4096)
    time.sleep(0.5)  # the partial request has reached tsidp's router

    tsidp.process.popen.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", tsidp.port), timeout=1).close()
            return False
        except OSError:
            return True

    assert wait_until(refused, 10), "the listener still accepts connections after SIGTERM"
    assert idle.recv(4096) == b"", "the idle keep-alive connection was not closed"
    assert tsidp.process.popen.poll() is None, "tsidp exited before answering the request in progress"

    in_flight.sendall(body[20:])
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = in_flight.recv(4096)
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"invalid_grant" in answer or b"Content-Length" in answer
    assert tsidp.process.popen.wait(timeout=30) == 0
    logs = tsidp.process.logs()
    assert "shutting down" in logs and "in_flight=1" in logs, logs

"""Grant-state durability under faults: a full disk, and SIGKILL at random moments.

tsidp keeps refresh-token families and access tokens (as SHA-256 digests) in its state directory:
bucket files ``tsidp-grants-NN.json`` and a journal of small entries
``tsidp-grants-log-<seq>.json`` that is compacted into the buckets from time to time (see
docs/configuration.md). A write that fails answers 503 ``temporarily_unavailable`` and must leave
the in-memory state as it is on disk. After a fault and a restart, for every refresh family a
relying party holds:

1. the refresh token whose response was received in full (the *confirmed* token) works exactly
   once more: it refreshes (200), and presenting it a second time fails with ``invalid_grant``;
2. no rotated (already used) or revoked (RFC 7009 ``/revoke``) refresh token works;
3. no confirmed login is lost: its newest access token still works at userinfo, and its refresh
   token refreshes;

and every state file parses as JSON.

``test_disk_full_keeps_grant_state`` puts the state directory on an 8 MiB tmpfs and fills it with a
ballast file three times. Twice, when the journal holds 63 entries, the ballast leaves room for
exactly one more: the 64th entry is stored, and the compaction due then fails for lack of space,
as does every grant write after it until the ballast is removed. (The test sets
TSIDP_GRANT_JOURNAL_ENTRIES=64, so a tsidp with that setting compacts right after the 64th entry;
one without it compacts every 64 entries, as the 65th grant write: the reported bug.) Once in
between, the disk is full for an ordinary journal write. Every token request during a fault must
answer 503, its refresh token must still work once space is back, and after a restart the three
properties must hold. Mounting needs root and permission to mount (CI has both); without them the
test skips, or fails when TSIDP_REQUIRE_INTEROP=1.

``test_sigkill_loop_keeps_grant_state`` starts tsidp on one state directory again and again; each
time a few threads log in, refresh, revoke and create, rename and delete clients concurrently
until tsidp is killed with SIGKILL at a random moment (TSIDP_GRANT_JOURNAL_ENTRIES=16, so
compactions are frequent and a kill can land in one). After every restart the three properties
are checked for every answer received in full before the kill, and the clients API must show
every confirmed client change. A request in flight at the kill has an unknown outcome: its old
refresh token may work or not (it works at most once; the new one was never seen).

Environment:
  TSIDP_KILL_LOOP_ROUNDS  kills in the SIGKILL loop (default 8, well under a minute; e.g. 200 for
                          a long run, several minutes)
  TSIDP_KILL_LOOP_SEED    seed of the loop's random choices (default: a new one each run; failure
                          messages name it, so a failing run can be repeated)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import pytest
import requests

COMPACTION_EVERY = 64  # journal entries before a grant write compacts them (docs/configuration.md)
TMPFS_SIZE = 8 * 1024 * 1024
PAGE = 4096  # tmpfs allocates whole pages
BALLAST = "ballast.bin"
SCOPE = "openid email"

KILL_ROUNDS = int(os.environ.get("TSIDP_KILL_LOOP_ROUNDS", "8"))
KILL_WORKERS = 3
OPS_PER_WORKER_ROUND = 80  # bound on one worker's requests between two kills
FAMILIES_PER_WORKER = 5  # live families a worker keeps before it stops logging in
KILL_LOOP_JOURNAL = 16  # journal entries between compactions in the SIGKILL loop
WORKER_WAIT = 60.0  # seconds to wait for the workers to reach the random kill point


# ---------------------------------------------------------------------------
# What the relying party holds
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Family:
    """One login's refresh-token family, as the relying party knows it."""

    name: str
    token: str  # the confirmed refresh token: the newest one received in full
    access_token: str  # the newest confirmed access token
    rotated: list = dataclasses.field(default_factory=list)  # refresh tokens already used, oldest first
    revoked: bool = False  # /revoke answered 200
    in_flight: Optional[str] = None  # "refresh" or "revoke" sent, no answer received (kill loop)


def answer(response: requests.Response) -> str:
    """Status and OAuth error of a response, for messages (never a token)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} (no JSON body)"
    if isinstance(body, dict) and "error" in body:
        return f"{response.status_code} {body.get('error')}: {body.get('error_description', '')}"
    return f"{response.status_code}"


def oauth_error(response: requests.Response) -> Optional[str]:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def is_refused(response: requests.Response) -> bool:
    return response.status_code == 400 and oauth_error(response) == "invalid_grant"


def tokens_of(response: requests.Response, what: str) -> dict:
    """The token response of a request that must succeed."""
    assert response.status_code == 200, f"{what}: expected 200, got {answer(response)}"
    body = response.json()
    assert isinstance(body.get("refresh_token"), str) and isinstance(body.get("access_token"), str), (
        f"{what}: the token response lacks a refresh or access token (members {sorted(body)})"
    )
    return body


def expect_unavailable(response: requests.Response, what: str) -> None:
    assert response.status_code == 503 and oauth_error(response) == "temporarily_unavailable", (
        f"{what} with the state directory full: expected 503 temporarily_unavailable, got {answer(response)}"
    )
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers


class RelyingParty:
    """One registered confidential client and the requests it makes (client_secret_basic)."""

    def __init__(self, op, client, browser):
        self.op = op
        self.client = client
        self.browser = browser

    def start_login(self) -> tuple:
        """The authorization request as alice; returns (params, code) without redeeming it."""
        params = self.op.authorization_params(self.client, scope=SCOPE)
        callback = self.op.expect_code(self.op.authorize(params), params["redirect_uri"], params["state"])
        return params, callback["code"]

    def redeem(self, params: dict, code: str) -> requests.Response:
        return self.op.redeem(self.client, code, params["redirect_uri"])

    def login(self, name: str) -> Family:
        params, code = self.start_login()
        body = tokens_of(self.redeem(params, code), f"login {name}")
        return Family(name, body["refresh_token"], body["access_token"])

    def refresh(self, token: str) -> requests.Response:
        return self.op.refresh(self.client, token)

    def rotate(self, family: Family) -> None:
        """A refresh that must succeed; the family moves on to the new tokens."""
        body = tokens_of(self.refresh(family.token), f"refresh of {family.name}")
        family.rotated.append(family.token)
        family.token, family.access_token = body["refresh_token"], body["access_token"]

    def revoke(self, token: str) -> requests.Response:
        pair = f"{quote(self.client.client_id, safe='')}:{quote(self.client.client_secret, safe='')}"
        headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode(), "Accept": "application/json"}
        return self.browser().post(
            self.op.metadata["revocation_endpoint"],
            data={"token": token, "token_type_hint": "refresh_token"},
            headers=headers,
        )

    def userinfo(self, access_token: str) -> requests.Response:
        return self.op.userinfo(access_token)


# ---------------------------------------------------------------------------
# The checks made after a restart
# ---------------------------------------------------------------------------


def state_file_problems(state_dir: Path) -> list:
    """Every state file must parse as JSON (temporary files, dot-named, are not state)."""
    problems = []
    for path in sorted(state_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(".json") or not path.is_file():
            continue
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:
            problems.append(f"{path.name} does not parse as JSON ({exc}; {path.stat().st_size} bytes)")
    return problems


def login_kept(rp: RelyingParty, family: Family) -> list:
    """Property 3 without using anything up: the newest access token still works at userinfo."""
    response = rp.userinfo(family.access_token)
    if response.status_code != 200:
        return [f"{family.name}: the newest confirmed access token is refused at userinfo ({response.status_code})"]
    return []


def works_exactly_once(rp: RelyingParty, family: Family) -> list:
    """Property 1: the confirmed refresh token refreshes once, and a second time it is refused."""
    first = rp.refresh(family.token)
    if first.status_code != 200:
        return [f"{family.name}: the confirmed refresh token is refused: {answer(first)}"]
    second = rp.refresh(family.token)
    if not is_refused(second):
        return [f"{family.name}: the confirmed refresh token works a second time: {answer(second)}"]
    return []


def all_refused(rp: RelyingParty, family: Family, tokens: list, kind: str) -> list:
    """Property 2: each of ``tokens`` (newest first) is refused with invalid_grant."""
    problems = []
    for age, token in enumerate(tokens):
        response = rp.refresh(token)
        if not is_refused(response):
            problems.append(f"{family.name}: a {kind} refresh token ({age + 1} of {len(tokens)}, newest first) "
                            f"is not refused: {answer(response)}")
    return problems


# ---------------------------------------------------------------------------
# A small filesystem that can be filled up
# ---------------------------------------------------------------------------


def journal(state_dir: Path) -> list:
    """The journal entries on disk, oldest first."""
    return sorted(state_dir.glob("tsidp-grants-log-*.json"))


class SmallFilesystem:
    """A tmpfs of TMPFS_SIZE bytes mounted on the state directory."""

    def __init__(self, mountpoint: Path):
        self.mountpoint = mountpoint

    def free_bytes(self) -> int:
        stat = os.statvfs(self.mountpoint)
        return stat.f_bavail * stat.f_frsize

    @contextlib.contextmanager
    def full(self, room: int = 0):
        """Fills the filesystem with a ballast file, leaving ``room`` bytes (rounded up to whole
        pages) free, and removes the ballast on exit. With no room, every write fails with ENOSPC."""
        ballast = self.mountpoint / BALLAST
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            chunk = bytes(64 * 1024)
            for _ in range(TMPFS_SIZE // PAGE + 16):  # each write takes at least a page, or fails
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            else:
                pytest.fail(f"{self.mountpoint} did not fill up with {TMPFS_SIZE} bytes of ballast", pytrace=False)
            pages = -(-room // PAGE)
            if pages:
                used = -(-os.fstat(fd).st_size // PAGE)
                os.ftruncate(fd, max(0, used - pages) * PAGE)
        finally:
            os.close(fd)
        assert self.free_bytes() == pages * PAGE, (
            f"{self.mountpoint}: {self.free_bytes()} bytes free, expected exactly {pages} pages of {PAGE} bytes"
        )
        if not pages:
            # Even one byte in a new file must now fail, as every write of tsidp's will.
            probe = self.mountpoint / ".ballast-probe"
            try:
                probe_fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(probe_fd, b"x")
                finally:
                    os.close(probe_fd)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, f"writing to the full tmpfs failed with {exc}, not ENOSPC"
            else:
                pytest.fail(f"{self.mountpoint} still takes writes after the ballast filled it", pytrace=False)
            finally:
                probe.unlink(missing_ok=True)
        try:
            yield
        finally:
            ballast.unlink()


@pytest.fixture
def small_state_filesystem(scratch_dirs, missing_tool_policy):
    """A work dir whose ``state`` subdirectory is a fresh TMPFS_SIZE tmpfs; unmounted afterwards."""
    if os.geteuid() != 0:
        missing_tool_policy("the disk-full test mounts a small tmpfs, which needs root")
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not mount or not umount:
        missing_tool_policy("the disk-full test needs mount(8) and umount(8) (util-linux)")
    workdir = scratch_dirs("disk-full")
    mountpoint = workdir / "state"
    mountpoint.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tsidp-e2e-state", str(mountpoint)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        missing_tool_policy(f"cannot mount a tmpfs on {mountpoint} ({result.stderr.strip() or result.returncode}); "
                      "the disk-full test needs permission to mount (root with CAP_SYS_ADMIN)")
    try:
        yield workdir, SmallFilesystem(mountpoint)
    finally:
        done = subprocess.run([umount, str(mountpoint)], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        if done.returncode != 0:  # still busy: detach it now, the kernel frees it when unused
            subprocess.run([umount, "--lazy", str(mountpoint)], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# 1. Disk full
# ---------------------------------------------------------------------------


def test_disk_full_keeps_grant_state(oidc_op_factory, restart_tsidp, make_browser, small_state_filesystem,
                                     monkeypatch):
    workdir, disk = small_state_filesystem
    # Compaction after 64 journal entries (a tsidp without the setting always compacts so).
    monkeypatch.setenv("TSIDP_GRANT_JOURNAL_ENTRIES", str(COMPACTION_EVERY))
    op = oidc_op_factory(workdir=workdir)
    running = [op.tsidp]
    try:
        _disk_full_scenario(op, restart_tsidp, make_browser, disk, running)
    finally:
        running[-1].process.stop()  # before the tmpfs is unmounted


def _disk_full_scenario(op, restart_tsidp, make_browser, disk: SmallFilesystem, running: list) -> None:
    state_dir = op.tsidp.state_dir
    rp = RelyingParty(op, op.static_client("disk-full-rp"), make_browser)
    writes = 0  # grant writes that succeeded: one per login, refresh and revocation (all sequential)

    def fill_journal_but_one(families: list) -> Family:
        """Refreshes ``families`` in turn until the journal holds COMPACTION_EVERY - 1 entries;
        returns the family refreshed last."""
        nonlocal writes
        turn = itertools.cycle(families)
        last = None
        for _ in range(2 * COMPACTION_EVERY + 8):
            if len(journal(state_dir)) == COMPACTION_EVERY - 1 and last is not None:
                return last
            last = next(turn)
            rp.rotate(last)
            writes += 1
        pytest.fail(f"the journal never held exactly {COMPACTION_EVERY - 1} entries (it holds "
                    f"{len(journal(state_dir))} after {writes} grant writes): the compaction rule of "
                    "docs/configuration.md no longer holds and this test needs updating", pytrace=False)

    @contextlib.contextmanager
    def compaction_fails(families: list):
        """Fills the journal to COMPACTION_EVERY entries with the disk so full that only the last
        entry fits: the compaction due next (the following write, or right after this one) fails,
        and so does every grant write in the block."""
        nonlocal writes
        last = fill_journal_but_one(families)
        room = journal(state_dir)[-1].stat().st_size + 2048  # one more refresh of ``last`` fits
        with disk.full(room=room):
            rp.rotate(last)
            writes += 1
            yield

    # Quiet families are used before the first compaction and then left alone until the restart;
    # busy ones carry the writes that fill the journal; the others each play one part below.
    quiet = [rp.login(f"quiet-{i}") for i in range(4)]
    busy = [rp.login(f"busy-{i}") for i in range(4)]
    revoked = [rp.login(f"revoked-after-episode-1-{i}") for i in range(2)]
    retried = rp.login("retried-in-episode-1")
    journal_fail = rp.login("failed-journal-write")
    compaction_retry = rp.login("retried-in-episode-3")
    held = rp.login("held-since-episode-3")
    writes += 14
    for family in quiet:
        rp.rotate(family)  # each also has a refresh stored before the first compaction
        writes += 1
    everyone = [*quiet, *busy, *revoked, retried, journal_fail, compaction_retry, held]

    # Episode 1, the reported case: the first compaction (the 65th grant write) fails for lack of
    # space, and so does every write after it until space returns.
    with compaction_fails(busy):
        expect_unavailable(rp.refresh(retried.token), f"refresh of {retried.name} (after {writes} grant writes)")
        # The failed write changed nothing in memory either: the token is still current, not used.
        expect_unavailable(rp.refresh(retried.token), f"second refresh of {retried.name} with the same token")
        params, code = rp.start_login()
        expect_unavailable(rp.redeem(params, code), "code redemption")
        for family in revoked:
            expect_unavailable(rp.refresh(family.token), f"refresh of {family.name}")
    # Space is back: the tokens presented in the 503 requests still work, and the compaction
    # that failed is made.
    for family in [*revoked, retried]:
        rp.rotate(family)
        writes += 1
    # RFC 7009 revocation of whole families, while writes succeed.
    for family in revoked:
        revocation = rp.revoke(family.token)
        assert revocation.status_code == 200, f"/revoke of {family.name}: {answer(revocation)}"
        family.revoked = True
        writes += 1
        refused = rp.refresh(family.token)
        assert is_refused(refused), f"{family.name} still refreshes right after /revoke: {answer(refused)}"

    # Episode 2: an ordinary journal write fails.
    with disk.full():
        expect_unavailable(rp.refresh(journal_fail.token), f"refresh of {journal_fail.name}")
    rp.rotate(journal_fail)
    writes += 1

    # Episode 3: the next compaction fails as well.
    with compaction_fails(busy):
        expect_unavailable(rp.refresh(compaction_retry.token), f"refresh of {compaction_retry.name}")
        expect_unavailable(rp.refresh(held.token), f"refresh of {held.name}")
    rp.rotate(compaction_retry)
    writes += 1
    for family in busy[:2]:  # a few more successful writes after the fault
        rp.rotate(family)
        writes += 1

    before_restart = state_file_problems(state_dir)
    restarted = type(op)(restart_tsidp(op.tsidp))
    running.append(restarted.tsidp)
    rp.op = restarted

    problems = before_restart + state_file_problems(state_dir)
    leftovers = sorted(p.name for p in state_dir.iterdir() if ".tmp-" in p.name)
    if leftovers:
        problems.append(f"failed writes left temporary files behind: {leftovers}")
    for family in everyone:
        if not family.revoked:
            problems += login_kept(rp, family)
    for family in revoked:
        problems += all_refused(rp, family, [family.token, *reversed(family.rotated)], "revoked")
    for family in busy[:2]:  # rotated tokens; presenting one ends the family, so these are not used again
        problems += all_refused(rp, family, list(reversed(family.rotated)), "rotated")
    for family in [*quiet, *busy[2:], retried, journal_fail, compaction_retry, held]:
        problems += works_exactly_once(rp, family)
    assert not problems, (
        f"grant state after three disk-full episodes ({writes} grant writes) and a restart:\n  "
        + "\n  ".join(problems)
    )
    rp.login("after-restart")  # and the store still takes new logins


# ---------------------------------------------------------------------------
# 2. SIGKILL loop
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ScratchClient:
    """A client a worker created with /clients/new and edits."""

    client_id: str
    redirect_uri: str
    name: str  # the confirmed name
    pending_name: Optional[str] = None  # a rename in flight at the kill
    deleted: bool = False
    delete_in_flight: bool = False


class WorkerState:
    """What one worker's relying party holds, kept across rounds."""

    def __init__(self, index: int, seed: int):
        self.index = index
        self.rng = random.Random(seed)
        self.families: list = []
        self.clients: list = []
        self.logins = 0
        self.client_names = 0


class Worker(threading.Thread):
    """Logs in, refreshes, revokes and edits clients until tsidp goes away or the round's bound."""

    def __init__(self, state: WorkerState, rp: RelyingParty, counter: "Counter", stop: threading.Event):
        super().__init__(name=f"kill-loop-worker-{state.index}", daemon=True)
        self.state, self.rp, self.counter, self.stop = state, rp, counter, stop
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for _ in range(OPS_PER_WORKER_ROUND):
                if self.stop.is_set() or not self.step():
                    return
                self.counter.add()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def step(self) -> bool:
        """One request (two for a login); False once tsidp stopped answering."""
        state, rng = self.state, self.state.rng
        live = [f for f in state.families if not f.revoked and f.in_flight is None]
        action = rng.choices(
            ["login", "refresh", "revoke", "client"],
            weights=[3 if len(live) < FAMILIES_PER_WORKER else 0, 6 if live else 0, 1 if len(live) > 2 else 0, 2],
        )[0]
        try:
            if action == "login":
                state.logins += 1
                params, code = self.rp.start_login()
                response = self.rp.redeem(params, code)
                body = tokens_of(response, "code redemption")
                state.families.append(
                    Family(f"w{state.index}-login-{state.logins}", body["refresh_token"], body["access_token"]))
            elif action == "refresh":
                family = rng.choice(live)
                family.in_flight = "refresh"
                response = self.rp.refresh(family.token)
                family.in_flight = None
                body = tokens_of(response, f"refresh of {family.name}")
                family.rotated.append(family.token)
                family.token, family.access_token = body["refresh_token"], body["access_token"]
            elif action == "revoke":
                family = rng.choice(live)
                family.in_flight = "revoke"
                response = self.rp.revoke(family.token)
                family.in_flight = None
                assert response.status_code == 200, f"/revoke of {family.name}: {answer(response)}"
                family.revoked = True
            else:
                self.edit_client()
        except (requests.RequestException, ValueError):  # killed mid-request: the outcome is unknown
            return False
        return True

    def edit_client(self) -> None:
        state, rng, op = self.state, self.state.rng, self.rp.op
        live = [c for c in state.clients if not c.deleted and not c.delete_in_flight and c.pending_name is None]
        browser = self.rp.browser()
        json_accept = {"Accept": "application/json"}
        if not live or (len(live) < 4 and rng.random() < 0.4):
            choice = "create"
        else:
            choice = rng.choice(["rename", "rename", "delete"] if len(live) < 4 else ["rename", "delete"])
        if choice == "create":
            state.client_names += 1
            name = f"scratch-w{state.index}-{state.client_names}"
            uri = f"http://127.0.0.1:9/cb/{name}"
            response = op.admin_post("/clients/new", {"name": name, "redirect_uri": uri})
            assert response.status_code == 200, f"POST /clients/new: {answer(response)}"
            state.clients.append(ScratchClient(response.json()["client_id"], uri, name))
        elif choice == "rename":
            client = rng.choice(live)
            state.client_names += 1
            client.pending_name = f"scratch-w{state.index}-{state.client_names}"
            response = browser.put(op.url(f"/clients/{client.client_id}"),
                                   data={"name": client.pending_name, "redirect_uri": client.redirect_uri},
                                   headers=json_accept)
            assert response.status_code == 200, f"PUT /clients/{client.client_id}: {answer(response)}"
            client.name, client.pending_name = client.pending_name, None
        else:
            client = rng.choice(live)
            client.delete_in_flight = True
            response = browser.delete(op.url(f"/clients/{client.client_id}"), headers=json_accept)
            assert response.status_code == 204, f"DELETE /clients/{client.client_id}: {answer(response)}"
            client.deleted, client.delete_in_flight = True, False


class Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def verify_after_kill(rp: RelyingParty, state: WorkerState) -> list:
    """The three properties for one worker's families, and its confirmed client changes; families
    whose fate is settled are dropped, the others go on with their new token."""
    problems, kept, rng = [], [], state.rng
    for family in state.families:
        if family.revoked:
            problems += all_refused(rp, family, [family.token, *reversed(family.rotated)], "revoked")
            continue
        if family.in_flight == "revoke":  # revoked or not: either answer, and then it is settled
            response = rp.refresh(family.token)
            if response.status_code != 200 and not is_refused(response):
                problems.append(f"{family.name} (revocation in flight at the kill): refresh -> {answer(response)}")
            continue
        problems += login_kept(rp, family)
        if family.in_flight == "refresh":
            # The lost rotation may or may not have been stored: the old token works (once), or it
            # is refused (and that reuse ends the family).
            response = rp.refresh(family.token)
            if response.status_code == 200:
                body = response.json()
                family.rotated.append(family.token)
                family.token, family.access_token = body["refresh_token"], body["access_token"]
                family.in_flight = None
                kept.append(family)
            elif not is_refused(response):
                problems.append(f"{family.name} (refresh in flight at the kill): old token -> {answer(response)}")
            continue
        fate = rng.choices(["continue", "finish", "probe"], weights=[5, 2, 2 if family.rotated else 0])[0]
        if fate == "finish":
            problems += works_exactly_once(rp, family)
        elif fate == "probe":
            problems += all_refused(rp, family, list(reversed(family.rotated)), "rotated")
        else:
            response = rp.refresh(family.token)
            if response.status_code != 200:
                problems.append(f"{family.name}: the confirmed refresh token is refused: {answer(response)}")
                continue
            body = response.json()
            family.rotated.append(family.token)
            family.token, family.access_token = body["refresh_token"], body["access_token"]
            kept.append(family)
    state.families = kept

    browser = rp.browser()
    clients = []
    for client in state.clients:
        response = browser.get(rp.op.url(f"/clients/{client.client_id}"), headers={"Accept": "application/json"})
        if client.deleted:
            if response.status_code != 404:
                problems.append(f"client {client.name}: deleted (confirmed), but GET answers {response.status_code}")
            continue
        if response.status_code == 404 and client.delete_in_flight:
            continue
        if response.status_code != 200:
            problems.append(f"client {client.name}: created (confirmed), but GET answers {response.status_code}")
            continue
        name = response.json().get("client_name")
        allowed = {client.name, client.pending_name} - {None}
        if name not in allowed:
            problems.append(f"client {client.client_id}: name {name!r} after the restart, expected one of {sorted(allowed)}")
            continue
        client.name, client.pending_name, client.delete_in_flight = name, None, False
        clients.append(client)
    state.clients = clients
    return problems


def test_sigkill_loop_keeps_grant_state(oidc_op_factory, restart_tsidp, make_browser, bounded_wait, monkeypatch):
    monkeypatch.setenv("TSIDP_GRANT_JOURNAL_ENTRIES", str(KILL_LOOP_JOURNAL))
    seed = int(os.environ.get("TSIDP_KILL_LOOP_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    op = oidc_op_factory()
    client = op.static_client("kill-loop-rp")
    workers = [WorkerState(i, rng.randrange(2**32)) for i in range(KILL_WORKERS)]
    requests_made = 0

    for round_number in range(1, KILL_ROUNDS + 1):
        where = f"kill {round_number} of {KILL_ROUNDS} (TSIDP_KILL_LOOP_SEED={seed})"
        rp = RelyingParty(op, client, make_browser)
        counter, stop = Counter(), threading.Event()
        threads = [Worker(state, rp, counter, stop) for state in workers]
        for thread in threads:
            thread.start()
        target = rng.randint(4, 40)

        def reached() -> bool:
            return counter.value >= target or not any(t.is_alive() for t in threads)

        if not bounded_wait(reached, WORKER_WAIT, interval=0.01):
            stop.set()
            pytest.fail(f"{where}: the workers made {counter.value} of {target} requests", pytrace=False)
        time.sleep(rng.uniform(0, 0.03))  # lands the kill at an arbitrary point of the requests in flight
        status = op.tsidp.process.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{where}: {thread.name} did not stop after the kill"
        requests_made += counter.value
        for thread in threads:
            if thread.error is not None:
                raise AssertionError(f"{where}: {thread.name} failed before the kill: {thread.error}\n"
                                     f"{op.tsidp.process.logs()}") from thread.error
        assert status == -signal.SIGKILL, f"{where}: tsidp had exited on its own (status {status})\n{op.tsidp.process.logs()}"

        problems = state_file_problems(op.tsidp.state_dir)
        op = type(op)(restart_tsidp(op.tsidp, kill=True))  # must start on whatever the kill left
        rp.op = op
        for state in workers:
            problems += verify_after_kill(rp, state)
        assert not problems, f"{where}, after {requests_made} requests:\n  " + "\n  ".join(problems)

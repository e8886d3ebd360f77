"""A refresh asks the tailnet again who owns the device.

``tsidp --dev`` reloads its ``--dev-identities`` file on SIGHUP, standing in for a tailnet whose
profiles, grants and devices change while tsidp runs. Profile changes must reach the next tokens,
and a device that left the tailnet must end the grant with ``invalid_grant``.
"""

from __future__ import annotations

import json
import signal
import time


def reload_identities(op, identities: list) -> None:
    path = op.tsidp.state_dir.parent / "dev-identities.json"
    path.write_text(json.dumps(identities, indent=2))
    op.tsidp.process.popen.send_signal(signal.SIGHUP)


def test_refresh_sees_profile_changes_and_removed_devices(oidc_op_factory, conformance_identities):
    op = oidc_op_factory()
    client = op.static_client("reidentify")
    login = op.login(client, source="127.0.0.2", scope="openid profile")
    assert login.claims["sub"] == "userid:2002"
    assert login.claims["name"] == "Bob Example"

    renamed = json.loads(json.dumps(conformance_identities))
    renamed[1]["UserProfile"]["DisplayName"] = "Bob Renamed"
    reload_identities(op, renamed)

    # The reload is asynchronous: poll until the new profile shows up (bounded).
    refresh_token = login.token["refresh_token"]
    name = None
    for _ in range(50):
        token = op.check_token_response(op.refresh(client, refresh_token))
        refresh_token = token["refresh_token"]
        _, claims = op.verify_id_token(token["id_token"], client, access_token=token["access_token"])
        name = claims.get("name")
        if name == "Bob Renamed":
            break
        time.sleep(0.1)
    assert name == "Bob Renamed"

    gone = json.loads(json.dumps(renamed))
    gone[1] = None
    reload_identities(op, gone)
    for _ in range(50):
        response = op.refresh(client, refresh_token)
        if response.status_code != 200:
            break
        refresh_token = response.json()["refresh_token"]
        time.sleep(0.1)
    op.check_token_error(response, "invalid_grant")
    # The grant is over for good, even once the device is back.
    reload_identities(op, conformance_identities)
    time.sleep(0.3)
    op.check_token_error(op.refresh(client, refresh_token), "invalid_grant")

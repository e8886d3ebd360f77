"""OpenID Foundation "Basic OP" session modules (prompt, max_age, id_token_hint) against the real tsidp.

tsidp has no login page: a browser is "logged in" when it connects from a
device the tailnet knows (127.0.0.1 = alice here) and "not logged in" when it
connects from an address the tailnet does not know (127.0.0.3, a ``null``
entry of the identities file).

Several modules compare ``auth_time`` between two authorizations, and
``auth_time`` has a resolution of one second.  Where the outcome depends on
whether the second authorization falls in a later second than the first, the
test waits for the next second (at most about one second) before sending it,
as the real suite's second request practically always does (it comes after a
token request, a userinfo call and a browser round trip).  Nothing asserts on
how long anything took.
"""

from __future__ import annotations

import time

import pytest

ALICE_SUB = "userid:2001"
LOGIN_REQUIRED_STYLE = {"login_required", "interaction_required", "account_selection_required", "consent_required"}


@pytest.fixture(scope="module")
def client(oidc_op):
    return oidc_op.static_client("conformance-prompts")


def first_authorization(op, client, **overrides):
    """The first leg of the two-authorization modules: a full flow plus the userinfo call."""
    first = op.login(client, **overrides)
    op.check_userinfo(op.userinfo(first.token["access_token"]), first.claims["sub"])
    assert isinstance(first.claims.get("auth_time"), int), first.claims
    return first


def assert_same_authentication(first, second):
    """AbstractOIDCCSameAuthTwiceServerTest: same sub, and the same auth_time when present
    (CheckIdTokenAuthTimeClaimsSameIfPresent): no new authentication took place."""
    assert second.claims["sub"] == first.claims["sub"], (first.claims["sub"], second.claims["sub"])
    if "auth_time" in first.claims and "auth_time" in second.claims:
        assert second.claims["auth_time"] == first.claims["auth_time"], (
            "the second authorization did not re-authenticate the user, so its ID token must carry the "
            f"auth_time of the first: first auth_time={first.claims['auth_time']}, "
            f"second auth_time={second.claims['auth_time']}; second request parameters: "
            f"{sorted(k for k in second.params if k not in ('state', 'nonce'))}"
        )


def test_oidcc_prompt_login(oidc_op, client):
    """A second authorization with prompt=login re-authenticates: it succeeds and its auth_time
    differs from (is later than) the first (CheckIdTokenAuthTimeClaimsDifferIfPresent)."""
    first = first_authorization(oidc_op, client)
    oidc_op.wait_for_next_second(first.claims["auth_time"])
    requested_at = int(time.time())
    second = oidc_op.login(client, prompt="login")
    assert second.claims["sub"] == first.claims["sub"]
    assert isinstance(second.claims.get("auth_time"), int), second.claims
    assert second.claims["auth_time"] != first.claims["auth_time"], (first.claims, second.claims)
    assert second.claims["auth_time"] > first.claims["auth_time"], (first.claims, second.claims)
    assert second.claims["auth_time"] >= requested_at, "prompt=login must authenticate anew, not reuse an older one"


def test_oidcc_prompt_none_logged_in(oidc_op, client):
    """prompt=none while logged in: a code comes back without interaction; sub and auth_time
    are the same as in the first ID token."""
    first = first_authorization(oidc_op, client)
    oidc_op.wait_for_next_second(first.claims["auth_time"])
    second = oidc_op.login(client, prompt="none")
    assert second.claims["sub"] == ALICE_SUB
    assert_same_authentication(first, second)


def test_oidcc_prompt_none_not_logged_in(oidc_op, client):
    """prompt=none with no session (a device the tailnet does not know): a redirect carrying a
    login_required-style error, the state and iss, and no code."""
    params = oidc_op.authorization_params(client, prompt="none")
    answer = oidc_op.authorize(params, source="127.0.0.3")
    query = oidc_op.expect_error(answer, client.redirect_uri, LOGIN_REQUIRED_STYLE, params["state"])
    assert query["error"] == "login_required", query  # what tsidp documents for an unknown device
    # Without prompt=none the unknown device is refused as well, never logged in as someone.
    params = oidc_op.authorization_params(client)
    answer = oidc_op.authorize(params, source="127.0.0.3")
    oidc_op.expect_error(answer, client.redirect_uri, "access_denied", params["state"])


def test_oidcc_max_age_1(oidc_op, client):
    """Two seconds after a first login, max_age=1 forces a new authentication: auth_time is
    present, later than the first, and no older than max_age when the request was made."""
    first = first_authorization(oidc_op, client)
    oidc_op.wait_for_next_second(first.claims["auth_time"] + 1)  # the suite waits 2 s here
    requested_at = int(time.time())
    second = oidc_op.login(client, max_age="1")
    auth_time = second.claims.get("auth_time")
    assert isinstance(auth_time, int), f"max_age was sent, so auth_time is required: {second.claims}"
    assert auth_time > first.claims["auth_time"], (first.claims, second.claims)  # CheckSecondIdTokenAuthTimeIsLaterIfPresent
    assert auth_time >= requested_at - 1, f"authentication older than max_age=1: auth_time={auth_time}, request at {requested_at}"
    assert abs(int(time.time()) - auth_time) <= 60, "auth_time is not recent"  # CheckIdTokenAuthTimeIsRecentIfPresent
    assert second.claims["sub"] == first.claims["sub"]


def test_oidcc_max_age_10000(oidc_op, client):
    """max_age=15000 then max_age=10000: no re-login, auth_time present in both and the same,
    sub the same."""
    first = first_authorization(oidc_op, client, max_age="15000")
    oidc_op.wait_for_next_second(first.claims["auth_time"])
    second = oidc_op.login(client, max_age="10000")
    assert isinstance(second.claims.get("auth_time"), int), f"max_age was sent, so auth_time is required: {second.claims}"
    assert_same_authentication(first, second)


def test_oidcc_id_token_hint(oidc_op, client):
    """prompt=none with the first ID token as id_token_hint succeeds silently; sub and auth_time
    as in the first ID token."""
    first = first_authorization(oidc_op, client)
    oidc_op.wait_for_next_second(first.claims["auth_time"])
    second = oidc_op.login(client, prompt="none", id_token_hint=first.token["id_token"])
    assert second.claims["sub"] == ALICE_SUB
    assert_same_authentication(first, second)


def test_id_token_hint_for_another_user_with_prompt_none(oidc_op, client):
    """Not a suite module: prompt=none with bob's ID token as hint, sent from alice's device,
    must not log alice in silently (OIDC Core 3.1.2.2: the hint names a different user)."""
    bob = oidc_op.login(client, source="127.0.0.2")
    params = oidc_op.authorization_params(client, prompt="none", id_token_hint=bob.token["id_token"])
    answer = oidc_op.authorize(params, source="127.0.0.1")
    oidc_op.expect_error(answer, client.redirect_uri, LOGIN_REQUIRED_STYLE, params["state"])


def test_tagged_device_is_refused(oidc_op, client):
    """Not a suite module: a tagged device has no user identity, so it is refused with
    access_denied (state and iss echoed, no code), with or without prompt=none."""
    params = oidc_op.authorization_params(client)
    answer = oidc_op.authorize(params, source="127.0.0.4")
    oidc_op.expect_error(answer, client.redirect_uri, "access_denied", params["state"])
    params = oidc_op.authorization_params(client, prompt="none")
    answer = oidc_op.authorize(params, source="127.0.0.4")
    oidc_op.expect_error(answer, client.redirect_uri, {"access_denied", "login_required"}, params["state"])

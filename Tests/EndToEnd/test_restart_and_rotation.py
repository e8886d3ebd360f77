"""What relying parties hold across a tsidp restart and across a signing-key rotation.

Restart: tsidp is stopped with SIGTERM and started again on the same ``--dir`` and
port; signing keys, clients, refresh tokens and access tokens must survive, so
nothing a relying party holds breaks.

Rotation: ``POST /keys/rotate`` (admin) promotes the already-published next key
to signing key and keeps the previous one published, so tokens signed before
the rotation still verify.
"""

from __future__ import annotations

ALICE_SUB = "userid:2001"


def test_restart_keeps_keys_clients_and_tokens(oidc_op_factory, restart_tsidp):
    op = oidc_op_factory()
    static = op.static_client("restart-static")
    dynamic = op.dynamic_client("restart-dynamic", auth_method="client_secret_post")
    login = op.login(static, scope="openid email profile")
    other = op.login(dynamic, scope="openid email")
    jwks_before = op.jwks()
    issuer, port = op.issuer, op.tsidp.port

    restarted = type(op)(restart_tsidp(op.tsidp))
    assert restarted.tsidp.port == port and restarted.issuer == issuer
    assert restarted.tsidp.process.popen.pid != op.tsidp.process.popen.pid
    assert restarted.metadata["issuer"] == issuer

    # The old ID token still verifies against the new process's JWKS (same keys, same kids).
    jwks_after = restarted.jwks()
    assert {k["kid"] for k in jwks_after["keys"]} == {k["kid"] for k in jwks_before["keys"]}
    restarted.verify_id_token(login.token["id_token"], static, nonce=login.params["nonce"],
                              access_token=login.token["access_token"], jwks=jwks_after)

    # The access token still works at userinfo.
    info = restarted.check_userinfo(restarted.userinfo(login.token["access_token"]), ALICE_SUB)
    assert info.get("email") == "alice@example.com", info

    # The refresh token still works (the client and its secret survived too), and rotates.
    refreshed = restarted.check_token_response(restarted.refresh(static, login.token["refresh_token"]), expect_id_token=False)
    assert refreshed["refresh_token"] != login.token["refresh_token"]
    if "id_token" in refreshed:
        _, claims = restarted.verify_id_token(refreshed["id_token"], static, nonce=None,
                                              access_token=refreshed["access_token"], jwks=jwks_after)
        assert claims["sub"] == ALICE_SUB
        assert restarted.jwt_unverified(refreshed["id_token"])[0]["kid"] == login.header["kid"], "signing key changed"
    restarted.check_userinfo(restarted.userinfo(refreshed["access_token"]), ALICE_SUB)
    # The rotated-out refresh token stays dead after the restart.
    restarted.check_token_error(restarted.refresh(static, login.token["refresh_token"]), "invalid_grant")

    # The dynamically registered client (client_secret_post) survived as well.
    refreshed_other = restarted.check_token_response(restarted.refresh(dynamic, other.token["refresh_token"]), expect_id_token=False)
    restarted.check_userinfo(restarted.userinfo(refreshed_other["access_token"]), ALICE_SUB)

    # New logins with both clients work and are signed with the same key as before.
    again = restarted.login(static)
    assert again.header["kid"] == login.header["kid"], "tsidp signs with a new key after a restart"
    restarted.login(dynamic)


def test_key_rotation_keeps_old_tokens_verifiable(oidc_op_factory):
    op = oidc_op_factory()
    client = op.static_client("rotation")
    before = op.jwks()
    old = op.login(client, scope="openid email")
    old_kid = old.header["kid"]

    # Rotation is an admin operation: bob (no grant) is refused and nothing changes.
    refused = op.admin_post("/keys/rotate", source="127.0.0.2")
    assert refused.status_code in (401, 403), f"{refused.status_code}: {refused.text[:300]}"
    assert op.jwks() == before

    rotated = op.admin_post("/keys/rotate")
    assert rotated.status_code == 200, f"POST /keys/rotate -> {rotated.status_code}: {rotated.text[:500]}"
    after = op.jwks()
    assert rotated.json() == after
    op.check_jwks_document(after)

    # A token signed before the rotation still verifies against the published JWKS.
    op.verify_id_token(old.token["id_token"], client, nonce=old.params["nonce"],
                       access_token=old.token["access_token"], jwks=after)
    assert old_kid in {k["kid"] for k in after["keys"]}

    # New ID tokens carry the new kid and verify; that key was published before the rotation.
    new = op.login(client, scope="openid email")
    new_kid = new.header["kid"]
    assert new_kid != old_kid, "ID tokens after the rotation are still signed with the old key"
    assert new_kid in {k["kid"] for k in before["keys"]}, "the new signing key was not pre-published"
    op.verify_id_token(new.token["id_token"], client, nonce=new.params["nonce"],
                       access_token=new.token["access_token"], jwks=after)

    # A refresh of a pre-rotation grant is signed with the new key, too.
    refreshed = op.check_token_response(op.refresh(client, old.token["refresh_token"]), expect_id_token=False)
    if "id_token" in refreshed:
        header, _ = op.verify_id_token(refreshed["id_token"], client, nonce=None, jwks=after)
        assert header["kid"] == new_kid, (header, new_kid)
    op.check_userinfo(op.userinfo(old.token["access_token"]), ALICE_SUB)  # rotation revokes nothing

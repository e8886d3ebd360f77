"""The admin UI and the user's own page in a real browser (headless Chromium driven by Selenium).

An operator with the ``allow_admin_ui`` grant creates a client through the form, reads its secret
from the page, and a relying party (plain ``requests``) signs in with it; the operator then edits its
redirect URIs, regenerates its secret (the old one stops working at /token) and deletes it (its
refresh token stops working). A user without the grant sees the 403 page with the policy snippet; a
page of another site that auto-submits a form to tsidp changes nothing; and a user ends one of their
logins on ``/me``.

Needs Debian's ``chromium`` and ``chromium-driver`` and PyPI's ``selenium`` (``.ci/run`` installs
them); without them the tests skip, or fail under TSIDP_REQUIRE_INTEROP=1. Screenshots of the pages
go to ``docs/images/`` (the README shows them), or to ``TSIDP_SCREENSHOTS`` when that names a
directory.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from browser_support import LoopbackSite, is_stale, start_chrome
from conftest import browser_session

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT = 20  # seconds for a page to load after a click; generous for a loaded machine


@pytest.fixture
def chrome(peer_import, missing_tool_policy, scratch_dirs):
    driver = start_chrome(peer_import, missing_tool_policy, scratch_dirs)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chrome_without_javascript(peer_import, missing_tool_policy, scratch_dirs):
    driver = start_chrome(peer_import, missing_tool_policy, scratch_dirs, javascript=False)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site():
    other = LoopbackSite()
    try:
        yield other
    finally:
        other.close()


def screenshot(driver, name: str) -> None:
    """Saves the whole page, beyond the window's height, as ``<name>.png``."""
    target = Path(os.environ.get("TSIDP_SCREENSHOTS") or IMAGES)
    target.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 3000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    (target / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def submit(chrome, bounded_wait, selector: str) -> None:
    """Clicks the button at ``selector`` and waits until the next page has replaced this one."""
    from selenium.webdriver.common.by import By

    before = chrome.find_element(By.TAG_NAME, "html")
    chrome.find_element(By.CSS_SELECTOR, selector).click()
    assert bounded_wait(lambda: is_stale(before), WAIT), f"clicking {selector} did not load a page"
    assert bounded_wait(lambda: chrome.execute_script("return document.readyState") == "complete", WAIT)


def authorize_url(tsidp, client_id: str, redirect_uri: str) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid email profile",
            "state": "ui-state",
        }
    )
    return tsidp.url("/authorize") + "?" + query


def sign_in(chrome, bounded_wait, tsidp, client_id: str, redirect_uri: str) -> str:
    """The browser goes through /authorize to the relying party's callback; returns the code."""
    chrome.get(authorize_url(tsidp, client_id, redirect_uri))
    callback = urlsplit(redirect_uri).path
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == callback, WAIT), chrome.current_url
    answer = {k: v[0] for k, v in parse_qs(urlsplit(chrome.current_url).query).items()}
    assert answer.get("state") == "ui-state" and answer.get("code"), answer
    return answer["code"]


def token(tsidp, client_id: str, secret: str, **form) -> requests.Response:
    """The relying party's request to /token (client_secret_basic)."""
    return browser_session().post(tsidp.url("/token"), data=form, auth=(client_id, secret))


def test_operator_manages_a_client_in_the_browser(chrome, site, tsidp_factory, alice_and_bob, bounded_wait):
    from selenium.webdriver.common.by import By

    tsidp = tsidp_factory(identities=alice_and_bob)
    first_uri, second_uri = site.url("/cb"), site.url("/cb2")

    # 1. The empty list, then the form.
    chrome.get(tsidp.url("/"))
    assert chrome.find_element(By.TAG_NAME, "h1").text == "OIDC clients"
    assert chrome.find_element(By.ID, "no-clients")
    assert tsidp.issuer + "/.well-known/openid-configuration" in chrome.find_element(By.ID, "endpoints").text
    chrome.find_element(By.LINK_TEXT, "Add a client").click()
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == "/new", WAIT), chrome.current_url
    chrome.find_element(By.NAME, "name").send_keys("Grafana")
    chrome.find_element(By.NAME, "redirect_uri").send_keys(first_uri)
    screenshot(chrome, "admin-new-client")
    submit(chrome, bounded_wait, "button[type=submit].primary")

    # 2. The secret, shown once, as selectable text with a Copy button (the script ran).
    assert chrome.find_element(By.TAG_NAME, "h1").text == "Client created"
    client_id = chrome.find_element(By.ID, "client-id").text
    secret = chrome.find_element(By.ID, "client-secret").text
    assert len(client_id) == 32 and len(secret) == 64, (client_id, secret)
    assert chrome.find_element(By.CSS_SELECTOR, "button[data-copy-from=client-secret]").is_displayed()
    screenshot(chrome, "admin-client-secret")

    # 3. A relying party signs in with it.
    code = sign_in(chrome, bounded_wait, tsidp, client_id, first_uri)
    answer = token(tsidp, client_id, secret, grant_type="authorization_code", code=code, redirect_uri=first_uri)
    assert answer.status_code == 200, answer.text
    refresh_token = answer.json()["refresh_token"]
    assert answer.json()["id_token"]

    # 4. The list shows it; the edit page changes its redirect URIs.
    chrome.get(tsidp.url("/"))
    row = chrome.find_element(By.ID, "clients").text
    assert "Grafana" in row and client_id in row and first_uri in row, row
    screenshot(chrome, "admin-clients")
    chrome.find_element(By.CSS_SELECTOR, f"a[href='/edit/{client_id}']").click()
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == f"/edit/{client_id}", WAIT)
    uris = chrome.find_element(By.NAME, "redirect_uri")
    uris.clear()
    uris.send_keys(first_uri + "\n" + second_uri)
    submit(chrome, bounded_wait, "button[type=submit].primary")
    assert "Saved." in chrome.find_element(By.CSS_SELECTOR, ".notice").text
    screenshot(chrome, "admin-edit-client")
    stored = browser_session().get(tsidp.url(f"/clients/{client_id}")).json()
    assert stored["redirect_uris"] == [first_uri, second_uri], stored
    sign_in(chrome, bounded_wait, tsidp, client_id, second_uri)

    # 5. A new secret: the old one is refused at /token, the new one accepted.
    chrome.get(tsidp.url(f"/edit/{client_id}"))
    submit(chrome, bounded_wait, "#regenerate")
    assert chrome.find_element(By.TAG_NAME, "h1").text == "New client secret"
    new_secret = chrome.find_element(By.ID, "client-secret").text
    assert len(new_secret) == 64 and new_secret != secret
    old = token(tsidp, client_id, secret, grant_type="refresh_token", refresh_token=refresh_token)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client", old.text
    new = token(tsidp, client_id, new_secret, grant_type="refresh_token", refresh_token=refresh_token)
    assert new.status_code == 200, new.text
    refresh_token = new.json()["refresh_token"]

    # 6. Delete, after a confirmation page; the refresh token stops working.
    chrome.get(tsidp.url(f"/edit/{client_id}"))
    chrome.find_element(By.ID, "delete-link").click()
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == f"/edit/{client_id}/delete", WAIT)
    assert client_id in chrome.find_element(By.TAG_NAME, "main").text
    screenshot(chrome, "admin-delete-client")
    submit(chrome, bounded_wait, "#confirm-delete")
    assert urlsplit(chrome.current_url).path == "/", chrome.current_url
    assert "The client was deleted." in chrome.find_element(By.CSS_SELECTOR, ".notice").text
    assert browser_session().get(tsidp.url(f"/clients/{client_id}")).status_code == 404
    after = token(tsidp, client_id, new_secret, grant_type="refresh_token", refresh_token=refresh_token)
    assert after.status_code != 200, after.text


def test_a_user_without_the_grant_sees_the_403_page(chrome, tsidp_factory, alice_and_bob, people, make_browser):
    from selenium.webdriver.common.by import By

    # Bob (127.0.0.2) on the shared two-user tsidp: 403 with the grant to add, and nothing created.
    shared = tsidp_factory(identities=alice_and_bob)
    bob = make_browser(people["bob"]["source"])
    page = bob.get(shared.url("/"))
    assert page.status_code == 403, page.status_code
    assert "allow_admin_ui" in page.text and "tailscale.com/cap/tsidp" in page.text
    assert bob.get(shared.url("/me")).status_code == 200

    # In the browser: a tsidp whose only person (every loopback caller) is bob.
    bob_only = tsidp_factory(identities=alice_and_bob[1:])
    chrome.get(bob_only.url("/"))
    assert chrome.find_element(By.TAG_NAME, "h1").text == "Admin access not granted"
    snippet = chrome.find_element(By.ID, "policy-snippet").text
    assert '"allow_admin_ui": true' in snippet and '"bob@example.com"' in snippet, snippet
    screenshot(chrome, "admin-403")


def test_a_form_posted_from_another_site_changes_nothing(chrome, site, tsidp_factory, alice_and_bob, bounded_wait):
    from selenium.webdriver.common.by import By

    tsidp = tsidp_factory(identities=alice_and_bob)
    victim = tsidp.register_admin_client("Victim", [site.url("/cb")])
    # The attacker even knows a form field's name; the token it cannot know.
    site.attack_page = (
        "<!doctype html><title>attack</title>"
        f'<form method="post" action="{tsidp.url("/new")}">'
        '<input type="hidden" name="name" value="Planted">'
        f'<input type="hidden" name="redirect_uri" value="{site.url("/steal")}">'
        '<input type="hidden" name="csrf_token" value="guess"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    chrome.get(site.url("/attack"))
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == "/new", WAIT), chrome.current_url
    assert chrome.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    assert "another site" in chrome.find_element(By.TAG_NAME, "main").text
    names = [client["client_name"] for client in browser_session().get(tsidp.url("/clients")).json()]
    assert names == ["Victim"], names

    # The same for deleting a client.
    site.attack_page = (
        "<!doctype html><title>attack</title>"
        f'<form method="post" action="{tsidp.url("/edit/" + victim["client_id"] + "/delete")}"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    chrome.get(site.url("/attack"))
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path.endswith("/delete"), WAIT), chrome.current_url
    assert chrome.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    assert browser_session().get(tsidp.url(f"/clients/{victim['client_id']}")).status_code == 200


def test_a_user_ends_a_login_on_their_page(chrome, site, tsidp_factory, alice_and_bob, bounded_wait):
    from selenium.webdriver.common.by import By

    tsidp = tsidp_factory(identities=alice_and_bob)
    client = tsidp.register_admin_client("Wiki", [site.url("/cb")])
    client_id, secret = client["client_id"], client["client_secret"]
    code = sign_in(chrome, bounded_wait, tsidp, client_id, site.url("/cb"))
    answer = token(tsidp, client_id, secret, grant_type="authorization_code", code=code, redirect_uri=site.url("/cb"))
    assert answer.status_code == 200, answer.text
    refresh_token = answer.json()["refresh_token"]

    chrome.get(tsidp.url("/me"))
    assert "alice@example.com" in chrome.find_element(By.ID, "whoami").text
    logins = chrome.find_element(By.ID, "logins").text
    assert "Wiki" in logins and "alice-laptop.example-tailnet.ts.net." in logins, logins
    assert refresh_token not in chrome.page_source
    screenshot(chrome, "me")
    submit(chrome, bounded_wait, "form[action='/me/logins/end'] button")
    assert urlsplit(chrome.current_url).path == "/me", chrome.current_url
    assert "Signed out of that login." in chrome.find_element(By.CSS_SELECTOR, ".notice").text
    assert chrome.find_element(By.ID, "no-logins")
    ended = token(tsidp, client_id, secret, grant_type="refresh_token", refresh_token=refresh_token)
    assert ended.status_code == 400 and ended.json()["error"] == "invalid_grant", ended.text


def test_every_action_works_without_javascript(chrome_without_javascript, site, tsidp_factory, alice_and_bob,
                                               bounded_wait):
    from selenium.webdriver.common.by import By

    chrome = chrome_without_javascript
    tsidp = tsidp_factory(identities=alice_and_bob)
    chrome.get(tsidp.url("/new"))
    chrome.find_element(By.NAME, "name").send_keys("No script")
    chrome.find_element(By.NAME, "redirect_uri").send_keys(site.url("/cb"))
    submit(chrome, bounded_wait, "button[type=submit].primary")
    client_id = chrome.find_element(By.ID, "client-id").text
    secret = chrome.find_element(By.ID, "client-secret").text
    assert len(secret) == 64, chrome.page_source[:2000]
    # The script did not run: no Copy button, and the secret is plain text on the page.
    assert not chrome.find_element(By.CSS_SELECTOR, "button[data-copy-from=client-secret]").is_displayed()
    code = sign_in(chrome, bounded_wait, tsidp, client_id, site.url("/cb"))
    answer = token(tsidp, client_id, secret, grant_type="authorization_code", code=code, redirect_uri=site.url("/cb"))
    assert answer.status_code == 200, answer.text

    chrome.get(tsidp.url(f"/edit/{client_id}"))
    name = chrome.find_element(By.NAME, "name")
    name.clear()
    name.send_keys("Still no script")
    submit(chrome, bounded_wait, "button[type=submit].primary")
    assert "Saved." in chrome.find_element(By.CSS_SELECTOR, ".notice").text
    submit(chrome, bounded_wait, "#regenerate")
    assert len(chrome.find_element(By.ID, "client-secret").text) == 64

    chrome.get(tsidp.url("/me"))
    submit(chrome, bounded_wait, "form[action='/me/logins/end'] button")
    assert chrome.find_element(By.ID, "no-logins")

    chrome.get(tsidp.url(f"/edit/{client_id}/delete"))
    submit(chrome, bounded_wait, "#confirm-delete")
    assert "The client was deleted." in chrome.find_element(By.CSS_SELECTOR, ".notice").text
    assert browser_session().get(tsidp.url(f"/clients/{client_id}")).status_code == 404

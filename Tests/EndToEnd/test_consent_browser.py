"""The consent page in a real browser (headless Chromium driven by Selenium).

A client registered through dynamic registration (RFC 7591) was not vetted by the operator, so the
first sign-in of each user shows a consent page: Cancel sends the application ``access_denied``,
Continue signs in and is remembered, and taking the consent back on ``/consents`` makes the page
appear again. A page of another site that loads ``/authorize`` as an image or a frame gets no code.

Needs Debian's ``chromium`` and ``chromium-driver`` and PyPI's ``selenium`` (``.ci/run`` installs
them); without them the tests skip, or fail under TSIDP_REQUIRE_INTEROP=1. Screenshots of the pages
go to the test's scratch directory, or to ``TSIDP_SCREENSHOTS`` when that names a directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from browser_support import LoopbackSite, is_stale, start_chrome

@pytest.fixture
def chrome(peer_import, missing_tool_policy, scratch_dirs):
    driver = start_chrome(peer_import, missing_tool_policy, scratch_dirs, width=900)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site():
    callback = LoopbackSite()
    try:
        yield callback
    finally:
        callback.close()


def screenshot(driver, scratch: Path, name: str) -> None:
    target = Path(os.environ.get("TSIDP_SCREENSHOTS") or scratch)
    target.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target / f"{name}.png"))


def test_consent_in_a_real_browser(chrome, site, tsidp_factory, scratch_dirs, bounded_wait):
    from selenium.webdriver.common.by import By

    shots = scratch_dirs("screenshots")
    tsidp = tsidp_factory()
    client = tsidp.register_dynamic_client(
        {
            "redirect_uris": [site.redirect_uri],
            "client_name": "Grafana <b>lab</b>",
            "token_endpoint_auth_method": "none",
        }
    )
    query = urlencode(
        {
            "client_id": client["client_id"],
            "redirect_uri": site.redirect_uri,
            "response_type": "code",
            "scope": "openid email profile",
            "state": "browser-state",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
    )
    authorize = tsidp.url("/authorize") + "?" + query

    def on_callback() -> bool:
        return urlsplit(chrome.current_url).path == "/cb"

    # 1. First sign-in: the consent page, with the name shown as text.
    chrome.get(authorize)
    heading = chrome.find_element(By.TAG_NAME, "h1").text
    assert heading == "Sign in to Grafana <b>lab</b>?", heading
    assert "alice@example.com" in chrome.page_source
    assert chrome.find_elements(By.TAG_NAME, "b") == [], "the client name must not become markup"
    screenshot(chrome, shots, "consent")

    # 2. Cancel: the application is told access_denied, with its state, and gets no code.
    chrome.find_element(By.CSS_SELECTOR, "button[value=deny]").click()
    assert bounded_wait(on_callback, 15), chrome.current_url + chrome.find_element(By.TAG_NAME, "body").text
    answer = {k: v[0] for k, v in parse_qs(urlsplit(chrome.current_url).query).items()}
    assert answer.get("error") == "access_denied" and answer.get("state") == "browser-state", answer
    assert "code" not in answer

    # 3. Continue: a code, delivered to the application.
    chrome.get(authorize)
    chrome.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    assert bounded_wait(on_callback, 15), chrome.current_url
    answer = {k: v[0] for k, v in parse_qs(urlsplit(chrome.current_url).query).items()}
    assert answer.get("code") and answer.get("state") == "browser-state", answer

    # 4. Remembered: the next sign-in goes straight to the application.
    chrome.get(authorize)
    assert bounded_wait(on_callback, 15), chrome.current_url
    assert "code" in parse_qs(urlsplit(chrome.current_url).query)

    # 5. The user's page lists the application; taking consent back asks again next time.
    chrome.get(tsidp.url("/consents"))
    assert client["client_id"] in chrome.page_source
    screenshot(chrome, shots, "consents")
    before = chrome.find_element(By.TAG_NAME, "html")
    chrome.find_element(By.CSS_SELECTOR, "form[action='/consents/revoke'] button").click()
    # The answer is a new page at the same address: wait until the old page is gone.
    assert bounded_wait(lambda: is_stale(before), 15), "the revoke form did not load a new page"
    assert urlsplit(chrome.current_url).path == "/consents", chrome.current_url
    assert client["client_id"] not in chrome.page_source
    chrome.get(authorize)
    assert chrome.find_element(By.TAG_NAME, "h1").text.startswith("Sign in to"), chrome.current_url


def test_other_sites_get_no_code_from_image_or_frame_loads(chrome, site, tsidp_factory, bounded_wait):
    from selenium.webdriver.common.by import By

    tsidp = tsidp_factory()
    # An operator-registered client: it would sign in without a click if it were a page load.
    client = tsidp.register_admin_client("Vetted", [site.redirect_uri])
    target = (
        tsidp.url("/authorize")
        + "?"
        + urlencode(
            {
                "client_id": client["client_id"],
                "redirect_uri": site.redirect_uri,
                "response_type": "code",
                "scope": "openid email",
                "state": "stolen",
            }
        )
    )
    # A page that loads /authorize as an image and in a frame, as a hostile site would.
    escaped = target.replace("&", "&amp;").replace('"', "&quot;")
    site.attack_page = (
        f'<!doctype html><title>attack</title><img src="{escaped}">'
        f'<iframe src="{escaped}"></iframe><p id="done">loaded</p>'
    )
    before = len(site.callbacks())
    chrome.get(site.url("/attack"))
    assert chrome.find_element(By.ID, "done").text == "loaded"
    # The image and the frame have been requested once the page's load event fired; neither may
    # have reached the application with a code.
    assert bounded_wait(lambda: chrome.execute_script("return document.readyState") == "complete", 15)
    assert [hit for hit in site.callbacks()[before:] if "code" in hit] == []
    # A real navigation still works, so the check above is not vacuous.
    chrome.get(target)
    assert bounded_wait(lambda: urlsplit(chrome.current_url).path == "/cb", 15), chrome.current_url
    assert "code" in parse_qs(urlsplit(chrome.current_url).query)

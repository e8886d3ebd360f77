"""What the browser tests share: headless Chromium driven by Selenium, and a site on loopback that
is not tsidp (a relying party's callback, and a page of another origin that a test fills with an
attack on tsidp)."""

from __future__ import annotations

import http.server
import os
import threading
from urllib.parse import parse_qs, urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver, and pip install selenium into .venv-peers"
PAGE_LOAD_TIMEOUT = 20  # seconds; generous for a loaded machine


class LoopbackSite:
    """Records every request; `/attack` serves ``attack_page``, every other path a callback page."""

    def __init__(self):
        self.hits: list[str] = []
        self.attack_page = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                site.hits.append(self.path)
                if self.path.startswith("/attack"):
                    body = site.attack_page
                else:
                    body = "<!doctype html><title>callback</title><p id='cb'>callback reached</p>"
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def redirect_uri(self) -> str:
        return self.url("/cb")

    def callbacks(self) -> list[dict]:
        """The query parameters of every request to ``/cb``, in order."""
        return [
            {key: values[0] for key, values in parse_qs(urlsplit(path).query).items()}
            for path in self.hits
            if path.startswith("/cb")
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start_chrome(peer_import, missing_tool_policy, scratch_dirs, javascript: bool = True, width: int = 1100):
    """A headless Chromium with a fresh profile; a missing browser or driver follows the suite's
    missing-tool policy (skip, or fail under TSIDP_REQUIRE_INTEROP=1)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing_tool_policy(f"{CHROMIUM} or {CHROMEDRIVER} is missing; {INSTALL_HINT}")
    webdriver = peer_import("selenium.webdriver", INSTALL_HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},1000"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={scratch_dirs('chrome-profile')}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    return driver


def is_stale(element) -> bool:
    """Whether ``element`` belongs to a page the browser has left.

    While a navigation is under way chromedriver sometimes answers for the old document's node with
    an inspector error ("Node with given id does not belong to the document") instead of a
    stale-element error; both mean the page has been left.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.tag_name
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        message = str(error)
        if "does not belong to the document" in message or "No node with given id" in message:
            return True
        raise

"""Helpers for driving parkweb's pages in Debian's chromium."""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from playwright.sync_api import Page, expect

# Several runs on one machine (a work tree and a clean clone) each take a port of their own.
PORT = int(os.environ.get("PARKWEB_TEST_WEB_PORT", "8766"))
BASE = f"http://127.0.0.1:{PORT}"
ARTIFACTS = Path(settings.BASE_DIR) / "artifacts"
PASSWORD = "pw-{}-123"


def mailed_link(pattern: re.Pattern, timeout: float = 10) -> str:
    """The newest link matching `pattern` in mail sent so far (the console mail backend
    writes it to daphne's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.findall((ARTIFACTS / "daphne.log").read_text(errors="replace"))
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no link like {pattern.pattern} was mailed")


def off_loop(function, *args, **kwargs):
    """Run a sandbox helper (it uses asyncio.run) away from Playwright's running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def goto(page: Page, path: str) -> None:
    """Open a page, waiting (briefly) for daphne if it is still starting."""
    deadline = time.monotonic() + 20
    while True:
        try:
            page.goto(BASE + path)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def log_in(browser, username: str, landing: str = "Acme: parking lots", **context) -> Page:
    page = browser.new_context(**context).new_page()
    goto(page, "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD.format(username))
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=landing)).to_be_visible()
    return page


def fill_lot(page: Page, **values) -> None:
    page.goto(f"{BASE}/t/acme/new-lot/")
    page.get_by_label("Display name").fill(values.get("name", "Reception"))
    page.get_by_label("Slug").fill(values.get("slug", "main"))
    page.get_by_label("Server").select_option(label="pbx-web")
    page.get_by_label("Context", exact=True).select_option(label="acme-parking (pbx-web)")
    page.get_by_label("Park extension", exact=True).fill(values.get("parkext", "700"))
    page.get_by_label("Park extension exclusive").check()
    page.get_by_label("First space").fill(values.get("first", "701"))
    page.get_by_label("Last space").fill(values.get("last", "709"))
    page.get_by_role("button", name="Save").click()


def create_live_lot(page: Page, **values) -> None:
    fill_lot(page, **values)
    expect(page.locator("#deployment")).to_contain_text("Live on pbx-web", timeout=20_000)


def space(page: Page, number, busy: bool = True):
    state = ".busy" if busy else ".free"
    return page.locator(f"li.space{state}[data-space='{number}']")

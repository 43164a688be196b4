"""The tenant pages in a real browser (Debian's chromium), served by daphne, with a real
Celery worker (deploys and the AMI watcher) and the sandbox Asterisk."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from lots.models import Deployment, ServerHealth
from tenants.models import Membership, Role
from tests.factories import make_context, make_server, make_tenant
from tests.integration.test_deploy import wait_for
from tests.integration.workers import celery_workers, isolated_redis_url, shared_test_database_url

pytestmark = pytest.mark.integration

PORT = 8766
BASE = f"http://127.0.0.1:{PORT}"
ARTIFACTS = Path(settings.BASE_DIR) / "artifacts"
# daphne, the worker (deploys and the watcher) and the channel layer share one Redis.
LAYER = isolated_redis_url()


@pytest.fixture
def site(transactional_db, asterisk, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [LAYER]},
        }
    }
    asterisk.hangup_all()
    server = make_server("pbx-web", parkcall="#72", **asterisk.server_fields())
    tenant = make_tenant("acme", name="Acme")
    make_context(server, tenant, "acme-parking")
    # daphne checks passwords with the production hasher, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    users = get_user_model().objects
    for name, role in (("ada", Role.ADMIN), ("vic", Role.VIEWER)):
        user = users.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(user=user, tenant=tenant, role=role)
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": shared_test_database_url(),
        "REDIS_URL": LAYER,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "0",
        "SECURE_COOKIES": "0",
    }
    with celery_workers() as start_worker:
        start_worker("web-worker", PARKWEB_WORKER_WATCHERS="1")
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(PORT),
                "parkweb.asgi:application",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            start_new_session=True,
            stdout=open(ARTIFACTS / "daphne.log", "w"),  # noqa: SIM115 (lives with daphne)
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: ServerHealth.objects.filter(server=server, synced=True).exists(),
                timeout=30,
                what="the watcher",
            )
            yield server
        finally:
            web.terminate()
            web.wait(timeout=20)
            asterisk.hangup_all()


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # ORM calls are still synchronous (as Django's docs advise for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def off_loop(function, *args, **kwargs):
    """Run a sandbox helper (it uses asyncio.run) away from Playwright's running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def log_in(browser, username: str):
    page = browser.new_page()
    deadline = time.monotonic() + 20
    while True:  # daphne may still be starting
        try:
            page.goto(f"{BASE}/accounts/login/")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Acme: parking lots")).to_be_visible()
    return page


def fill_lot(page, **values):
    page.goto(f"{BASE}/t/acme/lots/new/")
    page.get_by_label("Display name").fill(values.get("name", "Reception"))
    page.get_by_label("Slug").fill(values.get("slug", "main"))
    page.get_by_label("Server").select_option(label="pbx-web")
    page.get_by_label("Context", exact=True).select_option(label="acme-parking (pbx-web)")
    page.get_by_label("Park extension", exact=True).fill(values.get("parkext", "700"))
    page.get_by_label("Park extension exclusive").check()
    page.get_by_label("First space").fill(values.get("first", "701"))
    page.get_by_label("Last space").fill(values.get("last", "709"))
    page.get_by_role("button", name="Save").click()


def test_admin_creates_a_lot_sees_it_live_and_watches_a_call_on_the_board(site, browser, asterisk):
    page = log_in(browser, "ada")
    fill_lot(page)
    expect(page.locator("#deployment")).to_contain_text("Live on pbx-web", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "lot-form.png"), full_page=True)

    # Invalid input: the message stands next to the field, and nothing is deployed.
    deployments = Deployment.objects.count()
    fill_lot(page, name="Overlap", slug="overlap", parkext="800", first="705", last="712")
    error = page.locator("#error-parkpos_start")
    expect(error).to_contain_text("Spaces 705-709 are already used by lot 'Reception'")
    assert Deployment.objects.count() == deployments

    board = browser.new_page()
    board.context.add_cookies(page.context.cookies())
    board.goto(f"{BASE}/t/acme/board/")
    expect(board.locator("li.space[data-space='701']")).to_be_visible()
    event = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    occupied = board.locator(f"li.space.busy[data-space='{event['ParkingSpace']}']")
    expect(occupied).to_be_visible(timeout=1_000)  # within 1 s, no reload
    expect(occupied).to_contain_text("5551234")
    board.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)

    # The board survives a dropped websocket: banner, then resync.
    board.evaluate("window.parkwebBoard.drop()")
    expect(board.locator("#banner")).to_be_visible()
    expect(board.locator("#banner")).to_be_hidden(timeout=10_000)
    expect(occupied).to_be_visible()

    off_loop(asterisk.originate, f"Local/{event['ParkingSpace']}@acme-parking", 2)  # retrieve
    expect(occupied).to_have_count(0, timeout=5_000)


def test_viewer_sees_no_edit_or_action_buttons(site, browser, asterisk):
    ada = log_in(browser, "ada")
    fill_lot(ada)
    expect(ada.locator("#deployment")).to_contain_text("Live on", timeout=20_000)
    page = log_in(browser, "vic")
    expect(page.get_by_role("link", name="New lot")).to_have_count(0)
    page.goto(f"{BASE}/t/acme/lots/main/")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    event = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    page.goto(f"{BASE}/t/acme/board/")
    space = page.locator(f"li.space.busy[data-space='{event['ParkingSpace']}']")
    expect(space).to_be_visible(timeout=5_000)
    expect(space.get_by_role("button")).to_have_count(0)
    # The server refuses anyway.
    url = f"/api/v1/tenants/acme/lots/main/parked-calls/{event['ParkingSpace']}/hangup/"
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', headers: {'X-CSRFToken':
        (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || ''}})).status""",
        url,
    )
    assert status == 403

"""Every page passes an automated accessibility audit (axe-core: WCAG 2.1 A and AA, and
its best practices) and fits a phone's screen without sideways scrolling."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from lots.models import ParkingLot

from .pages import ARTIFACTS, BASE, create_live_lot, fill_lot, goto, log_in, off_loop

pytestmark = pytest.mark.integration

AUDIT = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}
TENANT_PAGES = [
    "/t/acme/",
    "/t/acme/new-lot/",
    "/t/acme/lots/main/",
    "/t/acme/board/",
    "/t/acme/history/",
    "/t/acme/members/",
    "/t/acme/api-keys/",
    "/t/acme/webhooks/",
    "/accounts/password_change/",
]
PUBLIC_PAGES = ["/accounts/login/", "/accounts/password_reset/"]


def violations(page) -> list[str]:
    """One line per problem axe finds: the rule, and where."""
    found = Axe().run(page, options=AUDIT).response["violations"]
    return [f"{v['id']}: {node['target']}" for v in found for node in v["nodes"]]


@pytest.fixture
def busy_site(site, browser, asterisk):
    """A live lot with a call parked in it (so the board and history have rows)."""
    page = log_in(browser, "ada")
    create_live_lot(page)
    off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    page.context.close()
    return site


def test_every_page_passes_an_accessibility_audit(busy_site, browser):
    page = log_in(browser, "ada")
    problems = {}
    for path in TENANT_PAGES:
        page.goto(BASE + path)
        if path.endswith("board/"):
            expect(page.locator("li.space.busy button.retrieve")).to_have_count(1)
        if path.endswith("history/"):
            page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)
        problems[path] = violations(page)
    # The states that only appear after a post: a refused lot, and a key shown once.
    fill_lot(page, name="Overlap", slug="overlap", parkext="800", first="705", last="712")
    expect(page.locator("#form-errors")).to_be_visible()
    problems["lot form with errors"] = violations(page)
    page.goto(f"{BASE}/t/acme/history/?day=someday")
    expect(page.locator("#id_day_error")).to_be_visible()
    problems["history with a bad filter"] = violations(page)
    page.goto(f"{BASE}/t/acme/api-keys/")
    page.get_by_label("Name").fill("crm")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#new-key")).to_be_visible()
    problems["new API key"] = violations(page)
    page.goto(f"{BASE}/t/acme/webhooks/")
    page.get_by_label("URL").fill("https://crm.example.com/parking")
    page.get_by_label("call.parked").check()
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#new-secret")).to_be_visible()
    problems["new webhook"] = violations(page)

    anonymous = browser.new_page()
    for path in PUBLIC_PAGES:
        goto(anonymous, path)
        problems[path] = violations(anonymous)
    assert {path: found for path, found in problems.items() if found} == {}


def test_the_operator_admin_passes_the_same_audit(busy_site, browser):
    page = browser.new_page()
    goto(page, "/admin/login/")
    problems = {"/admin/login/": violations(page)}
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("pw-sam-123")
    page.get_by_role("button", name="Log in").click()
    server, lot = busy_site.pk, ParkingLot.objects.get().pk
    for path in [
        "/admin/",
        "/admin/lots/asteriskserver/",
        f"/admin/lots/asteriskserver/{server}/change/",
        f"/admin/lots/asteriskserver/{server}/preview/",
        "/admin/lots/parkinglot/",
        f"/admin/lots/parkinglot/{lot}/change/",
        "/admin/lots/deployment/",
        "/admin/lots/parkedcall/",
        "/admin/tenants/tenant/",
    ]:
        page.goto(BASE + path)
        problems[path] = violations(page)
    assert {path: found for path, found in problems.items() if found} == {}


# WCAG 1.4.10 (reflow): usable at 320 CSS px without scrolling sideways. Only code (the
# dialplan snippet in a <pre>) may scroll within itself, as the rule allows.
OVERFLOWING = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.clientWidth > 1 && e.scrollWidth > e.clientWidth + 1  // 1 px: hidden text
                 && !e.closest('pre') && getComputedStyle(e).overflowX !== 'visible')
    .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))"""


def test_every_page_fits_a_phone_screen(busy_site, browser):
    page = log_in(browser, "ada", viewport={"width": 320, "height": 640}, is_mobile=True)
    too_wide = {}
    for path in TENANT_PAGES:
        page.goto(BASE + path)
        if path.endswith("board/"):
            expect(page.locator("li.space.busy")).to_have_count(1)
            page.screenshot(path=str(ARTIFACTS / "board-phone.png"), full_page=True)
        if path.endswith("main/"):
            page.screenshot(path=str(ARTIFACTS / "lot-form-phone.png"), full_page=True)
        if path.endswith("history/"):
            page.screenshot(path=str(ARTIFACTS / "history-phone.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate(OVERFLOWING)
        if width > 320 or inner:
            too_wide[path] = (width, inner)
    assert too_wide == {}
    # On a phone the board is still one tap per action: buttons at least 32 px tall.
    page.goto(BASE + "/t/acme/board/")
    buttons = page.locator("li.space.busy button")
    expect(buttons).to_have_count(2)
    heights = buttons.evaluate_all("all => all.map(b => b.getBoundingClientRect().height)")
    assert min(heights) >= 32, heights

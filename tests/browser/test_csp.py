"""Every kind of page under its Content-Security-Policy, in chromium: the header is there,
the browser refuses nothing on the page, and nothing is fetched from another origin."""

import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import expect

from lots.models import ParkingLot
from tenants.models import Tenant
from tests.factories import make_context, make_lot, make_server

from .pages import PASSWORD, PORT, fill_lot, goto, off_loop, space

pytestmark = pytest.mark.integration

# Runs before any of the page's own scripts; the browser fires the event for everything the
# policy refuses (scripts, styles, style attributes, images, fonts, connections, eval).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(
  `${e.effectiveDirective}: ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`));
"""
SETTLED_VIOLATIONS = "() => new Promise(r => setTimeout(() => r(window.cspViolations), 150))"


class Watched:
    """A browser context whose every request, document, websocket and CSP complaint is
    kept, and the problems found on each page visited."""

    def __init__(self, browser):
        self.context = browser.new_context()
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.requests: list[str] = []
        self.documents: list[tuple[str, str | None]] = []
        self.sockets: list[str] = []
        self.complaints: list[str] = []  # console errors about the policy
        self.problems: dict[str, list[str]] = {}
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.on("response", self._response)
        self.context.on("console", self._console)
        self.page = self.context.new_page()
        self.page.on("websocket", lambda ws: self.sockets.append(ws.url))

    def _response(self, response):
        if response.request.resource_type == "document":
            self.documents.append((response.url, response.headers.get("content-security-policy")))

    def _console(self, message):
        if message.type == "error" and "Content Security Policy" in message.text:
            self.complaints.append(message.text)

    def check(self, name: str) -> None:
        """Note what the policy refused on the page now shown (and on the way to it)."""
        found = self.page.evaluate(SETTLED_VIOLATIONS) + self.complaints
        self.complaints = []
        if found:
            self.problems[name] = found

    def visit(self, path: str, ready, name: str | None = None) -> None:
        goto(self.page, path)
        ready(self.page)
        self.check(name or path)

    def log_in(self, path: str, username: str) -> None:
        self.visit(path, lambda p: expect(p.get_by_label("Username")).to_be_visible())
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD.format(username))
        self.page.get_by_role("button", name="Log in").click()

    def off_site(self) -> list[str]:
        """Requests and websockets to anywhere but this very site."""
        ours = {("http", f"127.0.0.1:{PORT}"), ("ws", f"127.0.0.1:{PORT}")}
        return [
            url
            for url in self.requests + self.sockets
            if not url.startswith("data:") and urlsplit(url)[:2] not in ours
        ]


def unreachable_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lot_on_an_unreachable_server() -> ParkingLot:
    """A lot whose deployment cannot finish (run off Playwright's loop: a save asks the PBX)."""
    try:
        acme = Tenant.objects.get(slug="acme")
        away = make_server("pbx-away", ami_port=unreachable_port())
        return make_lot(acme, make_context(away, acme, "acme-away"), "away")
    finally:
        connection.close()  # this thread's own


def heading(name: str):
    return lambda page: expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def test_every_page_keeps_to_the_content_security_policy(site, browser, asterisk):
    ada = Watched(browser)
    ada.log_in("/accounts/login/", "ada")
    heading("Acme: parking lots")(ada.page)
    ada.check("tenant dashboard")

    # A new lot: its page follows the deployment (static/lot_form.js) until it is live.
    fill_lot(ada.page)
    expect(ada.page.locator("#deployment")).to_contain_text("Live on pbx-web", timeout=20_000)
    ada.check("lot form after saving")
    ada.visit("/t/acme/", lambda p: expect(p.get_by_role("link", name="Reception")).to_be_visible())
    ada.visit("/t/acme/new-lot/", heading("New lot"))
    ada.visit("/t/acme/lots/main/", heading("Lot Reception"))
    # A refused form focuses its error summary (static/lot_form.js).
    fill_lot(ada.page, name="Overlap", slug="overlap", parkext="800", first="705", last="712")
    expect(ada.page.locator("#form-errors")).to_be_focused()
    ada.check("lot form with errors")

    # The board: its websocket connects and brings a parked call.
    ada.visit("/t/acme/board/", lambda p: expect(space(p, 701, busy=False)).to_be_visible())
    event = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    expect(space(ada.page, event["ParkingSpace"])).to_contain_text("5551234", timeout=10_000)
    ada.check("board with a call")
    assert ada.sockets and set(ada.sockets) == {f"ws://127.0.0.1:{PORT}/ws/t/acme/parking/"}

    ada.visit("/t/acme/history/", heading("Parked calls"))
    ada.visit("/t/acme/api-keys/", heading("API keys"))
    ada.visit("/t/acme/webhooks/", heading("Webhooks"))
    ada.visit("/t/acme/members/", heading("Members"))
    # The API as a browser sees it (Django REST framework's pages).
    ada.visit("/api/v1/tenants/acme/lots/", lambda p: expect(p.locator("h1")).to_be_visible())
    ada.visit("/api/v1/tenants/acme/lots/main/", lambda p: expect(p.locator("h1")).to_be_visible())

    # A deployment that cannot finish (its Asterisk is unreachable): the lot's page says
    # "Applying..." and its script keeps asking the API.
    lot = off_loop(lot_on_an_unreachable_server)
    with ada.page.expect_request(lambda r: "/api/v1/deployments/" in r.url):
        ada.visit(
            f"/t/acme/lots/{lot.slug}/",
            lambda p: expect(p.locator("#deployment")).to_contain_text("Applying"),
            "lot form with a pending deployment",
        )

    sam = Watched(browser)
    sam.log_in("/admin/login/", "sam")
    heading("Servers, tenants, lots and deployments")(sam.page)
    sam.check("admin index")
    sam.visit("/admin/lots/parkinglot/", heading("Select parking lot to change"))
    main = ParkingLot.objects.get(slug="main")
    sam.visit(f"/admin/lots/parkinglot/{main.pk}/change/", heading("Change parking lot"))

    # The API docs: Swagger UI, from this site, lists the operations.
    anyone = Watched(browser)
    anyone.visit(
        "/api/v1/docs/",
        lambda p: expect(
            p.locator(".opblock-summary-path", has_text="/api/v1/tenants/{tenant}/lots/").first
        ).to_be_visible(timeout=10_000),
    )
    assert anyone.page.locator(".opblock").count() > 20

    watched = [ada, sam, anyone]
    assert {name: found for w in watched for name, found in w.problems.items()} == {}
    assert [url for w in watched for url in w.off_site()] == []
    documents = [document for w in watched for document in w.documents]
    assert len(documents) >= 15
    assert [url for url, policy in documents if policy != settings.PARKWEB_CSP] == []

"""The Content-Security-Policy header, and pages that need nothing it forbids: no inline
script or style, no asset from another origin (tests/browser/test_csp.py checks the same in
chromium)."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client

from lots.models import Deployment
from tenants.models import Membership, Role
from tests.factories import make_lot

# A script in the page itself (a JSON data block runs nothing: the policy allows it).
INLINE_SCRIPT = re.compile(r"""<script(?![^>]*\b(?:src=|type="application/json"))[^>]*>""", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=|\son[a-z]+=", re.I)
# A script, image, frame or style sheet from another origin (links to elsewhere are fine).
ASSET_URL = re.compile(r"""(?:\ssrc=|<link\b[^>]*\shref=)["']?(?:https?:)?//""", re.I)


def problems(page: str) -> list[str]:
    """What in an HTML page the policy would refuse, or that comes from elsewhere."""
    return [m[0] for rule in (INLINE_SCRIPT, INLINE_STYLE, ASSET_URL) for m in rule.finditer(page)]


@pytest.fixture
def ada(acme, acme_ctx):
    user = get_user_model().objects.create_user("ada", password="pw-ada-123")
    Membership.objects.create(user=user, tenant=acme, role=Role.ADMIN)
    lot = make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)
    Deployment.objects.create(server=lot.server)  # pending: the lot form follows it
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff(db):
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("sam", password="pw-sam-1"))
    return client


def test_every_kind_of_html_page_carries_the_policy_and_needs_nothing_it_forbids(ada, staff):
    pages = {
        "/accounts/login/": Client().get("/accounts/login/"),
        "/api/v1/docs/": Client().get("/api/v1/docs/"),
        "/no-such-page/": Client().get("/no-such-page/"),
        "/admin/": staff.get("/admin/"),
        "/admin/lots/parkinglot/": staff.get("/admin/lots/parkinglot/"),
    }
    for path in [
        "/t/acme/",
        "/t/acme/new-lot/",
        "/t/acme/lots/main/",
        "/t/acme/board/",
        "/t/acme/history/",
        "/t/acme/members/",
        "/t/acme/api-keys/",
    ]:
        pages[path] = ada.get(path)
    # The API as a browser sees it (Django REST framework's pages).
    pages["/api/v1/tenants/acme/lots/"] = ada.get(
        "/api/v1/tenants/acme/lots/", HTTP_ACCEPT="text/html"
    )
    # A refused form: its error summary is focused by static/lot_form.js.
    pages["refused lot form"] = ada.post("/t/acme/new-lot/", {"slug": "x"})
    assert 'id="form-errors"' in pages["refused lot form"].content.decode()

    for name, response in pages.items():
        assert response["Content-Type"].startswith("text/html"), name
        assert response["Content-Security-Policy"] == settings.PARKWEB_CSP, name
        assert problems(response.content.decode()) == [], name


def test_the_policy_is_the_default_one_unless_the_setting_says_otherwise(db, settings):
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    settings.PARKWEB_CSP = "default-src 'none'"
    assert Client().get("/accounts/login/")["Content-Security-Policy"] == "default-src 'none'"
    settings.PARKWEB_CSP = ""
    assert "Content-Security-Policy" not in Client().get("/accounts/login/")


def test_api_answers_other_than_html_carry_no_policy(db):
    response = Client().get("/api/v1/tenants/")
    assert response["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in response


def test_the_lot_form_passes_what_its_script_needs_in_data_attributes(ada):
    page = ada.get("/t/acme/lots/main/").content.decode()
    note = re.search(r'<p [^>]*id="deployment"[^>]*>', page)[0]
    assert 'class="deploy pending"' in note
    assert 'data-lot="acme_main"' in note and 'data-server="pbx1"' in note
    assert '<script src="/static/lot_form.js"></script>' in page


def test_the_api_docs_are_served_from_this_site_with_no_inline_script(db):
    page = Client().get("/api/v1/docs/").content.decode()
    assert "https://" not in page and "http://" not in page
    sources = re.findall(r'<(?:script|link)[^>]*\b(?:src|href)="([^"]+)"', page)
    assert "/api/v1/docs/?script=" in sources
    for source in sources:
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), source
    assert any("swagger-ui-bundle.js" in source for source in sources)

    script = Client().get("/api/v1/docs/?script=")
    assert script["Content-Type"] == "application/javascript"
    body = script.content.decode()
    assert 'url: "/api/v1/schema/"' in body
    assert '"validatorUrl": null' in body  # no badge image from swagger.io


def test_no_template_has_an_inline_script_style_or_event_handler():
    found = {
        str(path.relative_to(settings.BASE_DIR)): problems(path.read_text())
        for path in Path(settings.BASE_DIR, "templates").rglob("*.html")
    }
    assert {path: found for path, found in found.items() if found} == {}

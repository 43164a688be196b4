"""Pages for tenant admins (members, API keys) and for operators (the admin site's
preview diff and deploy now), in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from lots.models import Deployment
from tenants.models import Membership
from tests.integration.test_deploy import wait_for

from .pages import BASE, create_live_lot, goto, log_in, mailed_link

pytestmark = pytest.mark.integration
INVITE_LINK = re.compile(rf"{re.escape(BASE)}/accounts/invitation/[\w-]+/")


def api_status(browser, key: str) -> int:
    """What the API answers a provisioning system (no cookies) holding this key."""
    client = browser.new_context().request
    headers = {"Authorization": f"Api-Key {key}"}
    return client.get(f"{BASE}/api/v1/tenants/acme/lots/", headers=headers).status


def test_tenant_admin_manages_members_and_api_keys(site, browser):
    page = log_in(browser, "ada")
    page.get_by_role("link", name="Members").click()

    # A newcomer is invited by e-mail: told so, and listed until they join.
    page.get_by_label("E-mail address").fill("newcomer@example.com")
    page.locator("#new-role").select_option("operator")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status")).to_have_text("Invitation sent to newcomer@example.com.")
    expect(page.get_by_role("cell", name="newcomer@example.com", exact=True)).to_be_visible()
    # They open the mailed link, choose a username and a password, and land in Acme.
    newcomer = browser.new_context().new_page()
    newcomer.goto(mailed_link(INVITE_LINK))
    newcomer.get_by_label("Username").fill("newbie")
    newcomer.get_by_label("Password").fill("a-long-new-password-42")
    newcomer.get_by_role("button", name="Create the account and join").click()
    expect(newcomer).to_have_url(f"{BASE}/t/acme/")
    assert Membership.objects.get(user__username="newbie").role == "operator"
    # The link works once.
    newcomer.goto(mailed_link(INVITE_LINK))
    expect(newcomer.get_by_role("alert")).to_contain_text("not valid any more")

    # Promote the viewer; the last admin cannot demote herself.
    page.get_by_label("Role of vic", exact=True).select_option("operator")
    with page.expect_navigation():
        page.get_by_role("button", name="Change the role of vic").click()
    expect(page.get_by_label("Role of vic", exact=True)).to_have_value("operator")
    assert Membership.objects.get(user__username="vic").role == "operator"
    page.get_by_label("Role of ada", exact=True).select_option("viewer")
    page.get_by_role("button", name="Change the role of ada").click()
    expect(page.locator("#member-error")).to_contain_text("A tenant always keeps one admin")
    assert Membership.objects.get(user__username="ada").role == "admin"
    page.get_by_role("button", name="Remove ola").click()
    expect(page.get_by_role("cell", name="ola")).to_have_count(0)

    # An API key is shown once, works, and stops working when revoked.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("crm sync")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create").click()
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("pk_")
    assert api_status(browser, key) == 200
    page.reload()  # after the redirect, a reload shows no key and makes none
    expect(page.locator("#new-key")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text="crm sync")).to_have_count(1)
    assert key not in page.content()
    page.get_by_role("button", name="Revoke crm sync").click()
    expect(page.get_by_role("cell", name="revoked")).to_be_visible()
    assert api_status(browser, key) == 401


def test_operator_previews_the_diff_and_deploys_from_the_admin_site(site, browser):
    create_live_lot(log_in(browser, "ada"))
    page = browser.new_page()
    goto(page, "/admin/login/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("pw-sam-123")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{BASE}/admin/lots/asteriskserver/")
    row = page.get_by_role("row").filter(has_text="pbx-web")
    expect(row.get_by_role("cell", name="connected", exact=True)).to_be_visible()
    expect(row).to_contain_text("live (")
    row.get_by_role("link", name="pbx-web").click()
    page.get_by_role("link", name="Preview pending diff").click()
    expect(page.locator("body")).to_contain_text("Asterisk already runs this config")

    last = Deployment.objects.order_by("-pk").values_list("pk", flat=True).first()
    page.get_by_role("button", name="Deploy now").click()
    expect(page.locator(".messagelist")).to_contain_text("Deploy of pbx-web queued.")
    finished = Deployment.objects.filter(pk__gt=last).exclude(status__in=["pending", "running"])
    deployment = wait_for(finished.first, what="the forced deploy to finish")
    assert deployment.status == "ok" and deployment.reloaded  # forced: reloaded though unchanged
    page.goto(f"{BASE}/admin/lots/deployment/{deployment.pk}/change/")
    expect(page.locator(".field-status")).to_contain_text("live")
    expect(page.locator(".field-replies")).to_contain_text("res_parking")

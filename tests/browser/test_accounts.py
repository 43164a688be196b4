"""Accounts in a real browser: a forgotten password reset through the mailed link (the
console mail backend writes it to daphne's log), and a password changed while logged in."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from .pages import BASE, goto, log_in, mailed_link

pytestmark = pytest.mark.integration
RESET_LINK = re.compile(rf"{re.escape(BASE)}/accounts/reset/[\w-]+/[\w-]+/")


def log_in_with(browser, username: str, password: str):
    page = browser.new_page()
    goto(page, "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    return page


def test_a_forgotten_password_is_reset_through_the_mailed_link(site, browser):
    get_user_model().objects.filter(username="vic").update(email="vic@example.com")
    page = browser.new_page()
    goto(page, "/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("vic@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    page.goto(mailed_link(RESET_LINK))
    page.get_by_label("New password", exact=True).fill("12345678")
    page.get_by_label("New password confirmation").fill("12345678")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#id_new_password2_error")
    expect(error).to_contain_text("entirely numeric")  # next to its field
    page.get_by_label("New password", exact=True).fill("quiet-harbour-42")
    page.get_by_label("New password confirmation").fill("quiet-harbour-42")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()

    board = log_in_with(browser, "vic", "quiet-harbour-42")
    expect(board.get_by_role("heading", name="Acme: parking lots")).to_be_visible()
    refused = log_in_with(browser, "vic", "pw-vic-123")
    expect(refused.get_by_role("alert")).to_contain_text("Wrong username or password")


def test_a_member_changes_her_password(site, browser):
    page = log_in(browser, "ola")
    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Old password").fill("pw-ola-123")
    page.get_by_label("New password", exact=True).fill("calm-lagoon-77")
    page.get_by_label("New password confirmation").fill("calm-lagoon-77")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    again = log_in_with(browser, "ola", "calm-lagoon-77")
    expect(again.get_by_role("heading", name="Acme: parking lots")).to_be_visible()

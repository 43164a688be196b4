"""The tenant pages in a real browser: a lot created and live, a real call on the board,
bad input refused next to its field, roles, and a dropped websocket."""

import pytest
from playwright.sync_api import expect

from lots.models import Deployment, ParkingLot

from .pages import ARTIFACTS, BASE, create_live_lot, fill_lot, log_in, off_loop, space

pytestmark = pytest.mark.integration


def test_admin_creates_a_lot_sees_it_live_and_watches_a_call_on_the_board(site, browser, asterisk):
    page = log_in(browser, "ada")
    create_live_lot(page)
    page.screenshot(path=str(ARTIFACTS / "lot-form.png"), full_page=True)

    # Invalid input: the message stands next to the field, and nothing is deployed.
    deployments = Deployment.objects.count()
    fill_lot(page, name="Overlap", slug="overlap", parkext="800", first="705", last="712")
    error = page.locator("#id_parkpos_start_error")
    expect(error).to_contain_text("Spaces 705-709 are already used by lot 'Reception'")
    expect(page.get_by_label("First space")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_be_focused()  # the summary, for keyboard users
    page.screenshot(path=str(ARTIFACTS / "lot-form-error.png"), full_page=True)
    assert Deployment.objects.count() == deployments

    board = page.context.new_page()
    board.goto(f"{BASE}/t/acme/board/")
    expect(space(board, 701, busy=False)).to_be_visible()
    event = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    occupied = space(board, event["ParkingSpace"])
    # No reload: the push brings it. How soon is bench/live.py's to judge, on a quiet machine.
    expect(occupied).to_be_visible(timeout=10_000)
    expect(occupied).to_contain_text("5551234")
    expect(occupied.locator(".countdown")).to_contain_text("times out in 0:")
    expect(board.locator("#board-status")).to_contain_text(
        f"parked in space {event['ParkingSpace']} of Reception"
    )
    board.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)

    # The board survives a dropped websocket: banner, then resync, which brings the call
    # parked while the link was down.
    board.evaluate("window.parkwebBoard.drop(3000)")
    expect(board.locator("#banner")).to_be_visible()
    meanwhile = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)["ParkingSpace"]
    assert meanwhile != event["ParkingSpace"]
    expect(space(board, meanwhile, busy=False)).to_be_visible()  # not seen yet: link down
    expect(board.locator("#banner")).to_be_hidden(timeout=10_000)
    expect(space(board, meanwhile)).to_be_visible()
    expect(occupied).to_be_visible()

    off_loop(asterisk.originate, f"Local/{event['ParkingSpace']}@acme-parking", 2)  # retrieve
    expect(occupied).to_have_count(0, timeout=10_000)
    expect(space(board, event["ParkingSpace"], busy=False)).to_be_visible()


def test_viewer_sees_no_edit_or_action_buttons(site, browser, asterisk):
    create_live_lot(log_in(browser, "ada"))
    page = log_in(browser, "vic")
    expect(page.get_by_role("link", name="New lot")).to_have_count(0)
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    page.goto(f"{BASE}/t/acme/lots/main/")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_label("First space")).to_be_disabled()
    event = off_loop(asterisk.park_call, "parkacme_main", "#72", keep=True)
    page.goto(f"{BASE}/t/acme/board/")
    busy = space(page, event["ParkingSpace"])
    expect(busy).to_be_visible(timeout=10_000)
    expect(busy.get_by_role("button")).to_have_count(0)
    expect(page.get_by_label("Your phone, for Retrieve")).to_have_count(0)
    # The server refuses anyway: the API action, and the admin pages.
    url = f"/api/v1/tenants/acme/lots/main/parked-calls/{event['ParkingSpace']}/hangup/"
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', headers: {'X-CSRFToken':
        (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || ''}})).status""",
        url,
    )
    assert status == 403
    assert page.goto(f"{BASE}/t/acme/members/").status == 403
    assert page.goto(f"{BASE}/t/acme/api-keys/").status == 403


def test_a_lot_asterisk_refuses_is_set_aside_and_its_page_says_why(site, browser, asterisk):
    page = log_in(browser, "ada")
    create_live_lot(page)
    fill_lot(page, name="Night", slug="night", parkext="800", first="801", last="809")
    expect(page.locator("#deployment")).to_contain_text("Live on pbx-web", timeout=20_000)
    # Two lots whose spaces overlap, as only a validation bug could make: Asterisk refuses
    # the next deploy, whatever lot it is for. parkweb sets the night lot's change aside
    # (it runs as before) and the new lot goes live all the same.
    ParkingLot.objects.filter(slug="night").update(parkpos_start=705, parkpos_end=712)
    fill_lot(page, name="Day", slug="day", parkext="900", first="901", last="909")
    expect(page.locator("#deployment")).to_contain_text("Live on pbx-web", timeout=20_000)
    page.goto(f"{BASE}/t/acme/lots/night/")
    note = page.locator("#set-aside")
    expect(note).to_contain_text("This lot is not live as saved.")
    expect(note).to_contain_text("Spaces 705-709 are already used by lot 'Reception'")
    expect(note).to_contain_text("keeps running as it did before this change")
    page.screenshot(path=str(ARTIFACTS / "lot-form-refused.png"), full_page=True)
    event = off_loop(asterisk.park_call, "parkacme_night", "#72")  # parks as before
    assert 801 <= int(event["ParkingSpace"]) <= 809
    event = off_loop(asterisk.park_call, "parkacme_main", "#72")  # still parks as before
    assert 701 <= int(event["ParkingSpace"]) <= 709

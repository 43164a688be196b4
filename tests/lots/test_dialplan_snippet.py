"""The dialplan a tenant pastes (lot page, API) and parkweb's busy-lamp hints: the shape
real phones need (tests/phones runs it on a real Asterisk with real phones)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from lots import services
from lots.asterisk import confparse, deploy, hints
from lots.asterisk.confgen import Section
from lots.snippets import lot_dialplan
from parkweb.errors import Invalid
from tenants.models import Membership, Role
from tests.factories import make_context, make_lot, make_phones


def contexts(text: str) -> dict[str, list[tuple[str, str]]]:
    return {s.name: list(s.options) for s in confparse.parse(text).sections}


@pytest.fixture
def lot(acme, acme_ctx):
    return make_lot(
        acme,
        acme_ctx,
        "main",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
        parkinghints=True,
    )


def test_the_phones_context_holds_includes_only_lamps_first_then_the_lot(server, acme, lot):
    phones = make_phones(server, acme, "acme-phones", "201-209")
    parsed = contexts(lot_dialplan(lot, phones))
    # Asterisk tries a context's own extensions before its includes: any extension here
    # (a pattern like _X.) could swallow 700 and 701-709.
    assert parsed["acme-phones"] == [
        ("include", "parkweb-hints-acme-parking"),
        ("include", "acme-parking"),
        ("include", "parkweb-dial-acme-phones"),
    ]
    dial = dict(parsed["parkweb-dial-acme-phones"])
    assert dial["exten"].startswith("_X.,1,Set(__PARKINGLOT=acme_main)")


def test_without_phones_the_snippet_names_a_placeholder_to_rename(lot):
    text = lot_dialplan(lot, None)
    assert "[your-phones]" in text and "Rename [your-phones]" in text


def test_a_lot_without_a_park_extension_is_told_how_calls_reach_it(acme, acme_ctx):
    lot = make_lot(acme, acme_ctx, "quiet", parkpos_start=801, parkpos_end=805)
    text = lot_dialplan(lot, None)
    assert "Park(acme_quiet)" in text and "ParkedCall(acme_quiet,801)" in text
    assert "parkweb-hints-" not in text  # no hints asked for


def test_the_one_touch_code_is_mentioned_only_with_a_park_extension(server, acme, lot):
    server.parkcall = "#72"
    services.server_save(server)
    lot.refresh_from_db()
    assert "#72 parks the other party here" in lot_dialplan(lot, None)


@pytest.mark.parametrize(
    "name",
    ["parkweb-hints-acme-parking", "parkweb-dial-acme", "Parkweb-x", "parkweb-timeout-acme_main"],
)
def test_no_tenant_may_own_a_context_under_parkwebs_prefix(server, acme, name):
    with pytest.raises(Invalid) as caught:
        make_context(server, acme, name)
    assert "reserved" in str(caught.value.errors)


def section(name: str, **options: str) -> Section:
    return Section(name, tuple(options.items()))


def test_hints_are_wanted_for_lots_that_ask_for_them_from_the_sections_asterisk_runs():
    sections = [
        section("general"),
        section("acme_main", context="acme-parking", parkpos="701-703", parkinghints="yes"),
        section("acme_night", context="acme-parking", parkpos="750", parkinghints="yes"),
        section("globex_main", context="globex-parking", parkpos="801-809", parkinghints="no"),
    ]
    assert hints.wanted_hints(sections) == {
        "parkweb-hints-acme-parking": {
            "701": "park:701@acme-parking",
            "702": "park:702@acme-parking",
            "703": "park:703@acme-parking",
            "750": "park:750@acme-parking",
        }
    }


def test_the_hints_file_reads_back_as_the_hints_it_was_made_from():
    wanted = {
        "parkweb-hints-b": {"10": "park:10@b", "9": "park:9@b"},
        "parkweb-hints-a": {"701": "park:701@a"},
    }
    text = hints.hints_file(wanted)
    assert text.startswith("; parkweb's busy-lamp hints")
    assert [(s.name, s.options) for s in deploy.sections_of(text)] == [
        ("parkweb-hints-a", (("exten", "701,hint,park:701@a"),)),
        ("parkweb-hints-b", (("exten", "9,hint,park:9@b"), ("exten", "10,hint,park:10@b"))),
    ]
    assert deploy.sections_of(hints.hints_file({})) == ()


def test_the_api_gives_the_same_snippet_to_the_lots_tenant_only(server, acme, globex, lot):
    phones = make_phones(server, acme, "acme-phones", "201-209")
    users = get_user_model().objects
    api = APIClient()
    url = "/api/v1/tenants/acme/lots/main/integration/"
    for name, tenant, status in [("desk", acme, 200), ("other", globex, 404)]:
        user = users.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
        api.force_authenticate(user)
        answer = api.get(url)
        assert answer.status_code == status, answer.content
    api.force_authenticate(users.get(username="desk"))
    assert api.get(url).json() == {
        "dialplan": lot_dialplan(lot, phones),
        "phones_context": "acme-phones",
        "lamps": True,
        "spaces_dialable": True,
        "park_with": "dial 700 (in acme-parking), or one-touch parking during a call",
        "pick_up_with": "dial the space, 701-709 (in acme-parking)",
    }


def test_a_lot_without_a_park_extension_says_so_on_its_page_and_in_the_api(acme, acme_ctx):
    make_lot(acme, acme_ctx, "quiet", parkpos_start=801, parkpos_end=805)
    user = get_user_model().objects.create_user("desk", password="pw-desk-123")
    Membership.objects.create(user=user, tenant=acme, role=Role.VIEWER)
    api = APIClient()
    api.force_authenticate(user)
    answer = api.get("/api/v1/tenants/acme/lots/quiet/integration/").json()
    assert answer["spaces_dialable"] is False
    assert answer["park_with"].startswith("only Park(acme_quiet) in your dialplan")
    assert "ParkedCall(acme_quiet,<space>)" in answer["pick_up_with"]
    assert "dialling 801-805 reaches nothing" in answer["pick_up_with"]

    page = Client()
    page.force_login(user)
    html = page.get("/t/acme/lots/quiet/").content.decode()
    assert 'id="no-parkext"' in html and "nobody can dial 801-805" in html
    assert "only Park(acme_quiet) in your dialplan" in html


def test_a_lot_with_a_park_extension_has_no_such_warning(acme, acme_ctx, lot):
    user = get_user_model().objects.create_user("desk", password="pw-desk-123")
    Membership.objects.create(user=user, tenant=acme, role=Role.VIEWER)
    page = Client()
    page.force_login(user)
    html = page.get("/t/acme/lots/main/").content.decode()
    assert 'id="reach"' in html and 'id="no-parkext"' not in html
    assert "dial the space, 701-709 (in acme-parking)" in html

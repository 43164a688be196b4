"""Tenant self-service pages, server side: who sees what, and the same validation."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from lots import rules
from lots.models import ParkedCall, ParkingLot, Webhook
from lots.snippets import lot_dialplan
from tenants.models import Membership, Role
from tests.factories import lot_form_data, make_context, make_lot


@pytest.fixture
def people(acme, globex, acme_ctx):
    users = get_user_model().objects
    made = {}
    for name, tenant, role in [
        ("boss", acme, Role.ADMIN),
        ("desk", acme, Role.OPERATOR),
        ("watcher", acme, Role.VIEWER),
        ("other", globex, Role.ADMIN),
    ]:
        made[name] = users.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(user=made[name], tenant=tenant, role=role)
    return made


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path", ["/t/acme/", "/t/acme/board/", "/t/acme/history/", "/t/acme/new-lot/"]
)
def test_pages_need_login_and_membership(people, path):
    assert Client().get(path).status_code == 302  # to the login page
    assert client_for(people["other"]).get(path).status_code == 404
    assert client_for(people["watcher"]).get(path).status_code == 200


def test_admin_creates_a_lot_and_sees_its_integration_snippet(people, server, acme_ctx):
    client = client_for(people["boss"])
    response = client.post("/t/acme/new-lot/", lot_form_data(server, acme_ctx))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    shown = html.unescape(re.search(r'<pre id="dialplan"[^>]*>(.*?)</pre>', page, re.S)[1])
    lot = ParkingLot.objects.get(slug="sales")
    assert shown == lot_dialplan(lot, None)  # what the API's integration/ gives, too
    assert "include => acme-parking" in shown and "__PARKINGLOT=acme_sales" in shown


def test_invalid_input_shows_the_message_next_to_the_field(people, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=719)
    response = client_for(people["boss"]).post(
        "/t/acme/new-lot/", lot_form_data(server, acme_ctx, parkpos_start="715")
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_parkpos_start_error"' in page and "lot &#x27;Reception&#x27;" in page
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_viewer_sees_no_edit_button_and_cannot_post(people, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main")
    client = client_for(people["watcher"])
    page = client.get("/t/acme/lots/main/").content.decode()
    assert ">Save<" not in page and "New lot" not in client.get("/t/acme/").content.decode()
    assert client.post("/t/acme/new-lot/", lot_form_data(server, acme_ctx)).status_code == 403
    board = client.get("/t/acme/board/").content.decode()
    assert 'data-can-act="0"' in board
    assert 'data-can-act="1"' in client_for(people["desk"]).get("/t/acme/board/").content.decode()


def test_another_tenants_context_is_not_offered(people, server, globex_ctx):
    response = client_for(people["boss"]).post(
        "/t/acme/new-lot/", lot_form_data(server, globex_ctx)
    )
    assert "context" in response.context["form"].errors


def test_admin_manages_members_and_viewers_cannot(people, acme):
    newbie = get_user_model().objects.create_user("newbie", password="pw-newbie-123")
    client = client_for(people["boss"])
    invite = {"action": "invite", "username": "newbie", "role": "operator"}
    page = client.post("/t/acme/members/", invite, follow=True).content.decode()
    assert "Invitation sent to newbie." in page
    # An unknown username gets the very same answer: nothing tells which ones exist.
    unknown = {**invite, "username": "nobody-here"}
    page = client.post("/t/acme/members/", unknown, follow=True).content.decode()
    assert "Invitation sent to nobody-here." in page
    assert not Membership.objects.filter(user=newbie).exists()

    # newbie sees the invitation on their home page and joins.
    joining = client_for(newbie)
    home = joining.get("/").content.decode()
    assert "Acme, as operator" in home
    invitation = acme.invitations.get(username="newbie")
    assert joining.post(f"/accounts/invitations/{invitation.pk}/join/").status_code == 302
    membership = Membership.objects.get(user=newbie, tenant=acme)
    assert membership.role == "operator"

    client.post("/t/acme/members/", {"action": "role", "id": membership.pk, "role": "viewer"})
    membership.refresh_from_db()
    assert membership.role == "viewer"
    # Inviting someone already a member gives the role at once.
    page = client.post("/t/acme/members/", {**invite, "role": "admin"}, follow=True)
    assert "newbie is admin now." in page.content.decode()
    client.post("/t/acme/members/", {"action": "remove", "id": membership.pk})
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert client_for(people["watcher"]).get("/t/acme/members/").status_code == 403
    other = Membership.objects.get(user=people["other"])  # globex's: not reachable here
    assert client.post("/t/acme/members/", {"action": "remove", "id": other.pk}).status_code == 404


def test_admin_creates_a_key_shown_once_and_revokes_it(people, acme):
    from tenants.models import ApiKey

    client = client_for(people["boss"])
    page = client.post("/t/acme/api-keys/", {"name": "pbx sync", "role": "viewer"}, follow=True)
    assert "no-store" in page["Cache-Control"]
    text = page.content.decode()
    key = ApiKey.objects.get(tenant=acme)
    assert f"pk_{key.prefix}_" in text and 'id="new-key"' in text
    assert 'id="new-key"' not in client.get("/t/acme/api-keys/").content.decode()
    client.post("/t/acme/api-keys/", {"action": "revoke", "key": key.pk})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert client_for(people["desk"]).get("/t/acme/api-keys/").status_code == 403


def test_a_refused_deploy_is_explained_without_other_tenants_lots(people, acme, server, acme_ctx):
    from lots.models import Deployment

    make_lot(acme, acme_ctx, "main", name="Reception")
    Deployment.objects.create(
        server=server,
        status=Deployment.Status.ROLLED_BACK,
        error="Asterisk does not run what was written: lot acme_main: parkingtime is 45, "
        "expected 60; lot globex_secret: not running; lot globex_other: disabled",
    )
    page = client_for(people["boss"]).get("/t/acme/lots/main/").content.decode()
    assert "Not applied on pbx1" in page
    assert "lot acme_main: parkingtime is 45, expected 60" in page
    assert "2 problems in other tenants&#x27; lots" in page
    assert "globex" not in page


def test_the_last_admin_cannot_leave_and_bad_member_input_is_named(people, acme):
    client = client_for(people["boss"])
    boss = Membership.objects.get(user=people["boss"])
    page = client.post("/t/acme/members/", {"action": "remove", "id": boss.pk})
    assert "A tenant always keeps one admin" in page.content.decode()
    page = client.post("/t/acme/members/", {"action": "role", "id": boss.pk, "role": "x"})
    assert "Role: Choose viewer, operator or admin." in page.content.decode()
    assert client.post("/t/acme/members/", {"action": "remove", "id": "x"}).status_code == 404
    boss.refresh_from_db()
    assert boss.role == Role.ADMIN
    # With a second admin, the first may step down.
    Membership.objects.filter(user=people["desk"]).update(role=Role.ADMIN)
    client.post("/t/acme/members/", {"action": "role", "id": boss.pk, "role": "viewer"})
    boss.refresh_from_db()
    assert boss.role == Role.VIEWER


def test_an_api_key_needs_a_name_and_a_role(people, acme):
    from tenants.models import ApiKey

    client = client_for(people["boss"])
    page = client.post("/t/acme/api-keys/", {"name": " ", "role": "viewer"}).content.decode()
    assert "Name: This field cannot be blank." in page
    page = client.post("/t/acme/api-keys/", {"name": "crm", "role": "root"}).content.decode()
    assert "Role: Choose viewer, operator or admin." in page
    assert not ApiKey.objects.exists()


def test_the_comeback_policy_is_told_in_words_with_its_asterisk_options(
    people, acme, server, acme_ctx
):
    client = client_for(people["boss"])
    page = client.get("/t/acme/new-lot/").content.decode()  # the defaults
    assert "After 45 s, the call rings the phone that parked it for 30 s" in page
    assert "<code>comebacktoorigin = yes</code>" in page

    post = lot_form_data(server, acme_ctx, comebackcontext=acme_ctx.pk, parkingtime="90")
    del post["comebacktoorigin"]
    response = client.post("/t/acme/new-lot/", post, follow=True)
    page = response.content.decode()
    assert "After 90 s, the call goes to the context acme-parking" in page
    assert "<code>comebackcontext = acme-parking</code>" in page

    response = client.post("/t/acme/new-lot/", lot_form_data(server, acme_ctx, parkingtime="0"))
    assert "it never times out" in response.content.decode()


def test_history_filters_charts_and_pages(people, acme, acme_ctx, settings):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from tests.factories import make_call

    settings.TIME_ZONE = "Europe/Paris"
    main = make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=709)
    side = make_lot(acme, acme_ctx, "side", name="Side", parkpos_start=801, parkpos_end=809)
    day = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Paris"))
    at = day + timedelta(hours=9)  # 09:00 in Paris, 08:00 UTC
    for i in range(3):
        make_call(
            main,
            701,
            at,
            ended_at=at + timedelta(seconds=20),
            outcome="retrieved",
            caller_id_num=f"55510{i}",
        )
    make_call(
        main,
        702,
        at,
        ended_at=at + timedelta(seconds=50),
        outcome="timed_out",
        caller_id_name="Ms Late",
    )
    make_call(side, 801, at + timedelta(hours=5))  # still parked
    for i in range(60):  # an older day, for paging
        make_call(side, 802, day - timedelta(days=2, minutes=i), ended_at=day, outcome="abandoned")
    client = client_for(people["watcher"])

    response = client.get("/t/acme/history/", {"day": "2026-03-02"})
    stats, page = response.context["stats"], response.context["page"]
    assert stats.total == 5 and dict(stats.hours)["9:00"] == 4 and dict(stats.hours)["14:00"] == 1
    assert stats.outcomes == [("retrieved", 3), ("still parked", 1), ("timed out", 1)]
    assert stats.average_wait == round((3 * 20 + 50) / 4)
    assert page.paginator.count == 5
    html = response.content.decode()
    assert "retrieved: 3 (60%)" in html and "the busiest hour 9:00 with 4" in html

    narrowed = client.get("/t/acme/history/", {"lot": "main", "outcome": "timed_out"})
    assert [c.caller_id_name for c in narrowed.context["page"]] == ["Ms Late"]
    by_caller = client.get("/t/acme/history/", {"caller": "55510"})
    assert by_caller.context["page"].paginator.count == 3
    still = client.get("/t/acme/history/", {"outcome": "parked"})
    assert [c.space for c in still.context["page"]] == [801]

    # Sixty older calls: pages of fifty, links keep the filters.
    older = client.get("/t/acme/history/", {"lot": "side", "page": "2"})
    assert older.context["page"].number == 2 and len(older.context["page"]) == 11
    assert 'href="?lot=side&amp;page=1"' in older.content.decode()

    # Bad filters: the message names the field, and nothing is listed.
    assert "day" in client.get("/t/acme/history/", {"day": "9999-12-31"}).context["filters"].errors
    bad = client.get("/t/acme/history/", {"day": "yesterday", "lot": "globex-lot"})
    errors = bad.context["filters"].errors
    assert "Enter a valid date." in errors["day"] and "lot" in errors
    assert bad.context["page"].paginator.count == 0
    assert 'id="id_day_error"' in bad.content.decode()


def test_a_lot_whose_slug_is_new_opens_like_any_other(people, acme, acme_ctx):
    make_lot(acme, acme_ctx, "new", name="The new one")
    page = client_for(people["boss"]).get("/t/acme/lots/new/").content.decode()
    assert "Lot The new one" in page


def test_a_lot_that_lost_a_race_is_refused_next_to_the_field(
    people, acme, server, acme_ctx, monkeypatch
):
    from lots import services

    save = services.lot_save

    def rival_saves_first(lot, **kwargs):  # between the form's check and the locked save
        make_lot(
            acme, acme_ctx, "rival", name="Rival", parkext="", parkpos_start=715, parkpos_end=716
        )
        return save(lot, **kwargs)

    monkeypatch.setattr(services, "lot_save", rival_saves_first)
    response = client_for(people["boss"]).post("/t/acme/new-lot/", lot_form_data(server, acme_ctx))
    assert response.status_code == 200
    assert "lot &#x27;Rival&#x27;" in response.content.decode()
    assert "parkpos_start" in response.context["form"].errors
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_deploy_errors_keep_a_hyphenated_tenants_own_problems():
    from lots.models import Deployment
    from lots.selectors import deployment_error_for
    from tenants.models import Tenant

    deployment = Deployment(
        error="Asterisk does not run what was written: lot front-desk_main: not running; "
        "lot front_x: disabled; lot other-co_main: not running"
    )
    told = deployment_error_for(Tenant(slug="front-desk"), deployment)
    assert told == (
        "Asterisk does not run what was written: lot front-desk_main: not running; "
        "2 problems in other tenants' lots."
    )


def test_history_of_a_day_when_the_clocks_change_has_its_real_hours(
    people, acme, acme_ctx, settings
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.factories import make_call

    settings.TIME_ZONE = "Europe/Paris"  # 2026-03-29: 02:00 becomes 03:00
    paris = ZoneInfo("Europe/Paris")
    main = make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)
    make_call(main, 701, datetime(2026, 3, 29, 1, 30, tzinfo=paris))
    make_call(main, 702, datetime(2026, 3, 29, 3, 30, tzinfo=paris))
    make_call(main, 703, datetime(2026, 3, 29, 23, 30, tzinfo=paris))
    response = client_for(people["watcher"]).get("/t/acme/history/", {"day": "2026-03-29"})
    hours = dict(response.context["stats"].hours)
    assert len(response.context["stats"].hours) == 23 and "2:00" not in hours
    assert hours["1:00"] == hours["3:00"] == hours["23:00"] == 1


def test_the_timeout_chain_is_told_in_words_with_its_dialplan(people, acme, server, acme_ctx):
    client = client_for(people["boss"])
    phones = make_context(server, acme, "acme-phones")
    post = lot_form_data(
        server,
        acme_ctx,
        timeout_policy="chain",
        comeback_ring_parker="on",
        comeback_cid_prefix="P",
        fallback="destination",
        fallback_context=phones.pk,
        fallback_extension="200",
        repark_limit="1",
        reminder_seconds="60",
        comebackdialtime="20",
        parkingtime="45",
    )
    page = client.post("/t/acme/new-lot/", post, follow=True).content.decode()
    assert "After 45 s, the call rings the phone that parked it for 20 s" in page
    assert "shown as &#x27;P701 &lt;caller&gt;&#x27;" in page
    assert "then, if nobody answers, it goes to 200@acme-phones" in page
    assert "<code>comebackcontext = parkweb-timeout-acme_sales</code>" in page
    assert "<code>Goto(200,acme-phones,1)</code>" not in page
    assert "<code>Goto(acme-phones,200,1)</code>" in page
    assert "every 60 s the parker" in page
    # Another tenant's context is not offered as the fallback's.
    globex_ctx = make_context(server, people["other"].memberships.get().tenant, "globex-x")
    refused = client.post(
        "/t/acme/new-lot/", {**post, "slug": "other", "fallback_context": globex_ctx.pk}
    )
    assert html.escape(rules.CONTEXT_NOT_OWNED) in refused.content.decode()


def test_history_says_what_followed_a_timeout_and_filters_on_it(people, acme, server, acme_ctx):
    lot = make_lot(acme, acme_ctx, "main")
    now = timezone.now()
    for after in ("answered", "fallback", ""):
        ParkedCall.objects.create(
            server=server,
            lot=lot,
            tenant=acme,
            lot_name="acme_main",
            space=701,
            parkee_channel="Local/x",
            uniqueid=f"u{after}",
            parked_at=now,
            ended_at=now,
            outcome="timed_out",
            after_timeout=after,
        )
    client = client_for(people["watcher"])
    page = client.get("/t/acme/history/").content.decode()
    assert "timed out, then answered by the parker" in page
    assert "timed out, then sent to the fallback" in page
    only = client.get("/t/acme/history/?outcome=timed_out.fallback").content.decode()
    assert only.count('<tr role="row"><td role="cell" data-label="Parked">') == 1
    assert "then sent to the fallback" in only


def test_admin_adds_a_webhook_whose_secret_is_shown_once(people, acme, settings):
    settings.DEBUG = False
    client = client_for(people["boss"])
    refused = client.post("/t/acme/webhooks/", {"action": "add", "url": "http://crm.example.com/"})
    assert "Only https URLs are allowed" in refused.content.decode()
    page = client.post(
        "/t/acme/webhooks/",
        {"action": "add", "url": "https://crm.example.com/p", "events": ["call.parked"]},
        follow=True,
    )
    assert "no-store" in page["Cache-Control"]
    text = page.content.decode()
    assert 'id="new-secret"' in text and "whsec_" in text
    again = client.get("/t/acme/webhooks/").content.decode()
    assert "whsec_" not in again and "call.parked" in again
    hook = Webhook.objects.get(tenant=acme)
    client.post("/t/acme/webhooks/", {"action": "test", "id": hook.pk})
    assert hook.deliveries.filter(event_type="test").count() == 1
    assert client_for(people["desk"]).get("/t/acme/webhooks/").status_code == 403
    other = client_for(people["other"])
    assert other.post("/t/acme/webhooks/", {"action": "delete", "id": hook.pk}).status_code == 404
    client.post("/t/acme/webhooks/", {"action": "delete", "id": hook.pk})
    assert not Webhook.objects.filter(tenant=acme).exists()


def test_a_member_turns_alert_mail_on_from_the_board(people, acme):
    client = client_for(people["watcher"])
    assert 'id="alert-mail"' in client.get("/t/acme/board/").content.decode()
    client.post("/t/acme/alert-mail/", {"alert_mail": "on"})
    assert Membership.objects.get(user=people["watcher"]).alert_mail
    client.post("/t/acme/alert-mail/", {})
    assert not Membership.objects.get(user=people["watcher"]).alert_mail

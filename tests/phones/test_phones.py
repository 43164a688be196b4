"""Parking with real SIP phones, as the call-parking guide's scenarios run in an office:
a blind transfer to the park extension, one-touch parking with #72, a busy lamp on a
space that stays lit while another lot is saved, and a retrieve from the API that rings
a real phone. The phones' dialplan is the one the lot's page gives the tenant."""

import time

import pytest

from lots.models import Deployment
from tests.integration.test_deploy import wait_for

from .conftest import WORKDIR
from .harness import Lamp, Phone

pytestmark = pytest.mark.integration

PARKED = "/api/v1/tenants/acme/lots/main/parked-calls/"


def talk(caller: Phone, callee: Phone) -> None:
    """`caller` rings `callee`, who answers; both are in the call when this returns."""
    caller_mark, callee_mark = caller.mark(), callee.mark()
    caller.dial(callee.line.number)
    callee.wait_for("CALL_INCOMING", callee_mark)
    callee.answer()
    callee.wait_for("CALL_ESTABLISHED", callee_mark)
    caller.wait_for("CALL_ESTABLISHED", caller_mark)
    time.sleep(2)  # baresip 1.0 refuses to transfer in a call's first ~1.5 s


def parked_in(world, space: int):
    """The call parked in `space` once parkweb has recorded it."""
    return wait_for(
        lambda: world.calls().filter(space=space, ended_at__isnull=True).first(),
        timeout=15,
        what=f"a call parked in {space}",
    )


def ended(world, call):
    call.refresh_from_db()
    return call if call.ended_at else None


def test_blind_transfer_to_the_park_extension_parks_and_any_phone_picks_it_up(world, phones):
    alice, bob, carol = phones["alice"], phones["bob"], phones["carol"]
    talk(bob, alice)
    bob_mark = bob.mark()
    alice.transfer("700")

    call = parked_in(world, 701)
    listed = world.api.get(PARKED).json()  # what the board shows, too (lots.frames)
    assert [(c["space"], c["caller_id_num"], c["parker_dial_string"]) for c in listed] == [
        (701, "202", "PJSIP/201")
    ]
    assert (listed[0]["caller_id_name"], listed[0]["lot"]) == ("Bob", "main")
    # Bob was talking to Alice when she parked him.
    assert (listed[0]["connected_line_num"], listed[0]["connected_line_name"]) == ("201", "Alice")

    carol_mark = carol.mark()
    carol.dial("701")
    carol.wait_for("CALL_ESTABLISHED", carol_mark)
    call = wait_for(lambda: ended(world, call), timeout=15, what="the pickup")
    assert (call.outcome, call.retriever_caller_id_num) == ("retrieved", "203")
    # Bob is talking to Carol now: his call never ended.
    assert not [e for e in bob.events[bob_mark:] if e.get("type") == "CALL_CLOSED"]
    history = world.api.get("/api/v1/tenants/acme/parked-calls/history/").json()["results"]
    assert [(h["outcome"], h["retriever_caller_id_name"]) for h in history] == [
        ("retrieved", "Carol")
    ]


def test_a_phone_that_dials_the_park_extension_parks_itself(world, phones):
    alice, carol = phones["alice"], phones["carol"]
    carol_mark = carol.mark()
    carol.dial("700")  # Carol waits on hold in the first free space, for anyone to pick up
    carol.wait_for("CALL_ESTABLISHED", carol_mark)
    call = parked_in(world, 701)
    assert (call.caller_id_num, call.lot.slug) == ("203", "main")

    alice_mark = alice.mark()
    alice.dial("701")
    alice.wait_for("CALL_ESTABLISHED", alice_mark)
    call = wait_for(lambda: ended(world, call), timeout=15, what="the pickup")
    assert (call.outcome, call.retriever_caller_id_num) == ("retrieved", "201")


def test_one_touch_parking_with_the_servers_parkcall_code(world, phones):
    alice, bob = phones["alice"], phones["bob"]
    talk(bob, alice)
    alice.press("#72")  # RFC 4733, in the call's media

    call = parked_in(world, 701)
    assert (call.lot.slug, call.caller_id_num) == ("main", "202")
    assert "701" in world.pbx.cli("parking show acme_main")


def test_busy_lamp_stays_lit_while_another_lot_is_saved(world, phones):
    alice, bob, carol = phones["alice"], phones["bob"], phones["carol"]
    lamp = Lamp("701", world.pbx.sip_port, WORKDIR)
    try:
        first = lamp.wait_for("terminated")  # idle: no call in 701
        talk(bob, alice)
        alice.transfer("700")
        call = parked_in(world, 701)
        lit = lamp.wait_for("confirmed", after=first + 1)

        # Another lot saved through the API: parkweb rewrites res_parking.conf and
        # reloads it, which ends every subscription to res_parking's own hints.
        deploys = Deployment.objects.filter(server=world.server).count()
        created = world.api.post(
            "/api/v1/tenants/acme/lots/",
            {
                "server": world.server.name,
                "slug": "night",
                "name": "Night",
                "context": "acme-parking",
                "parkext": "750",
                "parkpos_start": 751,
                "parkpos_end": 759,
            },
            format="json",
        )
        assert created.status_code == 201, created.content
        deployments = Deployment.objects.filter(server=world.server).order_by("-pk")
        latest = wait_for(
            lambda: (
                deployments.count() > deploys
                and deployments.exclude(status=Deployment.Status.PENDING).first()
            ),
            timeout=30,
            what="the deploy of the new lot",
        )
        assert (latest.status, latest.reloaded) == ("ok", True), latest.error
        assert "Parking Spaces      :  751-759" in world.pbx.cli("parking show acme_night")
        time.sleep(1)  # a terminated subscription would be NOTIFYed by now

        after_reload = lamp.notifies()[lit + 1 :]
        assert after_reload == [], after_reload  # no "terminated", no flicker
        assert lamp.process.poll() is None  # still subscribed
        assert "701/dialog" in world.pbx.cli("pjsip show subscriptions inbound")

        # The PBX's administrator reloads the dialplan: parkweb_hints.conf, which the
        # sandbox's extensions.conf includes as the README says, brings the hints back
        # with their subscribers.
        hints_file = world.pbx.config_dir / "parkweb_hints.conf"
        assert "exten => 701,hint,park:701@acme-parking" in hints_file.read_text()
        world.pbx.cli("dialplan reload")
        time.sleep(1)
        assert lamp.notifies()[lit + 1 :] == [], lamp.notifies()
        assert "701/dialog" in world.pbx.cli("pjsip show subscriptions inbound")

        carol_mark = carol.mark()
        carol.dial("701")
        carol.wait_for("CALL_ESTABLISHED", carol_mark)
        dark = lamp.wait_for("terminated", after=lit + 1)
        assert lamp.notifies()[dark][0] == "active"  # idle, and still subscribed
        wait_for(lambda: ended(world, call), timeout=15, what="the pickup")
    finally:
        lamp.stop()


def test_retrieve_from_the_api_rings_the_tenants_phone(world, phones):
    alice, bob, carol = phones["alice"], phones["bob"], phones["carol"]
    talk(bob, alice)
    alice.transfer("700")
    call = parked_in(world, 701)
    wait_for(lambda: alice.wait_for("CALL_CLOSED", timeout=5), what="alice to leave")

    carol_mark, bob_mark = carol.mark(), bob.mark()
    answer = world.api.post(f"{PARKED}701/retrieve/", {"extension": "203"}, format="json")
    assert answer.status_code == 202, answer.content
    carol.wait_for("CALL_INCOMING", carol_mark)
    call.refresh_from_db()
    assert (call.ended_at, call.outcome) == (None, "")  # parked until Carol answers
    carol.answer()
    carol.wait_for("CALL_ESTABLISHED", carol_mark)

    call = wait_for(lambda: ended(world, call), timeout=15, what="the retrieve")
    assert call.outcome == "retrieved"
    assert not [e for e in bob.events[bob_mark:] if e.get("type") == "CALL_CLOSED"]
    assert world.api.get(PARKED).json() == []

"""One tenant can neither reach into nor break another, on the real Asterisk: Retrieve
rings only the tenant's own phones and connects exactly the call meant; one odd call does
not stop the live view of the others."""

import asyncio
import time

import pytest
from rest_framework.test import APIClient

from lots import services
from lots.models import ParkedCall
from lots.supervisor import LocalLeases, Supervisor
from tenants.actors import Actor
from tenants.models import AuditEntry
from tests.factories import make_context, make_lot, make_phones

from .test_deploy import wait_for
from .test_live import Site, communicator, next_of, redis_layer, session_cookie  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def site(transactional_db, asterisk, redis_layer):  # noqa: F811
    asterisk.hangup_all()
    site = Site(asterisk)
    make_phones(site.server, site.acme, "acme-phones", "201-202")
    make_phones(site.server, site.globex, "globex-phones", "301-309")
    site.supervisor = Supervisor(LocalLeases(), name="test-supervisor").start()
    wait_for(site.healthy, timeout=20, what="the watcher to connect and resync")
    yield site
    site.supervisor.stop()
    asterisk.hangup_all()


def channel_count(asterisk) -> int:
    return int(asterisk.cli("core show channels count").split(" active channel")[0].split()[-1])


def retrieve_url(call) -> str:
    return f"/api/v1/tenants/acme/lots/{call.lot.slug}/parked-calls/{call.space}/retrieve/"


def as_alice(site) -> APIClient:
    client = APIClient()
    client.force_authenticate(site.alice)
    return client


REACHING_OUT = [
    ({"device": "Local/701@globex-p"}, "device"),  # another tenant's lot context
    ({"device": "Local/999@no-tenants-context"}, "device"),  # a context no tenant owns
    ({"device": "PJSIP/alice"}, "device"),  # any device at all
    ({"extension": "301"}, "extension"),  # another tenant's phone
    ({"extension": "203"}, "extension"),  # outside acme's range
    ({"extension": "201@globex-phones"}, "extension"),
    ({"extension": "Local/201@globex-phones"}, "extension"),
    ({"extension": "_X."}, "extension"),
    ({"extension": "201\r\nAction: Originate"}, "extension"),
    ({"extension": "701"}, "extension"),  # a parking space, not a phone
]


def test_a_tenant_operator_cannot_ring_anything_outside_its_own_phones(site):
    site.asterisk.park_call("parkacme_main", "#72", keep=True)
    call = wait_for(lambda: site.open_calls().first(), what="a parked call")
    before = channel_count(site.asterisk)
    client = as_alice(site)
    refused = 0
    for body, field in REACHING_OUT:
        response = client.post(retrieve_url(call), {**body, "call": call.pk}, format="json")
        assert response.status_code == 400, (body, response.json())
        assert field in response.json(), (body, response.json())
        refused += 1
    time.sleep(0.5)
    assert channel_count(site.asterisk) == before  # nothing was rung
    assert refused == len(REACHING_OUT)
    assert not AuditEntry.objects.filter(action="retrieve").exists()
    call.refresh_from_db()
    assert call.active


def test_retrieve_rings_the_members_phone_and_connects_exactly_that_call(site):
    client = as_alice(site)
    assert client.patch("/api/v1/tenants/acme/me/", {"extension": "301"}, format="json").json()[
        "extension"
    ] == ["Extension 301 is not one of your phones (201-202)."]
    assert (
        client.patch("/api/v1/tenants/acme/me/", {"extension": "201"}, format="json").status_code
        == 200
    )

    site.asterisk.park_call("parkacme_main", "#72", keep=True)
    call = wait_for(lambda: site.open_calls().first(), what="a parked call")
    # No extension given: the member's own (201, which answers at once) is rung.
    response = client.post(retrieve_url(call), {"call": call.pk}, format="json")
    assert response.status_code == 202, response.json()
    call = wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, outcome="retrieved").first(),
        what="the call to be retrieved",
    )
    assert call.retriever_channel.startswith("Local/201@acme-phones")
    assert (call.retriever_caller_id_num, call.retriever_caller_id_name) == ("201", "alice")
    assert AuditEntry.objects.get(action="retrieve").detail["extension"] == "201"


def test_retrieve_never_connects_a_newcomer_in_the_same_space(site):
    """The phone (202) answers three seconds after it is rung; meanwhile the first call
    leaves and a second parks in the same space. The phone gets nothing of the second."""
    asterisk = site.asterisk
    first_event = asterisk.park_call("parkacme_main", "#72", keep=True)
    first = wait_for(lambda: site.open_calls().first(), what="the first call")
    response = as_alice(site).post(
        retrieve_url(first), {"call": first.pk, "extension": "202"}, format="json"
    )
    assert response.status_code == 202
    services.parked_call_hangup(first, Actor.of(site.alice))  # the first call leaves
    wait_for(
        lambda: ParkedCall.objects.filter(pk=first.pk).exclude(outcome="").exists(),
        what="the first call to end",
    )
    second_event = asterisk.park_call("parkacme_main", "#72", keep=True)
    assert second_event["ParkingSpace"] == first_event["ParkingSpace"]  # findslot first
    second = wait_for(lambda: site.open_calls().first(), what="the second call")

    time.sleep(5)  # the phone has answered by now
    second.refresh_from_db()
    first.refresh_from_db()
    assert second.active and second.outcome == ""  # still parked, untouched
    assert first.outcome == "abandoned" and first.retriever_channel == ""
    assert "202@acme-phones" not in asterisk.cli("core show channels")  # nothing bridged


def test_a_never_timing_out_call_parked_while_unwatched_stops_no_one(site):
    """parkingtime 0: Asterisk reports the call's timeout as a wrapped 2**64 - n. After
    the watcher comes back the call is on the board as "no timeout", and another tenant's
    new call still reaches its board within a second."""
    asterisk = site.asterisk
    make_lot(
        site.acme,
        make_context(site.server, site.acme, "acme-never"),
        "never",
        parkext="900",
        parkpos_start=901,
        parkpos_end=909,
        parkingtime=0,
    )
    site.supervisor.stop()
    asterisk.park_call("parkacme_never", "#72", keep=True)
    time.sleep(1.2)  # its timeout now wraps below zero
    site.supervisor = Supervisor(LocalLeases(), name="test-supervisor-2").start()
    wait_for(site.healthy, timeout=20, what="the watcher to resync")
    never = wait_for(
        lambda: site.open_calls().filter(lot_name="acme_never").first(), what="the resync"
    )
    assert never.timeout_at is None

    gina = session_cookie(site.gina)

    async def globex_board() -> float:
        ws = communicator("globex", gina)
        assert (await ws.connect())[0]
        await ws.receive_json_from(timeout=5)  # snapshot
        await asyncio.to_thread(asterisk.park_call, "parkglobex_main", "#72", keep=True)
        seen_at = time.monotonic()  # Asterisk's ParkedCall event has arrived
        parked = await next_of(ws, "parked")
        await ws.disconnect()
        assert parked["call"]["lot_name"] == "globex_main"
        return time.monotonic() - seen_at

    assert asyncio.run(globex_board()) < 1.0
    health = site.server.health
    health.refresh_from_db()
    assert health.connected and health.synced

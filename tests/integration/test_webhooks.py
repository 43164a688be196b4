"""Webhooks and alerts on the real Asterisk, delivered by a real Celery worker to a real
HTTP receiver on loopback: parking events arrive in order and signed, a tenant never gets
another's, a full lot and a long wait fire once and clear."""

import time

import pytest
from django.core import mail

from lots import services, webhooks
from lots.models import ParkedCall, ParkingLot
from tenants.actors import SYSTEM
from tenants.models import Membership
from tests.factories import make_context, make_lot
from tests.receiver import Receiver

from .test_containment import site  # noqa: F401
from .test_deploy import wait_for
from .test_live import redis_layer  # noqa: F401
from .workers import celery_workers

pytestmark = pytest.mark.integration


@pytest.fixture
def hooks(site, settings):  # noqa: F811
    """A receiver and a webhook for each tenant; a worker that delivers (DEBUG, so plain
    http to this machine is allowed, as it is nowhere else)."""
    settings.DEBUG = True
    acme, globex = Receiver(), Receiver()
    with celery_workers() as start_worker:
        start_worker(DEBUG="1", PARKWEB_WEBHOOK_RETRY_BASE="0.2", PARKWEB_WEBHOOK_TIMEOUT="2")
        _, secret = services.webhook_create(site.acme, actor=SYSTEM, url=acme.url)
        services.webhook_create(site.globex, actor=SYSTEM, url=globex.url)
        yield acme, globex, secret
    acme.close()
    globex.close()


def types(receiver) -> list[str]:
    return [event["type"] for event in receiver.events()]


def test_parked_retrieved_and_timed_out_calls_reach_the_tenant_in_order_signed(site, hooks):  # noqa: F811
    acme, globex, secret = hooks
    asterisk = site.asterisk
    event = asterisk.park_call("parkacme_main", "#72", keep=True)
    space = event["ParkingSpace"]
    wait_for(lambda: types(acme) == ["call.parked"], what="call.parked at the receiver")
    asterisk.originate(f"Local/{space}@acme-parking", 2)  # dialling the space picks it up
    wait_for(lambda: len(acme.received) == 2, what="call.retrieved")
    asterisk.hangup_all()
    asterisk.park_call("parkacme_quick", "#72", keep=True)  # times out after 2 s
    wait_for(lambda: len(acme.received) == 4, timeout=20, what="the timed-out call's events")
    assert types(acme) == ["call.parked", "call.retrieved", "call.parked", "call.timed_out"]
    first, retrieved = acme.events()[:2]
    assert first["call"]["id"] == retrieved["call"]["id"] and first["tenant"] == "acme"
    assert retrieved["call"]["outcome"] == "retrieved" and retrieved["lot"] == "main"
    for got in acme.received:  # each signed with acme's secret, as the README says
        stamp = int(got.headers["X-Parkweb-Timestamp"])
        assert got.headers["X-Parkweb-Signature"] == webhooks.signature(secret, stamp, got.body)
        assert abs(time.time() - stamp) < 60
    assert len({e["id"] for e in acme.events()}) == 4
    assert globex.received == []  # never another tenant's events


def test_a_full_lot_fires_once_frees_once_and_a_long_wait_fires_once(site, hooks):  # noqa: F811
    acme, globex, _ = hooks
    asterisk = site.asterisk
    site.alice.email = "alice@acme.example"
    site.alice.save()
    Membership.objects.filter(user=site.alice).update(alert_mail=True)
    small = make_lot(
        site.acme,
        make_context(site.server, site.acme, "acme-small"),
        "small",
        parkext="700",
        parkpos_start=781,
        parkpos_end=782,
        parkingtime=120,
        alert_free_spaces=1,
        alert_wait_seconds=5,
    )
    # The lot's deployment is told to its tenant, and to no other.
    wait_for(lambda: "deployment.finished" in types(acme), what="deployment.finished")
    finished = next(e for e in acme.events() if e["type"] == "deployment.finished")
    assert finished["deployment"]["status"] == "ok" and finished["deployment"]["set_aside"] == []
    assert globex.received == []
    first = asterisk.park_call("parkacme_small", "#72", keep=True)
    wait_for(lambda: ParkingLot.objects.get(pk=small.pk).almost_full_since, what="almost full")
    asterisk.park_call("parkacme_small", "#72", keep=True)
    wait_for(lambda: "lot.full" in types(acme), what="lot.full")
    asterisk.cli(f"channel request hangup {first['ParkeeChannel']}")
    wait_for(lambda: "lot.available" in types(acme), what="lot.available")
    wait_for(lambda: "call.waiting_long" in types(acme), timeout=15, what="call.waiting_long")
    time.sleep(2.5)  # one more supervisor round: nothing fires twice
    lot_events = [t for t in types(acme) if t.startswith("lot.") or t.endswith("waiting_long")]
    assert lot_events == ["lot.full", "lot.available", "call.waiting_long"]
    waiting = next(e for e in acme.events() if e["type"] == "call.waiting_long")
    still = ParkedCall.objects.get(lot=small, ended_at__isnull=True)
    assert waiting["call"]["id"] == still.pk and waiting["call"]["waiting_long"] is True
    subjects = [m.subject for m in mail.outbox if m.to == ["alice@acme.example"]]
    assert any("has 1 free space" in s for s in subjects)
    assert any("is full" in s for s in subjects)
    assert any("has waited 5 s" in s for s in subjects)  # alice is an operator: any member

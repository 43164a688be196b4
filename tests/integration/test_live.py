"""Live parking state on the real Asterisk: the watcher turns the guide's flows into
episodes and websocket messages, keeps tenants apart, and survives drops and restarts."""

import asyncio
import os
import signal
import time

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from lots.models import ParkedCall, ServerHealth
from lots.routing import websocket_application
from lots.supervisor import LocalLeases, Supervisor
from tenants.models import Membership, Role
from tests.factories import make_context, make_lot, make_server, make_tenant

from .test_deploy import wait_for
from .workers import isolated_redis_url

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_layer(settings):
    """The Redis channel layer, as in production: the watcher pushes from its own thread."""
    url = isolated_redis_url().rsplit("/", 1)[0] + "/12"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


class Site:
    def __init__(self, asterisk):
        self.asterisk = asterisk
        self.server = make_server("pbx-live", parkcall="#72", **asterisk.server_fields())
        self.acme = make_tenant("acme")
        self.globex = make_tenant("globex")
        self.lot = make_lot(
            self.acme,
            make_context(self.server, self.acme, "acme-parking"),
            "main",
            parkext="700",
            parkpos_start=701,
            parkpos_end=709,
        )
        self.quick = make_lot(
            self.acme,
            make_context(self.server, self.acme, "acme-quick"),
            "quick",
            parkext="800",  # one-touch parking needs a park extension (see README)
            parkpos_start=801,
            parkpos_end=809,
            parkingtime=2,
            comebackdialtime=1,
        )
        self.other = make_lot(
            self.globex,
            make_context(self.server, self.globex, "globex-p"),
            "main",
            parkext="700",
            parkpos_start=701,
            parkpos_end=709,
        )
        users = get_user_model().objects
        self.alice = users.create_user("alice", password="pw-alice-123")
        self.gina = users.create_user("gina", password="pw-gina-123")
        Membership.objects.create(user=self.alice, tenant=self.acme, role=Role.OPERATOR)
        Membership.objects.create(user=self.gina, tenant=self.globex, role=Role.ADMIN)

    def healthy(self) -> bool:
        health = ServerHealth.objects.filter(server=self.server).first()
        return bool(health and health.connected and health.synced)

    def open_calls(self):
        return ParkedCall.objects.filter(server=self.server, ended_at__isnull=True)


@pytest.fixture
def site(transactional_db, asterisk, redis_layer):
    asterisk.hangup_all()
    site = Site(asterisk)
    supervisor = Supervisor(LocalLeases(), name="test-supervisor").start()
    site.supervisor = supervisor
    wait_for(site.healthy, timeout=20, what="the watcher to connect and resync")
    yield site
    supervisor.stop()
    asterisk.hangup_all()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(tenant_slug: str, session: str = "", origin: bytes = b"http://127.0.0.1:8000"):
    """A websocket client; `session` is a session id from `session_cookie` (made before
    entering the event loop: the ORM is synchronous)."""
    headers = [(b"origin", origin), (b"host", b"127.0.0.1:8000")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(
        websocket_application, f"/ws/t/{tenant_slug}/parking/", headers=headers
    )


async def next_of(ws, kind: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_json_from(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def test_guide_flows_reach_the_tenants_board(site):
    asterisk = site.asterisk
    alice = session_cookie(site.alice)

    async def scenario():
        ws = communicator("acme", alice)
        connected, _ = await ws.connect()
        assert connected
        snapshot = await ws.receive_json_from(timeout=5)
        assert snapshot["type"] == "snapshot" and snapshot["role"] == "operator"
        assert {lot["asterisk_name"] for lot in snapshot["lots"]} == {"acme_main", "acme_quick"}

        # Park by DTMF (#72, Dial k): "parked" with lot, space and caller ID within 1 s.
        event = await asyncio.to_thread(asterisk.park_call, "parkacme_main", "#72", keep=True)
        seen_at = time.monotonic()
        parked = await next_of(ws, "parked")
        latency = time.monotonic() - seen_at
        call = parked["call"]
        assert (call["lot"], call["space"]) == (site.lot.slug, int(event["ParkingSpace"]))
        assert (call["caller_id_num"], call["caller_id_name"]) == ("5551234", "Test Caller")
        assert latency < 1.0, f"parked arrived {latency:.3f}s after Asterisk's event"

        # Retrieve by dialling the space: "unparked" with the retriever.
        space = call["space"]
        await asyncio.to_thread(asterisk.originate, f"Local/{space}@acme-parking", 2)
        unparked = await next_of(ws, "unparked")
        assert unparked["call"]["id"] == call["id"]
        assert unparked["call"]["outcome"] == "retrieved"
        assert unparked["call"]["retriever_channel"].startswith(f"Local/{space}@acme-parking")
        await asyncio.to_thread(asterisk.hangup_all)

        # A short parking time: "timed out".
        await asyncio.to_thread(asterisk.park_call, "parkacme_quick", "#72", keep=True)
        await next_of(ws, "parked")
        timed_out = await next_of(ws, "timed_out", timeout=10)
        assert timed_out["call"]["outcome"] == "timed_out"
        await asyncio.to_thread(asterisk.hangup_all)

        # The caller hangs up while parked: "abandoned".
        await asyncio.to_thread(asterisk.park_call, "parkacme_main", "#72", keep=True)
        parked = await next_of(ws, "parked")
        channel = await asyncio.to_thread(
            lambda: ParkedCall.objects.get(pk=parked["call"]["id"]).parkee_channel
        )
        await asyncio.to_thread(asterisk.cli, f"channel request hangup {channel}")
        abandoned = await next_of(ws, "abandoned")
        assert abandoned["call"]["outcome"] == "abandoned"
        await ws.disconnect()

    asyncio.run(scenario())
    outcomes = sorted(ParkedCall.objects.values_list("outcome", flat=True))
    assert outcomes == ["abandoned", "retrieved", "timed_out"]


def test_another_tenant_never_sees_the_events_and_cannot_join(site):
    gina_session, alice_session = session_cookie(site.gina), session_cookie(site.alice)

    async def scenario():
        gina = communicator("globex", gina_session)
        assert (await gina.connect())[0]
        await gina.receive_json_from(timeout=5)  # globex's snapshot
        await asyncio.to_thread(site.asterisk.park_call, "parkacme_main", "#72", keep=True)
        assert await gina.receive_nothing(timeout=1.5)
        await gina.disconnect()

        intruder = communicator("acme", gina_session)
        connected, code = await intruder.connect()
        assert (connected, code) == (False, 4403)
        anonymous = communicator("acme")
        assert (await anonymous.connect()) == (False, 4403)
        foreign = communicator("acme", alice_session, origin=b"http://evil.example")
        assert (await foreign.connect())[0] is False

    asyncio.run(scenario())


def test_dropped_ami_connection_resyncs_to_exactly_the_parked_calls(site):
    for _ in range(3):
        site.asterisk.park_call("parkacme_main", "#72", keep=True)
    wait_for(lambda: site.open_calls().count() == 3, what="3 open episodes")
    before = set(site.open_calls().values_list("uniqueid", flat=True))
    site.supervisor.drop_connections()
    wait_for(lambda: not site.healthy(), timeout=10, what="the drop to be noticed")
    wait_for(site.healthy, timeout=20, what="reconnect and resync")
    assert set(site.open_calls().values_list("uniqueid", flat=True)) == before
    assert ParkedCall.objects.filter(server=site.server).count() == 3  # no duplicates


def test_asterisk_crashing_with_calls_parked_ends_them_as_lost(site):
    # A clean stop hangs the calls up first (they end as abandoned, events and all); a
    # crash sends nothing, so only the resync after the restart can end them.
    site.asterisk.park_call("parkacme_main", "#72", keep=True)
    wait_for(lambda: site.open_calls().count() == 1, what="an open episode")
    os.kill(site.asterisk.pid, signal.SIGKILL)
    site.asterisk.start()
    wait_for(lambda: site.open_calls().count() == 0, timeout=30, what="the episode to end")
    wait_for(site.healthy, timeout=30, what="reconnect after the restart")
    assert ParkedCall.objects.get().outcome == "lost"


def test_frozen_asterisk_turns_health_disconnected_then_recovers(site):
    pid = site.asterisk.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        wait_for(
            lambda: not ServerHealth.objects.get(server=site.server).connected,
            timeout=15,
            what="health to turn disconnected",
        )
        print(f"frozen Asterisk noticed in {time.monotonic() - started:.1f}s")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(site.healthy, timeout=30, what="recovery after SIGCONT")


def test_one_worker_watches_each_server_and_another_takes_over_when_it_dies(
    transactional_db, asterisk, redis_layer
):
    from .workers import celery_workers

    asterisk.hangup_all()
    site = Site(asterisk)
    with celery_workers() as start_worker:
        workers = {
            w.pid: w
            for w in (
                start_worker("a", PARKWEB_WORKER_WATCHERS="1"),
                start_worker("b", PARKWEB_WORKER_WATCHERS="1"),
            )
        }

        def holder() -> int | None:
            health = ServerHealth.objects.filter(server=site.server).first()
            if not (health and health.connected and health.synced):
                return None
            return int(health.watcher.split(":")[1])

        first = wait_for(holder, timeout=20, what="a worker to watch the server")
        assert first in workers
        site.asterisk.park_call("parkacme_main", "#72", keep=True)
        wait_for(lambda: site.open_calls().count() == 1, what="the park to be recorded")

        workers[first].kill()
        killed_at = time.monotonic()
        second = wait_for(
            lambda: holder() not in (None, first) and holder(),
            timeout=15,
            interval=0.2,
            what="the other worker to take over",
        )
        takeover = time.monotonic() - killed_at
        print(f"takeover in {takeover:.1f}s")
        assert second in workers and second != first
        assert takeover <= 10
        site.asterisk.hangup_all()
        wait_for(lambda: site.open_calls().count() == 0, what="the call to end")
    assert ParkedCall.objects.filter(server=site.server).count() == 1  # no duplicate episode


def test_only_operators_act_and_staff_may_ring_any_device(site):
    from lots import services
    from parkweb.errors import Forbidden, Invalid
    from tenants.actors import Actor
    from tenants.models import AuditEntry

    viewer = get_user_model().objects.create_user("vic", password="pw-vic-123")
    Membership.objects.create(user=viewer, tenant=site.acme, role=Role.VIEWER)
    staff = get_user_model().objects.create_user("sam", password="pw-sam-123", is_staff=True)
    site.asterisk.park_call("parkacme_main", "#72", keep=True)
    call = wait_for(lambda: site.open_calls().first(), what="a parked call")

    with pytest.raises(Forbidden):
        services.parked_call_retrieve(call, Actor.of(viewer), "201")
    with pytest.raises(Forbidden):
        services.parked_call_retrieve(call, Actor.of(site.gina), "201")
    with pytest.raises(Forbidden):  # a tenant never names a device, whatever it is
        services.parked_call_retrieve_to_device(
            call, Actor.of(site.alice), "Local/ring@parkweb-test"
        )
    with pytest.raises(Invalid) as caught:
        services.parked_call_retrieve_to_device(
            call, Actor.of(staff), "Local/x\r\nAction: Shutdown"
        )
    assert "device" in caught.value.errors

    # Staff (the operator admin) may ring any device: here a Local channel that answers.
    services.parked_call_retrieve_to_device(call, Actor.of(staff), "Local/ring@parkweb-test")
    call = wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, outcome="retrieved").first(),
        what="the call to be retrieved",
    )
    assert call.retriever_channel.startswith("Local/ring@parkweb-test")
    assert (call.retriever_caller_id_num, call.retriever_caller_id_name) == ("ring", "sam")
    site.asterisk.hangup_all()

    site.asterisk.park_call("parkacme_main", "#72", keep=True)
    other = wait_for(lambda: site.open_calls().first(), what="another parked call")
    services.parked_call_hangup(other, Actor.of(site.alice))
    other = wait_for(
        lambda: ParkedCall.objects.filter(pk=other.pk).exclude(outcome="").first(),
        what="the call to end",
    )
    assert other.outcome == "abandoned"
    audit = list(
        AuditEntry.objects.filter(action__in=["retrieve", "hangup"]).values_list(
            "action", "ok", "user__username"
        )
    )
    assert sorted(audit) == [("hangup", True, "alice"), ("retrieve", True, "sam")]

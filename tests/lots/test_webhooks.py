"""Webhooks without Asterisk: which URLs parkweb calls, the signature, one delivery to a
real receiver on loopback, retries in order, pausing, and the API's doors."""

import hashlib
import hmac
import json
import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from lots import services, webhooks
from lots.models import Webhook, WebhookDelivery
from lots.services.webhooks import event_emit
from tenants.actors import SYSTEM
from tenants.models import Membership, Role
from tests.factories import make_delivery
from tests.receiver import Receiver


@pytest.mark.parametrize(
    ("url", "debug", "why"),
    [
        ("http://crm.example.com/x", False, "Only https"),
        ("http://127.0.0.1:8080/x", False, "Only https"),
        ("http://10.0.0.1/x", True, "Only https"),
        ("https://user:pw@crm.example.com/x", False, "user names"),
        ("ftp://crm.example.com/x", False, "https URL"),
        ("https://crm.example.com:99999/x", False, "port"),
        ("https://crm.exa\nmple.com/", False, "plain characters"),
    ],
)
def test_only_https_urls_are_taken(url, debug, why):
    with pytest.raises(webhooks.Refused, match=why):
        webhooks.parse_url(url, debug=debug)


UNSPECIFIED = "0.0.0.0"  # noqa: S104  (refused, never bound)
PRIVATE = ["10.1.2.3", "192.168.1.1", "172.16.0.1", "127.0.0.1", "::1", "fd00::1"]
NEVER = ["169.254.169.254", "fe80::1", UNSPECIFIED, "224.0.0.1", "100.64.0.1"]


@pytest.mark.parametrize("address", PRIVATE + NEVER)
def test_private_and_special_addresses_are_refused_unless_staff_allow(address):
    with pytest.raises(webhooks.Refused, match="not a public address"):
        webhooks.check_address(address, allow_private=False, debug_loopback=False)
    if address in PRIVATE:
        webhooks.check_address(address, allow_private=True, debug_loopback=False)
    else:  # link-local (cloud metadata), unspecified, multicast, shared: never
        with pytest.raises(webhooks.Refused):
            webhooks.check_address(address, allow_private=True, debug_loopback=False)
    webhooks.check_address("93.184.216.34", allow_private=False, debug_loopback=False)


def test_the_signature_is_hmac_sha256_of_timestamp_and_body():
    body = webhooks.body_of({"type": "test", "id": "evt_1"})
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.signature("whsec_x", 1700000000, body) == f"v1={expected}"


def test_a_delivery_is_signed_json_and_a_redirect_is_not_followed(receiver):
    event = {"id": "evt_1", "type": "test", "tenant": "acme"}
    answer = webhooks.send(
        receiver.url, event, "whsec_x", allow_private=False, debug=True, timeout=2
    )
    assert (answer.delivered, answer.code, answer.prefix) == (True, 200, "ok")
    got = receiver.received[0]
    assert json.loads(got.body) == event
    stamp = got.headers["X-Parkweb-Timestamp"]
    assert got.headers["X-Parkweb-Signature"] == webhooks.signature("whsec_x", int(stamp), got.body)
    assert got.headers["X-Parkweb-Event-Id"] == "evt_1"

    elsewhere = Receiver()
    try:
        receiver.answer = lambda _: (302, {"Location": elsewhere.url})
        answer = webhooks.send(
            receiver.url, event, "whsec_x", allow_private=False, debug=True, timeout=2
        )
        assert (answer.delivered, answer.code) == (False, 302)
        assert "redirects are not followed" in answer.error
        assert elsewhere.received == []
    finally:
        elsewhere.close()
    # With DEBUG off, the same URL is refused before any connection.
    answer = webhooks.send(receiver.url, event, "x", allow_private=False, debug=False, timeout=2)
    assert "Only https" in answer.error and len(receiver.received) == 2


def test_a_receiver_that_hangs_is_cut_off_by_the_timeout(receiver):
    receiver.answer = lambda _: (time.sleep(3), (200, {}))[1]
    started = time.perf_counter()
    answer = webhooks.send(
        receiver.url, {"id": "e"}, "x", allow_private=False, debug=True, timeout=0.5
    )
    assert not answer.delivered and "timed out" in answer.error
    assert time.perf_counter() - started < 2


def make_webhook(tenant, url, **fields) -> tuple[Webhook, str]:
    return services.webhook_create(tenant, actor=SYSTEM, url=url, **fields)


def test_failing_twice_then_ok_delivers_each_event_exactly_once_in_order(db, acme, receiver, fast):
    webhook, _ = make_webhook(acme, receiver.url)
    answers = iter([500, 500])
    receiver.answer = lambda _: (next(answers, 200), {})
    for name in ("first", "second", "third"):
        services.webhook_test(webhook, actor=SYSTEM)
        WebhookDelivery.objects.filter(event_type="test", status="pending").exclude(
            payload__has_key="n"
        ).update(payload={"type": "test", "n": name, "id": name})
    deadline = time.monotonic() + 10
    while WebhookDelivery.objects.filter(status="pending").exists():
        assert time.monotonic() < deadline, "deliveries did not finish"
        services.webhook_deliver(webhook.pk)
        time.sleep(0.05)
    delivered = [r.event["n"] for r in receiver.received if r.event.get("n")]
    # The first event is tried three times (500, 500, 200); the others wait behind it.
    assert delivered == ["first", "first", "first", "second", "third"]
    log = WebhookDelivery.objects.order_by("occurred_at", "pk")
    assert [(d.status, d.attempts, d.response_code) for d in log] == [
        ("delivered", 3, 200),
        ("delivered", 1, 200),
        ("delivered", 1, 200),
    ]


def test_an_endpoint_that_keeps_failing_is_paused_and_its_admins_are_told(db, acme, receiver, fast):
    fast.PARKWEB_WEBHOOK_RETRY_SECONDS = 0
    admin = get_user_model().objects.create_user("ada", "ada@acme.example", "pw-ada-123")
    Membership.objects.create(user=admin, tenant=acme, role=Role.ADMIN)
    receiver.answer = lambda _: (503, {})
    webhook, _ = make_webhook(acme, receiver.url)
    services.webhook_test(webhook, actor=SYSTEM)
    services.webhook_deliver(webhook.pk)
    webhook.refresh_from_db()
    assert webhook.paused_at is not None and "answered 503" in webhook.paused_reason
    assert mail.outbox and mail.outbox[0].to == ["ada@acme.example"]
    services.webhook_test(webhook, actor=SYSTEM)  # paused: nothing is sent
    assert services.webhook_deliver(webhook.pk) is None and len(receiver.received) == 1
    receiver.answer = lambda _: (200, {})
    services.webhook_update(webhook, actor=SYSTEM, active=True)  # resumes
    services.webhook_deliver(webhook.pk)
    assert len(receiver.received) == 2


@pytest.fixture
def admins(db, acme, globex):
    users = get_user_model().objects
    clients = {}
    for tenant in (acme, globex):
        user = users.create_user(f"boss-{tenant.slug}", password="pw-boss-123")
        Membership.objects.create(user=user, tenant=tenant, role=Role.ADMIN)
        client = APIClient()
        client.force_authenticate(user)
        clients[tenant.slug] = client
    return clients


def test_the_api_shows_the_secret_once_and_keeps_tenants_apart(admins, settings):
    settings.DEBUG = False
    api = admins["acme"]
    made = api.post(
        "/api/v1/tenants/acme/webhooks/",
        {"url": "https://crm.example.com/parking", "events": ["call.parked"]},
        format="json",
    )
    assert made.status_code == 201, made.json()
    assert made.json()["secret"].startswith("whsec_")
    hook = made.json()["id"]
    shown = api.get(f"/api/v1/tenants/acme/webhooks/{hook}/").json()
    assert "secret" not in shown and shown["events"] == ["call.parked"]
    assert made.json()["secret"] not in json.dumps(api.get("/api/v1/tenants/acme/webhooks/").json())
    other = admins["globex"]
    assert other.get(f"/api/v1/tenants/globex/webhooks/{hook}/").status_code == 404
    assert other.get(f"/api/v1/tenants/acme/webhooks/{hook}/").status_code == 404
    assert other.post(f"/api/v1/tenants/globex/webhooks/{hook}/test/").status_code == 404


def test_the_apis_delivery_log_pages_on_without_repeating_or_counting_the_log(admins, acme):
    """Newest first, a page at a time by `next`: rows that arrive meanwhile shift
    nothing, no page counts the whole log, and `limit` is capped."""
    hook, _ = make_webhook(acme, "https://crm.example.com/parking")
    for n in range(120):
        make_delivery(hook, f"evt_{n:03}", age=timedelta(seconds=1000 - n))
    api, seen = admins["acme"], []
    url = f"/api/v1/tenants/acme/webhooks/{hook.pk}/deliveries/?limit=50"
    with CaptureQueriesContext(connection) as queries:
        while url:
            page = api.get(url)
            assert page.status_code == 200, page.content
            assert "count" not in page.json()
            seen += [row["event_id"] for row in page.json()["results"]]
            if len(seen) == 50:  # a new delivery arrives between two pages
                make_delivery(hook, "evt_new")
            url = page.json()["next"]
    assert seen == [f"evt_{n:03}" for n in reversed(range(120))]  # once each, newest first
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    first = api.get(f"/api/v1/tenants/acme/webhooks/{hook.pk}/deliveries/?limit=100000")
    assert len(first.json()["results"]) == 121 and first.json()["results"][0]["event_id"] == (
        "evt_new"
    )
    assert (
        api.get(f"/api/v1/tenants/acme/webhooks/{hook.pk}/deliveries/?cursor=garbage").status_code
        == 404
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://crm.example.com/x", "Only https"),
        ("https://10.0.0.5/x", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]/x", "not a public address"),
    ],
)
def test_the_api_refuses_plain_http_and_private_addresses_naming_the_field(
    admins, settings, url, why
):
    settings.DEBUG = False
    refused = admins["acme"].post("/api/v1/tenants/acme/webhooks/", {"url": url}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()) == ["url"] and why in refused.json()["url"][0]
    unknown = admins["acme"].post(
        "/api/v1/tenants/acme/webhooks/",
        {"url": "https://crm.example.com/x", "events": ["lot.exploded"]},
        format="json",
    )
    assert unknown.status_code == 400 and "events" in unknown.json()


def test_a_sender_keeps_its_connection_and_reconnects_when_the_receiver_dropped_it(receiver):
    sender = webhooks.Sender()
    options = {"allow_private": False, "debug": True, "timeout": 2}
    try:
        for n in range(3):
            answer = sender.send(1, receiver.url, {"id": f"e{n}"}, "x", **options)
            assert answer.delivered
        assert len({got.peer for got in receiver.received}) == 1  # one connection for all

        # A receiver that answers once per connection and then closes it, as one whose idle
        # timeout ran out does: the next delivery goes out again at once, on a new one.
        once = _OncePerConnection()
        try:
            for n in range(3):
                answer = sender.send(2, once.url, {"id": f"f{n}"}, "x", **options)
                assert answer.delivered, answer.error
            assert once.requests == 3 and once.connections == 3
        finally:
            once.close()
    finally:
        sender.close()


class _OncePerConnection:
    """A bare HTTP/1.1 server that answers one request per connection, then hangs up
    without saying so (no `Connection: close`)."""

    def __init__(self):
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.requests = self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self):
        self.listener.close()


def test_one_run_delivers_several_endpoints_side_by_side_each_in_order(db, acme, receiver, fast):
    """A failing endpoint holds back its own queue only; the others are delivered."""
    hooks = [make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(3)]
    receiver.answer = lambda got: (500 if got.path.endswith("hook1") else 200, {})
    for name in ("first", "second"):
        event_emit(acme.pk, "test", None, lambda name=name: {"n": name})
    waits = services.webhooks_deliver([hook.pk for hook in hooks])
    assert waits[hooks[0].pk] is None and waits[hooks[2].pk] is None
    assert waits[hooks[1].pk] > 0  # its head is retried later, the rest wait behind it
    for n in (0, 2):
        got = [r.event["n"] for r in receiver.received if r.path.endswith(f"hook{n}")]
        assert got == ["first", "second"]
    assert [r.event["n"] for r in receiver.received if r.path.endswith("hook1")] == ["first"]
    assert WebhookDelivery.objects.filter(webhook=hooks[1], status="pending").count() == 2


def test_a_rounds_log_is_one_statement_that_leaves_the_session_as_it_was(
    transactional_db, acme, receiver, fast
):
    """Every endpoint's tries of a round are written by one UPDATE, a transaction of its
    own. On PostgreSQL its commit does not wait for the disk, and the connection (kept from
    task to task) goes on waiting for it in whatever it runs next."""
    hooks = [make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(3)]
    for name in ("first", "second"):
        event_emit(acme.pk, "test", None, lambda name=name: {"n": name})
    with CaptureQueriesContext(connection) as queries:
        waits = services.webhooks_deliver([hook.pk for hook in hooks])
    assert waits == dict.fromkeys((hook.pk for hook in hooks), None)
    updates = [q["sql"] for q in queries if re.search(r"\bUPDATE\b", q["sql"], re.IGNORECASE)]
    assert len(updates) == 1, updates
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert WebhookDelivery.objects.count() == 6
    if connection.vendor == "postgresql":
        assert "set_config('synchronous_commit', 'off', true)" in updates[0]
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_beat_queues_the_endpoints_whose_head_is_due_and_no_other(
    db, acme, receiver, fast, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from lots import tasks

    queued = []
    monkeypatch.setattr(tasks.webhooks_deliver, "delay", lambda ids: queued.append(list(ids)))
    monkeypatch.setattr(services.webhooks, "DUE_SCAN", 2)  # asked in two queries
    _idle, later, paused, due = (make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(4))
    for hook in (due, later, paused):
        services.webhook_test(hook, actor=SYSTEM)
    WebhookDelivery.objects.filter(webhook=later).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    Webhook.objects.filter(pk=paused.pk).update(paused_at=timezone.now())
    assert services.webhook_deliveries_due() == 1
    assert queued == [[due.pk]]


def test_a_run_reads_the_same_heads_and_due_endpoints_as_the_orm_would(db, acme, receiver, fast):
    """A run's queries are written by hand once (lots.services.webhooks._Queries): they
    must read exactly what these querysets read, on SQLite as on PostgreSQL."""
    from datetime import timedelta

    from django.db.models import F, Window
    from django.db.models.functions import RowNumber
    from django.utils import timezone

    from lots.services.webhooks import CHUNK, _due, _heads

    long, later, paused, off, mixed, _idle = (
        make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(6)
    )
    for n in range(CHUNK + 3):
        event_emit(acme.pk, "test", None, lambda n=n: {"n": n, "when": {"nested": [n]}})
    services.webhook_events_fan_out()
    WebhookDelivery.objects.filter(webhook=later).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    Webhook.objects.filter(pk=paused.pk).update(paused_at=timezone.now())
    Webhook.objects.filter(pk=off.pk).update(active=False)
    WebhookDelivery.objects.filter(webhook=_idle).delete()
    first = WebhookDelivery.objects.filter(webhook=mixed).order_by("occurred_at", "pk")
    WebhookDelivery.objects.filter(pk__in=list(first.values_list("pk", flat=True)[:4])).update(
        status="delivered"
    )
    everyone = {hook.pk for hook in (long, later, paused, off, mixed, _idle)}

    expected = list(
        WebhookDelivery.objects.filter(
            status="pending", webhook__active=True, webhook__paused_at__isnull=True
        )
        .filter(webhook_id__in=everyone)
        .annotate(
            place=Window(
                RowNumber(), partition_by=[F("webhook_id")], order_by=[F("occurred_at"), F("pk")]
            )
        )
        .filter(place__lte=CHUNK)
        .select_related("webhook")
        .order_by("webhook_id", "occurred_at", "pk")
    )
    heads = _heads(everyone)
    got = [delivery for queue in heads.values() for delivery in queue]
    assert set(heads) == {long.pk, later.pk, mixed.pk}
    assert [d.pk for d in got] == [d.pk for d in expected]
    assert len(heads[long.pk]) == CHUNK and len(heads[mixed.pk]) == CHUNK - 1
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.__dict__.keys() >= {"payload", "occurred_at", "next_attempt_at"}
        assert (mine.payload, mine.occurred_at, mine.next_attempt_at, mine.status) == (
            theirs.payload,
            theirs.occurred_at,
            theirs.next_attempt_at,
            theirs.status,
        )
        assert mine.webhook.url == theirs.webhook.url and mine.webhook.active is True
        assert mine.webhook.events == theirs.webhook.events
    assert heads[long.pk][0].payload["when"] == {"nested": [0]}
    assert (
        _due(everyone) == {long.pk, mixed.pk} == set(services.webhooks._due_endpoints()) & everyone
    )


def test_an_event_is_one_row_in_its_transaction_whatever_its_endpoints(db, acme, receiver, fast):
    """The watcher's commit carries one row per event; the workers fan it out into a
    delivery per endpoint that wants it, with the same body, and delete it."""
    from lots.models import WebhookEvent

    hooks = [make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(5)]
    make_webhook(acme, f"{receiver.url}other", events=["call.parked"])  # not this type
    with CaptureQueriesContext(connection) as queries:
        assert event_emit(acme.pk, "lot.full", "main", lambda: {"free": 0, "busy": 3}) == 5
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(writes) == 1 and WebhookEvent._meta.db_table in writes[0]
    assert WebhookEvent.objects.count() == 1 and not WebhookDelivery.objects.exists()
    (event,) = WebhookEvent.objects.all()

    assert services.webhook_events_fan_out() == 1
    assert not WebhookEvent.objects.exists()
    made = WebhookDelivery.objects.order_by("webhook_id")
    assert [d.webhook_id for d in made] == [hook.pk for hook in hooks]
    assert {(d.event_id, d.event_type, d.occurred_at, d.status) for d in made} == {
        (event.event_id, "lot.full", event.occurred_at, "pending")
    }
    assert all(d.payload == event.body for d in made)
    assert made[0].payload["free"] == 0 and made[0].payload["lot"] == "main"
    assert services.webhook_events_fan_out() == 0  # nothing twice
    if connection.vendor == "postgresql":  # a caller's transaction keeps waiting for disk
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_an_event_rolled_back_with_its_transaction_is_never_fanned_out(db, acme, receiver, fast):
    from lots.models import WebhookEvent

    make_webhook(acme, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        event_emit(acme.pk, "lot.full", "main", lambda: {"n": 1})
        raise RuntimeError("the watcher's batch failed")
    assert not WebhookEvent.objects.exists()
    assert services.webhook_events_fan_out() == 0 and not WebhookDelivery.objects.exists()


def test_a_body_the_database_refuses_fails_its_own_event_not_the_fan_out(db, acme, receiver, fast):
    """PostgreSQL's JSON refuses a NUL in a string: the event that carries one fails as it
    is recorded, in its own transaction (the watcher's rolls back and applies it alone),
    and never reaches the fan-out that every tenant's deliveries go through."""
    from django.db import DatabaseError

    hook, _ = make_webhook(acme, receiver.url)
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            event_emit(acme.pk, "lot.full", "main", lambda: {"n": "a\x00b"})
    event_emit(acme.pk, "lot.full", "main", lambda: {"n": "fine"})
    assert services.webhook_events_fan_out() == 1
    assert [d.payload["n"] for d in WebhookDelivery.objects.filter(webhook=hook)] == ["fine"]


def test_the_fan_out_leaves_out_an_endpoint_deleted_since_its_event(db, acme, receiver, fast):
    kept, _ = make_webhook(acme, f"{receiver.url}kept")
    gone, _ = make_webhook(acme, f"{receiver.url}gone")
    event_emit(acme.pk, "lot.full", "main", lambda: {"n": 1})
    services.webhook_delete(gone, actor=SYSTEM)
    assert services.webhook_events_fan_out() == 1
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [kept.pk]


def test_fan_outs_side_by_side_make_each_delivery_once_and_in_order(
    transactional_db, acme, receiver, fast, monkeypatch
):
    """Several workers fan out at once, a batch of one event each: one at a time
    (webhook_fan_out_lock), so each delivery is made once, and an endpoint's queue never
    shows an event before the one recorded ahead of it."""
    import threading

    from django.db import connections

    from lots.models import WebhookEvent

    monkeypatch.setattr(services.webhooks, "FAN_OUT_BATCH", 1)
    hooks = [make_webhook(acme, f"{receiver.url}{n}")[0] for n in range(3)]
    for n in range(30):
        event_emit(acme.pk, "lot.full", "main", lambda n=n: {"n": n})
    seen: list[list[int]] = []
    failures = []

    def fan_out_and_look():
        try:
            for _ in range(10):
                services.webhook_events_fan_out()
                queue = WebhookDelivery.objects.filter(webhook=hooks[0])
                seen.append([d.payload["n"] for d in queue.order_by("occurred_at", "pk")])
        except Exception as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=fan_out_and_look) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not failures and not any(worker.is_alive() for worker in workers)
    assert not WebhookEvent.objects.exists()
    for hook in hooks:
        got = WebhookDelivery.objects.filter(webhook=hook).order_by("occurred_at", "pk")
        assert [d.payload["n"] for d in got] == list(range(30))
    assert all(queue == list(range(len(queue))) for queue in seen)  # never a gap

    # In a transaction of its own, a fan-out's commit does not wait for the disk (a crash
    # before it is written brings its events back), and the connection goes on waiting.
    event_emit(acme.pk, "lot.full", "main", lambda: {"n": 30})
    with CaptureQueriesContext(connection) as queries:
        assert services.webhook_events_fan_out() == 1
    if connection.vendor == "postgresql":
        assert any("'synchronous_commit', 'off'" in q["sql"] for q in queries)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_beat_fans_out_an_event_whose_wake_up_was_lost(db, acme, receiver, fast, monkeypatch):
    from lots import tasks

    queued = []
    monkeypatch.setattr(tasks.webhooks_deliver, "delay", lambda ids: queued.append(list(ids)))
    hook, _ = make_webhook(acme, receiver.url)
    event_emit(acme.pk, "lot.full", "main", lambda: {"n": 1})  # no worker woken here
    assert services.webhook_deliveries_due() == 1
    assert queued == [[hook.pk]]
    assert WebhookDelivery.objects.get().event_type == "lot.full"


def test_a_loop_takes_every_waiting_entry_at_once_each_endpoint_once_in_order(wake_list):
    from lots.services.webhooks import WAKE_KEY, DeliveryLoop, _wake

    _wake([(3, 1), (2, 3)])
    _wake([(4,)])
    assert wake_list.lrange(WAKE_KEY, 0, -1) == [b"3,1", b"2,3", b"4"]
    loop = DeliveryLoop(deliver=None)
    loop.WAIT_SECONDS = 0.1
    assert loop.take() == [3, 1, 2, 4]
    assert wake_list.llen(WAKE_KEY) == 0
    started = time.monotonic()
    assert loop.take() == []  # nothing waiting: back after its wait (0.1 s), not stuck
    assert time.monotonic() - started < 5


def test_an_endpoint_gets_one_retry_run_until_it_starts():
    """A failed head schedules one retry run; events meanwhile schedule no other, and a
    run that starts lets the next failure schedule one."""
    from lots.services.webhooks import RETRY_KEY, _redis, retry_runs_started, retry_scheduled

    client = _redis()
    client.delete(RETRY_KEY.format(990_001))
    try:
        assert retry_scheduled(990_001, 2.0) is True
        assert retry_scheduled(990_001, 2.0) is False
        assert 60 < client.ttl(RETRY_KEY.format(990_001)) <= 62
        retry_runs_started([990_001])
        assert retry_scheduled(990_001, 2.0) is True
    finally:
        client.delete(RETRY_KEY.format(990_001))


def test_a_delivery_loop_delivers_what_it_is_woken_for_in_order(
    transactional_db, acme, receiver, fast, wake_list
):
    """The loop in its own thread (its own database connection), as in a worker: woken
    for an endpoint, it delivers the endpoint's queue head first, and goes on waiting."""
    from lots.services.webhooks import DeliveryLoop, webhooks_wake
    from lots.tasks import deliver_run

    hook, _ = services.webhook_create(acme, actor=SYSTEM, url=receiver.url)
    for n in range(3):
        event_emit(acme.pk, "lot.full", "main", lambda n=n: {"n": n})
    loop = DeliveryLoop(deliver_run)
    loop.WAIT_SECONDS = 0.1
    loop.start()
    try:
        webhooks_wake([hook.pk])
        deadline = time.monotonic() + 10
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [event["n"] for event in receiver.events()] == [0, 1, 2]
        event_emit(acme.pk, "lot.full", "main", lambda: {"n": 3})
        webhooks_wake([hook.pk])
        while len(receiver.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [event["n"] for event in receiver.events()] == [0, 1, 2, 3]
        while loop.batches < 2 and time.monotonic() < deadline:  # its log is written after
            time.sleep(0.02)
        assert loop.batches == 2 and loop.is_alive()
    finally:
        loop.stop()
    assert not loop.is_alive()
    assert set(hook.deliveries.values_list("status", flat=True)) == {"delivered"}


def test_a_loop_leaves_a_head_that_failed_to_its_retry_run(db, acme, receiver, fast):
    """A delivery loop sends a head once; after it failed, only its retry run sends it
    again, so a receiver that hangs holds a loop (and its batch) up once, not every try."""
    hook, _ = services.webhook_create(acme, actor=SYSTEM, url=receiver.url)
    event_emit(acme.pk, "lot.full", "main", lambda: {"n": 1})
    receiver.answer = lambda _: (500, {})
    waits = services.webhooks_deliver([hook.pk], retries=False)
    assert len(receiver.received) == 1 and 0 < waits[hook.pk] <= 0.1
    time.sleep(0.15)  # the head's retry is due
    receiver.answer = lambda _: (200, {})
    waits = services.webhooks_deliver([hook.pk], retries=False)
    assert len(receiver.received) == 1  # not the loop's to send
    assert 0 < waits[hook.pk] <= 0.06  # its retry run: queued at once (lots.tasks)
    waits = services.webhooks_deliver([hook.pk])  # the retry run
    assert len(receiver.received) == 2 and waits[hook.pk] is None
    assert hook.deliveries.get().status == "delivered"


def test_without_a_redis_broker_a_wake_up_is_a_task_per_twenty_endpoints(monkeypatch):
    """Another broker (RabbitMQ, say) has no list for the loops: the waker queues
    delivery runs instead, each endpoint once, in order."""
    from lots import tasks
    from lots.services import webhooks as hooks

    queued = []
    monkeypatch.setattr(hooks, "_redis", lambda: None)
    monkeypatch.setattr(tasks.webhooks_deliver, "delay", lambda ids: queued.append(list(ids)))
    hooks._wake([tuple(range(1, 16)), tuple(range(10, 31))])
    assert queued == [list(range(1, 21)), list(range(21, 31))]


def test_the_watchers_wake_ups_go_out_together_from_its_event_loop(wake_list):
    """In the watcher, the wake-ups of a batch's events are handed to its outbox on the
    way out, in commit order (the outer block sends), and pushed from its event loop."""
    import asyncio

    from lots.services.webhooks import WAKE_KEY, _hand_over, wake_async, wakes_together

    sent = []
    with wakes_together(sent.append):
        _hand_over((1, 2))
        _hand_over((3,))
        with wakes_together(lambda _: pytest.fail("an inner block sends nothing")):
            _hand_over((4,))
        assert sent == []
    assert sent == [[(1, 2), (3,), (4,)]]
    with wakes_together(sent.append):
        pass  # nothing committed: nothing sent
    assert len(sent) == 1
    asyncio.run(wake_async(sent[0]))
    assert wake_list.lrange(WAKE_KEY, 0, -1) == [b"1,2", b"3", b"4"]


def test_the_watchers_outbox_pushes_wake_ups_and_goes_on_after_one_fails(wake_list, monkeypatch):
    """Handed over from the applying thread; Redis away for one wake-up loses only that
    one (beat's due-check delivers its events), never the pages' pushes or later ones."""
    import asyncio
    import threading

    from lots.services.webhooks import WAKE_KEY
    from lots.supervisor import PagesOutbox

    pages, tries = [], []

    async def pages_send(messages):
        pages.append(messages)

    real = services.webhooks_wake_async

    async def flaky(entries):
        tries.append(entries)
        if len(tries) == 1:
            raise ConnectionError("Redis away")
        await real(entries)

    monkeypatch.setattr(services, "pages_send", pages_send)
    monkeypatch.setattr(services, "webhooks_wake_async", flaky)

    async def watcher():
        outbox = PagesOutbox()

        def applying_thread():
            outbox.wake([(1,)])
            outbox.put([(7, {"type": "parked"})])
            outbox.wake([(2, 3)])

        thread = threading.Thread(target=applying_thread)
        thread.start()
        thread.join()
        await outbox.close()

    asyncio.run(watcher())
    assert tries == [[(1,)], [(2, 3)]]
    assert pages == [[(7, {"type": "parked"})]]
    assert wake_list.lrange(WAKE_KEY, 0, -1) == [b"2,3"]


def _delivery(hook, event_id: str, days_ago: float, status: str = "pending"):
    return make_delivery(hook, event_id, age=timedelta(days=days_ago), status=status)


def test_the_log_is_purged_of_events_older_than_its_days_and_keeps_the_rest(
    db, acme, fast, monkeypatch
):
    from lots import tasks
    from lots.services import webhooks as service

    fast.PARKWEB_WEBHOOK_LOG_DAYS = 30
    monkeypatch.setattr(service, "PURGE_CHUNK", 2)  # several statements per endpoint
    first, _ = make_webhook(acme, "https://one.example/")
    second, _ = make_webhook(acme, "https://two.example/")
    Webhook.objects.filter(pk=second.pk).update(paused_at="2026-01-01T00:00:00Z")
    old = [
        _delivery(first, "a", 31, "delivered"),
        _delivery(first, "b", 45, "failed"),
        _delivery(first, "c", 60, "delivered"),
        _delivery(first, "d", 90, "pending"),  # an event that old is of no use to anyone
        _delivery(first, "e", 30.01, "delivered"),
        _delivery(second, "f", 31, "pending"),  # a paused endpoint's too
    ]
    kept = [
        _delivery(first, "g", 29.99, "delivered"),
        _delivery(first, "h", 0, "pending"),
        _delivery(second, "i", 1, "failed"),
    ]
    assert tasks.purge_webhook_deliveries() == len(old)
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert services.webhook_deliveries_purge() == 0

    fast.PARKWEB_WEBHOOK_LOG_DAYS = 0
    with pytest.raises(ValueError, match="PARKWEB_WEBHOOK_LOG_DAYS"):
        services.webhook_deliveries_purge()
    assert WebhookDelivery.objects.count() == len(kept)


def test_beat_purges_the_webhook_log_daily():
    from parkweb.celery import app

    app.finalize(auto=True)
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["lots.tasks.purge_webhook_deliveries"] == 24 * 3600
    assert schedule["lots.tasks.purge_parked_calls"] == 24 * 3600


def test_retention_of_less_than_a_day_is_refused_at_start(settings):
    from parkweb.checks import retention_settings

    assert retention_settings(None) == []
    settings.PARKWEB_WEBHOOK_LOG_DAYS = 0
    settings.PARKWEB_HISTORY_DAYS = -1
    errors = retention_settings(None)
    assert [e.id for e in errors] == ["parkweb.E004", "parkweb.E004"]
    assert "PARKWEB_HISTORY_DAYS must be a whole number of days, at least 1" in errors[0].msg
    assert "PARKWEB_WEBHOOK_LOG_DAYS" in errors[1].msg


def test_delivery_limits_that_would_stop_deliveries_are_refused_at_start(settings):
    from parkweb.checks import delivery_limits

    assert delivery_limits(None) == []
    settings.PARKWEB_WEBHOOK_PATIENCE = 0
    settings.PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT = 0
    errors = delivery_limits(None)
    assert [e.id for e in errors] == ["parkweb.E005", "parkweb.E005"]
    assert (
        errors[0].msg == "PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT must be a whole number, at least 1."
    )
    assert errors[1].msg == "PARKWEB_WEBHOOK_PATIENCE must be a number of seconds, at least 0.01."


def _fill_log(
    hook, rows: int, status: str = "delivered", *, ahead: bool = False, payload=None
) -> None:
    """`rows` deliveries of `hook`, evt_1 to evt_<rows>, written by PostgreSQL itself: one
    a second back from now (`ahead`: forward, evt_1 the oldest), each tried once unless
    pending."""
    table = WebhookDelivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (webhook_id, event_id, event_type, occurred_at, payload,"  # noqa: S608
            " status, attempts, response_prefix, error, created_at)"
            " SELECT %s, 'evt_' || n, 'test', now() + n * %s * interval '1 second',"
            " %s::jsonb, %s, %s, '', '', now() FROM generate_series(1, %s) AS n",
            [
                hook.pk,
                1 if ahead else -1,
                json.dumps({"call": {}} if payload is None else payload),
                status,
                0 if status == "pending" else 1,
                rows,
            ],
        )


def _plan(sql: str, params) -> tuple[set[str], int]:
    """The indexes a query's plan uses and the pages it read, as PostgreSQL ran it."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    top = plan[0]["Plan"]
    indexes, nodes = set(), [top]
    while nodes:
        node = nodes.pop()
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        nodes += node.get("Plans", [])
    return indexes, top["Shared Hit Blocks"] + top["Shared Read Blocks"]


def test_the_queue_reads_only_pending_rows_however_large_the_log(db, acme):
    """A delivery batch asks for its endpoints' heads and for what is due; the webhooks
    page and the API show an endpoint's newest rows. None of them may read what the log
    holds besides: with 20,000 delivered rows of one endpoint they read a few pages. The
    queue's queries do so before the table is analyzed, too (as after a busy hour): a
    plan from stale statistics once read the whole endpoint's log at every batch."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plans: CI runs on PostgreSQL")
    from django.utils import timezone

    from lots.services.webhooks import CHUNK, _due_sql, _heads_sql

    busy, _ = make_webhook(acme, "https://busy.example/")
    _fill_log(busy, 20_000)
    for n in range(3):
        _delivery(busy, f"pending{n}", 0)
    ids = [busy.pk]

    indexes, pages = _plan(_heads_sql("postgresql", 1), [ids, CHUNK, True])
    assert "webhook_delivery_queue" in indexes and pages < 40, (indexes, pages)
    indexes, pages = _plan(_due_sql("postgresql", 1), [ids, True, timezone.now()])
    assert "webhook_delivery_queue" in indexes and pages < 40, (indexes, pages)
    newest = WebhookDelivery.objects.filter(webhook=busy).order_by("-occurred_at", "-pk")[:20]
    sql, params = newest.query.sql_with_params()
    with connection.cursor() as cursor:  # a table that large has been analyzed by then
        cursor.execute(f"ANALYZE {WebhookDelivery._meta.db_table}")
    indexes, pages = _plan(sql, params)
    assert "webhook_delivery_log" in indexes and pages < 40, (indexes, pages)
    assert [d.event_id for d in services.webhooks._heads(set(ids))[busy.pk]] == [
        f"pending{n}" for n in range(3)
    ]


def test_a_backlogged_endpoints_heads_are_its_first_chunk_and_it_is_due_by_its_head(
    db, acme, globex
):
    from django.utils import timezone

    from lots.services.webhooks import CHUNK, _due, _heads

    down, _ = make_webhook(acme, "https://down.example/")
    fine, _ = make_webhook(globex, "https://fine.example/")
    for n in range(CHUNK + 5):
        make_delivery(down, f"evt_{n}", age=timedelta(seconds=100 - n))
    make_delivery(down, "done", age=timedelta(seconds=200), status="delivered")
    _delivery(fine, "only", 0)
    heads = _heads({down.pk, fine.pk})
    assert [d.event_id for d in heads[down.pk]] == [f"evt_{n}" for n in range(CHUNK)]
    assert [d.event_id for d in heads[fine.pk]] == ["only"]
    assert heads[down.pk][0].webhook == down
    assert _due([down.pk, fine.pk]) == {down.pk, fine.pk}
    WebhookDelivery.objects.filter(event_id="evt_0").update(
        next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    assert _due([down.pk, fine.pk]) == {fine.pk}  # its head waits for its retry, the rest too
    Webhook.objects.filter(pk=fine.pk).update(paused_at=timezone.now())
    assert _due([down.pk, fine.pk]) == set() and fine.pk not in _heads({down.pk, fine.pk})


def test_the_queue_reads_a_chunk_per_endpoint_however_long_its_backlog(db, acme, globex):
    """A receiver that is down or slow piles up thousands of pending deliveries; every
    round of its loop asks for its head and for what is due. They read a chunk's rows
    (the head's, for what is due), not the backlog: ROW_NUMBER over the whole queue read
    all 3,000 rows at every round, in every other tenant's time."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plans: CI runs on PostgreSQL")
    from django.utils import timezone

    from lots.services.webhooks import CHUNK, _due_sql, _heads, _heads_sql

    down, _ = make_webhook(acme, "https://down.example/")
    fine, _ = make_webhook(globex, "https://fine.example/")
    _fill_log(down, 3000, "pending", ahead=True, payload={"call": "x" * 300})
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {WebhookDelivery._meta.db_table}")
    _delivery(fine, "only", 0)
    ids = [down.pk, fine.pk]

    indexes, pages = _plan(_heads_sql("postgresql", 2), [ids, CHUNK, True])
    assert "webhook_delivery_queue" in indexes and pages < 40, (indexes, pages)
    indexes, pages = _plan(_due_sql("postgresql", 2), [ids, True, timezone.now()])
    assert "webhook_delivery_queue" in indexes and pages < 20, (indexes, pages)
    assert len(_heads(set(ids))[down.pk]) == CHUNK


def test_the_admins_failed_filter_reads_the_failed_rows_not_the_log(db, acme, admin_client):
    """Staff's "failed" filter of the log, newest first: with 20,000 delivered rows and
    two failed, it reads a few pages (by the failed rows' own index), where it read the
    log back to its oldest row for want of a page of matches."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plans: CI runs on PostgreSQL")
    busy, _ = make_webhook(acme, "https://busy.example/")
    _delivery(busy, "failed0", 40, "failed")  # the oldest id of all
    _fill_log(busy, 20_000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {WebhookDelivery._meta.db_table}")
    _delivery(busy, "failed1", 0, "failed")
    page = admin_client.get("/admin/lots/webhookdelivery/?status__exact=failed")
    assert [d.event_id for d in page.context["cl"].result_list] == ["failed1", "failed0"]
    listed = page.context["cl"].queryset.order_by("-pk")[:101]  # as the admin asks
    sql, params = listed.query.sql_with_params()
    indexes, pages = _plan(sql, params)
    assert "webhook_delivery_failed" in indexes and pages < 20, (indexes, pages)

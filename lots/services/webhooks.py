"""Tenants' webhooks: endpoints, the events queued for them, and their delivery.

Events are recorded where they happen, once for all the endpoints that want them (a
parked call's change, in the watcher's transaction: one indexed query when the tenant has
no endpoint), fanned out into a queued delivery per endpoint and delivered by Celery
workers, never in the watcher's path: the delivery loops of their processes, woken
through a Redis list (DeliveryLoop), and retry runs as Celery tasks. Each endpoint gets
its events in the order they happened: one worker at a time delivers an endpoint's
queue, head first, and a failing head holds the rest back until it is delivered or given up (after
PARKWEB_WEBHOOK_RETRY_SECONDS, with backoff). An endpoint whose delivery is given up is
paused and its tenant's admins are mailed; saving it as active again resumes it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from parkweb.errors import Invalid
from tenants.actors import Actor
from tenants.audit import audit
from tenants.models import Membership, Role, Tenant

from .. import sql, webhooks
from ..frames import call_data
from ..locks import webhook_fan_out_lock, webhook_locks, webhook_locks_release
from ..models import ParkedCall, Webhook, WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)

MAX_PER_TENANT = 20


def _clean(url: str, events, description: str) -> tuple[str, list[str], str]:
    errors = {}
    try:
        webhooks.check_literal(webhooks.parse_url(url, debug=settings.DEBUG), debug=settings.DEBUG)
    except webhooks.Refused as exc:
        errors["url"] = str(exc)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        errors["events"] = "Give a list of event types (empty: all)."
    else:
        unknown = sorted(set(events) - set(webhooks.EVENT_TYPES))
        if unknown:
            errors["events"] = (
                f"Unknown event type(s): {', '.join(unknown)[:100]}. "
                f"Known: {', '.join(webhooks.EVENT_TYPES)}."
            )
    description = (description or "").strip()
    if len(description) > 200 or not description.isprintable():
        errors["description"] = "Use at most 200 characters on one line."
    if errors:
        raise Invalid(errors)
    return url, sorted(set(events)), description


@transaction.atomic
def webhook_create(
    tenant: Tenant, *, actor: Actor, url: str, events=(), description: str = ""
) -> tuple[Webhook, str]:
    """A new endpoint and its signing secret, which is shown once and never again."""
    url, events, description = _clean(url, list(events), description)
    if Webhook.objects.filter(tenant=tenant).count() >= MAX_PER_TENANT:
        raise Invalid({"url": f"A tenant has at most {MAX_PER_TENANT} webhooks."})
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    webhook = Webhook(tenant=tenant, url=url, events=events, description=description)
    webhook.secret = secret
    webhook.save()
    _active_cache.pop(tenant.pk, None)
    audit(actor, "webhook.create", url[:100], tenant=tenant)
    return webhook, secret


@transaction.atomic
def webhook_update(webhook: Webhook, *, actor: Actor, **fields) -> Webhook:
    """Change url, events, description or active; saving it active resumes a paused one
    (its held-back events are delivered, in order)."""
    url, events, description = _clean(
        fields.get("url", webhook.url),
        fields.get("events", webhook.events),
        fields.get("description", webhook.description),
    )
    webhook.url, webhook.events, webhook.description = url, events, description
    if "active" in fields:
        webhook.active = bool(fields["active"])
        if webhook.active:
            webhook.paused_at, webhook.paused_reason = None, ""
    webhook.save()
    _active_cache.pop(webhook.tenant_id, None)
    audit(actor, "webhook.update", url[:100], tenant=webhook.tenant_id)
    if webhook.active:
        _enqueue_on_commit(webhook.pk)
    return webhook


@transaction.atomic
def webhook_staff_update(
    webhook: Webhook, *, actor: Actor, active: bool, allow_private: bool
) -> Webhook:
    """Staff only (the admin): pause or resume, and allow private addresses or not."""
    if not actor.is_staff:
        raise Invalid({"allow_private": "Only staff may allow private addresses."})
    webhook.allow_private = allow_private
    webhook.save(update_fields=["allow_private"])
    audit(
        actor,
        "webhook.allow_private",
        f"{webhook.url[:80]}: {allow_private}",
        tenant=webhook.tenant_id,
    )
    return webhook_update(webhook, actor=actor, active=active)


@transaction.atomic
def webhook_delete(webhook: Webhook, *, actor: Actor) -> None:
    audit(actor, "webhook.delete", webhook.url[:100], tenant=webhook.tenant_id)
    webhook.delete()
    _active_cache.pop(webhook.tenant_id, None)


def webhook_test(webhook: Webhook, *, actor: Actor) -> WebhookDelivery:
    """Queue a `test` event for this endpoint alone (also when it does not ask for it)."""
    with transaction.atomic():
        delivery = _queue(webhook, _event("test", webhook.tenant, None, {}), timezone.now())
        audit(actor, "webhook.test", webhook.url[:100], tenant=webhook.tenant_id)
        _enqueue_on_commit(webhook.pk)
    return delivery


# -- events ---------------------------------------------------------------------------------


def _event(kind: str, tenant: Tenant, lot_slug: str | None, data: dict) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "time": timezone.now().isoformat().replace("+00:00", "Z"),
        "tenant": tenant.slug,
        "lot": lot_slug,
        **data,
    }


ACTIVE_SECONDS = 1.0  # how long a process trusts what it read of a tenant's endpoints
_active_cache: dict[int, tuple[float, list[Webhook]]] = {}


def _active(tenant_id: int) -> list[Webhook]:
    """The tenant's active endpoints, read at most once a second per process (the watcher
    asks at every event): an endpoint made, paused or changed is seen within a second."""
    now = time.monotonic()
    cached = _active_cache.get(tenant_id)
    if cached is None or cached[0] < now:
        found = list(
            Webhook.objects.filter(
                tenant_id=tenant_id, active=True, paused_at__isnull=True
            ).select_related("tenant")
        )
        if len(_active_cache) > 100_000:
            _active_cache.clear()
        cached = _active_cache[tenant_id] = (now + ACTIVE_SECONDS, found)
    return cached[1]


def _queue(webhook: Webhook, event: dict, occurred_at: datetime) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        webhook=webhook,
        event_id=event["id"],
        event_type=event["type"],
        occurred_at=occurred_at,
        payload=event,
    )


def call_event_emit(kind: str, call: ParkedCall) -> int:
    """Queue a parked call's change (a board frame kind: parked, unparked, ...) for the
    tenant's endpoints that want it, inside the caller's transaction. Returns how many."""
    event_type = webhooks.CALL_EVENTS.get(kind)
    if event_type is None or call.tenant_id is None:
        return 0
    lot = call.lot.slug if call.lot_id else None
    return event_emit(call.tenant_id, event_type, lot, lambda: {"call": call_data(call)})


def event_emit(tenant_id: int, event_type: str, lot: str | None, data) -> int:
    """Queue an event for the tenant's endpoints that want it, inside the caller's
    transaction (`data()` builds the rest of the body only if one does). Returns how many."""
    wanted = [webhook for webhook in _active(tenant_id) if webhook.wants(event_type)]
    if not wanted:
        return 0
    event = _event(event_type, wanted[0].tenant, lot, data())
    # Ordered as parkweb applied them: one watcher per server applies a call's events in
    # Asterisk's order.
    _queue_for([webhook.pk for webhook in wanted], event, timezone.now())
    _enqueue_on_commit(*(webhook.pk for webhook in wanted))
    return len(wanted)


def _queue_for(webhook_ids: list[int], event: dict, occurred_at: datetime) -> None:
    """The event, for these endpoints: one WebhookEvent row, in the caller's transaction
    (the watcher's path, at every event), whatever the number of endpoints; the delivery
    workers fan it out (webhook_events_fan_out). A row per endpoint written here cost the
    watcher's commit 1.2 to 4 times as much, each with the log's, the queue's and the
    one-per-event indexes (bench/webhook_log.py, round 12)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _record_sql(connection.vendor),
            [
                event["id"],
                event["type"],
                connection.ops.adapt_datetimefield_value(occurred_at),
                json.dumps(event),
                json.dumps(webhook_ids),
            ],
        )


@functools.lru_cache(maxsize=4)
def _record_sql(vendor: str) -> str:
    """Params: the event's id, type, time, body (JSON) and endpoints (a JSON array)."""
    e = sql.columns(WebhookEvent)
    names = ["event_id", "event_type", "occurred_at", "body", "endpoints"]
    as_json = "%s::jsonb" if vendor == "postgresql" else "%s"
    return (
        f"INSERT INTO {sql.table(WebhookEvent)} ({', '.join(e[name] for name in names)})"  # noqa: S608
        f" VALUES (%s, %s, %s, {as_json}, {as_json})"
    )


FAN_OUT_BATCH = 500  # events a fan-out statement takes


def webhook_events_fan_out() -> int:
    """Turn the recorded events (WebhookEvent) into their endpoints' deliveries, oldest
    first, and delete them, in one transaction each FAN_OUT_BATCH: every delivery run
    starts here, so an event is in its endpoints' queues before they are read. One fan-out
    at a time (webhook_fan_out_lock): a later batch is never committed before an earlier
    one, so an endpoint's queue never shows an event before one recorded ahead of it.
    An endpoint deleted since its event was recorded is left out. Returns how many
    events."""
    moved = 0
    alone = not transaction.get_connection().in_atomic_block  # a transaction of its own
    while True:
        with webhook_fan_out_lock():
            taken = _fan_out_sql(alone) if connection.vendor == "postgresql" else _fan_out_orm()
        moved += taken
        if taken < FAN_OUT_BATCH:
            return moved


def _fan_out_sql(no_wait: bool) -> int:
    """One statement: the oldest events deleted, their deliveries inserted (never one
    that exists already: the one-per-event constraint)."""
    with connection.cursor() as cursor:
        cursor.execute(_fan_out_sql_text(no_wait), [FAN_OUT_BATCH, timezone.now()])
        return cursor.fetchone()[0]


@functools.cache
def _fan_out_sql_text(no_wait: bool) -> str:
    """PostgreSQL only. Params: FAN_OUT_BATCH, now. Answers how many events it took (the
    INSERT runs whether or not its rows are read). `no_wait` (in a transaction of its own,
    never in a caller's): its commit does not wait for the disk. Were the server to crash
    before the commit is written, the events would come back with their deliveries gone,
    and be fanned out again (those sent meanwhile sent twice: delivery is at least
    once)."""
    e, d, w = sql.columns(WebhookEvent), sql.columns(WebhookDelivery), sql.columns(Webhook)
    events, deliveries = sql.table(WebhookEvent), sql.table(WebhookDelivery)
    names = ["webhook", "event_id", "event_type", "occurred_at", "payload", "status"]
    names += ["attempts", "response_prefix", "error", "created_at"]
    pending = WebhookDelivery.Status.PENDING.value
    off = "no_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)), "
    return (
        f"WITH {off if no_wait else ''}"  # noqa: S608  (names, not values)
        f"taken AS (DELETE FROM {events} WHERE {e['id']} IN"
        f" (SELECT {e['id']} FROM {events} ORDER BY {e['id']} LIMIT %s)"
        " RETURNING *),"
        f" made AS (INSERT INTO {deliveries} ({', '.join(d[name] for name in names)})"
        f" SELECT hook.{w['id']}, taken.{e['event_id']}, taken.{e['event_type']},"
        f" taken.{e['occurred_at']}, taken.{e['body']}, '{pending}', 0, '', '', %s"
        f" FROM taken CROSS JOIN LATERAL jsonb_array_elements_text(taken.{e['endpoints']})"
        f" AS endpoint(id) JOIN {sql.table(Webhook)} hook ON hook.{w['id']} = endpoint.id::int"
        f" ORDER BY taken.{e['occurred_at']}, taken.{e['id']}"  # the queue's ties: as recorded
        f" ON CONFLICT ({d['webhook']}, {d['event_id']}) DO NOTHING)"
        f" SELECT count(*) FROM taken{', no_wait' if no_wait else ''}"
    )


def _fan_out_orm() -> int:
    events = list(WebhookEvent.objects.order_by("pk")[:FAN_OUT_BATCH])
    if not events:
        return 0
    wanted = {webhook_id for event in events for webhook_id in event.endpoints}
    there = set(Webhook.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    WebhookDelivery.objects.bulk_create(
        (
            WebhookDelivery(
                webhook_id=webhook_id,
                event_id=event.event_id,
                event_type=event.event_type,
                occurred_at=event.occurred_at,
                payload=event.body,
            )
            for event in events
            for webhook_id in event.endpoints
            if webhook_id in there
        ),
        ignore_conflicts=True,
    )
    WebhookEvent.objects.filter(pk__in=[event.pk for event in events]).delete()
    return len(events)


def _enqueue_on_commit(*webhook_ids: int) -> None:
    """Once the transaction commits, wake the delivery loops for these endpoints: the
    ids go onto one Redis list, pushed by the watcher's outbox (wakes_together) or else
    by the process's waker thread, and a loop in a delivery worker takes them
    (DeliveryLoop). The committing thread hands them over and goes on at once."""
    from ..tasks import webhooks_deliver  # tasks call services: imported here

    if webhooks_deliver.app.conf.task_always_eager:
        # The embedded mode: no workers, and a task would run right here, in the watcher's
        # path. Its supervisor delivers what is due every few seconds instead.
        return

    transaction.on_commit(lambda: _hand_over(webhook_ids))


_together = threading.local()


def _hand_over(webhook_ids) -> None:
    entries = getattr(_together, "entries", None)
    if entries is not None:
        entries.append(tuple(webhook_ids))
    else:
        _waker().put(webhook_ids)


@contextmanager
def wakes_together(send: Callable[[list], None]) -> Iterator[None]:
    """The wake-ups of events committed inside are handed to `send` together on the way
    out (the watcher's outbox, which pushes them from its event loop beside the pages'
    pushes) rather than one by one to the waker thread, whose every wake-up the thread
    applying events would wait on for the interpreter lock."""
    if getattr(_together, "entries", None) is not None:  # the outer block sends
        yield
        return
    entries = _together.entries = []
    try:
        yield
    finally:
        _together.entries = None
        if entries:
            send(entries)


async def wake_async(entries: list[tuple[int, ...]]) -> None:
    """Push these entries to WAKE_KEY from an event loop (one RPUSH on a client of the
    loop's own); without a Redis broker, the waker thread queues tasks instead."""
    client = _async_redis()
    if client is None:
        for webhook_ids in entries:
            _waker().put(webhook_ids)
        return
    await client.rpush(WAKE_KEY, *(",".join(map(str, ids)) for ids in entries))


# An asyncio client is bound to the loop it first ran on: one per loop, forgotten with it.
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_redis():
    """The broker's Redis, for the running event loop."""
    url = _redis_url()
    if url is None:
        return None
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    if url not in clients:
        import redis.asyncio

        clients[url] = redis.asyncio.Redis.from_url(url, socket_timeout=5)
    return clients[url]


# The Redis list (the Celery broker's Redis) of endpoints with new events: one entry per
# event, its endpoint ids joined by commas. Lost entries cost no event: the rows are in
# the database, and beat's due-check (webhook_deliveries_due) queues what is left.
WAKE_KEY = "parkweb:webhook:wake"
WAKE_BATCH = 100  # entries a waker pushes, or a loop takes, at once


class _Waker(threading.Thread):
    """Pushes the endpoints of committed events to WAKE_KEY from a thread of its own, in
    commit order, whatever is waiting in one RPUSH. Without a Redis broker it queues a
    webhooks_deliver task per batch instead."""

    def __init__(self):
        super().__init__(name="parkweb-webhook-waker", daemon=True)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.counts = threading.Condition()
        self.handed = self.done = 0  # entries put, and pushed or given up

    def put(self, webhook_ids) -> None:
        with self.counts:
            self.handed += 1
        self.queue.put(tuple(webhook_ids))

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < WAKE_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                _wake(batch)
            except Exception:  # beat's due-check delivers them; events are never lost
                log.exception("webhooks %s: delivery loops not woken", batch[:5])
            with self.counts:
                self.done += len(batch)
                self.counts.notify_all()

    def drained(self, timeout: float) -> bool:
        with self.counts:
            return self.counts.wait_for(lambda: self.done >= self.handed, timeout)


def _wake(batch: list[tuple[int, ...]]) -> None:
    client = _redis()
    if client is not None:
        client.rpush(WAKE_KEY, *(",".join(map(str, ids)) for ids in batch))
        return
    from ..tasks import webhooks_deliver

    ids = list(dict.fromkeys(webhook_id for ids in batch for webhook_id in ids))
    for start in range(0, len(ids), DUE_GROUP):
        webhooks_deliver.delay(ids[start : start + DUE_GROUP])


_waker_thread: _Waker | None = None
_waker_lock = threading.Lock()


def _waker() -> _Waker:
    global _waker_thread
    with _waker_lock:
        if _waker_thread is None or not _waker_thread.is_alive():
            _waker_thread = _Waker()
            _waker_thread.start()
    return _waker_thread


def webhooks_wake(webhook_ids) -> None:
    """Wake a delivery loop for these endpoints now (a run that has more to send)."""
    _wake([tuple(webhook_ids)])


def wakes_drained(timeout: float = 5.0) -> bool:
    """Wait until this process's waker has pushed what it was handed (a worker stopping,
    or a test); False if it had not within `timeout` seconds."""
    thread = _waker_thread
    return thread is None or thread.drained(timeout)


class DeliveryLoop(threading.Thread):
    """A delivery worker's loop: waits on WAKE_KEY, takes every entry waiting (events that
    came in while it sent the last batch go out together: one query and one log write for
    all of them), and delivers those endpoints' queues as a webhooks_deliver task does.

    No broker message per event: with a Celery task per event, published from a child
    of the watchers' worker, the deliveries took 0.54 of a core at 50 events a second
    (bench/webhooks.py: workers 0.44, publisher 0.10); with the loops, 0.34. Several loops
    (processes, workers, hosts) share the list; the endpoints' locks keep each endpoint
    with one of them at a time."""

    WAIT_SECONDS = 1.0  # each BLPOP; also how soon a stop is seen
    STRAGGLER_POLL = 0.05  # each BLPOP while sends go on alone: how soon they are written

    def __init__(self, deliver):
        """`deliver(ids, stragglers=...)`: lots.tasks' delivery of a run (it schedules the
        retries)."""
        super().__init__(name="parkweb-webhook-deliveries", daemon=True)
        self.deliver = deliver
        self.stopping = threading.Event()
        self.stragglers = Stragglers()
        self.batches = 0  # delivered so far (tests)

    def run(self) -> None:
        from django.db import close_old_connections

        try:
            while not self.stopping.is_set():
                try:
                    ids = self.take()
                    if ids or self.stragglers:
                        if not self.stragglers:  # its locks live with the connection
                            close_old_connections()
                        self.deliver(ids, stragglers=self.stragglers)
                        self.batches += bool(ids)
                except Exception:  # Redis or the database away: try again shortly
                    log.exception("webhook delivery loop")
                    self.stopping.wait(self.WAIT_SECONDS)
        finally:
            try:  # what is still going on alone: written if it ends soon, else sent again
                self.stragglers.settle(timeout=1.0)
                self.deliver([], stragglers=self.stragglers)
            except Exception:
                log.exception("webhook delivery loop: stopping")
            connection.close()

    def take(self) -> list[int]:
        """The endpoints of every waiting entry, in order, each once ([] after a wait)."""
        client = _redis()
        wait = self.STRAGGLER_POLL if self.stragglers else self.WAIT_SECONDS
        if client is None:
            self.stopping.wait(wait)
            return []
        first = client.blpop([WAKE_KEY], timeout=wait)
        if first is None:
            return []
        entries = [first[1], *(client.lpop(WAKE_KEY, WAKE_BATCH - 1) or [])]
        return list(
            dict.fromkeys(int(part) for entry in entries for part in entry.split(b",") if part)
        )

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)


_loop: DeliveryLoop | None = None


def delivery_loop_start(deliver) -> DeliveryLoop:
    """Start this process's delivery loop (a worker that serves the deliveries' queue
    calls it as it becomes ready)."""
    global _loop
    with _waker_lock:
        if _loop is None or not _loop.is_alive():
            _loop = DeliveryLoop(deliver)
            _loop.start()
    return _loop


def delivery_loop_stop() -> None:
    global _loop
    with _waker_lock:
        found, _loop = _loop, None
    if found is not None:
        found.stop()


DUE_GROUP = 20  # endpoints per run when beat finds them due: several workers share them
RETRY_KEY = "parkweb:webhook:retry:{}"
RETRY_SLACK = 60  # a retry marker outlives its run by this: a lost run's marker lapses


def retry_scheduled(webhook_id: int, seconds: float) -> bool:
    """Mark a retry run as scheduled `seconds` ahead: True when none was (the caller then
    queues it), False when one is (events meanwhile need no other). Without Redis: True."""
    client = _redis()
    if client is None:
        return True
    key = RETRY_KEY.format(webhook_id)
    return bool(client.set(key, 1, nx=True, ex=int(seconds) + RETRY_SLACK))


def retry_runs_started(webhook_ids) -> None:
    """Called as a retry run starts: the next failure schedules another."""
    client = _redis()
    if client is not None and webhook_ids:
        client.delete(*(RETRY_KEY.format(webhook_id) for webhook_id in webhook_ids))


RETRY_SLOT_KEY = "parkweb:webhook:retrying:{}"  # per tenant: its retry run going on
RETRY_SLOT_WAIT = 1.0  # seconds a retry run waits while its tenant has another going on


@contextmanager
def tenant_retry_slot(webhook_id: int) -> Iterator[bool]:
    """A tenant's retry runs go one at a time, in all the workers together: yields False
    when another of the tenant's is going on (the caller runs later). A retry of a dead
    receiver holds its worker process up to PARKWEB_WEBHOOK_TIMEOUT; so a tenant's dead
    receivers hold one process at a time, never all of them. The slot lapses if its
    holder dies. Without Redis (the embedded mode, one process): always True."""
    client = _redis()
    tenant_id = Webhook.objects.filter(pk=webhook_id).values_list("tenant_id", flat=True).first()
    if client is None or tenant_id is None:
        yield True
        return
    key, token = RETRY_SLOT_KEY.format(tenant_id), uuid.uuid4().hex
    lease = (
        int(settings.PARKWEB_WEBHOOK_SEND_BUDGET + settings.PARKWEB_WEBHOOK_TIMEOUT) + RETRY_SLACK
    )
    if not client.set(key, token, nx=True, ex=lease):
        yield False
        return
    try:
        yield True
    finally:
        client.eval(_RELEASE_IF_OURS, 1, key, token)


_RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


_clients: dict[str, object] = {}


def _redis_url() -> str | None:
    """The Celery broker's URL when it is a Redis (None otherwise)."""
    from parkweb.celery import app

    url = str(app.conf.broker_url or "")
    return url if url.startswith(("redis://", "rediss://")) else None


def _redis():
    """Redis where the wake list and retry markers live: the Celery broker's, so that
    every process that queues or runs deliveries sees the same ones (None without a
    Redis broker)."""
    url = _redis_url()
    if url is None:
        return None
    if url not in _clients:
        import redis

        _clients[url] = redis.Redis.from_url(url, socket_timeout=5)
    return _clients[url]


# -- delivery -------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float:
    """Seconds before the next try: PARKWEB_WEBHOOK_RETRY_BASE doubled per attempt, at
    most PARKWEB_WEBHOOK_RETRY_MAX."""
    base = settings.PARKWEB_WEBHOOK_RETRY_BASE
    return float(min(base * 2 ** max(attempts - 1, 0), settings.PARKWEB_WEBHOOK_RETRY_MAX))


CHUNK = 20  # deliveries per endpoint sent between two commits of the log
ROUNDS = 10  # chunks per endpoint a run sends before handing over to a fresh run
RECHECKS = 5  # times a run takes on what was queued while it held the locks


class Stragglers:
    """A delivery loop's sends that outlast their round (PATIENCE seconds: a slow or
    hanging receiver), so that one tenant's receiver never holds up the deliveries of
    the rest: each goes on alone in its thread, its endpoint locked by the loop's
    connection, while the loop delivers the others; the loop's next run writes what it
    sent and lets the endpoint go (webhooks_deliver). From then on the rounds it is in do
    not wait for it at all, until a send of its is quick again (slow()).

    A tenant has at most `per_tenant` endpoints going on alone (a round may leave more at
    once, up to the endpoints it sent to); while it has that many, its other endpoints'
    deliveries are held back until one finishes: they wait for their own tenant only. A
    process has at most `limit` (4 x PARKWEB_WEBHOOK_THREADS): beyond that, a round
    waits for its slow sends as it did before."""

    def __init__(self, limit: int | None = None, per_tenant: int | None = None):
        self.limit = 4 * settings.PARKWEB_WEBHOOK_THREADS if limit is None else limit
        self.per_tenant = (
            settings.PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT if per_tenant is None else per_tenant
        )
        self._sending: dict[int, tuple[list[WebhookDelivery], Future]] = {}
        self._held_back: dict[int, set[int]] = {}  # tenant: its endpoints waiting
        self._slow: set[int] = set()  # endpoints whose last sends outlasted PATIENCE

    def slow(self) -> set[int]:
        """Endpoints whose last sends outlasted PATIENCE: a round does not wait for them
        at all (a slow receiver would make every round it is in wait), until a send of
        theirs is quick again."""
        return set(self._slow)

    def __len__(self) -> int:
        return len(self._sending)

    def sending(self) -> set[int]:
        return set(self._sending)

    def waiting(self) -> set[int]:
        return set().union(*self._held_back.values())

    def room(self) -> int:
        return max(self.limit - len(self._sending), 0)

    def add(self, queue: list[WebhookDelivery], future: Future) -> None:
        self._sending[queue[0].webhook_id] = (queue, future)
        if len(self._slow) >= 10_000:  # endpoints deleted meanwhile, say
            self._slow.clear()
        self._slow.add(queue[0].webhook_id)

    def _count(self, tenant_id: int) -> int:
        return sum(q[0].webhook.tenant_id == tenant_id for q, _ in self._sending.values())

    def hold_back(self, queues: dict[int, list[WebhookDelivery]]) -> list[int]:
        """Those of a round's endpoints whose tenant has its share going on alone: they
        wait (ready() gives them back once it has not)."""
        held = []
        for webhook_id, chunk in queues.items():
            tenant_id = chunk[0].webhook.tenant_id
            if self._count(tenant_id) >= self.per_tenant:
                self._held_back.setdefault(tenant_id, set()).add(webhook_id)
                held.append(webhook_id)
        return held

    def ready(self) -> set[int]:
        """Held-back endpoints whose tenant is below its share again (handed back once)."""
        ready: set[int] = set()
        for tenant_id in list(self._held_back):
            if self._count(tenant_id) < self.per_tenant:
                ready |= self._held_back.pop(tenant_id)
        return ready

    def finished(self) -> dict[int, tuple[list[WebhookDelivery], Sent]]:
        """The sends done since last asked, each with its chunk (taken out of here). A
        send that raised counts as having sent nothing: its events go again."""
        done = {}
        for webhook_id, (chunk, future) in list(self._sending.items()):
            if future.done():
                del self._sending[webhook_id]
                try:
                    done[webhook_id] = (chunk, future.result())
                except Exception:
                    log.exception("webhook %s: sending failed", webhook_id)
                    done[webhook_id] = (chunk, ([], None))
                answers = done[webhook_id][1][0]
                if sum(answer.seconds for _, answer in answers) < settings.PARKWEB_WEBHOOK_PATIENCE:
                    self._slow.discard(webhook_id)  # quick again: waited for again
        return done

    def settle(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for every send going on (a loop that stops)."""
        wait_for([future for _, future in self._sending.values()], timeout=timeout)


def webhook_deliver(webhook_id: int) -> float | None:
    """One endpoint's queue: webhooks_deliver."""
    return webhooks_deliver([webhook_id])[webhook_id]


def webhooks_deliver(
    webhook_ids, *, retries: bool = True, stragglers: Stragglers | None = None
) -> dict[int, float | None]:
    """Deliver these endpoints' queues, head first, side by side. For each endpoint: the
    seconds until its head's next try when it failed (the task schedules a run for
    then), 0 when it has more than one run sends, or None when its queue is empty, it is
    paused, or another run has it (that run looks again once it lets go: below).

    `retries=False` (the delivery loops): a head that failed before is not sent here but
    left to its retry run, so that a receiver that hangs holds up a loop, and the other
    endpoints of its batch, at most once per failure, not at every retry.

    `stragglers` (the delivery loops): a send still going PATIENCE seconds into its round
    is left to finish in its thread, its endpoint kept locked; this run goes on without
    it, and a later run of the same loop writes what it did (Stragglers). Its endpoint,
    and those of its tenant while the tenant is at its share, are then not in the answer:
    their wake-ups come from the loop."""
    todo = set(webhook_ids)
    if todo:  # their events may still be recorded only
        webhook_events_fan_out()
    waits: dict[int, float | None] = {}
    if stragglers is not None:
        finished = stragglers.finished()
        try:
            waits.update(_record(finished))
        finally:  # written or not (then sent again), their endpoints are let go
            webhook_locks_release(finished.keys())
        # An endpoint done now may have been queued for meanwhile: looked at below.
        todo |= {webhook_id for webhook_id, wait in waits.items() if wait is None}
        todo |= stragglers.ready()
        todo -= stragglers.sending()  # its lock is this connection's already: never twice
    waits.update(dict.fromkeys(todo))
    until = time.monotonic() + settings.PARKWEB_WEBHOOK_SEND_BUDGET
    for _ in range(RECHECKS):
        if not todo:
            return waits
        if time.monotonic() > until:
            break
        kept: set[int] = set()
        with webhook_locks(todo, kept) as held:
            done = _deliver_queues(held, until, retries, stragglers, kept)
        waits.update(done)
        if stragglers is not None:  # left to finish alone, or waiting for their tenant
            for webhook_id in stragglers.sending() | stragglers.waiting():
                waits.pop(webhook_id, None)
        # Queued while this run held the locks, by runs that found them held and left.
        todo = _due({webhook_id for webhook_id, wait in done.items() if wait is None})
        if stragglers is not None:
            todo = (todo | stragglers.ready()) - stragglers.sending()
        if not todo:
            return waits
    waits.update(dict.fromkeys(todo, 0.0))
    return waits


def _due(webhook_ids) -> set[int]:
    """Those of the endpoints whose head delivery is due now (asked after every run)."""
    if not webhook_ids:
        return set()
    ids = sorted(webhook_ids)
    with connection.cursor() as cursor:
        cursor.execute(_due_sql(connection.vendor, len(ids)), [*_ids(ids), True, timezone.now()])
        return {row[0] for row in cursor.fetchall()}


DUE_SCAN = 500  # endpoints beat asks about in one query


def _due_endpoints() -> list[int]:
    """The active endpoints whose head delivery is due now (ids): each endpoint's head,
    through the queue's index, so that beat's look costs what the endpoints do, not what
    their backlogs hold (a DISTINCT over the pending rows read them all: 39 ms every
    30 s with 10,000 of them, bench/webhook_log.py)."""
    ids = list(
        Webhook.objects.filter(active=True, paused_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return [
        webhook_id
        for start in range(0, len(ids), DUE_SCAN)
        for webhook_id in sorted(_due(ids[start : start + DUE_SCAN]))
    ]


def _deliver_queues(
    webhook_ids: set[int],
    until: float,
    retries: bool = True,
    stragglers: Stragglers | None = None,
    kept: set[int] | None = None,
) -> dict[int, float | None]:
    """Up to ROUNDS chunks of each endpoint's queue, until `until`: every round
    reads the heads of all the queues in one query, sends them (one thread per endpoint),
    and writes what happened into the log in one statement. A worker that dies mid-round
    sends that round's events again (at least once; receivers deduplicate on the event
    id). With `stragglers`, the endpoints whose sends outlast PATIENCE are handed to them
    and added to `kept` (their locks stay held)."""
    waits: dict[int, float | None] = dict.fromkeys(webhook_ids)
    going = set(webhook_ids)
    for _ in range(ROUNDS):
        queues = _heads(going)
        if stragglers is not None:
            for webhook_id in stragglers.hold_back(queues):
                del queues[webhook_id]
                waits.pop(webhook_id)
        if not queues:
            return waits
        if stragglers is None:
            sent, slow = _send_all(queues, retries, until)
        else:
            patience = settings.PARKWEB_WEBHOOK_PATIENCE
            sent, slow = _send_all(queues, retries, until, patience, stragglers.slow())
        if slow:  # beyond the process's room, waited for here
            for webhook_id in sorted(slow)[stragglers.room() :]:
                sent[webhook_id] = slow.pop(webhook_id).result()
        waits.update(_record({hook: (queues[hook], sent[hook]) for hook in sent}))
        for webhook_id, future in slow.items():
            stragglers.add(queues.pop(webhook_id), future)
            kept.add(webhook_id)
            waits.pop(webhook_id)
        going = {
            webhook_id
            for webhook_id, queue in queues.items()
            if len(queue) == CHUNK and waits[webhook_id] is None
        }
        if not going:
            return waits
        if time.monotonic() > until:
            break
    waits.update(dict.fromkeys(going, 0.0))
    return waits


def _record(sent: dict[int, tuple[list[WebhookDelivery], Sent]]) -> dict[int, float | None]:
    """Write what a round's sends did into the log (one statement), pause the endpoints
    whose head was given up, and say for each endpoint: the seconds before its head is
    tried again (0: at once), or None."""
    waits: dict[int, float | None] = {}
    tried, given_up = [], []
    for webhook_id, (chunk, (answers, not_before)) in sent.items():
        waits[webhook_id], gave_up = _outcome(answers, not_before)
        tried += [delivery for delivery, _ in answers]
        if gave_up is not None:
            given_up.append((chunk[0].webhook, gave_up))
    _log(tried)
    for webhook, delivery in given_up:
        _pause(webhook, delivery)
    return waits


def _heads(webhook_ids: set[int]) -> dict[int, list[WebhookDelivery]]:
    """The first CHUNK pending deliveries of each endpoint, in order, each with its
    endpoint (one query)."""
    if not webhook_ids:
        return {}
    ids = sorted(webhook_ids)
    with connection.cursor() as cursor:
        cursor.execute(_heads_sql(connection.vendor, len(ids)), [*_ids(ids), CHUNK, True])
        rows = cursor.fetchall()
    width = sql.width(WebhookDelivery)
    queues: dict[int, list[WebhookDelivery]] = {}
    endpoints: dict[int, Webhook] = {}
    for row in rows:
        delivery = sql.load(WebhookDelivery, row[:width])
        if delivery.webhook_id not in endpoints:
            endpoints[delivery.webhook_id] = sql.load(Webhook, row[width:])
        delivery.webhook = endpoints[delivery.webhook_id]
        queues.setdefault(delivery.webhook_id, []).append(delivery)
    return queues


# The SQL a delivery run asks with every round (lots.sql), per database kind and number
# of endpoints: the ORM took a worker 2.8 ms to compile the heads query for 1 ms of asking.
# Both name the pending status in the text, as the queue's partial index does, so that
# the index serves them however the parameters are bound: they read the pending rows
# alone, whatever the log holds (bench/webhook_log.py). On PostgreSQL each endpoint's
# head is read through that index with a LIMIT (a lateral join), so that they read a
# chunk's rows per endpoint however long its queue: a slow or dead receiver's backlog
# of thousands made every round of its loop read all of them (ROW_NUMBER over the whole
# queue), in the other tenants' time.
PENDING = f"'{WebhookDelivery.Status.PENDING}'"


def _ids(ids: list[int]) -> list:
    """The endpoint ids as the SQL below takes them: on PostgreSQL one array."""
    return [ids] if connection.vendor == "postgresql" else ids


def _queue_heads(vendor: str, count: int, columns: list[str], many: str) -> str:
    """FROM `head` and `hook`: the first `many` (a parameter or a number) pending
    deliveries of each endpoint asked for (`count` ids: _ids), with these of their
    columns, and their endpoints."""
    d, w = sql.columns(WebhookDelivery), sql.columns(Webhook)
    table, hooks = sql.table(WebhookDelivery), sql.table(Webhook)
    order = f"one.{d['occurred_at']}, one.{d['id']}"
    picked = ", ".join(f"one.{name}" for name in columns)
    if vendor == "postgresql":  # each endpoint, then its head
        return (
            f"(SELECT * FROM {hooks} WHERE {w['id']} = ANY(%s::bigint[])) hook"  # noqa: S608
            f" CROSS JOIN LATERAL (SELECT {picked} FROM {table} one"
            f" WHERE one.{d['status']} = {PENDING} AND one.{d['webhook']} = hook.{w['id']}"
            f" ORDER BY {order} LIMIT {many}) head"
        )
    numbered = (
        f"SELECT {picked}, ROW_NUMBER() OVER"  # noqa: S608  (names, not values)
        f" (PARTITION BY one.{d['webhook']} ORDER BY {order}) AS place FROM {table} one"
        f" WHERE one.{d['status']} = {PENDING} AND one.{d['webhook']} IN ({sql.marks(count)})"
    )
    return (
        f"(SELECT * FROM ({numbered}) numbered WHERE place <= {many}) head"  # noqa: S608
        f" JOIN {hooks} hook ON hook.{w['id']} = head.{d['webhook']}"
    )


@functools.lru_cache(maxsize=256)
def _heads_sql(vendor: str, count: int) -> str:
    """Params: the endpoint ids (_ids), CHUNK, True (active)."""
    d, w = sql.columns(WebhookDelivery), sql.columns(Webhook)
    columns = [f"head.{name}" for name in d.values()] + [f"hook.{name}" for name in w.values()]
    return (
        f"SELECT {', '.join(columns)}"  # noqa: S608  (names, not values)
        f" FROM {_queue_heads(vendor, count, list(d.values()), '%s')}"
        f" WHERE hook.{w['active']} = %s AND hook.{w['paused_at']} IS NULL"
        f" ORDER BY head.{d['webhook']}, head.{d['occurred_at']}, head.{d['id']}"
    )


@functools.lru_cache(maxsize=256)
def _due_sql(vendor: str, count: int) -> str:
    """Params: the endpoint ids (_ids), True (active), now."""
    d, w = sql.columns(WebhookDelivery), sql.columns(Webhook)
    heads = _queue_heads(vendor, count, [d["webhook"], d["next_attempt_at"]], "1")
    return (
        f"SELECT head.{d['webhook']} FROM {heads}"  # noqa: S608  (names, not values)
        f" WHERE hook.{w['active']} = %s AND hook.{w['paused_at']} IS NULL"
        f" AND (head.{d['next_attempt_at']} IS NULL OR head.{d['next_attempt_at']} <= %s)"
    )


Sent = tuple[list[tuple[WebhookDelivery, "webhooks.Answer"]], datetime | None]


def _send_all(
    queues: dict[int, list[WebhookDelivery]],
    retries: bool = True,
    until: float | None = None,
    patience: float | None = None,
    slow: set[int] = frozenset(),
) -> tuple[dict[int, Sent], dict[int, Future]]:
    """Each endpoint's chunk, head first, the endpoints side by side in threads: what
    each sent, and (with `patience`) the sends still going that many seconds in, left
    running; those of the `slow` endpoints are not waited for at all. No database in
    the threads: what was sent is recorded afterwards, here."""
    options = {
        "debug": settings.DEBUG,
        "timeout": settings.PARKWEB_WEBHOOK_TIMEOUT,
        "ca_file": settings.PARKWEB_WEBHOOK_CA_FILE or None,
        "retries": retries,
        "until": until,
    }
    jobs = {
        webhook_id: (queue[0].webhook, queue, _secret(queue[0].webhook))
        for webhook_id, queue in queues.items()
    }
    if len(jobs) == 1 and patience is None:
        ((webhook_id, job),) = jobs.items()
        return {webhook_id: _send_queue(*job, dict(options))}, {}
    pool = _process_local().pool
    futures = {
        webhook_id: pool.submit(_send_queue, *job, dict(options))
        for webhook_id, job in jobs.items()
    }
    if patience is not None:
        wait_for([f for hook, f in futures.items() if hook not in slow], timeout=patience)
    sent = {
        webhook_id: future.result()
        for webhook_id, future in futures.items()
        if patience is None or future.done()
    }
    return sent, {webhook_id: futures[webhook_id] for webhook_id in futures.keys() - sent.keys()}


HAND_OVER = timedelta(milliseconds=50)  # a failed head left to its retry run: run it then


def _send_queue(webhook: Webhook, queue: list[WebhookDelivery], secret: str, options) -> Sent:
    """Send a chunk, head first, until one fails or is not due yet (its time returned),
    or the run's time (`until`) is spent (now returned: the rest go in a fresh run).
    Without `retries`, a head that failed before counts as not due (see webhooks_deliver)."""
    answers = []
    sender = _process_local().sender
    retries = options.pop("retries", True)
    until = options.pop("until", None)
    for delivery in queue:
        if answers and until is not None and time.monotonic() > until:
            return answers, timezone.now()
        if delivery.next_attempt_at and delivery.next_attempt_at > timezone.now():
            return answers, delivery.next_attempt_at
        if delivery.attempts and not retries:
            return answers, timezone.now() + HAND_OVER
        answer = sender.send(
            webhook.pk,
            webhook.url,
            delivery.payload,
            secret,
            allow_private=webhook.allow_private,
            **options,
        )
        answers.append((delivery, answer))
        if not answer.delivered:
            break
    return answers, None


def _outcome(answers, not_before: datetime | None) -> tuple[float | None, WebhookDelivery | None]:
    """What a chunk's sending gave, set on its deliveries (for the log): the seconds to
    wait before the head is tried again, if it must be, and the delivery given up, if one
    was (its endpoint is then paused)."""
    now = timezone.now()
    wait = None if not_before is None else max((not_before - now).total_seconds(), 0.0)
    given_up = None
    for delivery, answer in answers:
        delivery.attempts += 1
        delivery.response_code = answer.code
        delivery.duration_ms = round(answer.seconds * 1000)
        delivery.response_prefix = answer.prefix
        delivery.error = answer.error
        delivery.finished_at = delivery.next_attempt_at = None
        if answer.delivered:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.finished_at = now
        elif (now - delivery.created_at).total_seconds() < settings.PARKWEB_WEBHOOK_RETRY_SECONDS:
            wait = retry_delay(delivery.attempts)
            delivery.next_attempt_at = now + timedelta(seconds=wait)
        else:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.finished_at = now
            given_up = delivery
    return wait, given_up


LOGGED = {  # the log's fields a try writes, with their PostgreSQL types
    "attempts": "integer",
    "response_code": "integer",
    "duration_ms": "integer",
    "response_prefix": "text",
    "error": "text",
    "status": "text",
    "finished_at": "timestamptz",
    "next_attempt_at": "timestamptz",
}


def _log(deliveries: list[WebhookDelivery]) -> None:
    """Write a round's tries, every endpoint's, into the log.

    On PostgreSQL: one UPDATE from one JSON parameter, its own transaction (the workers
    write hundreds of these a second; bulk_update's CASE per row and field, and a
    transaction's BEGIN and COMMIT round trips, cost more than the deliveries themselves).
    Its commit does not wait for the disk (synchronous_commit off, for this statement's
    transaction only): hundreds of them a second would queue behind each other's WAL
    flush, and so would the watcher's. A crash of PostgreSQL itself may lose the last
    fraction of a second of the log: those events are sent again (at least once)."""
    if not deliveries:
        return
    if connection.vendor != "postgresql":
        WebhookDelivery.objects.bulk_update(deliveries, list(LOGGED))
        return
    rows = [
        {
            "id": delivery.pk,
            **{
                name: value.isoformat() if isinstance(value, datetime) else value
                for name in LOGGED
                for value in [getattr(delivery, name)]
            },
        }
        for delivery in deliveries
    ]
    with connection.cursor() as cursor:
        cursor.execute(_log_sql(), [json.dumps(rows)])


@functools.cache
def _log_sql() -> str:
    """PostgreSQL only. Params: the tries as a JSON array of objects (id and LOGGED)."""
    d = sql.columns(WebhookDelivery)
    table = sql.table(WebhookDelivery)
    types = ", ".join(f"{name} {kind}" for name, kind in {"id": "bigint", **LOGGED}.items())
    assignments = ", ".join(f"{d[name]} = tried.{name}" for name in LOGGED)
    no_wait = "SELECT set_config('synchronous_commit', 'off', true)"
    return (
        f"WITH no_wait AS MATERIALIZED ({no_wait}) UPDATE {table}"  # noqa: S608  (names)
        f" SET {assignments}"
        f" FROM jsonb_to_recordset(%s::jsonb) AS tried({types}), no_wait"
        f" WHERE {table}.{d['id']} = tried.id"
    )


_secrets: dict[str, str] = {}


def _secret(webhook: Webhook) -> str:
    """The endpoint's secret, decrypted once per process (and per secret)."""
    if webhook.secret_encrypted not in _secrets:
        if len(_secrets) > 10_000:
            _secrets.clear()
        _secrets[webhook.secret_encrypted] = webhook.secret
    return _secrets[webhook.secret_encrypted]


class _ProcessLocal:
    """What a process sends with: its kept connections and its threads. Made again in a
    forked child, which must not share its parent's sockets."""

    def __init__(self):
        self.pid = os.getpid()
        self.sender = webhooks.Sender()
        threads = settings.PARKWEB_WEBHOOK_THREADS
        self.pool = ThreadPoolExecutor(  # and room for a loop's Stragglers (made as needed)
            max_workers=threads + 4 * threads, thread_name_prefix="parkweb-webhook"
        )
        self.swept = time.monotonic()


_local: _ProcessLocal | None = None
_local_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A pool child forked while another thread (the delivery loop) held one of these
    locks would wait for it forever: the child starts with its own, and without the
    parent's threads."""
    global _local_lock, _waker_lock, _waker_thread, _loop
    _local_lock, _waker_lock = threading.Lock(), threading.Lock()
    _waker_thread = _loop = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _process_local() -> _ProcessLocal:
    global _local
    with _local_lock:
        if _local is None or _local.pid != os.getpid():
            _local = _ProcessLocal()
        elif time.monotonic() - _local.swept > _local.sender.max_idle:
            _local.swept = time.monotonic()
            _local.sender.close_idle()  # receivers' idle connections are not kept open
    return _local


def _pause(webhook: Webhook, delivery: WebhookDelivery) -> None:
    """Stop calling an endpoint that keeps failing, and tell its tenant's admins."""
    reason = (
        f"Paused at {timezone.now():%Y-%m-%d %H:%M} UTC: event {delivery.event_id} "
        f"({delivery.event_type}) failed {delivery.attempts} times: {delivery.error}"
    )[:300]
    Webhook.objects.filter(pk=webhook.pk).update(paused_at=timezone.now(), paused_reason=reason)
    _active_cache.pop(webhook.tenant_id, None)
    log.warning("webhook %s of %s paused: %s", webhook.pk, webhook.tenant.slug, reason)
    emails = list(
        Membership.objects.filter(tenant=webhook.tenant, role=Role.ADMIN)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if emails:
        send_mail(
            f"parkweb: webhook paused for {webhook.tenant.name}",
            f"parkweb stopped calling {webhook.url}.\n\n{reason}\n\nEvents that happen "
            "while it is paused are not kept for it. Save the webhook as active again to "
            "resume (held-back events are then delivered, in order).",
            None,
            emails,
            fail_silently=True,
        )


def webhook_deliveries_due() -> int:
    """Queue every endpoint whose head delivery is due (beat: a queued task lost with its
    broker never strands an endpoint). Returns how many were queued."""
    from ..tasks import webhooks_deliver

    webhook_events_fan_out()  # what no delivery run has fanned out (its wake-up lost)
    found = list(_due_endpoints())
    for start in range(0, len(found), DUE_GROUP):
        webhooks_deliver.delay(found[start : start + DUE_GROUP])
    return len(found)


PURGE_CHUNK = 5_000  # rows one statement of the purge deletes (each its own transaction)


def webhook_deliveries_purge(now: datetime | None = None) -> int:
    """Delete the log's deliveries of events older than PARKWEB_WEBHOOK_LOG_DAYS, made or
    not (beat, daily; an event that old is of no use to a receiver). An endpoint at a
    time, oldest first, PURGE_CHUNK rows a statement, each statement its own
    transaction: the log's index finds them, no lock is held for long, and the
    deliveries go on meanwhile. Returns how many."""
    days = settings.PARKWEB_WEBHOOK_LOG_DAYS
    if days < 1:  # parkweb.checks refuses it at start; never a purge of everything
        raise ValueError("PARKWEB_WEBHOOK_LOG_DAYS must be at least 1")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    for webhook_id in Webhook.objects.order_by("pk").values_list("pk", flat=True):
        while True:
            oldest = WebhookDelivery.objects.filter(
                webhook_id=webhook_id, occurred_at__lt=cutoff
            ).order_by("occurred_at", "pk")[:PURGE_CHUNK]
            count, _ = WebhookDelivery.objects.filter(pk__in=oldest.values("pk")).delete()
            deleted += count
            if count < PURGE_CHUNK:
                break
    if deleted:
        log.info("webhook log: %d deliveries older than %s purged", deleted, cutoff)
    return deleted

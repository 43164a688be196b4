"""Live parking state: parking events become episodes, pushed to tenants' pages; the state
is rebuilt from Asterisk after every login; retrieve and hang up act on live calls."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from parkweb.errors import Conflict, Forbidden, Invalid, Unavailable
from tenants.actors import Actor
from tenants.audit import audit
from tenants.models import Membership, Tenant
from tenants.scoping import tenant_access

from .. import rules, sql
from ..asterisk import actions, comeback, confgen
from ..asterisk.ami import AmiActionError, AmiError
from ..asterisk.events import Kind, ParkingEvent
from ..frames import call_frame, health_frame, tenant_group
from ..models import (
    AsteriskServer,
    DialplanContext,
    EventProblem,
    ParkedCall,
    ParkingLot,
    ServerHealth,
    TenantPhones,
)
from .alerts import lot_occupancy_update
from .deploys import ami_client
from .webhooks import call_event_emit

log = logging.getLogger(__name__)

OUTCOME_OF = {
    Kind.UNPARKED: ParkedCall.Outcome.RETRIEVED,
    Kind.TIMED_OUT: ParkedCall.Outcome.TIMED_OUT,
    Kind.GAVE_UP: ParkedCall.Outcome.ABANDONED,
}
# A device staff may ring from the admin: a technology and a plain endpoint name, or an
# extension in a context. Tenants never name devices: they give an extension of their own
# phones (TenantPhones), and parkweb builds the channel.
DEVICE_RE = re.compile(
    r"(PJSIP|SIP|IAX2|DAHDI)/[A-Za-z0-9][A-Za-z0-9_.-]{0,79}"
    r"|Local/[A-Za-z0-9_.-]{1,40}@[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
)


def push(tenant_id: int | None, message: dict) -> None:
    """Send to the tenant's pages once the current transaction commits (inside
    `pushes_together`: with the others made there, on its way out)."""
    if tenant_id is None:
        return
    collected = getattr(_together, "messages", None)
    if collected is not None:
        transaction.on_commit(lambda: collected.append((tenant_id, message)))
    else:
        transaction.on_commit(lambda: _send([(tenant_id, message)]))


_together = threading.local()


@contextmanager
def pushes_together(send: Callable[[list], None] | None = None) -> Iterator[None]:
    """Pushes committed inside go out together on the way out, in order: one trip to the
    channel layer for a batch of events instead of one per push. A push made in a
    transaction or savepoint that rolls back is never sent (it is collected on commit).
    `send` takes them instead of sending them here (the watcher's outbox)."""
    outer = getattr(_together, "messages", None)
    if outer is not None:  # already collecting: the outer block sends
        yield
        return
    collected = _together.messages = []
    try:
        yield
    finally:
        _together.messages = None
        if collected:
            (send or _send)(collected)


def _send(messages: list[tuple[int, dict]]) -> None:
    try:
        async_to_sync(pages_send)(messages)
    except Exception:
        log.exception("pushes to %d page group(s) failed", len(messages))


async def pages_send(messages: list[tuple[int, dict]]) -> None:
    """Pushes, in order; one that fails is logged and the rest go on (a page update must
    never break event handling)."""
    layer = get_channel_layer()
    for tenant_id, message in messages:
        try:
            await layer.group_send(
                tenant_group(tenant_id), {"type": "parking.message", "message": message}
            )
        except Exception:
            log.exception("push to tenant %s failed", tenant_id)


def _tell(kind: str, call: ParkedCall) -> None:
    """A call's change, to its tenant's pages and to the tenant's webhooks (queued in this
    transaction, delivered by workers after it commits), and its lot's alerts."""
    push(call.tenant_id, call_frame(kind, call))
    call_event_emit(kind, call)
    if call.lot_id is not None:
        lot_occupancy_update(call.lot)


def lot_for(server_id: int, lot_name: str) -> ParkingLot | None:
    """The managed lot behind an Asterisk lot name, with its tenant and context, by an
    indexed lookup; None if unmanaged. The watcher asks at every park: its SQL is written
    once (lots.sql).

    Lot names are `<tenant slug>_<lot slug>` (neither slug has '_'), or `default` for the
    lot the server lets stand for Asterisk's built-in one.
    """
    if lot_name == "default":
        return _lot_where("default", [server_id, server_id])
    tenant_slug, sep, lot_slug = lot_name.partition("_")
    if not sep:
        return None
    return _lot_where("name", [server_id, tenant_slug, lot_slug])


def lot_by_pk(lot_id: int) -> ParkingLot | None:
    """A lot with its tenant and context (as lot_for)."""
    return _lot_where("pk", [lot_id])


def _lot_where(by: str, params: list) -> ParkingLot | None:
    with connection.cursor() as cursor:
        cursor.execute(_lot_sql(connection.vendor, by), params)
        row = cursor.fetchone()
    if row is None:
        return None
    lot_end = sql.width(ParkingLot)
    tenant_end = lot_end + sql.width(Tenant)
    lot = sql.load(ParkingLot, row[:lot_end])
    lot.tenant = sql.load(Tenant, row[lot_end:tenant_end])
    lot.context = sql.load(DialplanContext, row[tenant_end:])
    return lot


@functools.cache
def _lot_sql(vendor: str, by: str) -> str:
    """A lot, its tenant and its context, in one row: `by` name (server, tenant slug, lot
    slug), `pk`, or `default` (server, server)."""
    lot, tenant, context = (sql.columns(m) for m in (ParkingLot, Tenant, DialplanContext))
    server = sql.columns(AsteriskServer)
    default_lot = f"SELECT {server['default_lot']} FROM {sql.table(AsteriskServer)}"  # noqa: S608
    default_lot += f" WHERE {server['id']} = %s"
    where = {
        "name": f"l.{lot['server']} = %s AND t.{tenant['slug']} = %s AND l.{lot['slug']} = %s",
        "pk": f"l.{lot['id']} = %s",
        "default": f"l.{lot['server']} = %s AND l.{lot['id']} = ({default_lot})",
    }[by]
    selected = [f"l.{c}" for c in lot.values()] + [f"t.{c}" for c in tenant.values()]
    selected += [f"c.{c}" for c in context.values()]
    return (
        f"SELECT {', '.join(selected)} FROM {sql.table(ParkingLot)} l"  # noqa: S608
        f" JOIN {sql.table(Tenant)} t ON t.{tenant['id']} = l.{lot['tenant']}"
        f" JOIN {sql.table(DialplanContext)} c ON c.{context['id']} = l.{lot['context']}"
        f" WHERE {where}"
    )


def _seconds_ago(now: datetime, seconds: int | None) -> datetime:
    return now - timedelta(seconds=seconds or 0)


def _timeout_at(lot: ParkingLot | None, event: ParkingEvent, now: datetime) -> datetime | None:
    """When the call comes back; None when it never does. A lot whose parkingtime is 0
    never times out, and Asterisk reports any timeout of it as a huge wrapped number: so
    a timeout longer than the lot's own parking time is no timeout at all."""
    if not event.timeout or (lot is not None and not 0 < event.timeout <= lot.parkingtime):
        return None
    return now + timedelta(seconds=event.timeout)


class _Batch:
    """What one transaction's events share, each read once in it: the lots they name (with
    their tenant and context), and the calls open on their channels, locked. A burst of
    events mostly names a few lots again and again, and a call's park and end often come
    in one burst."""

    def __init__(self, server_id: int, keys=()):
        self.server_id = server_id
        self.by_name: dict[str, ParkingLot | None] = {}
        self.by_pk: dict[int, ParkingLot] = {}
        self.open: dict[str, ParkedCall] = {}
        if keys:
            for call in _open_calls(server_id).filter(uniqueid__in=set(keys)):
                self.open[call.uniqueid] = self.attach(call)

    def named(self, name: str) -> ParkingLot | None:
        if name not in self.by_name:
            lot = self.by_name[name] = lot_for(self.server_id, name)
            if lot is not None:
                lot = self.by_name[name] = self.by_pk.setdefault(lot.pk, lot)
        return self.by_name[name]

    def attach(self, call: ParkedCall) -> ParkedCall:
        """The call, its lot taken from here."""
        if call.lot_id is not None:
            if call.lot_id not in self.by_pk:
                lot = lot_by_pk(call.lot_id)
                if lot is None:
                    raise ParkingLot.DoesNotExist(f"lot {call.lot_id}")
                self.by_pk[call.lot_id] = lot
            call.lot = self.by_pk[call.lot_id]
        return call


def _open_calls(server_id: int):
    """The server's open episodes, locked as they are read, until the transaction ends."""
    return ParkedCall.objects.select_for_update().filter(server_id=server_id, ended_at__isnull=True)


def _open_episode(server_id: int, event: ParkingEvent, now: datetime, batch: _Batch) -> ParkedCall:
    lot = batch.named(event.lot)
    return ParkedCall.objects.create(
        server_id=server_id,
        lot=lot,
        tenant_id=lot.tenant_id if lot else None,
        lot_name=event.lot,
        space=event.space,
        parkee_channel=event.parkee.name,
        uniqueid=event.parkee.uniqueid,
        linkedid=event.parkee.linkedid,
        caller_id_num=event.parkee.caller_id_num,
        caller_id_name=event.parkee.caller_id_name,
        connected_line_num=event.parkee.connected_line_num,
        connected_line_name=event.parkee.connected_line_name,
        parker_dial_string=event.parker_dial_string,
        parked_at=_seconds_ago(now, event.duration),
        timeout_at=_timeout_at(lot, event, now),
    )


def _end_episode(
    call: ParkedCall, outcome: str, now: datetime, event: ParkingEvent | None = None
) -> None:
    call.ended_at = now
    call.outcome = outcome
    retriever = event.retriever if event is not None else None
    if retriever is not None:
        call.retriever_channel = retriever.name
        call.retriever_caller_id_num = retriever.caller_id_num
        call.retriever_caller_id_name = retriever.caller_id_name
    ours = call.retrieve_channel_id and (
        retriever is None or retriever.uniqueid == call.retrieve_channel_id
    )
    if outcome == ParkedCall.Outcome.RETRIEVED and ours:
        # Bridged by parkweb's retrieve: the phone's own caller ID is "Parked 701", so
        # name the extension rung and the person who asked.
        call.retriever_channel = call.retriever_channel or call.retrieve_target
        call.retriever_caller_id_num = _dialled(call.retrieve_target)[:80]
        call.retriever_caller_id_name = call.retrieve_requested_by[:80]
    elif _still_ringing(call, now):
        # The call left otherwise while parkweb rings a phone for it: stop the ringing,
        # so nobody answers into nothing (or into a call a colleague has picked up).
        transaction.on_commit(lambda: _cancel_ringing(call))
    call.save()


def _still_ringing(call: ParkedCall, now: datetime) -> bool:
    return bool(
        call.retrieve_channel_id
        and call.retrieve_requested_at
        and (now - call.retrieve_requested_at).total_seconds() < actions.RING_SECONDS + 5
    )


def _cancel_ringing(call: ParkedCall) -> None:
    from ..tasks import retrieve_cancel  # tasks call services: imported here

    retrieve_cancel.delay(call.server_id, call.retrieve_channel_id)


def retrieve_ringing_cancel(server_id: int, channel_id: str) -> bool:
    """Hang up the phone parkweb is ringing for a call that is gone; False if it was not
    ringing any more."""
    server = AsteriskServer.objects.filter(pk=server_id).first()
    if server is None:
        return False
    client = ami_client(server)

    async def hangup() -> None:
        async with client as ami:
            await actions.hangup(ami, channel_id)

    try:
        asyncio.run(hangup())
    except AmiActionError:  # answered and gone, or never rang
        return False
    except AmiError as exc:
        log.warning("could not stop ringing %s on server %s: %s", channel_id, server_id, exc)
        return False
    return True


def _dialled(channel: str) -> str:
    """'Local/201@acme-phones' -> '201'; 'PJSIP/alice' -> 'alice'."""
    return channel.partition("/")[2].partition("@")[0]


@transaction.atomic
def parked_call_apply(
    server_id: int, event: ParkingEvent, now: datetime | None = None
) -> ParkedCall | None:
    """Apply one parking event; the tenant's pages get it after commit. Returns the episode
    changed, or None when the event told nothing new (a duplicate)."""
    return _apply(server_id, event, now or timezone.now(), _Batch(server_id, [event.key]))


def _apply(server_id: int, event: ParkingEvent, now: datetime, batch: _Batch) -> ParkedCall | None:
    """parked_call_apply, inside the caller's transaction; `batch` has read the open calls
    of the transaction's events."""
    call = batch.open.get(event.key)
    kind = event.kind
    if kind == Kind.PARKED:
        if call is not None:
            return None  # already known (seen in a resync, or delivered twice)
        call = _open_episode(server_id, event, now, batch)
    elif kind == Kind.SWAPPED:
        # The new channel takes the space; the episode of the one it replaced ends.
        replaced = _open_calls(server_id).filter(lot_name=event.lot, space=event.space)
        for old in replaced.exclude(uniqueid=event.key):
            old = batch.open.pop(old.uniqueid, None) or batch.attach(old)
            _end_episode(old, ParkedCall.Outcome.SWAPPED, now)
            _tell("swapped", old)
        if call is None:
            call = _open_episode(server_id, event, now, batch)
        kind = Kind.PARKED
    else:
        if call is None:  # its park happened while we were away: record it, then end it
            call = _open_episode(server_id, event, now, batch)
        _end_episode(call, OUTCOME_OF[kind], now, event)
        batch.open.pop(event.key, None)
        _tell(str(kind), call)
        return call
    batch.open[event.key] = call
    _tell(str(kind), call)
    return call


@transaction.atomic
def server_resync(
    server_id: int, parked_now: list[ParkingEvent], now: datetime | None = None
) -> dict[str, int]:
    """Make the open episodes equal to what Asterisk reports parked (`ParkedCalls`):
    episodes it no longer has end as lost, ones it has that we lack are opened."""
    now = now or timezone.now()
    open_calls = {
        call.uniqueid: call
        for call in ParkedCall.objects.select_for_update(of=("self",))
        .select_related("lot")
        .filter(server_id=server_id, ended_at__isnull=True)
    }
    parked = {event.key: event for event in parked_now}
    batch = _Batch(server_id)
    lost = opened = failed = 0
    for uniqueid, call in open_calls.items():
        if uniqueid not in parked:
            _end_episode(call, ParkedCall.Outcome.LOST, now)
            _tell("lost", call)
            lost += 1
    for uniqueid, event in parked.items():
        if uniqueid in open_calls:
            continue
        try:
            with transaction.atomic():  # one call's trouble stays that call's
                call = _open_episode(server_id, event, now, batch)
        except CONTAINED as exc:
            parking_event_problem(server_id, event, exc, kind="resync")
            failed += 1
            continue
        _tell("parked", call)
        opened += 1
    return {"lost": lost, "opened": opened, "parked": len(parked), "failed": failed}


# What one event or one call can cause, and what stays with it: anything but the database
# being away (OperationalError, InterfaceError), which the watcher answers by reconnecting
# and resyncing once the database is back.
CONTAINED = (DataError, IntegrityError, ValueError, TypeError, ArithmeticError, LookupError)


def parking_events_apply(
    server_id: int, events: list[ParkingEvent], send: Callable[[list], None] | None = None
) -> None:
    """Apply events in order, as `parking_event_apply` does one. Several (a burst the
    watcher found waiting) go in one transaction, sharing their lots' lookups, and their
    pushes go out together after the commit: under load an event costs the watcher less,
    so it keeps up (`send`: where the pushes go, see pushes_together). Should one of them
    fail, the transaction is rolled back (nothing of it
    was pushed, queued or mailed: all of that waits for the commit) and the events are
    applied again one by one, so that the trouble stays that event's."""
    with pushes_together(send):
        if len(events) > 1:
            try:
                with transaction.atomic():
                    batch = _Batch(server_id, [event.key for event in events])
                    for event in events:
                        _apply(server_id, event, timezone.now(), batch)
                return
            except CONTAINED:
                pass  # rolled back whole: each again on its own, so only its own fails
        for event in events:
            parking_event_apply(server_id, event)


def parking_event_apply(server_id: int, event: ParkingEvent) -> ParkedCall | None:
    """`parked_call_apply`, with whatever goes wrong kept to that event: logged and
    recorded against its call and tenant, never raised into the watcher."""
    try:
        return parked_call_apply(server_id, event)
    except CONTAINED as exc:
        parking_event_problem(server_id, event, exc)
        return None


def parking_event_problem(
    server_id: int, event: ParkingEvent, error: Exception, kind: str = ""
) -> None:
    """Log an event that could not be applied, and keep it against its call and tenant."""
    log.error(
        "server %s: %s of %s in lot %s not applied: %r",
        server_id,
        kind or event.kind,
        event.key,
        event.lot,
        error,
    )
    try:
        with transaction.atomic():
            lot = lot_for(server_id, event.lot)
            EventProblem.objects.create(
                server_id=server_id,
                tenant_id=lot.tenant_id if lot else None,
                uniqueid=event.key[:64],
                lot_name=event.lot[:80],
                kind=(kind or str(event.kind))[:20],
                error=repr(error)[:300],
            )
    except CONTAINED:
        log.exception("could not record the problem of %s", event.key)


def server_health_update(server_id: int, **fields) -> ServerHealth | None:
    """Record the watcher's view of a server and tell the pages of its tenants (nothing
    for a server retired meanwhile: its watcher is stopping)."""
    if not AsteriskServer.objects.filter(pk=server_id).exists():
        return None
    health, _ = ServerHealth.objects.get_or_create(server_id=server_id)
    if "connected" in fields and fields["connected"] != health.connected:
        fields.setdefault("since", timezone.now())
    for name, value in fields.items():
        setattr(health, name, value)
    # Only these fields: the watcher's event tally is written beside (server_events_count).
    health.save(update_fields=list(fields))
    if set(fields) & {"connected", "synced", "error"}:
        message = health_frame(health)
        tenants = ParkingLot.objects.filter(server_id=server_id).values_list("tenant_id", flat=True)
        with transaction.atomic():
            for tenant_id in set(tenants):
                push(tenant_id, message)
    return health


def server_events_count(server_id: int, stats) -> None:
    """Add a watcher's tally of applied events (lots.metrics.EventStats) to the server's
    health; one watcher per server writes it, so no lock is needed."""
    health = ServerHealth.objects.filter(server_id=server_id).first()
    if health is None:  # the server was retired meanwhile
        return
    health.events_applied += stats.count
    health.event_lag_counts = stats.merged_into(health.event_lag_counts)
    health.event_lag_sum += stats.lag_sum
    health.last_event_at = timezone.now()
    health.save(
        update_fields=["events_applied", "event_lag_counts", "event_lag_sum", "last_event_at"]
    )


def _audit(call: ParkedCall, actor: Actor, action: str, ok: bool, **detail) -> None:
    audit(
        actor,
        action,
        f"{call.lot_name} space {call.space}",
        tenant=call.tenant_id,
        ok=ok,
        call=call.pk,
        **detail,
    )


def _require_operator(actor: Actor, call: ParkedCall) -> None:
    access = tenant_access(actor.principal, call.tenant) if call.tenant else None
    if access is None or not access.can_act:
        raise Forbidden("Only a tenant's admins and operators may act on its calls.")


def _require_parked(call: ParkedCall) -> None:
    if not call.active or call.lot is None:
        raise Conflict({"call": "This call is no longer parked."})


def retrieve_phone(call: ParkedCall, actor: Actor, extension: str | None) -> tuple[str, str]:
    """(the channel parkweb rings, the extension) for a retrieve of `call` to one of its
    tenant's phones: `extension`, else the member's own. Raises Invalid naming the field."""
    phones = (
        TenantPhones.objects.select_related("context", "server")
        .filter(server_id=call.server_id, tenant_id=call.tenant_id)
        .first()
    )
    if phones is None:
        raise Invalid(
            {
                "extension": "Your phones are not set up on this call's PBX yet: ask your "
                "operator to add them (admin: tenant phones)."
            }
        )
    if not extension and actor.user is not None:
        extension = (
            Membership.objects.filter(user=actor.user, tenant_id=call.tenant_id)
            .values_list("extension", flat=True)
            .first()
        )
    if not extension:
        raise Invalid({"extension": "Give the extension of your phone, like 201."})
    violations = rules.check_phone_extension("extension", extension, phones.ranges)
    if not violations and _is_parking_extension(call, extension, phones):
        violations.append(
            rules.Violation(
                "extension",
                "extension_is_parking",
                f"{extension} is a parking extension, not a phone.",
            )
        )
    if violations:
        raise Invalid({v.field: v.message for v in violations})
    return f"Local/{extension}@{phones.context.name}", extension


def _is_parking_extension(call: ParkedCall, extension: str, phones: TenantPhones) -> bool:
    """Is it the park extension or a space of one of the tenant's lots on that server?
    Ringing it would park or pick up a call rather than ring a phone."""
    lots = ParkingLot.objects.filter(server_id=call.server_id, tenant_id=call.tenant_id)
    number = int(extension)
    return (
        lots.filter(parkext=extension).exists()
        or lots.filter(parkpos_start__lte=number, parkpos_end__gte=number).exists()
    )


def parked_call_retrieve(call: ParkedCall, actor: Actor, extension: str | None = None) -> None:
    """Ring one of the tenant's phones (`extension`, else the member's own); when it
    answers it is bridged to exactly this call."""
    _require_operator(actor, call)
    _require_parked(call)
    dial, extension = retrieve_phone(call, actor, extension)
    _ring(call, actor, dial, {"extension": extension})


def parked_call_retrieve_to_device(call: ParkedCall, actor: Actor, device: str) -> None:
    """Staff only (the operator admin): ring any device, like PJSIP/alice."""
    if not actor.is_staff:
        raise Forbidden("Only staff may ring a device by name; tenants give an extension.")
    _require_parked(call)
    if not DEVICE_RE.fullmatch(device or ""):
        raise Invalid(
            {
                "device": "Give a device like PJSIP/alice (a technology, '/', and a name of "
                "letters, digits, '_', '.' or '-') or Local/<extension>@<context>."
            }
        )
    _ring(call, actor, device, {"device": device})


def _ring(call: ParkedCall, actor: Actor, dial: str, detail: dict) -> None:
    client = ami_client(call.server)  # made here: the ORM is not for the event loop
    channel_id = f"parkweb-{call.pk}-{secrets.token_hex(4)}"

    async def originate() -> None:
        async with client as ami:
            await actions.ring_and_bridge(
                ami,
                dial=dial,
                parked_uniqueid=call.uniqueid,
                space=call.space,
                channel_id=channel_id,
            )

    # Recorded before the phone can answer, so the watcher knows it as the retriever.
    ParkedCall.objects.filter(pk=call.pk).update(
        retrieve_target=dial[:100],
        retrieve_channel_id=channel_id,
        retrieve_requested_by=_name_of(actor)[:150],
        retrieve_requested_at=timezone.now(),
    )
    try:
        asyncio.run(originate())
    except AmiError as exc:
        _audit(call, actor, "retrieve", False, **detail, error=str(exc))
        raise Unavailable({next(iter(detail)): f"Asterisk could not ring {dial}: {exc}"}) from exc
    _audit(call, actor, "retrieve", True, **detail)


# -- the timeout chain and reminders (lots.asterisk.comeback) ------------------------------

AFTER_STEP = {
    comeback.STEP_ANSWERED: ParkedCall.AfterTimeout.ANSWERED,
    comeback.STEP_FALLBACK: ParkedCall.AfterTimeout.FALLBACK,
    comeback.STEP_REPARKED: ParkedCall.AfterTimeout.REPARKED,
    comeback.STEP_HUNG_UP: ParkedCall.AfterTimeout.HUNG_UP,
}
STEP_WINDOW = timedelta(hours=1)  # a step names a call that timed out at most this long ago
REMINDER_QUIET_SECONDS = 5  # no reminder this close to the timeout: the call comes back


@transaction.atomic
def timeout_step_apply(
    server_id: int, uniqueid: str, step: str, now: datetime | None = None
) -> ParkedCall | None:
    """Record what a lot's timeout chain did with a call (its UserEvent), on the call's
    latest episode that has no such record yet: the one that timed out, or the one still
    parked if the timeout event is yet to come. A "parked again" may come after the new
    episode's park: it belongs to the one that timed out."""
    after = AFTER_STEP.get(step)
    if after is None:
        return None
    now = now or timezone.now()
    episodes = (
        ParkedCall.objects.select_for_update()
        .filter(server_id=server_id, uniqueid=uniqueid, after_timeout="")
        .filter(
            Q(ended_at__isnull=True)
            | Q(outcome=ParkedCall.Outcome.TIMED_OUT, ended_at__gte=now - STEP_WINDOW)
        )
        .order_by("-parked_at", "-pk")
    )
    call = None
    if step == comeback.STEP_REPARKED:
        call = episodes.filter(outcome=ParkedCall.Outcome.TIMED_OUT).first()
    call = call or episodes.first()
    if call is None:
        return None
    call.after_timeout = after
    call.save(update_fields=["after_timeout"])
    return call


def reminders_due(server_id: int, now: datetime | None = None) -> list[ParkedCall]:
    """The server's parked calls whose lot reminds the parker and whose next reminder is
    due now (not in the last seconds before their timeout)."""
    now = now or timezone.now()
    calls = (
        ParkedCall.objects.filter(
            server_id=server_id,
            ended_at__isnull=True,
            lot__reminder_seconds__gt=0,
            lot__enabled=True,
        )
        .exclude(parker_dial_string="")
        .select_related("lot", "server")
    )
    due = []
    for call in calls:
        every = timedelta(seconds=call.lot.reminder_seconds)
        if now < call.parked_at + every * (call.reminders_sent + 1):
            continue
        if call.timeout_at and now > call.timeout_at - timedelta(seconds=REMINDER_QUIET_SECONDS):
            continue
        due.append(call)
    return due


def reminders_send(server_id: int, now: datetime | None = None) -> int:
    """Ring the parker of every call whose reminder is due (lots.asterisk.comeback's
    `remind`): answering picks the call up, and the call keeps its space meanwhile.
    Each reminder is claimed in the database first, so two workers never both send it.
    Returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    for call in reminders_due(server_id, now):
        dial = call.parker_dial_string
        if not DEVICE_RE.fullmatch(dial):
            continue  # not a phone parkweb can ring back (a parker it cannot name)
        channel_id = f"parkweb-{call.pk}-r{call.reminders_sent + 1}-{secrets.token_hex(3)}"
        claimed = ParkedCall.objects.filter(
            pk=call.pk, ended_at__isnull=True, reminders_sent=call.reminders_sent
        ).update(
            reminders_sent=F("reminders_sent") + 1,
            # Like a retrieve: the watcher names the parker as the retriever if they
            # answer, and stops the ringing if the call leaves otherwise meanwhile.
            retrieve_target=dial[:100],
            retrieve_channel_id=channel_id,
            retrieve_requested_by="the parker, answering a reminder",
            retrieve_requested_at=now,
        )
        if not claimed:
            continue
        try:
            _remind(call, dial, channel_id)
        except AmiError as exc:
            log.warning("reminder for call %s not sent: %s", call.pk, exc)
            continue
        sent += 1
    return sent


def _remind(call: ParkedCall, dial: str, channel_id: str) -> None:
    client = ami_client(call.server)
    context = confgen.timeout_context(call.lot.asterisk_name)

    async def originate() -> None:
        async with client as ami:
            await actions.remind(
                ami,
                dial=dial,
                context=context,
                parked_uniqueid=call.uniqueid,
                space=call.space,
                channel_id=channel_id,
            )

    asyncio.run(originate())


def _name_of(actor: Actor) -> str:
    return (actor.user.get_full_name() if actor.user is not None else "") or actor.label


def parked_call_hangup(call: ParkedCall, actor: Actor) -> None:
    """Hang up a parked call."""
    _require_operator(actor, call)
    if not call.active:
        raise Conflict({"call": "This call is no longer parked."})

    client = ami_client(call.server)

    async def hangup() -> None:
        async with client as ami:
            await actions.hangup(ami, call.parkee_channel)

    try:
        asyncio.run(hangup())
    except AmiError as exc:
        _audit(call, actor, "hangup", False, error=str(exc))
        refused = Conflict if isinstance(exc, AmiActionError) else Unavailable  # gone already
        raise refused({"call": f"Asterisk could not hang up the call: {exc}"}) from exc
    _audit(call, actor, "hangup", True)


def parked_calls_purge(now: datetime | None = None) -> int:
    """Delete ended episodes older than PARKWEB_HISTORY_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PARKWEB_HISTORY_DAYS)
    deleted, _ = ParkedCall.objects.filter(ended_at__lt=cutoff).delete()
    return deleted

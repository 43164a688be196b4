"""Live parking state: parking events become episodes, pushed to tenants' pages; the state
is rebuilt from Asterisk after every login; retrieve and hang up act on live calls."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tenants.models import Role
from tenants.scoping import has_role

from ..asterisk.ami import AmiError
from ..asterisk.events import Kind, ParkingEvent
from ..models import AuditEntry, ParkedCall, ParkingLot, ServerHealth
from ..selectors import serialize_call, tenant_group
from .deploys import ami_client

log = logging.getLogger(__name__)

OUTCOME_OF = {
    Kind.UNPARKED: ParkedCall.Outcome.RETRIEVED,
    Kind.TIMED_OUT: ParkedCall.Outcome.TIMED_OUT,
    Kind.GAVE_UP: ParkedCall.Outcome.ABANDONED,
}
# A device to ring when retrieving: a technology and a plain endpoint name, nothing else.
DEVICE_RE = re.compile(r"(PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}")


def push(tenant_id: int | None, message: dict) -> None:
    """Send to the tenant's pages once the current transaction commits."""
    if tenant_id is None:
        return
    layer = get_channel_layer()

    def send() -> None:
        try:
            async_to_sync(layer.group_send)(
                tenant_group(tenant_id), {"type": "parking.message", "message": message}
            )
        except Exception:  # a page update must never break event handling
            log.exception("push to tenant %s failed", tenant_id)

    transaction.on_commit(send)


def lot_for(server_id: int, lot_name: str) -> ParkingLot | None:
    """The managed lot behind an Asterisk lot name, by an indexed lookup; None if unmanaged.

    Lot names are `<tenant slug>_<lot slug>` (neither slug has '_'), or `default` for the
    lot the server lets stand for Asterisk's built-in one.
    """
    lots = ParkingLot.objects.select_related("tenant", "context").filter(server_id=server_id)
    if lot_name == "default":
        return lots.filter(pk=F("server__default_lot")).first()
    tenant_slug, sep, lot_slug = lot_name.partition("_")
    if not sep:
        return None
    return lots.filter(tenant__slug=tenant_slug, slug=lot_slug).first()


def _seconds_ago(now: datetime, seconds: int | None) -> datetime:
    return now - timedelta(seconds=seconds or 0)


def _open_episode(server_id: int, event: ParkingEvent, now: datetime) -> ParkedCall:
    lot = lot_for(server_id, event.lot)
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
        timeout_at=now + timedelta(seconds=event.timeout) if event.timeout else None,
    )


def _end_episode(
    call: ParkedCall, outcome: str, now: datetime, event: ParkingEvent | None = None
) -> None:
    call.ended_at = now
    call.outcome = outcome
    if event is not None and event.retriever is not None:
        call.retriever_channel = event.retriever.name
        call.retriever_caller_id_num = event.retriever.caller_id_num
        call.retriever_caller_id_name = event.retriever.caller_id_name
    call.save()


@transaction.atomic
def parked_call_apply(
    server_id: int, event: ParkingEvent, now: datetime | None = None
) -> ParkedCall | None:
    """Apply one parking event; the tenant's pages get it after commit. Returns the episode
    changed, or None when the event told nothing new (a duplicate)."""
    now = now or timezone.now()
    open_calls = ParkedCall.objects.select_for_update().filter(
        server_id=server_id, ended_at__isnull=True
    )
    call = open_calls.filter(uniqueid=event.key).first()
    kind = event.kind
    if kind == Kind.PARKED:
        if call is not None:
            return None  # already known (seen in a resync, or delivered twice)
        call = _open_episode(server_id, event, now)
    elif kind == Kind.SWAPPED:
        # The new channel takes the space; the episode of the one it replaced ends.
        replaced = open_calls.filter(lot_name=event.lot, space=event.space).exclude(
            uniqueid=event.key
        )
        for old in replaced:
            _end_episode(old, ParkedCall.Outcome.SWAPPED, now)
            push(old.tenant_id, {"type": "swapped", "call": serialize_call(old)})
        if call is None:
            call = _open_episode(server_id, event, now)
        kind = Kind.PARKED
    else:
        if call is None:  # its park happened while we were away: record it, then end it
            call = _open_episode(server_id, event, now)
        _end_episode(call, OUTCOME_OF[kind], now, event)
    push(call.tenant_id, {"type": str(kind), "call": serialize_call(call)})
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
        for call in ParkedCall.objects.select_for_update().filter(
            server_id=server_id, ended_at__isnull=True
        )
    }
    parked = {event.key: event for event in parked_now}
    lost = opened = 0
    for uniqueid, call in open_calls.items():
        if uniqueid not in parked:
            _end_episode(call, ParkedCall.Outcome.LOST, now)
            push(call.tenant_id, {"type": "lost", "call": serialize_call(call)})
            lost += 1
    for uniqueid, event in parked.items():
        if uniqueid not in open_calls:
            call = _open_episode(server_id, event, now)
            push(call.tenant_id, {"type": "parked", "call": serialize_call(call)})
            opened += 1
    return {"lost": lost, "opened": opened, "parked": len(parked)}


def server_health_update(server_id: int, **fields) -> ServerHealth:
    """Record the watcher's view of a server and tell the pages of its tenants."""
    health, _ = ServerHealth.objects.get_or_create(server_id=server_id)
    if "connected" in fields and fields["connected"] != health.connected:
        fields.setdefault("since", timezone.now())
    for name, value in fields.items():
        setattr(health, name, value)
    health.save()
    if set(fields) & {"connected", "synced", "error"}:
        message = {
            "type": "health",
            "server": health.server_id,
            "connected": health.connected,
            "synced": health.synced,
            "since": health.since.isoformat() if health.since else None,
        }
        tenants = ParkingLot.objects.filter(server_id=server_id).values_list("tenant_id", flat=True)
        with transaction.atomic():
            for tenant_id in set(tenants):
                push(tenant_id, message)
    return health


def _audit(call: ParkedCall, user, action: str, ok: bool, **detail) -> None:
    person = user if getattr(user, "pk", None) else None  # API keys are no person
    AuditEntry.objects.create(
        tenant_id=call.tenant_id,
        user=person,
        action=action,
        target=f"{call.lot_name} space {call.space}",
        detail={"call": call.pk, "by": user.get_username(), **detail},
        ok=ok,
    )


def _require_operator(user, call: ParkedCall) -> None:
    if call.tenant is None or not has_role(user, call.tenant, Role.OPERATOR):
        raise PermissionDenied("Only a tenant's admins and operators may act on its calls.")


def parked_call_retrieve(call: ParkedCall, user, device: str) -> None:
    """Ring `device`; when answered it dials the call's space and picks the call up."""
    _require_operator(user, call)
    if not DEVICE_RE.fullmatch(device or ""):
        raise ValidationError(
            {
                "device": "Give a device like PJSIP/alice: a technology, '/', and a name of "
                "letters, digits, '_', '.', '@' or '-'."
            }
        )
    if not call.active or call.lot is None:
        raise ValidationError({"call": "This call is no longer parked."})

    client = ami_client(call.server, events="call")
    context = call.lot.context.name

    async def originate() -> None:
        async with client as ami:
            reply = await ami.action(
                "Originate",
                Channel=device,
                Context=context,
                Exten=str(call.space),
                Priority="1",
                CallerID=f"Parked {call.space} <{call.space}>",
                Timeout="30000",
                Async="true",
                timeout=35,
            )
            if not reply.success:
                raise AmiError(reply.message or "Originate failed")

    try:
        asyncio.run(originate())
    except AmiError as exc:
        _audit(call, user, "retrieve", False, device=device, error=str(exc))
        raise ValidationError({"device": f"Asterisk could not ring {device}: {exc}"}) from exc
    _audit(call, user, "retrieve", True, device=device)


def parked_call_hangup(call: ParkedCall, user) -> None:
    """Hang up a parked call."""
    _require_operator(user, call)
    if not call.active:
        raise ValidationError({"call": "This call is no longer parked."})

    client = ami_client(call.server)

    async def hangup() -> None:
        async with client as ami:
            await ami.checked_action("Hangup", Channel=call.parkee_channel)

    try:
        asyncio.run(hangup())
    except AmiError as exc:
        _audit(call, user, "hangup", False, error=str(exc))
        raise ValidationError({"call": f"Asterisk could not hang up the call: {exc}"}) from exc
    _audit(call, user, "hangup", True)


def parked_calls_purge(now: datetime | None = None) -> int:
    """Delete ended episodes older than PARKWEB_HISTORY_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PARKWEB_HISTORY_DAYS)
    deleted, _ = ParkedCall.objects.filter(ended_at__lt=cutoff).delete()
    return deleted

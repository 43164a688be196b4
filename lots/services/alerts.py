"""Alerts: a lot almost full or full, a call waiting too long.

Each fires once per condition and clears when the condition passes: a conditional UPDATE
of the lot's (or the call's) alert time claims the change, so two workers never both
announce it. A change shows on the tenant's board (a frame), goes to the tenant's
webhooks (`lot.full`, `lot.available`, `call.waiting_long`) and, when it fires, is mailed
to the members who asked for alert mail.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from tenants.models import Membership

from .. import sql
from ..frames import call_data, call_frame, lot_alert
from ..models import ParkedCall, ParkingLot
from .webhooks import event_emit

log = logging.getLogger(__name__)


def lot_occupancy_update(lot: ParkingLot, now: datetime | None = None) -> None:
    """After a call parked in or left `lot` (in the same transaction): fire or clear its
    full and almost-full alerts."""
    from .parking import push  # parking calls this module: imported here

    now = now or timezone.now()
    busy = _busy(lot.pk)
    free = lot.parkpos_end - lot.parkpos_start + 1 - busy
    rows = ParkingLot.objects.filter(pk=lot.pk)
    changed = fired = None
    if free <= 0 and rows.filter(full_since__isnull=True).update(full_since=now):
        lot.full_since = now
        changed = fired = "full"
        event_emit(lot.tenant_id, "lot.full", lot.slug, lambda: {"free": free, "busy": busy})
    elif (
        free > 0
        and lot.full_since
        and rows.filter(full_since__isnull=False).update(full_since=None)
    ):
        lot.full_since = None
        changed = "available"
        event_emit(lot.tenant_id, "lot.available", lot.slug, lambda: {"free": free, "busy": busy})
    almost = bool(lot.alert_free_spaces) and free <= lot.alert_free_spaces
    if almost and rows.filter(almost_full_since__isnull=True).update(almost_full_since=now):
        lot.almost_full_since = now
        changed = changed or "almost_full"
        fired = fired or "almost_full"
    elif (
        not almost
        and lot.almost_full_since
        and rows.filter(almost_full_since__isnull=False).update(almost_full_since=None)
    ):
        lot.almost_full_since = None
        changed = changed or "cleared"
    if changed is None:
        return
    push(lot.tenant_id, {"type": "lot_alert", "lot": lot.slug, "free": free, **lot_alert(lot)})
    if fired:
        words = "is full" if fired == "full" else f"has {free} free space(s) left"
        _mail(lot.tenant_id, f"{lot.name} {words}", f"Lot {lot.name} {words} ({busy} parked).")


def _busy(lot_id: int) -> int:
    """The lot's calls parked now (asked at every parking event: lots.sql)."""
    with connection.cursor() as cursor:
        cursor.execute(_busy_sql(connection.vendor), [lot_id])
        return cursor.fetchone()[0]


@functools.cache
def _busy_sql(vendor: str) -> str:
    call = sql.columns(ParkedCall)
    return (
        f"SELECT COUNT(*) FROM {sql.table(ParkedCall)}"  # noqa: S608  (names, not values)
        f" WHERE {call['lot']} = %s AND {call['ended_at']} IS NULL"
    )


def waiting_alerts_check(server_id: int, now: datetime | None = None) -> int:
    """Fire `call.waiting_long` for the server's calls parked longer than their lot's
    alert_wait_seconds (each once). Returns how many fired."""
    from .parking import push

    now = now or timezone.now()
    calls = ParkedCall.objects.filter(
        server_id=server_id,
        ended_at__isnull=True,
        waiting_long_at__isnull=True,
        lot__alert_wait_seconds__gt=0,
    ).select_related("lot")
    fired = 0
    for call in calls:
        if now - call.parked_at < timedelta(seconds=call.lot.alert_wait_seconds):
            continue
        with transaction.atomic():
            claimed = ParkedCall.objects.filter(
                pk=call.pk, ended_at__isnull=True, waiting_long_at__isnull=True
            ).update(waiting_long_at=now)
            if not claimed:
                continue
            call.waiting_long_at = now
            push(call.tenant_id, call_frame("waiting_long", call))
            event_emit(
                call.tenant_id,
                "call.waiting_long",
                call.lot.slug,
                lambda c=call: {"call": call_data(c)},
            )
            who = call.caller_id_name or call.caller_id_num or "A caller"
            _mail(
                call.tenant_id,
                f"{who} has waited {call.lot.alert_wait_seconds} s in {call.lot.name}",
                f"{who} has been parked in space {call.space} of {call.lot.name} for more "
                f"than {call.lot.alert_wait_seconds} s.",
            )
        fired += 1
    return fired


def _mail(tenant_id: int, subject: str, text: str) -> None:
    """To the tenant's members who asked for alert mail, once the transaction commits."""
    emails = list(
        Membership.objects.filter(tenant_id=tenant_id, alert_mail=True)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not emails:
        return

    def send() -> None:
        try:
            send_mail(f"parkweb: {subject}"[:150], text, None, emails)
        except Exception:  # a mail server's trouble never stops the watcher
            log.exception("alert mail to tenant %s not sent", tenant_id)

    transaction.on_commit(send)

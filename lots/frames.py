"""What pages and API clients are told about parked calls and PBX health, built once:
the API's parked-call representation, and every frame of the board's websocket
(`snapshot`, one per call change, `health`), with the channel-layer group names.
"""

from __future__ import annotations

from django.utils import timezone

from tenants.models import Tenant

from . import selectors
from .models import ParkedCall, ParkingLot, ServerHealth


def tenant_group(tenant_id: int) -> str:
    """The channel-layer group of a tenant's live pages: derived from its id, never from
    anything a client sends."""
    return f"parking.tenant.{int(tenant_id)}"


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def call_data(call: ParkedCall) -> dict:
    """A parked call as the API and the board see it (its lot loaded, or none)."""
    return {
        "id": call.pk,
        "lot": call.lot.slug if call.lot_id else None,
        "lot_name": call.lot_name,
        "space": call.space,
        "uniqueid": call.uniqueid,
        "caller_id_num": call.caller_id_num,
        "caller_id_name": call.caller_id_name,
        "connected_line_num": call.connected_line_num,
        "connected_line_name": call.connected_line_name,
        "parker_dial_string": call.parker_dial_string,
        "parked_at": _iso(call.parked_at),
        "timeout_at": _iso(call.timeout_at),
        "ended_at": _iso(call.ended_at),
        "outcome": call.outcome or None,
        "after_timeout": call.after_timeout or None,
        "reminders_sent": call.reminders_sent,
        "waiting_long": call.waiting_long_at is not None,
        "retriever_channel": call.retriever_channel,
        "retriever_caller_id_num": call.retriever_caller_id_num,
        "retriever_caller_id_name": call.retriever_caller_id_name,
    }


def call_frame(kind: str, call: ParkedCall) -> dict:
    """`parked`, `unparked`, `timed_out`, `abandoned`, `swapped` or `lost`, with the call."""
    return {"type": kind, "call": call_data(call)}


def health_data(server_id: int, health: ServerHealth | None) -> dict:
    """A server's live link as its watcher sees it (the board and the API)."""
    return {
        "server": server_id,
        "connected": bool(health and health.connected),
        "synced": bool(health and health.synced),
        "since": _iso(health.since) if health else None,
        "last_event_at": _iso(health.last_event_at) if health else None,
    }


def health_frame(health: ServerHealth) -> dict:
    return {"type": "health", **health_data(health.server_id, health)}


def lot_alert(lot: ParkingLot) -> dict:
    """The lot's alert now: "full", "almost_full" or None (lots.services.alerts)."""
    alert = "full" if lot.full_since else "almost_full" if lot.almost_full_since else None
    return {"alert": alert}


def lot_data(lot: ParkingLot, calls: list[dict]) -> dict:
    return {
        "id": lot.pk,
        "slug": lot.slug,
        "name": lot.name,
        "asterisk_name": lot.asterisk_name,
        "server": lot.server_id,
        "context": lot.context.name,
        "parkext": lot.parkext,
        "first_space": lot.parkpos_start,
        "last_space": lot.parkpos_end,
        "parkingtime": lot.parkingtime,
        "enabled": lot.enabled,
        "alert_free_spaces": lot.alert_free_spaces,
        "alert_wait_seconds": lot.alert_wait_seconds,
        **lot_alert(lot),
        "calls": calls,
    }


def snapshot(tenant: Tenant) -> dict:
    """Every lot of the tenant with its occupied spaces, and the health of its servers."""
    lots = selectors.board_lots(tenant)
    by_lot: dict[int, list[dict]] = {}
    for call in selectors.parked_now(tenant):
        by_lot.setdefault(call.lot_id, []).append(call_data(call))
    health = selectors.servers_health({lot.server_id for lot in lots})
    return {
        "type": "snapshot",
        "now": _iso(timezone.now()),  # lets the page correct for its own clock
        "lots": [lot_data(lot, by_lot.get(lot.pk, [])) for lot in lots],
        "health": [health_data(server_id, health.get(server_id)) for server_id in sorted(health)],
    }

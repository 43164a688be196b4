"""Saves of servers, contexts and lots: each validates once, takes its own locks, and
raises `parkweb.errors` domain errors; each change that can alter a server's config
queues a deploy on commit.

A lot is checked in three steps: its own values; then the PBX's live dialplan, with no
lock held while Asterisk answers; then, under the lot's and the server's row locks held
to the commit, the other lots of the server (so concurrent saves cannot slip two
colliding lots past the checks).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from django.conf import settings
from django.db import IntegrityError, transaction

from parkweb.errors import Conflict, Invalid, NotFound, PreconditionFailed, checked
from tenants.actors import SYSTEM, Actor
from tenants.audit import audit
from tenants.models import Tenant

from .. import rules
from ..asterisk import dialplan
from ..asterisk.ami import AmiError
from ..locks import server_row_lock
from ..models import AsteriskServer, DialplanContext, ParkingLot, TenantPhones, lot_etag
from ..validation import lot_extensions, lot_rule_violations
from .deploys import ami_client, config_changed

log = logging.getLogger(__name__)

CONTEXT_TAKEN = "This server already has a context of that name."


def refuse(violations: list[rules.Violation]) -> None:
    """Raise Invalid with each violation's message (and rule) at its field."""
    if violations:
        errors: dict[str, list[str]] = {}
        codes: dict[str, list[str]] = {}
        for violation in violations:
            errors.setdefault(violation.field, []).append(violation.message)
            codes.setdefault(violation.field, []).append(violation.rule)
        raise Invalid(errors, codes=codes)


@transaction.atomic
def server_save(
    server: AsteriskServer, *, ami_secret: str | None = None, actor: Actor = SYSTEM
) -> AsteriskServer:
    """Create or update a server; a given `ami_secret` replaces the stored one."""
    if ami_secret:
        server.ami_secret = ami_secret
    created = server.pk is None
    checked(server.full_clean)
    server.save()
    config_changed(server.pk, actor, f"server {server.name} saved")
    audit(actor, "server.create" if created else "server.update", server.name)
    return server


@transaction.atomic
def server_retire(server: AsteriskServer, *, actor: Actor = SYSTEM) -> None:
    """Remove a server that holds no lots (its contexts, phones and history go with it);
    the watcher holding it stops within one supervisor check. Refused while it holds
    lots: their tenants' parking would vanish from the PBX without anyone deciding it."""
    locked = AsteriskServer.objects.select_for_update().filter(pk=server.pk).first()
    if locked is None:
        raise NotFound("No such server.")
    lots = list(
        ParkingLot.objects.filter(server=locked)
        .select_related("tenant")
        .order_by("tenant__slug", "slug")[:6]
    )
    if lots:
        total = ParkingLot.objects.filter(server=locked).count()
        names = ", ".join(f"{lot.tenant.slug}/{lot.slug}" for lot in lots[:5])
        more = f" and {total - 5} more" if total > 5 else ""
        raise Conflict(
            f"Server {locked.name} still holds {total} lot(s) ({names}{more}): delete or "
            "move them first.",
            code="server_has_lots",
        )
    name = locked.name
    TenantPhones.objects.filter(server=locked).delete()  # they hold on to its contexts
    locked.delete()
    audit(actor, "server.retire", name)
    log.info("server %s retired", name, extra={"server": name})


@transaction.atomic
def context_save(context: DialplanContext, *, actor: Actor = SYSTEM) -> DialplanContext:
    created = context.pk is None
    checked(context.full_clean)
    try:
        with transaction.atomic():
            context.save()
    except IntegrityError as exc:  # a concurrent save of the same name won the race
        raise Invalid({"name": CONTEXT_TAKEN}) from exc
    if context.lots.exists() or context.comeback_lots.exists():
        config_changed(context.server_id, actor, f"context {context.name} saved")
    audit(
        actor,
        "context.create" if created else "context.update",
        f"{context.name} on server {context.server_id}",
        tenant=context.tenant_id,
    )
    return context


def context_create(
    *, server: AsteriskServer, tenant: Tenant, name: str, actor: Actor = SYSTEM, **fields
) -> DialplanContext:
    return context_save(
        DialplanContext(server=server, tenant=tenant, name=name, **fields), actor=actor
    )


# The fields that decide which extensions a lot registers in the PBX's dialplan.
EXTENSION_FIELDS = ("enabled", "context_id", "parkext", "parkpos_start", "parkpos_end")
# What the PBX's dialplan held, per (server, context), as last read: a burst of saves (a
# provisioning run) asks Asterisk once per context every PARKWEB_PRECHECK_CACHE_SECONDS.
_dialplan_seen: dict[tuple[int, str], tuple[float, frozenset[str]]] = {}
_dialplan_lock = threading.Lock()


def lot_dialplan_violations(lot: ParkingLot) -> list[rules.Violation]:
    """The lot's extensions that the PBX's dialplan already has in its context, made by
    something other than res_parking (Asterisk would refuse the reload). A lot whose
    extensions do not change is not asked about again. When the PBX cannot be asked now,
    nothing is refused here: the deploy finds out and sets the lot aside."""
    if not lot.enabled or lot.context_id is None or lot.server_id is None:
        return []
    if lot.pk is not None:
        stored = ParkingLot.objects.filter(pk=lot.pk).values_list(*EXTENSION_FIELDS).first()
        if stored == tuple(getattr(lot, name) for name in EXTENSION_FIELDS):
            return []
    context = lot.context.name
    try:
        taken = _foreign_extensions(lot.server, context)
    except AmiError as exc:
        log.info("lot %s: dialplan of %s not checked: %s", lot.slug, lot.server.name, exc)
        return []
    return rules.find_dialplan_collisions(lot_extensions(lot), context, taken)


def _foreign_extensions(server: AsteriskServer, context: str) -> frozenset[str]:
    key, now = (server.pk, context), time.monotonic()
    with _dialplan_lock:
        seen = _dialplan_seen.get(key)
    if seen is not None and now - seen[0] < settings.PARKWEB_PRECHECK_CACHE_SECONDS:
        return seen[1]
    client = ami_client(server, timeout=settings.PARKWEB_PRECHECK_TIMEOUT)

    async def read() -> set[str]:
        async with client as ami:
            return (await dialplan.foreign_extensions(ami, [context]))[context]

    taken = frozenset(asyncio.run(read()))
    with _dialplan_lock:
        if len(_dialplan_seen) > 10_000:
            _dialplan_seen.clear()
        _dialplan_seen[key] = (now, taken)
    return taken


def _lock_and_check(lot: ParkingLot, if_match: str | None) -> int | None:
    """Lock the stored lot's row and compare its ETag with `if_match` while the lock is
    held, so that of concurrent writers holding one ETag exactly one gets through.
    Returns the server the lot was on."""
    if lot.pk is None:
        return None
    stored = (
        ParkingLot.objects.select_for_update()
        .filter(pk=lot.pk)
        .values_list("server_id", "updated_at")
        .first()
    )
    if stored is None:
        raise NotFound("This lot no longer exists.")
    if if_match not in (None, "*") and if_match != lot_etag(lot.pk, stored[1]):
        raise PreconditionFailed(
            "The lot changed since you read it (If-Match does not match its ETag)."
        )
    return stored[0]


def lot_save(lot: ParkingLot, *, actor: Actor = SYSTEM, if_match: str | None = None) -> ParkingLot:
    """Validate (once) and save a new or changed lot. With `if_match`, only if the stored
    lot still has that ETag."""
    checked(lot.full_clean)
    refuse(lot_dialplan_violations(lot))
    created = lot.pk is None
    with transaction.atomic():
        previous_server = _lock_and_check(lot, if_match)
        server_row_lock(lot.server_id)
        refuse(lot_rule_violations(lot))
        # Saving a lot that a refused deploy set aside is the retry: it goes back in.
        lot.held_reason, lot.held_extension, lot.held_at = "", "", None
        try:
            with transaction.atomic():
                lot.save()
        except IntegrityError as exc:  # a concurrent create of the same slug won the race
            raise Invalid({"slug": "Your tenant already has a lot with this slug."}) from exc
        for server_id in {lot.server_id, previous_server} - {None}:
            config_changed(server_id, actor, f"lot {lot.asterisk_name} saved")
        audit(actor, "lot.create" if created else "lot.update", lot.slug, tenant=lot.tenant_id)
    return lot


def lot_create(
    *,
    tenant: Tenant,
    server: AsteriskServer,
    slug: str,
    name: str,
    context: DialplanContext,
    actor: Actor = SYSTEM,
    **options,
) -> ParkingLot:
    return lot_save(
        ParkingLot(tenant=tenant, server=server, slug=slug, name=name, context=context, **options),
        actor=actor,
    )


def lot_update(
    lot: ParkingLot, *, actor: Actor = SYSTEM, if_match: str | None = None, **changes
) -> ParkingLot:
    for field, value in changes.items():
        setattr(lot, field, value)
    return lot_save(lot, actor=actor, if_match=if_match)


@transaction.atomic
def lot_delete(lot: ParkingLot, *, actor: Actor = SYSTEM, if_match: str | None = None) -> None:
    _lock_and_check(lot, if_match)
    server_id, name, slug, tenant_id = lot.server_id, lot.asterisk_name, lot.slug, lot.tenant_id
    lot.delete()
    config_changed(server_id, actor, f"lot {name} deleted")
    audit(actor, "lot.delete", slug, tenant=tenant_id)


def lots_retry(lots, actor: Actor = SYSTEM) -> int:
    """Put lots that a refused deploy set aside back into their servers' configs (staff,
    once the PBX is fixed; the reconcile, once the colliding extension is gone). Returns
    how many came back."""
    with transaction.atomic():
        held = ParkingLot.objects.filter(pk__in=[lot.pk for lot in lots]).exclude(held_reason="")
        servers = set(held.values_list("server_id", flat=True))
        retried = list(held.values_list("slug", "tenant_id"))
        count = held.update(held_reason="", held_extension="", held_at=None)
        for server_id in servers:
            config_changed(server_id, actor, "set-aside lots tried again")
        for slug, tenant_id in retried:
            audit(actor, "lot.retry", slug, tenant=tenant_id)
    return count

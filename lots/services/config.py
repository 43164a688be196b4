"""Saves of servers, contexts and lots.

Each validates the whole object (the same `clean()` the forms and the admin run) inside a
transaction that holds the server's row lock, so concurrent saves cannot slip two
colliding lots past the checks; each change that can alter a server's config queues a
deploy on commit.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from parkweb.errors import Invalid, NotFound, PreconditionFailed
from tenants.models import Tenant

from ..models import AsteriskServer, DialplanContext, ParkingLot, lot_etag
from .deploys import SYSTEM, Actor, config_changed


@transaction.atomic
def server_save(
    server: AsteriskServer, *, ami_secret: str | None = None, actor: Actor = SYSTEM
) -> AsteriskServer:
    """Create or update a server; a given `ami_secret` replaces the stored one."""
    if ami_secret:
        server.ami_secret = ami_secret
    server.full_clean()
    server.save()
    config_changed(server.pk, actor, f"server {server.name} saved")
    return server


@transaction.atomic
def context_save(context: DialplanContext, *, actor: Actor = SYSTEM) -> DialplanContext:
    context.full_clean()
    context.save()
    if context.lots.exists() or context.comeback_lots.exists():
        config_changed(context.server_id, actor, f"context {context.name} saved")
    return context


def context_create(
    *, server: AsteriskServer, tenant: Tenant, name: str, actor: Actor = SYSTEM, **fields
) -> DialplanContext:
    return context_save(
        DialplanContext(server=server, tenant=tenant, name=name, **fields), actor=actor
    )


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


@transaction.atomic
def lot_save(lot: ParkingLot, *, actor: Actor = SYSTEM, if_match: str | None = None) -> ParkingLot:
    """Validate (the server row locked) and save a new or changed lot. With `if_match`,
    only if the stored lot still has that ETag."""
    previous_server = _lock_and_check(lot, if_match)
    lot.full_clean()
    # Saving a lot that a refused deploy set aside is the retry: it goes back in.
    lot.held_reason, lot.held_at = "", None
    try:
        with transaction.atomic():
            lot.save()
    except IntegrityError as exc:  # a concurrent create of the same slug won the race
        raise Invalid({"slug": "Your tenant already has a lot with this slug."}) from exc
    for server_id in {lot.server_id, previous_server} - {None}:
        config_changed(server_id, actor, f"lot {lot.asterisk_name} saved")
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
    server_id, name = lot.server_id, lot.asterisk_name
    lot.delete()
    config_changed(server_id, actor, f"lot {name} deleted")

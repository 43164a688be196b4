"""Saves of servers, contexts and lots.

Each validates the whole object (the same `clean()` the forms and the admin run) inside a
transaction that holds the server's row lock, so concurrent saves cannot slip two
colliding lots past the checks; each change that can alter a server's config queues a
deploy on commit.
"""

from __future__ import annotations

from django.db import transaction

from tenants.models import Tenant

from ..models import AsteriskServer, DialplanContext, ParkingLot
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


@transaction.atomic
def lot_save(lot: ParkingLot, *, actor: Actor = SYSTEM) -> ParkingLot:
    """Validate (the server row locked) and save a new or changed lot."""
    previous_server = (
        ParkingLot.objects.filter(pk=lot.pk).values_list("server_id", flat=True).first()
        if lot.pk
        else None
    )
    lot.full_clean()
    lot.save()
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


def lot_update(lot: ParkingLot, *, actor: Actor = SYSTEM, **changes) -> ParkingLot:
    for field, value in changes.items():
        setattr(lot, field, value)
    return lot_save(lot, actor=actor)


@transaction.atomic
def lot_delete(lot: ParkingLot, *, actor: Actor = SYSTEM) -> None:
    server_id, name = lot.server_id, lot.asterisk_name
    lot.delete()
    config_changed(server_id, actor, f"lot {name} deleted")

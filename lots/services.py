"""Every write to the parking domain goes through here.

Each function validates the whole object (the same `clean()` the forms and the admin
run) inside a transaction that holds the server's row lock, so concurrent saves cannot
slip two colliding lots past the checks.
"""

from django.db import transaction

from tenants.models import Tenant

from .models import AsteriskServer, DialplanContext, ParkingLot


@transaction.atomic
def server_save(server: AsteriskServer, *, ami_secret: str | None = None) -> AsteriskServer:
    """Create or update a server; a given `ami_secret` replaces the stored one."""
    if ami_secret:
        server.ami_secret = ami_secret
    server.full_clean()
    server.save()
    return server


@transaction.atomic
def context_save(context: DialplanContext) -> DialplanContext:
    context.full_clean()
    context.save()
    return context


def context_create(
    *, server: AsteriskServer, tenant: Tenant, name: str, **fields
) -> DialplanContext:
    return context_save(DialplanContext(server=server, tenant=tenant, name=name, **fields))


@transaction.atomic
def lot_save(lot: ParkingLot) -> ParkingLot:
    """Validate (the server row locked) and save a new or changed lot."""
    lot.full_clean()
    lot.save()
    return lot


def lot_create(
    *,
    tenant: Tenant,
    server: AsteriskServer,
    slug: str,
    name: str,
    context: DialplanContext,
    **options,
) -> ParkingLot:
    return lot_save(
        ParkingLot(tenant=tenant, server=server, slug=slug, name=name, context=context, **options)
    )


def lot_update(lot: ParkingLot, **changes) -> ParkingLot:
    for field, value in changes.items():
        setattr(lot, field, value)
    return lot_save(lot)


@transaction.atomic
def lot_delete(lot: ParkingLot) -> None:
    lot.delete()

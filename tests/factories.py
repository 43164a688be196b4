"""Small factories: real objects saved through the services, with sensible defaults."""

from itertools import count

from lots import services
from lots.models import AsteriskServer, DialplanContext, ParkingLot
from tenants.models import Tenant

_seq = count(1)


def make_tenant(slug: str | None = None, **fields) -> Tenant:
    slug = slug or f"tenant{next(_seq)}"
    tenant = Tenant(slug=slug, name=fields.pop("name", slug.title()), **fields)
    tenant.full_clean()
    tenant.save()
    return tenant


def make_server(name: str | None = None, *, secret: str = "s3cret", **fields) -> AsteriskServer:
    fields.setdefault("ami_host", "127.0.0.1")
    fields.setdefault("ami_username", "parkweb")
    server = AsteriskServer(name=name or f"pbx{next(_seq)}", **fields)
    return services.server_save(server, ami_secret=secret)


def make_context(
    server: AsteriskServer, tenant: Tenant, name: str | None = None
) -> DialplanContext:
    return services.context_create(
        server=server, tenant=tenant, name=name or f"{tenant.slug}-ctx{next(_seq)}"
    )


def make_lot(
    tenant: Tenant,
    context: DialplanContext,
    slug: str | None = None,
    **options,
) -> ParkingLot:
    return services.lot_create(
        tenant=tenant,
        server=context.server,
        slug=slug or f"lot{next(_seq)}",
        name=options.pop("name", None) or (slug or "Lot").title(),
        context=context,
        **options,
    )

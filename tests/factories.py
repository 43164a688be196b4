"""Small factories: real objects saved through the services, with sensible defaults."""

from datetime import timedelta
from itertools import count

from django.utils import timezone

from lots import services
from lots.models import (
    AsteriskServer,
    DialplanContext,
    ParkedCall,
    ParkingLot,
    TenantPhones,
    Webhook,
    WebhookDelivery,
)
from tenants.models import Tenant
from tenants.services import tenant_save

_seq = count(1)


def make_tenant(slug: str | None = None, **fields) -> Tenant:
    slug = slug or f"tenant{next(_seq)}"
    return tenant_save(Tenant(slug=slug, name=fields.pop("name", slug.title()), **fields))


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


def make_phones(
    server: AsteriskServer, tenant: Tenant, context_name: str, extensions: str = ""
) -> TenantPhones:
    """The tenant's phones on the server: a context of its own, and optionally ranges."""
    return services.phones_save(
        TenantPhones(
            server=server,
            tenant=tenant,
            context=make_context(server, tenant, context_name),
            extensions=extensions,
        )
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


def bulk_lots(server: AsteriskServer, tenant: Tenant, count: int, prefix: str = "bulk") -> None:
    """Many valid lots fast, as tenants would lay them out: one context per 10 lots, each lot
    with its own park extension and 10 spaces. Bypasses validation (the layout is valid by
    construction); callers queue a deploy themselves."""
    contexts = DialplanContext.objects.bulk_create(
        DialplanContext(server=server, tenant=tenant, name=f"{prefix}-{i}")
        for i in range((count + 9) // 10)
    )
    ParkingLot.objects.bulk_create(
        ParkingLot(
            tenant=tenant,
            server=server,
            context=contexts[i // 10],
            slug=f"{prefix}{i}",
            name=f"Lot {i}",
            parkext=str(100 + (i % 10) * 20),
            parkpos_start=101 + (i % 10) * 20,
            parkpos_end=110 + (i % 10) * 20,
        )
        for i in range(count)
    )


def make_call(lot: ParkingLot, space: int, parked_at, **fields) -> ParkedCall:
    """A parking episode in a lot, as the watcher would have recorded it."""
    n = next(_seq)
    return ParkedCall.objects.create(
        server=lot.server,
        lot=lot,
        tenant=lot.tenant,
        lot_name=lot.asterisk_name,
        space=space,
        parkee_channel=f"PJSIP/caller-{n}",
        uniqueid=f"1700000000.{n}",
        parked_at=parked_at,
        **fields,
    )


def make_delivery(
    webhook: Webhook,
    event_id: str,
    *,
    age: timedelta = timedelta(0),
    status: str = "pending",
    event_type: str = "test",
) -> WebhookDelivery:
    """One row of the webhook log: an event that happened `age` ago, for `webhook`, its
    body as parkweb builds one (an event without a lot or call)."""
    occurred_at = timezone.now() - age
    payload = {
        "id": event_id,
        "type": event_type,
        "time": occurred_at.isoformat(),
        "tenant": webhook.tenant.slug,
        "lot": None,
    }
    return WebhookDelivery.objects.create(
        webhook=webhook,
        event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        payload=payload,
        status=status,
    )


def lot_form_data(server: AsteriskServer, context: DialplanContext, **overrides) -> dict:
    """A lot as a form posts it (tenant pages and admin): a valid lot "sales", 711-719."""
    return {
        "name": "Sales",
        "slug": "sales",
        "server": server.pk,
        "context": context.pk,
        "parkext": "710",
        "parkpos_start": "711",
        "parkpos_end": "719",
        "parkingtime": "45",
        "findslot": "first",
        "enabled": "on",
        "comebacktoorigin": "on",
        "comebackdialtime": "30",
        "parkedplay": "caller",
        "parkedcalltransfers": "no",
        "parkedcallreparking": "no",
        "parkedcallhangup": "no",
        "parkedcallrecording": "no",
        **overrides,
    }

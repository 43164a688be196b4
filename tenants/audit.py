"""The audit log: every write of a service, and every action on a live call."""

from __future__ import annotations

from .actors import Actor
from .models import AuditEntry, Tenant


def audit(
    actor: Actor,
    action: str,
    target: str,
    *,
    tenant: Tenant | int | None = None,
    ok: bool = True,
    **detail,
) -> AuditEntry:
    """Record that `actor` did (or tried: ok=False) `action` on `target`."""
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    return AuditEntry.objects.create(
        tenant_id=tenant_id,
        user=actor.user,
        actor=actor.label[:150],
        action=action[:40],
        target=target[:200],
        detail=detail,
        ok=ok,
    )

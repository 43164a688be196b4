"""Every write on tenants goes through here."""

from __future__ import annotations

from django.db import transaction

from parkweb.errors import checked

from .models import Tenant


@transaction.atomic
def tenant_save(tenant: Tenant) -> Tenant:
    """Create or change a tenant (staff only: adapters check the caller)."""
    checked(tenant.full_clean)
    tenant.save()
    return tenant

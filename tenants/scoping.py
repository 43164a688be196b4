"""The one way to reach a tenant's objects: every query about tenant data goes through here.

Models owned by a tenant declare `tenant_path`, the lookup from the model to its Tenant
("tenant" or, for objects owned through a parent, something like "lot__tenant").
"""

from dataclasses import dataclass
from typing import TypeVar

from django.db import models

from .apikeys import ApiKeyPrincipal
from .models import Membership, Role, Tenant

M = TypeVar("M", bound=models.Model)

ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def scoped(model_or_queryset: type[M] | models.QuerySet[M], tenant: Tenant) -> models.QuerySet[M]:
    """Objects of `model_or_queryset` that belong to `tenant`, and nothing else."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, models.QuerySet)
        else model_or_queryset._default_manager.all()
    )
    path = getattr(queryset.model, "tenant_path", None)
    if not path:
        raise TypeError(f"{queryset.model.__name__} is not tenant-owned (no tenant_path)")
    return queryset.filter(**{path: tenant})


def tenants_for_user(user) -> models.QuerySet[Tenant]:
    """Active tenants the user may see: all of them for staff, their memberships otherwise."""
    if not getattr(user, "is_authenticated", False):
        return Tenant.objects.none()
    active = Tenant.objects.filter(active=True)
    if isinstance(user, ApiKeyPrincipal):
        return active.filter(pk=user.key.tenant_id)
    if user.is_staff:
        return active
    return active.filter(memberships__user=user).distinct()


def role_of(user, tenant: Tenant) -> Role | None:
    """The user's role in the tenant; staff act as tenant admins; None for outsiders."""
    if not getattr(user, "is_authenticated", False) or not tenant.active:
        return None
    if isinstance(user, ApiKeyPrincipal):
        key = user.key
        return Role(key.role) if key.tenant_id == tenant.pk and key.revoked_at is None else None
    if user.is_staff:
        return Role.ADMIN
    role = (
        Membership.objects.filter(user=user, tenant=tenant).values_list("role", flat=True).first()
    )
    return Role(role) if role else None


def has_role(user, tenant: Tenant, needed: Role) -> bool:
    """True when the user's role in the tenant is `needed` or higher."""
    return at_least(role_of(user, tenant), needed)


def at_least(role: Role | None, needed: Role) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


@dataclass(frozen=True)
class Access:
    """Someone's access to one tenant: what the pages, the API and the board allow."""

    tenant: Tenant
    role: Role

    def allows(self, needed: Role) -> bool:
        return at_least(self.role, needed)

    @property
    def can_edit(self) -> bool:  # change lots, members, keys
        return self.allows(Role.ADMIN)

    @property
    def can_act(self) -> bool:  # retrieve and hang up calls
        return self.allows(Role.OPERATOR)


def tenant_access(user, tenant: Tenant | str | None) -> Access | None:
    """The one tenant-and-role resolver of every door (pages, API, websocket): the caller's
    access to the active tenant (given, or by slug); None when there is none, and then
    the tenant does not exist as far as the caller can tell."""
    if isinstance(tenant, str):
        tenant = Tenant.objects.filter(slug=tenant, active=True).first()
    if tenant is None:
        return None
    role = role_of(user, tenant)
    return Access(tenant, role) if role is not None else None

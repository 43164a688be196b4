"""What every API view shares: who may call, the tenant from the URL, small helpers."""

from __future__ import annotations

from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission

from tenants.actors import Actor
from tenants.models import Role
from tenants.scoping import tenant_access

from ...models import Deployment
from ..auth import is_staff_caller


class IsStaffCaller(BasePermission):
    message = "Staff only."

    def has_permission(self, request, view) -> bool:
        return is_staff_caller(request)


class StaffView:
    """Staff resources: a staff person, by session or token (never an API key)."""

    permission_classes = [IsStaffCaller]

    def actor(self) -> Actor:
        return Actor.of(self.request.user)


class TenantScoped:
    """Resolves the tenant from the URL and the caller's role in it (tenants.scoping,
    as the pages and the board do): no role -> 404, too small a role -> 403."""

    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        access = tenant_access(request.user, kwargs["tenant"])
        if access is None:
            raise NotFound()
        needed = self.read_role if request.method in SAFE_METHODS else self.write_role
        if not access.allows(needed):
            raise PermissionDenied(f"This needs the {needed} role in {access.tenant.slug}.")
        self.tenant, self.role = access.tenant, access.role

    def actor(self) -> Actor:
        return Actor.of(self.request.user)


def json_object(request) -> dict:
    """The request body as a dict, or a 400 saying it must be an object."""
    if not hasattr(request.data, "items"):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    return dict(request.data.items())


def latest_deployment(server_id: int) -> Deployment | None:
    """The deployment carrying the latest change: the queued one, else the newest."""
    deployments = Deployment.objects.filter(server_id=server_id)
    return (
        deployments.filter(status=Deployment.Status.PENDING).first()
        or deployments.order_by("-pk").first()
    )


def deployment_link(deployment: Deployment | None) -> dict | None:
    if deployment is None:
        return None
    return {
        "id": deployment.pk,
        "status": deployment.status,
        "url": f"/api/v1/deployments/{deployment.pk}/",
    }

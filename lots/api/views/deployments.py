"""A deployment, as staff see it (everything) and as a tenant sees it (its own part)."""

from __future__ import annotations

import time

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.models import Tenant
from tenants.scoping import tenant_access

from ...models import Deployment
from .. import serializers as s
from ..auth import is_staff_caller

WAIT_MAX_SECONDS = 30
FINISHED = {Deployment.Status.OK, Deployment.Status.FAILED, Deployment.Status.ROLLED_BACK}


class DeploymentDetail(APIView):
    """A deployment; `?wait=N` holds the answer up to N seconds until it is finished."""

    @extend_schema(
        parameters=[OpenApiParameter("wait", int, description="seconds to wait, at most 30")],
        responses=s.DeploymentSerializer,
    )
    def get(self, request, pk: int):
        deployment = Deployment.objects.filter(pk=pk).select_related("server").first()
        if deployment is None:
            raise NotFound()
        staff = is_staff_caller(request)
        if not staff:
            tenants = Tenant.objects.filter(lots__server_id=deployment.server_id).distinct()
            mine = {tenant.slug for tenant in tenants if tenant_access(request.user, tenant)}
            if not mine:
                raise NotFound()
        try:
            wait = min(max(int(request.query_params.get("wait", 0)), 0), WAIT_MAX_SECONDS)
        except ValueError:
            raise ValidationError({"wait": "Give a number of seconds, at most 30."}) from None
        deadline = time.monotonic() + wait
        while deployment.status not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
            deployment.refresh_from_db()
        if not staff:  # other tenants' lots are theirs to know
            deployment.set_aside = [e for e in deployment.set_aside if e.get("tenant") in mine]
        serializer = s.DeploymentSerializer if staff else s.TenantDeploymentSerializer
        return Response(serializer(deployment).data)

"""A tenant's lots: every res_parking option, written through `lots.services`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from parkweb.errors import PreconditionFailed
from tenants.models import Tenant
from tenants.scoping import scoped

from ... import selectors, services, snippets
from ...models import ParkingLot
from .. import serializers as s
from ..pagination import LotPages
from .base import TenantScoped, deployment_link, json_object, latest_deployment


def _lots(tenant: Tenant):
    return scoped(ParkingLot, tenant).select_related(
        "server", "context", "comebackcontext", "fallback_context", "tenant"
    )


def save_lot(lot: ParkingLot, data: dict, actor, if_match: str | None = None) -> ParkingLot:
    for field, value in data.items():
        setattr(lot, field, value)
    return services.lot_save(lot, actor=actor, if_match=if_match)


def lot_response(lot: ParkingLot, code: int) -> Response:
    data = s.lot_data(lot)
    data["deployment"] = deployment_link(latest_deployment(lot.server_id))
    return Response(data, status=code, headers={"ETag": lot.etag})


class LotList(TenantScoped, generics.ListCreateAPIView):
    pagination_class = LotPages

    def get_queryset(self):
        return _lots(self.tenant).order_by("slug")

    def get_serializer(self, *args, **kwargs):
        return s.LotSerializer(*args, tenant=getattr(self, "tenant", None), **kwargs)

    def get_serializer_class(self):
        return s.LotSerializer

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lot = save_lot(ParkingLot(tenant=self.tenant), serializer.validated_data, self.actor())
        return lot_response(lot, status.HTTP_201_CREATED)


class LotDetail(TenantScoped, APIView):
    """A lot by slug. PUT creates or replaces it (safe to retry); writes honour If-Match,
    checked under the lot's lock by the service."""

    def lot(self, slug: str) -> ParkingLot:
        found = _lots(self.tenant).filter(slug=slug).first()
        if found is None:
            raise NotFound()
        return found

    @extend_schema(responses=s.LotSerializer)
    def get(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        return Response(s.lot_data(found), headers={"ETag": found.etag})

    @extend_schema(request=s.LotSerializer, responses=s.LotSerializer)
    def put(self, request, tenant: str, lot: str):
        found = _lots(self.tenant).filter(slug=lot).first()
        if found is None and request.headers.get("If-Match") not in (None, "*"):
            raise PreconditionFailed("There is no such lot (If-Match names a version of one).")
        serializer = s.LotSerializer(data={**json_object(request), "slug": lot}, tenant=self.tenant)
        serializer.is_valid(raise_exception=True)
        target = found or ParkingLot(tenant=self.tenant)
        data = dict(serializer.validated_data)
        if found is not None:
            data.pop("slug", None)
            data.setdefault("comebackcontext", None)
            data.setdefault("fallback_context", None)
        saved = save_lot(target, data, self.actor(), request.headers.get("If-Match"))
        return lot_response(saved, status.HTTP_200_OK if found else status.HTTP_201_CREATED)

    @extend_schema(request=s.LotSerializer, responses=s.LotSerializer)
    def patch(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        serializer = s.LotSerializer(found, data=request.data, partial=True, tenant=self.tenant)
        serializer.is_valid(raise_exception=True)
        saved = save_lot(
            found, serializer.validated_data, self.actor(), request.headers.get("If-Match")
        )
        return lot_response(saved, status.HTTP_200_OK)

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, lot: str):
        services.lot_delete(
            self.lot(lot), actor=self.actor(), if_match=request.headers.get("If-Match")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class LotIntegration(TenantScoped, APIView):
    """The dialplan that connects the lot to the tenant's phones, to paste as it is (the
    lot page shows the same)."""

    @extend_schema(responses=s.IntegrationSerializer)
    def get(self, request, tenant: str, lot: str):
        found = _lots(self.tenant).filter(slug=lot).first()
        if found is None:
            raise NotFound()
        phones = selectors.tenant_phones(found)
        reach = snippets.lot_reach(found)
        return Response(
            {
                "dialplan": snippets.lot_dialplan(found, phones),
                "phones_context": phones.context.name if phones else None,
                "lamps": found.parkinghints,
                "spaces_dialable": reach.spaces_dialable,
                "park_with": reach.park_with,
                "pick_up_with": reach.pick_up_with,
            }
        )

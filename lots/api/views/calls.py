"""Parked calls: live, history, and the actions operators take on them."""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from parkweb.errors import Conflict
from tenants.models import Role
from tenants.scoping import scoped

from ... import services
from ...models import ParkedCall, ParkingLot
from .. import serializers as s
from .base import TenantScoped

SLUG_RE = re.compile(r"[a-z][a-z0-9-]{1,30}")


def moment(name: str, text: str) -> datetime:
    """A query parameter's date and time (ISO 8601), or a 400 naming the parameter."""
    try:
        found = parse_datetime(text)
    except ValueError:  # well-formed but impossible, like month 13
        found = None
    if found is None:
        raise ValidationError({name: "Give an ISO 8601 date and time, like 2026-11-27T09:00."})
    return found if timezone.is_aware(found) else timezone.make_aware(found)


class LotParkedCalls(TenantScoped, generics.ListAPIView):
    """The calls parked in a lot now."""

    serializer_class = s.ParkedCallSerializer
    pagination_class = None

    def get_queryset(self):
        lot = scoped(ParkingLot, self.tenant).filter(slug=self.kwargs["lot"]).first()
        if lot is None:
            raise NotFound()
        return (
            ParkedCall.objects.filter(lot=lot, ended_at__isnull=True)
            .select_related("lot")
            .order_by("space")
        )


class ParkedCallHistory(TenantScoped, generics.ListAPIView):
    """Parked calls, newest first; filter with ?lot=, ?outcome=, ?after_timeout=, ?since=,
    ?until=."""

    serializer_class = s.ParkedCallSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("lot", str),
            OpenApiParameter("outcome", str, enum=ParkedCall.Outcome.values),
            OpenApiParameter(
                "after_timeout",
                str,
                enum=ParkedCall.AfterTimeout.values,
                description="What a lot's timeout chain did after the timeout.",
            ),
            OpenApiParameter("since", str, description="ISO 8601"),
            OpenApiParameter("until", str, description="ISO 8601"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        calls = scoped(ParkedCall, self.tenant).select_related("lot")
        params = self.request.query_params
        if params.get("lot"):
            if not SLUG_RE.fullmatch(params["lot"]):
                raise ValidationError({"lot": "Give a lot's slug."})
            calls = calls.filter(lot__slug=params["lot"])
        if params.get("outcome"):
            if params["outcome"] not in ParkedCall.Outcome.values:
                raise ValidationError(
                    {"outcome": f"One of {', '.join(ParkedCall.Outcome.values)}."}
                )
            calls = calls.filter(outcome=params["outcome"])
        if params.get("after_timeout"):
            if params["after_timeout"] not in ParkedCall.AfterTimeout.values:
                raise ValidationError(
                    {"after_timeout": f"One of {', '.join(ParkedCall.AfterTimeout.values)}."}
                )
            calls = calls.filter(after_timeout=params["after_timeout"])
        for name, lookup in (("since", "parked_at__gte"), ("until", "parked_at__lt")):
            if params.get(name):
                calls = calls.filter(**{lookup: moment(name, params[name])})
        return calls.order_by("-parked_at", "-pk")


class ParkedCallAction(TenantScoped, APIView):
    """Retrieve a parked call to one of the tenant's phones, or hang it up (operators and
    admins). `call` names the call meant: another call in the space by now is a 409."""

    write_role = Role.OPERATOR
    serializer_class = s.CallActionSerializer

    def call(self, lot_slug: str, space: int) -> ParkedCall:
        call = (
            scoped(ParkedCall, self.tenant)
            .filter(lot__slug=lot_slug, space=space, ended_at__isnull=True)
            .select_related("lot__context", "server", "tenant")
            .first()
        )
        if call is None:
            raise NotFound("No call is parked in that space.")
        return call

    def run(self, call, data: dict):
        raise NotImplementedError

    def post(self, request, tenant: str, lot: str, space: int):
        call = self.call(lot, space)
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        meant = serializer.validated_data.get("call")
        if meant is not None and meant != call.pk:
            raise Conflict(
                {"call": "Another call is parked in that space by now; nothing was done."}
            )
        self.run(call, serializer.validated_data)
        return Response({"status": "requested", "call": call.pk}, status=status.HTTP_202_ACCEPTED)


class ParkedCallRetrieve(ParkedCallAction):
    serializer_class = s.RetrieveSerializer

    @extend_schema(request=s.RetrieveSerializer, responses={202: dict, 409: dict})
    def post(self, request, tenant: str, lot: str, space: int):
        return super().post(request, tenant, lot, space)

    def run(self, call, data: dict):
        services.parked_call_retrieve(call, self.actor(), data.get("extension"))


class ParkedCallHangup(ParkedCallAction):
    @extend_schema(request=s.CallActionSerializer, responses={202: dict, 409: dict})
    def post(self, request, tenant: str, lot: str, space: int):
        return super().post(request, tenant, lot, space)

    def run(self, call, data: dict):
        services.parked_call_hangup(call, self.actor())

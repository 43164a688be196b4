"""A tenant's webhooks (admins): endpoints, their delivery log, and a test event."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.models import Role
from tenants.scoping import scoped

from ... import services
from ...models import Webhook, WebhookDelivery
from .. import serializers as s
from ..pagination import LogPages
from .base import TenantScoped, json_object


class WebhookList(TenantScoped, generics.ListAPIView):
    read_role = Role.ADMIN
    serializer_class = s.WebhookSerializer

    def get_queryset(self):
        return scoped(Webhook, self.tenant).order_by("pk")

    @extend_schema(request=s.WebhookSerializer, responses={201: s.NewWebhookSerializer})
    def post(self, request, tenant: str):
        serializer = s.WebhookSerializer(data=json_object(request))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        webhook, secret = services.webhook_create(
            self.tenant,
            actor=self.actor(),
            url=data["url"],
            events=data.get("events", []),
            description=data.get("description", ""),
        )
        return Response({**s.WebhookSerializer(webhook).data, "secret": secret}, status=201)


class WebhookScoped(TenantScoped):
    read_role = Role.ADMIN

    def webhook(self, pk: int) -> Webhook:
        return get_object_or_404(scoped(Webhook, self.tenant), pk=pk)


class WebhookDetail(WebhookScoped, APIView):
    @extend_schema(responses=s.WebhookSerializer)
    def get(self, request, tenant: str, pk: int):
        return Response(s.WebhookSerializer(self.webhook(pk)).data)

    @extend_schema(request=s.WebhookSerializer, responses=s.WebhookSerializer)
    def patch(self, request, tenant: str, pk: int):
        webhook = self.webhook(pk)
        serializer = s.WebhookSerializer(webhook, data=json_object(request), partial=True)
        serializer.is_valid(raise_exception=True)
        saved = services.webhook_update(webhook, actor=self.actor(), **serializer.validated_data)
        return Response(s.WebhookSerializer(saved).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        services.webhook_delete(self.webhook(pk), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveries(WebhookScoped, generics.ListAPIView):
    """The endpoint's delivery log, newest first, a page at a time: follow `next`
    (`limit`: rows a page, at most 500)."""

    serializer_class = s.WebhookDeliverySerializer
    pagination_class = LogPages

    def get_queryset(self):
        return WebhookDelivery.objects.filter(webhook=self.webhook(self.kwargs["pk"]))


class WebhookTest(WebhookScoped, APIView):
    """Queue a `test` event for this endpoint; its delivery shows in the log."""

    @extend_schema(request=None, responses={202: s.WebhookDeliverySerializer})
    def post(self, request, tenant: str, pk: int):
        delivery = services.webhook_test(self.webhook(pk), actor=self.actor())
        delivery.refresh_from_db()
        return Response(s.WebhookDeliverySerializer(delivery).data, status=202)

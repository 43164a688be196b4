"""Staff resources: tenants, servers, their contexts and tenants' phones, deploys."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import services as tenant_services
from tenants.models import Tenant

from ... import services
from ...frames import health_data
from ...models import AsteriskServer, Deployment, DialplanContext, ServerHealth, TenantPhones
from ...selectors import pending_change
from .. import serializers as s
from .base import StaffView, json_object, latest_deployment


class TenantList(StaffView, generics.ListCreateAPIView):
    serializer_class = s.TenantSerializer
    queryset = Tenant.objects.all()

    def perform_create(self, serializer):
        serializer.instance = tenant_services.tenant_save(
            Tenant(**serializer.validated_data), actor=self.actor()
        )


class TenantDetail(StaffView, generics.RetrieveUpdateAPIView):
    """PUT creates the tenant when the slug is new (safe to retry)."""

    serializer_class = s.TenantSerializer
    queryset = Tenant.objects.all()
    lookup_field = "slug"

    def put(self, request, slug: str):
        tenant = Tenant.objects.filter(slug=slug).first() or Tenant(slug=slug)
        serializer = self.get_serializer(tenant, data={**json_object(request), "slug": slug})
        serializer.is_valid(raise_exception=True)
        created = tenant.pk is None
        self._save(tenant, serializer.validated_data)
        return Response(
            s.TenantSerializer(tenant).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def perform_update(self, serializer):
        self._save(serializer.instance, serializer.validated_data)

    def _save(self, tenant: Tenant, data: dict) -> None:
        for field, value in data.items():
            setattr(tenant, field, value)
        tenant_services.tenant_save(tenant, actor=self.actor())


class ServerList(StaffView, generics.ListCreateAPIView):
    serializer_class = s.ServerSerializer
    queryset = AsteriskServer.objects.all()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        secret = data.pop("ami_secret", None)
        serializer.instance = services.server_save(
            AsteriskServer(**data), ami_secret=secret, actor=self.actor()
        )


class ServerDetail(StaffView, generics.RetrieveUpdateDestroyAPIView):
    """DELETE retires the server: refused (409) while it holds lots."""

    serializer_class = s.ServerSerializer
    queryset = AsteriskServer.objects.all()

    def perform_destroy(self, instance):
        services.server_retire(instance, actor=self.actor())

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        secret = data.pop("ami_secret", None)
        server = serializer.instance
        for field, value in data.items():
            setattr(server, field, value)
        services.server_save(server, ami_secret=secret, actor=self.actor())


class ServerDeploy(StaffView, APIView):
    @extend_schema(request=None, responses=s.DeploymentSerializer)
    def post(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        services.deployment_request(server.pk, self.actor(), "deploy now (API)", force=True)
        return Response(
            s.DeploymentSerializer(latest_deployment(server.pk)).data,
            status=status.HTTP_202_ACCEPTED,
        )


class ServerDeployments(StaffView, generics.ListAPIView):
    serializer_class = s.DeploymentSerializer

    def get_queryset(self):
        server = get_object_or_404(AsteriskServer, pk=self.kwargs["pk"])
        return Deployment.objects.filter(server=server).select_related("server").order_by("-pk")


class ServerConfig(StaffView, APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        change = pending_change(server)
        return Response({"files": change.files, "pending_diff": change.diff, "live": change.live})


class ServerHealthView(StaffView, APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        health = ServerHealth.objects.filter(server=server).first()
        return Response(
            {
                **health_data(server.pk, health),
                "server": server.name,
                "asterisk_version": health.asterisk_version if health else "",
                "error": health.error if health else "",
            }
        )


class ServerContexts(StaffView, generics.ListCreateAPIView):
    """Staff assign a server's dialplan contexts to tenants."""

    serializer_class = s.ContextSerializer

    def get_queryset(self):
        return DialplanContext.objects.filter(server_id=self.kwargs["pk"]).select_related(
            "server", "tenant"
        )

    def perform_create(self, serializer):
        server = get_object_or_404(AsteriskServer, pk=self.kwargs["pk"])
        serializer.instance = services.context_save(
            DialplanContext(server=server, **serializer.validated_data), actor=self.actor()
        )


class ServerPhones(StaffView, generics.ListCreateAPIView):
    """Staff say where each tenant's phones are on a server: one of its contexts, and
    optionally its extensions. Retrieve rings only these. Posting again for the same
    tenant replaces it."""

    serializer_class = s.PhonesSerializer

    def get_queryset(self):
        return TenantPhones.objects.filter(server_id=self.kwargs["pk"]).select_related(
            "server", "tenant", "context"
        )

    def perform_create(self, serializer):
        server = get_object_or_404(AsteriskServer, pk=self.kwargs["pk"])
        data = serializer.validated_data
        existing = TenantPhones.objects.filter(server=server, tenant=data["tenant"]).first()
        phones = existing or TenantPhones(server=server, tenant=data["tenant"])
        phones.context = DialplanContext.objects.filter(
            server=server, tenant=data["tenant"], name=data["context"]
        ).first()
        if phones.context is None:
            raise ValidationError(
                {
                    "context": f"{data['tenant'].slug} has no context named "
                    f"{data['context'][:63]!r} on {server.name}."
                }
            )
        phones.extensions = data.get("extensions", "")
        serializer.instance = services.phones_save(phones, actor=self.actor())

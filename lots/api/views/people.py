"""A tenant's people and keys: members, invitations, the caller's own settings, API
keys; and what staff gave the tenant (contexts, phones)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import services as tenant_services
from tenants.models import ApiKey, Invitation, Membership, Role
from tenants.scoping import scoped

from ... import services
from ...models import DialplanContext, TenantPhones
from .. import serializers as s
from .base import TenantScoped


class MemberList(TenantScoped, generics.ListCreateAPIView):
    """Members; POST adds someone by e-mail address or username: a member already gets
    the role (200), anyone else is invited (202), whether or not they have an account."""

    serializer_class = s.MemberSerializer

    def get_queryset(self):
        return scoped(Membership, self.tenant).select_related("user").order_by("user__username")

    @extend_schema(
        request=s.InviteSerializer,
        responses={200: s.MemberSerializer, 202: s.InvitationSerializer},
    )
    def post(self, request, *args, **kwargs):
        serializer = s.InviteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        done = tenant_services.member_invite(
            self.tenant,
            actor=self.actor(),
            site_url=request.build_absolute_uri("/"),
            **serializer.validated_data,
        )
        if isinstance(done, Membership):
            return Response(s.MemberSerializer(done).data)
        return Response(s.InvitationSerializer(done).data, status=status.HTTP_202_ACCEPTED)


class MemberDetail(TenantScoped, APIView):
    def membership(self, pk: int) -> Membership:
        return get_object_or_404(scoped(Membership, self.tenant).select_related("user"), pk=pk)

    @extend_schema(responses=s.MemberSerializer)
    def get(self, request, tenant: str, pk: int):
        return Response(s.MemberSerializer(self.membership(pk)).data)

    @extend_schema(request=s.MemberRoleSerializer, responses=s.MemberSerializer)
    def patch(self, request, tenant: str, pk: int):
        membership = self.membership(pk)
        serializer = s.MemberRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = tenant_services.member_role_set(
            membership, serializer.validated_data["role"], actor=self.actor()
        )
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        tenant_services.member_remove(self.membership(pk), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationList(TenantScoped, generics.ListAPIView):
    """Invitations not yet answered (nor withdrawn, nor expired)."""

    serializer_class = s.InvitationSerializer
    read_role = Role.ADMIN

    def get_queryset(self):
        return [i for i in scoped(Invitation, self.tenant).order_by("-created_at") if i.pending]


class InvitationDetail(TenantScoped, APIView):
    read_role = Role.ADMIN

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        invitation = get_object_or_404(scoped(Invitation, self.tenant), pk=pk)
        tenant_services.invitation_revoke(invitation, actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)


class Me(TenantScoped, APIView):
    """The caller's own membership in the tenant; PATCH stores their own extension and
    whether they want alert mail."""

    write_role = Role.VIEWER

    def membership(self) -> Membership:
        membership = scoped(Membership, self.tenant).filter(user=self.request.user.pk).first()
        if membership is None:  # API keys and staff without a membership have no "me"
            raise NotFound("Only members of the tenant have their own settings here.")
        return membership

    def body(self, membership: Membership) -> dict:
        return {
            "username": membership.user.get_username(),
            "role": membership.role,
            "extension": membership.extension,
            "alert_mail": membership.alert_mail,
        }

    @extend_schema(responses=s.MeSerializer)
    def get(self, request, tenant: str):
        return Response(self.body(self.membership()))

    @extend_schema(request=s.MeSerializer, responses=s.MeSerializer)
    def patch(self, request, tenant: str):
        membership = self.membership()
        serializer = s.MeSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "extension" in serializer.validated_data:
            membership = services.member_extension_set(
                membership, serializer.validated_data["extension"], actor=self.actor()
            )
        if "alert_mail" in serializer.validated_data:
            membership = services.member_alert_mail_set(
                membership, serializer.validated_data["alert_mail"], actor=self.actor()
            )
        return Response(self.body(membership))


class ApiKeyList(TenantScoped, generics.ListCreateAPIView):
    read_role = Role.ADMIN
    serializer_class = s.ApiKeySerializer

    def get_queryset(self):
        return scoped(ApiKey, self.tenant).order_by("-created_at")

    @extend_schema(request=s.ApiKeySerializer, responses={201: s.NewApiKeySerializer})
    def post(self, request, *args, **kwargs):
        serializer = s.ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, text = tenant_services.api_key_create(
            self.tenant,
            actor=self.actor(),
            name=serializer.validated_data["name"],
            role=serializer.validated_data.get("role", Role.VIEWER),
        )
        return Response({**s.ApiKeySerializer(key).data, "key": text}, status=201)


class ApiKeyDetail(TenantScoped, APIView):
    read_role = Role.ADMIN

    def key(self, pk: int) -> ApiKey:
        return get_object_or_404(scoped(ApiKey, self.tenant), pk=pk)

    @extend_schema(responses=s.ApiKeySerializer)
    def get(self, request, tenant: str, pk: int):
        return Response(s.ApiKeySerializer(self.key(pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        tenant_services.api_key_revoke(self.key(pk), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantContexts(TenantScoped, generics.ListAPIView):
    serializer_class = s.TenantContextSerializer

    def get_queryset(self):
        return scoped(DialplanContext, self.tenant).select_related("server").order_by("name")


class TenantPhonesList(TenantScoped, generics.ListAPIView):
    """Where the tenant's phones are: Retrieve rings an extension there."""

    serializer_class = s.PhonesSerializer
    pagination_class = None

    def get_queryset(self):
        return scoped(TenantPhones, self.tenant).select_related("server", "tenant", "context")

"""REST API views: thin; tenant from the URL only, rules in services."""

from __future__ import annotations

import re
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.apikeys import ApiKeyPrincipal, api_key_create, api_key_revoke
from tenants.models import ApiKey, Membership, Role, Tenant
from tenants.scoping import scoped

from .. import services
from ..models import (
    AsteriskServer,
    Deployment,
    DialplanContext,
    ParkedCall,
    ParkingLot,
    TenantPhones,
)
from ..selectors import pending_change
from . import serializers as s
from .auth import at_least, is_staff_caller, request_role

WAIT_MAX_SECONDS = 30
SLUG_RE = re.compile(r"[a-z][a-z0-9-]{1,30}")


class IsStaffCaller(BasePermission):
    message = "Staff only."

    def has_permission(self, request, view) -> bool:
        return is_staff_caller(request)


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


# -- staff ---------------------------------------------------------------------------------


class TenantList(generics.ListCreateAPIView):
    permission_classes = [IsStaffCaller]
    serializer_class = s.TenantSerializer
    queryset = Tenant.objects.all()

    def perform_create(self, serializer):
        try:
            tenant = Tenant(**serializer.validated_data)
            tenant.full_clean()
            tenant.save()
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc
        serializer.instance = tenant


class TenantDetail(generics.RetrieveUpdateAPIView):
    """PUT creates the tenant when the slug is new (safe to retry)."""

    permission_classes = [IsStaffCaller]
    serializer_class = s.TenantSerializer
    queryset = Tenant.objects.all()
    lookup_field = "slug"

    def put(self, request, slug: str):
        tenant = Tenant.objects.filter(slug=slug).first() or Tenant(slug=slug)
        serializer = self.get_serializer(tenant, data={**json_object(request), "slug": slug})
        serializer.is_valid(raise_exception=True)
        for field, value in serializer.validated_data.items():
            setattr(tenant, field, value)
        created = tenant.pk is None
        try:
            tenant.full_clean()
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc
        tenant.save()
        return Response(
            s.TenantSerializer(tenant).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def perform_update(self, serializer):
        tenant = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(tenant, field, value)
        try:
            tenant.full_clean()
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc
        tenant.save()


class ServerList(generics.ListCreateAPIView):
    permission_classes = [IsStaffCaller]
    serializer_class = s.ServerSerializer
    queryset = AsteriskServer.objects.all()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        secret = data.pop("ami_secret", None)
        try:
            serializer.instance = services.server_save(
                AsteriskServer(**data),
                ami_secret=secret,
                actor=services.Actor.of(self.request.user),
            )
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc


class ServerDetail(generics.RetrieveUpdateAPIView):
    permission_classes = [IsStaffCaller]
    serializer_class = s.ServerSerializer
    queryset = AsteriskServer.objects.all()

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        secret = data.pop("ami_secret", None)
        server = serializer.instance
        for field, value in data.items():
            setattr(server, field, value)
        try:
            services.server_save(
                server, ami_secret=secret, actor=services.Actor.of(self.request.user)
            )
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc


class ServerDeploy(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(request=None, responses=s.DeploymentSerializer)
    def post(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        services.deployment_request(
            server.pk, services.Actor.of(request.user), "deploy now (API)", force=True
        )
        return Response(
            s.DeploymentSerializer(latest_deployment(server.pk)).data,
            status=status.HTTP_202_ACCEPTED,
        )


class ServerDeployments(generics.ListAPIView):
    permission_classes = [IsStaffCaller]
    serializer_class = s.DeploymentSerializer

    def get_queryset(self):
        server = get_object_or_404(AsteriskServer, pk=self.kwargs["pk"])
        return Deployment.objects.filter(server=server).select_related("server").order_by("-pk")


class ServerConfig(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        change = pending_change(server)
        return Response({"files": change.files, "pending_diff": change.diff, "live": change.live})


class ServerHealthView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        server = get_object_or_404(AsteriskServer, pk=pk)
        health = getattr(server, "health", None)
        return Response(
            {
                "server": server.name,
                "connected": bool(health and health.connected),
                "synced": bool(health and health.synced),
                "since": health.since if health else None,
                "last_event_at": health.last_event_at if health else None,
                "asterisk_version": health.asterisk_version if health else "",
                "error": health.error if health else "",
            }
        )


class ServerContexts(generics.ListCreateAPIView):
    """Staff assign a server's dialplan contexts to tenants."""

    permission_classes = [IsStaffCaller]
    serializer_class = s.ContextSerializer

    def get_queryset(self):
        return DialplanContext.objects.filter(server_id=self.kwargs["pk"]).select_related(
            "server", "tenant"
        )

    def perform_create(self, serializer):
        server = get_object_or_404(AsteriskServer, pk=self.kwargs["pk"])
        try:
            serializer.instance = services.context_save(
                DialplanContext(server=server, **serializer.validated_data),
                actor=services.Actor.of(self.request.user),
            )
        except DjangoValidationError as exc:
            raise s.as_drf_error(exc) from exc


class ServerPhones(generics.ListCreateAPIView):
    """Staff say where each tenant's phones are on a server: one of its contexts, and
    optionally its extensions. Retrieve rings only these."""

    permission_classes = [IsStaffCaller]
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
                    "context": f"{data['tenant'].slug} has no context named {data['context']!r} "
                    f"on {server.name}."
                }
            )
        phones.extensions = data.get("extensions", "")
        serializer.instance = services.phones_save(phones)


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
            mine = {tenant.slug for tenant in tenants if request_role(request, tenant)}
            if not mine:
                raise NotFound()
        try:
            wait = min(max(int(request.query_params.get("wait", 0)), 0), WAIT_MAX_SECONDS)
        except ValueError:
            raise ValidationError({"wait": "Give a number of seconds."}) from None
        deadline = time.monotonic() + wait
        finished = {"ok", "failed", "rolled_back"}
        while deployment.status not in finished and time.monotonic() < deadline:
            time.sleep(0.2)
            deployment.refresh_from_db()
        if not staff:  # other tenants' lots are theirs to know
            deployment.set_aside = [e for e in deployment.set_aside if e.get("tenant") in mine]
        serializer = s.DeploymentSerializer if staff else s.TenantDeploymentSerializer
        return Response(serializer(deployment).data)


# -- tenants -------------------------------------------------------------------------------


class TenantScoped:
    """Resolves the tenant from the URL and the caller's role in it: no role -> 404,
    too small a role for the method -> 403."""

    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        tenant = Tenant.objects.filter(slug=kwargs["tenant"], active=True).first()
        role = request_role(request, tenant) if tenant else None
        if role is None:
            raise NotFound()
        needed = self.read_role if request.method in SAFE_METHODS else self.write_role
        if not at_least(role, needed):
            raise PermissionDenied(f"This needs the {needed} role in {tenant.slug}.")
        self.tenant, self.role = tenant, role

    def actor(self) -> services.Actor:
        user = self.request.user
        if isinstance(user, ApiKeyPrincipal):
            return services.Actor(trigger=Deployment.Trigger.API_KEY)
        return services.Actor.of(user)


class LotPages(CursorPagination):
    """Keyset pages by slug: page 200 costs what page 1 does, however many lots."""

    ordering = "slug"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class LotList(TenantScoped, generics.ListCreateAPIView):
    pagination_class = LotPages

    def get_queryset(self):
        return (
            scoped(ParkingLot, self.tenant)
            .select_related("server", "context", "comebackcontext", "tenant")
            .order_by("slug")
        )

    def get_serializer(self, *args, **kwargs):
        return s.LotSerializer(*args, tenant=getattr(self, "tenant", None), **kwargs)

    def get_serializer_class(self):
        return s.LotSerializer

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lot = save_lot(ParkingLot(tenant=self.tenant), serializer.validated_data, self.actor())
        return lot_response(lot, self.tenant, status.HTTP_201_CREATED)


def save_lot(lot: ParkingLot, data: dict, actor, if_match: str | None = None) -> ParkingLot:
    for field, value in data.items():
        setattr(lot, field, value)
    return services.lot_save(lot, actor=actor, if_match=if_match)


def lot_response(lot: ParkingLot, tenant: Tenant, code: int) -> Response:
    data = s.LotSerializer(lot, tenant=tenant).data
    data["deployment"] = deployment_link(latest_deployment(lot.server_id))
    return Response(data, status=code, headers={"ETag": lot.etag})


class LotDetail(TenantScoped, APIView):
    """A lot by slug. PUT creates or replaces it (safe to retry); writes honour If-Match."""

    def lot(self, slug: str) -> ParkingLot | None:
        return (
            scoped(ParkingLot, self.tenant)
            .select_related("server", "context", "comebackcontext", "tenant")
            .filter(slug=slug)
            .first()
        )

    @extend_schema(responses=s.LotSerializer)
    def get(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        if found is None:
            raise NotFound()
        return Response(
            s.LotSerializer(found, tenant=self.tenant).data, headers={"ETag": found.etag}
        )

    @extend_schema(request=s.LotSerializer, responses=s.LotSerializer)
    def put(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        if found is None and request.headers.get("If-Match") not in (None, "*"):
            raise PreconditionFailed()
        serializer = s.LotSerializer(data={**json_object(request), "slug": lot}, tenant=self.tenant)
        serializer.is_valid(raise_exception=True)
        target = found or ParkingLot(tenant=self.tenant)
        data = dict(serializer.validated_data)
        if found is not None:
            data.pop("slug", None)
            data.setdefault("comebackcontext", None)
        saved = save_lot(target, data, self.actor(), request.headers.get("If-Match"))
        return lot_response(
            saved, self.tenant, status.HTTP_200_OK if found else status.HTTP_201_CREATED
        )

    @extend_schema(request=s.LotSerializer, responses=s.LotSerializer)
    def patch(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        if found is None:
            raise NotFound()
        serializer = s.LotSerializer(found, data=request.data, partial=True, tenant=self.tenant)
        serializer.is_valid(raise_exception=True)
        return lot_response(
            save_lot(
                found, serializer.validated_data, self.actor(), request.headers.get("If-Match")
            ),
            self.tenant,
            status.HTTP_200_OK,
        )

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, lot: str):
        found = self.lot(lot)
        if found is None:
            raise NotFound()
        services.lot_delete(found, actor=self.actor(), if_match=request.headers.get("If-Match"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreconditionFailed(ValidationError):
    """If-Match names a version of a lot that does not exist (yet)."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The lot changed since you read it (If-Match does not match its ETag)."


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
    """Parked calls, newest first; filter with ?lot=, ?outcome=, ?since=, ?until=."""

    serializer_class = s.ParkedCallSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("lot", str),
            OpenApiParameter("outcome", str),
            OpenApiParameter("since", str, description="ISO 8601"),
            OpenApiParameter("until", str, description="ISO 8601"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        from django.utils.dateparse import parse_datetime

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
        for name, lookup in (("since", "parked_at__gte"), ("until", "parked_at__lt")):
            if params.get(name):
                moment = parse_datetime(params[name])
                if moment is None:
                    raise ValidationError({name: "Give an ISO 8601 date and time."})
                calls = calls.filter(**{lookup: moment})
        return calls.order_by("-parked_at", "-pk")


class ParkedCallAction(TenantScoped, APIView):
    """Retrieve a parked call to a device, or hang it up (operators and admins)."""

    write_role = Role.OPERATOR
    action = ""

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

    serializer_class = s.CallActionSerializer

    def run(self, request, call, data: dict):
        raise NotImplementedError

    def post(self, request, tenant: str, lot: str, space: int):
        call = self.call(lot, space)
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        meant = serializer.validated_data.get("call")
        if meant is not None and meant != call.pk:
            return Response(
                {"call": "Another call is parked in that space by now; nothing was done."},
                status=status.HTTP_409_CONFLICT,
            )
        self.run(request, call, serializer.validated_data)
        return Response({"status": "requested", "call": call.pk}, status=status.HTTP_202_ACCEPTED)


class ParkedCallRetrieve(ParkedCallAction):
    serializer_class = s.RetrieveSerializer

    @extend_schema(request=s.RetrieveSerializer, responses={202: dict, 409: dict})
    def post(self, request, tenant: str, lot: str, space: int):
        return super().post(request, tenant, lot, space)

    def run(self, request, call, data: dict):
        services.parked_call_retrieve(call, request.user, data.get("extension"))


class ParkedCallHangup(ParkedCallAction):
    @extend_schema(request=s.CallActionSerializer, responses={202: dict, 409: dict})
    def post(self, request, tenant: str, lot: str, space: int):
        return super().post(request, tenant, lot, space)

    def run(self, request, call, data: dict):
        services.parked_call_hangup(call, request.user)


class MemberList(TenantScoped, generics.ListCreateAPIView):
    serializer_class = s.MemberSerializer

    def get_queryset(self):
        return scoped(Membership, self.tenant).select_related("user").order_by("user__username")

    def perform_create(self, serializer):
        username = serializer.validated_data["user"]["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise ValidationError({"username": f"No user named {username!r}."})
        if Membership.objects.filter(user=user, tenant=self.tenant).exists():
            raise ValidationError({"username": "Already a member."})
        serializer.instance = Membership.objects.create(
            user=user, tenant=self.tenant, role=serializer.validated_data["role"]
        )


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
        membership.role = serializer.validated_data["role"]
        membership.save(update_fields=["role"])
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        self.membership(pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyList(TenantScoped, generics.ListCreateAPIView):
    read_role = Role.ADMIN
    serializer_class = s.ApiKeySerializer

    def get_queryset(self):
        return scoped(ApiKey, self.tenant).order_by("-created_at")

    @extend_schema(request=s.ApiKeySerializer, responses={201: s.NewApiKeySerializer})
    def post(self, request, *args, **kwargs):
        serializer = s.ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        creator = request.user if getattr(request.user, "pk", None) else None
        key, text = api_key_create(
            self.tenant,
            name=serializer.validated_data["name"],
            role=serializer.validated_data.get("role", Role.VIEWER),
            created_by=creator,
        )
        data = s.ApiKeySerializer(key).data
        data["key"] = text
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetail(TenantScoped, APIView):
    read_role = Role.ADMIN

    @extend_schema(responses=s.ApiKeySerializer)
    def get(self, request, tenant: str, pk: int):
        return Response(
            s.ApiKeySerializer(get_object_or_404(scoped(ApiKey, self.tenant), pk=pk)).data
        )

    @extend_schema(responses={204: None})
    def delete(self, request, tenant: str, pk: int):
        api_key_revoke(get_object_or_404(scoped(ApiKey, self.tenant), pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantPhonesList(TenantScoped, generics.ListAPIView):
    """Where the tenant's phones are: Retrieve rings an extension there."""

    serializer_class = s.PhonesSerializer
    pagination_class = None

    def get_queryset(self):
        return scoped(TenantPhones, self.tenant).select_related("server", "tenant", "context")


class Me(TenantScoped, APIView):
    """The caller's own membership in the tenant; PATCH stores their own extension."""

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
            services.member_extension_set(membership, serializer.validated_data["extension"])
        return Response(self.body(membership))


class TenantContexts(TenantScoped, generics.ListAPIView):
    serializer_class = s.TenantContextSerializer

    def get_queryset(self):
        return scoped(DialplanContext, self.tenant).select_related("server").order_by("name")

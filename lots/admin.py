"""Operator admin: every model, validated by the same rules as every other save path."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from parkweb.errors import DomainError
from parkweb.forms import ReadOnlyAdmin, ServiceAdmin, ServiceForm

from . import options, services, webhooks
from .forms import chain_fields_optional
from .models import (
    AsteriskServer,
    Deployment,
    DialplanContext,
    EventProblem,
    ParkedCall,
    ParkingLot,
    ServerHealth,
    TenantPhones,
    Webhook,
    WebhookDelivery,
)
from .selectors import pending_change


class AsteriskServerForm(ServiceForm):
    ami_secret = forms.CharField(
        label="AMI secret",
        required=False,
        strip=False,
        max_length=256,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown. Leave empty to keep the current secret.",
    )

    class Meta:
        model = AsteriskServer
        fields = [
            "name",
            "ami_host",
            "ami_port",
            "ami_username",
            "config_dir",
            "parkcall",
            "default_lot",
            "reserved_contexts",
        ]

    def clean_ami_secret(self) -> str:
        secret = self.cleaned_data["ami_secret"]
        if not secret and not self.instance.ami_secret_encrypted:
            raise forms.ValidationError("An AMI secret is required.", code="required")
        if any(char in secret for char in "\r\n\0"):
            raise forms.ValidationError(
                "The secret must not contain line breaks.", code="secret_format"
            )
        return secret

    def write(self, server):
        return services.server_save(
            server, ami_secret=self.cleaned_data.get("ami_secret"), actor=self.actor
        )


@admin.register(AsteriskServer)
class AsteriskServerAdmin(ServiceAdmin):
    form = AsteriskServerForm
    list_display = [
        "name",
        "ami_host",
        "ami_port",
        "delivery",
        "parkcall",
        "lot_count",
        "health_status",
        "deploy_status",
    ]
    search_fields = ["name", "ami_host"]
    readonly_fields = ["deploy_status", "deploy_links"]
    fieldsets = [
        (None, {"fields": ["name", "deploy_status", "deploy_links"]}),
        (
            "Manager interface (AMI)",
            {
                "fields": ["ami_host", "ami_port", "ami_username", "ami_secret"],
            },
        ),
        (
            "Configuration",
            {
                "fields": [
                    "delivery",
                    "config_dir",
                    "parkcall",
                    "default_lot",
                    "reserved_contexts",
                    "lot_budget",
                ],
            },
        ),
    ]
    actions = ["deploy_now"]

    def delete_view(self, request, object_id, extra_context=None):
        """Retiring goes through the service; its refusal (lots still on the server) is
        shown on the server's page, as the API refuses it."""
        server = self.get_object(request, object_id)
        if request.method == "POST" and server is not None:
            if not self.has_delete_permission(request, server):
                raise PermissionDenied
            try:
                services.server_retire(server, actor=services.Actor.of(request.user))
            except DomainError as refused:
                self.message_user(request, refused.message, messages.ERROR)
                return redirect("admin:lots_asteriskserver_change", server.pk)
            self.message_user(request, f"Server {server.name} retired.", messages.SUCCESS)
            return redirect("admin:lots_asteriskserver_changelist")
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        services.server_retire(obj, actor=services.Actor.of(request.user))

    def delete_queryset(self, request, queryset):
        for server in queryset:
            try:
                services.server_retire(server, actor=services.Actor.of(request.user))
            except DomainError as refused:
                self.message_user(request, refused.message, messages.ERROR)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("deploy_state", "health")
            .annotate(lot_total=Count("lots"))
        )

    @admin.display(description="lots", ordering="lot_total")
    def lot_count(self, server):
        return server.lot_total

    @admin.display(description="health")
    def health_status(self, server):
        health = getattr(server, "health", None)
        if health is None:
            return "never watched"
        state = "connected" if health.connected else "disconnected"
        return f"{state}{'' if health.synced or not health.connected else ', resyncing'}"

    @admin.display(description="deploy")
    def deploy_status(self, server):
        latest = server.deployments.first()
        if latest is None:
            return "never deployed"
        return f"{latest.get_status_display()} ({latest.created_at:%Y-%m-%d %H:%M:%S})"

    @admin.display(description="actions")
    def deploy_links(self, server):
        if server.pk is None:
            return "-"
        return format_html(
            '<a class="button" href="{}">Preview pending diff</a> '
            '<a class="button" href="{}">Deployments</a>',
            reverse("admin:lots_asteriskserver_preview", args=[server.pk]),
            reverse("admin:lots_deployment_changelist") + f"?server__id__exact={server.pk}",
        )

    def get_urls(self):
        return [
            path(
                "<int:server_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="lots_asteriskserver_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request, server_id: int):
        server = get_object_or_404(AsteriskServer, pk=server_id)
        if not self.has_change_permission(request, server):
            return redirect("admin:index")
        if request.method == "POST":
            self._deploy(request, server)
            return redirect("admin:lots_asteriskserver_preview", server_id=server.pk)
        return TemplateResponse(
            request,
            "admin/lots/asteriskserver/preview.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "server": server,
                "change": pending_change(server),
                "deployments": server.deployments.all()[:10],
                "title": f"Pending config of {server.name}",
            },
        )

    def _deploy(self, request, server):
        deployment = services.deployment_request(
            server.pk, services.Actor.of(request.user), "deploy now (admin)", force=True
        )
        self.message_user(
            request,
            f"Deploy of {server.name} queued."
            if deployment
            else f"A deploy of {server.name} is already queued.",
            messages.SUCCESS,
        )

    @admin.action(description="Deploy now")
    def deploy_now(self, request, queryset):
        for server in queryset:
            self._deploy(request, server)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_lot":
            server_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = ParkingLot.objects.filter(server_id=server_id).select_related(
                "tenant"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "server",
        "status",
        "trigger",
        "triggered_by",
        "reason",
        "created_at",
        "duration",
        "reloaded",
    ]
    list_filter = ["status", "server", "trigger"]
    list_select_related = ["server", "triggered_by"]
    fields = [
        "server",
        "status",
        "trigger",
        "triggered_by",
        "reason",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
        "worker",
        "config_version",
        "config_hash",
        "reloaded",
        "error",
        "diff_view",
        "replies",
        "res_parking_conf",
        "features_conf",
    ]
    readonly_fields = fields

    @admin.display(description="diff against the last good config")
    def diff_view(self, deployment):
        return format_html("<pre>{}</pre>", deployment.diff or "(none)")

    def has_delete_permission(self, request, obj=None):
        return False


class ContextForm(ServiceForm):
    def write(self, context):
        return services.context_save(context, actor=self.actor)


@admin.register(DialplanContext)
class DialplanContextAdmin(ServiceAdmin):
    form = ContextForm
    list_display = ["name", "server", "tenant", "description"]
    list_filter = ["server", "tenant"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["server", "tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["server", "tenant"] if obj else []


class PhonesForm(ServiceForm):
    def write(self, phones):
        return services.phones_save(phones)


@admin.register(TenantPhones)
class TenantPhonesAdmin(ServiceAdmin):
    """Where each tenant's phones are: Retrieve rings an extension there and nowhere else."""

    form = PhonesForm
    list_display = ["tenant", "server", "context", "extensions"]
    list_filter = ["server", "tenant"]
    list_select_related = ["tenant", "server", "context"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "context":
            kwargs["queryset"] = DialplanContext.objects.select_related("server", "tenant")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class HeldFilter(admin.SimpleListFilter):
    title = "live"
    parameter_name = "held"

    def lookups(self, request, model_admin):
        return [("yes", "set aside (not live)"), ("no", "live")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(held_reason="")
        if self.value() == "no":
            return queryset.filter(held_reason="")
        return queryset


class LotForm(ServiceForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        chain_fields_optional(self)

    def write(self, lot):
        return services.lot_save(lot, actor=self.actor)


@admin.register(ParkingLot)
class ParkingLotAdmin(ServiceAdmin):
    form = LotForm
    list_display = [
        "name",
        "tenant",
        "server",
        "context",
        "parkext",
        "parkpos",
        "enabled",
        "live",
    ]
    list_filter = ["enabled", "server", "tenant", HeldFilter]
    search_fields = ["name", "slug", "tenant__slug", "parkext"]
    list_select_related = ["tenant", "server", "context"]
    # The tenant pages' groups of options (lots.forms), with the tenant first.
    fieldsets = [
        (None, {"fields": ["tenant", *options.GROUPS[options.BASICS], "held_reason"]}),
        ("When nobody picks up", {"fields": options.GROUPS[options.COMEBACK]}),
        ("Alerts", {"fields": options.GROUPS[options.ALERTS]}),
        ("Advanced", {"classes": ["collapse"], "fields": options.GROUPS[options.ADVANCED]}),
    ]
    actions = ["try_again"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "slug", "held_reason"] if obj else ["held_reason"]

    @admin.display(description="live", boolean=True)
    def live(self, lot):
        return not lot.held_reason

    @admin.action(description="Try set-aside lots again (after fixing the PBX's dialplan)")
    def try_again(self, request, queryset):
        count = services.lots_retry(
            queryset.exclude(held_reason=""), services.Actor.of(request.user)
        )
        self.message_user(request, f"{count} lot(s) will be deployed again.", messages.SUCCESS)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("context", "comebackcontext", "fallback_context"):
            kwargs["queryset"] = DialplanContext.objects.select_related("server", "tenant")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def delete_model(self, request, obj):
        services.lot_delete(obj, actor=services.Actor.of(request.user))

    def delete_queryset(self, request, queryset):
        for lot in queryset:
            services.lot_delete(lot, actor=services.Actor.of(request.user))


class DeviceForm(forms.Form):
    device = forms.CharField(
        max_length=130,
        help_text="Any device: PJSIP/alice, or Local/201@some-context. Staff only.",
    )


@admin.register(ParkedCall)
class ParkedCallAdmin(ReadOnlyAdmin):
    list_display = [
        "parked_at",
        "server",
        "lot_name",
        "space",
        "caller_id_num",
        "caller_id_name",
        "outcome",
        "ended_at",
    ]
    list_filter = ["outcome", "server", "tenant"]
    search_fields = ["caller_id_num", "caller_id_name", "lot_name", "uniqueid"]
    list_select_related = ["server"]
    date_hierarchy = "parked_at"
    readonly_fields = ["retrieve_link"]

    @admin.display(description="retrieve")
    def retrieve_link(self, call):
        if not call.active:
            return "-"
        return format_html(
            '<a class="button" href="{}">Retrieve to a device</a>',
            reverse("admin:lots_parkedcall_retrieve", args=[call.pk]),
        )

    def get_urls(self):
        return [
            path(
                "<int:call_id>/retrieve/",
                self.admin_site.admin_view(self.retrieve_view),
                name="lots_parkedcall_retrieve",
            ),
            *super().get_urls(),
        ]

    def retrieve_view(self, request, call_id: int):
        """Staff ring any device for a parked call (tenants ring only their own phones)."""
        call = get_object_or_404(ParkedCall.objects.select_related("server", "lot"), pk=call_id)
        if not self.has_view_permission(request, call):
            return redirect("admin:index")
        form = DeviceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.parked_call_retrieve_to_device(
                    call, services.Actor.of(request.user), form.cleaned_data["device"]
                )
            except DomainError as refused:
                for messages_ in refused.errors.values():
                    form.add_error("device", messages_)
            else:
                self.message_user(
                    request, f"Ringing {form.cleaned_data['device']}.", messages.SUCCESS
                )
                return redirect("admin:lots_parkedcall_change", call.pk)
        return TemplateResponse(
            request,
            "admin/lots/parkedcall/retrieve.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "call": call,
                "form": form,
                "title": f"Retrieve {call} to a device",
            },
        )


@admin.register(ServerHealth)
class ServerHealthAdmin(ReadOnlyAdmin):
    list_display = [
        "server",
        "connected",
        "synced",
        "since",
        "last_event_at",
        "asterisk_version",
        "watcher",
        "error",
    ]


@admin.register(EventProblem)
class EventProblemAdmin(ReadOnlyAdmin):
    """AMI events (or resynced calls) that could not be applied: each stayed its own
    call's problem while the watcher went on."""

    list_display = ["created_at", "server", "tenant", "lot_name", "uniqueid", "kind", "error"]
    list_filter = ["kind", "server", "tenant"]
    list_select_related = ["server", "tenant"]


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Tenants make their webhooks (pages, API); staff may let one call private networks."""

    list_display = ["tenant", "url", "active", "paused_at", "allow_private"]
    list_filter = ["active", "allow_private", "tenant"]
    fields = ["tenant", "url", "events", "description", "active", "allow_private", "paused_reason"]
    readonly_fields = ["tenant", "url", "events", "description", "paused_reason"]

    def has_add_permission(self, request):
        return False  # made by the tenant, with a secret shown only to them

    def save_model(self, request, obj, form, change) -> None:
        """Through the service, like every door (saving it active resumes it)."""
        services.webhook_staff_update(
            obj,
            actor=services.Actor.of(request.user),
            active=obj.active,
            allow_private=obj.allow_private,
        )


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: a log of millions is not counted whole for every page
    (the list then says CAP + 1 rows, and its pages go that far)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()


class EventTypeFilter(admin.SimpleListFilter):
    """The event types parkweb sends, from the code: not a DISTINCT over the whole log."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(kind, kind) for kind in webhooks.EVENT_TYPES]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The whole log, newest first. It holds millions of rows (PARKWEB_WEBHOOK_LOG_DAYS of
    them): listed by id, which follows the events' order, counted up to a cap."""

    list_display = ["occurred_at", "webhook", "event_type", "status", "attempts", "response_code"]
    list_filter = ["status", EventTypeFilter]
    list_select_related = ["webhook"]
    ordering = ["-pk"]
    paginator = CappedCountPaginator
    show_full_result_count = False

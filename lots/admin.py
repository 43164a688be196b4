"""Operator admin: every model, validated by the same rules as every other save path."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import services
from .forms import ADVANCED, BASICS, COMEBACK
from .models import (
    AsteriskServer,
    AuditEntry,
    Deployment,
    DialplanContext,
    ParkedCall,
    ParkingLot,
    ServerHealth,
)
from .selectors import pending_change


class AsteriskServerForm(forms.ModelForm):
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


@admin.register(AsteriskServer)
class AsteriskServerAdmin(admin.ModelAdmin):
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

    def save_model(self, request, obj, form, change):
        services.server_save(
            obj,
            ami_secret=form.cleaned_data.get("ami_secret"),
            actor=services.Actor.of(request.user),
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is written by parkweb, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


@admin.register(DialplanContext)
class DialplanContextAdmin(admin.ModelAdmin):
    list_display = ["name", "server", "tenant", "description"]
    list_filter = ["server", "tenant"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["server", "tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["server", "tenant"] if obj else []

    def save_model(self, request, obj, form, change):
        services.context_save(obj, actor=services.Actor.of(request.user))


@admin.register(ParkingLot)
class ParkingLotAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "server", "context", "parkext", "parkpos", "enabled"]
    list_filter = ["enabled", "server", "tenant"]
    search_fields = ["name", "slug", "tenant__slug", "parkext"]
    list_select_related = ["tenant", "server", "context"]
    # The tenant pages' groups of options (lots.forms), with the tenant first.
    fieldsets = [
        (None, {"fields": ["tenant", *BASICS]}),
        ("When nobody picks up", {"fields": COMEBACK}),
        ("Advanced", {"classes": ["collapse"], "fields": ADVANCED}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "slug"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("context", "comebackcontext"):
            kwargs["queryset"] = DialplanContext.objects.select_related("server", "tenant")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        services.lot_save(obj, actor=services.Actor.of(request.user))

    def delete_model(self, request, obj):
        services.lot_delete(obj, actor=services.Actor.of(request.user))

    def delete_queryset(self, request, queryset):
        for lot in queryset:
            services.lot_delete(lot, actor=services.Actor.of(request.user))


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


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "user", "action", "target", "ok"]
    list_filter = ["action", "ok", "tenant"]

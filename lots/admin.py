"""Operator admin: every model, validated by the same rules as every other save path."""

from django import forms
from django.contrib import admin

from . import services
from .models import AsteriskServer, DialplanContext, ParkingLot


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
    list_display = ["name", "ami_host", "ami_port", "config_dir", "parkcall", "default_lot"]
    search_fields = ["name", "ami_host"]
    fieldsets = [
        (None, {"fields": ["name"]}),
        (
            "Manager interface (AMI)",
            {"fields": ["ami_host", "ami_port", "ami_username", "ami_secret"]},
        ),
        (
            "Configuration",
            {"fields": ["config_dir", "parkcall", "default_lot", "reserved_contexts"]},
        ),
    ]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_lot":
            server_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = ParkingLot.objects.filter(server_id=server_id).select_related(
                "tenant"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        services.server_save(obj, ami_secret=form.cleaned_data.get("ami_secret"))


@admin.register(DialplanContext)
class DialplanContextAdmin(admin.ModelAdmin):
    list_display = ["name", "server", "tenant", "description"]
    list_filter = ["server", "tenant"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["server", "tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["server", "tenant"] if obj else []

    def save_model(self, request, obj, form, change):
        services.context_save(obj)


@admin.register(ParkingLot)
class ParkingLotAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "server", "context", "parkext", "parkpos", "enabled"]
    list_filter = ["enabled", "server", "tenant"]
    search_fields = ["name", "slug", "tenant__slug", "parkext"]
    list_select_related = ["tenant", "server", "context"]
    fieldsets = [
        (None, {"fields": ["tenant", "server", "slug", "name", "enabled"]}),
        (
            "Where calls park",
            {
                "fields": [
                    "context",
                    "parkext",
                    "parkext_exclusive",
                    ("parkpos_start", "parkpos_end"),
                    "findslot",
                    "parkinghints",
                ],
            },
        ),
        (
            "Timeout",
            {
                "fields": [
                    "parkingtime",
                    "comebacktoorigin",
                    "comebackdialtime",
                    "comebackcontext",
                ],
            },
        ),
        (
            "Sounds and features after pickup",
            {
                "classes": ["collapse"],
                "fields": [
                    "parkedmusicclass",
                    "courtesytone",
                    "parkedplay",
                    "parkedcalltransfers",
                    "parkedcallreparking",
                    "parkedcallhangup",
                    "parkedcallrecording",
                ],
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "slug"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("context", "comebackcontext"):
            kwargs["queryset"] = DialplanContext.objects.select_related("server", "tenant")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        services.lot_save(obj)

"""API representations. Writes go through `lots.services`, so the API applies exactly the
rules of the forms and the admin; their ValidationErrors become field-level 400s."""

from __future__ import annotations

from rest_framework import serializers

from parkweb.forms import one_text_rule
from tenants.models import ApiKey, Invitation, Membership, Role, Tenant

from .. import options, rules, webhooks
from ..frames import call_data
from ..models import (
    AsteriskServer,
    Deployment,
    DialplanContext,
    ParkedCall,
    ParkingLot,
    TenantPhones,
    Webhook,
    WebhookDelivery,
)

ECHO = 40  # characters of a refused value an error message repeats, at most


def short(value) -> str:
    text = str(value)
    return text if len(text) <= ECHO else text[:ECHO] + "..."


class BoundedChoiceField(serializers.ChoiceField):
    """A choice whose error repeats at most a short prefix of what was sent."""

    def fail(self, key, **kwargs):
        if "input" in kwargs:
            kwargs["input"] = short(kwargs["input"])
        super().fail(key, **kwargs)


class ModelSerializer(serializers.ModelSerializer):
    serializer_choice_field = BoundedChoiceField

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            one_text_rule(field)
        return fields


class NameField(serializers.SlugRelatedField):
    """A related object named by a slug or name: text that could never name one (a NUL,
    an absurd length) is refused before it reaches the database."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or "\x00" in data or len(data) > 100:
            self.fail("does_not_exist", slug_name=self.slug_field, value=short(data))
        return super().to_internal_value(data)


class TenantSerializer(ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["slug", "name", "active", "created_at"]
        read_only_fields = ["created_at"]


class ServerSerializer(ModelSerializer):
    ami_secret = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        max_length=256,
        help_text="Write-only; never returned.",
    )
    default_lot = serializers.PrimaryKeyRelatedField(
        queryset=ParkingLot.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = AsteriskServer
        fields = [
            "id",
            "name",
            "ami_host",
            "ami_port",
            "ami_username",
            "ami_secret",
            "config_dir",
            "delivery",
            "parkcall",
            "default_lot",
            "reserved_contexts",
            "lot_budget",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_ami_secret(self, value: str) -> str:
        if any(char in value for char in "\r\n\0"):
            raise serializers.ValidationError("The secret must not contain line breaks.")
        return value

    def validate(self, attrs):
        if self.instance is None and not attrs.get("ami_secret"):
            raise serializers.ValidationError({"ami_secret": "An AMI secret is required."})
        return attrs


class ContextSerializer(ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="name", read_only=True)
    tenant = NameField(slug_field="slug", queryset=Tenant.objects.all())

    class Meta:
        model = DialplanContext
        fields = ["id", "server", "tenant", "name", "description"]
        read_only_fields = ["id", "server"]


class PhonesSerializer(ModelSerializer):
    """Where a tenant's phones are on a server (staff write it; the tenant reads it)."""

    server = serializers.SlugRelatedField(slug_field="name", read_only=True)
    tenant = NameField(slug_field="slug", queryset=Tenant.objects.all())
    context = serializers.CharField(
        max_length=63, help_text="Name of one of the tenant's contexts on this server."
    )

    class Meta:
        model = TenantPhones
        fields = ["id", "server", "tenant", "context", "extensions"]
        read_only_fields = ["id", "server"]

    def to_representation(self, phones):
        return {
            "id": phones.pk,
            "server": phones.server.name,
            "tenant": phones.tenant.slug,
            "context": phones.context.name,
            "extensions": phones.extensions,
        }


class MeSerializer(serializers.Serializer):
    """The caller's own membership: role, and the extension Retrieve rings by default."""

    username = serializers.CharField(read_only=True)
    role = serializers.CharField(read_only=True)
    extension = serializers.CharField(max_length=20, allow_blank=True)
    alert_mail = serializers.BooleanField(
        help_text="Mail me alerts (a lot almost full or full, a call waiting too long), to "
        "my account's address."
    )


class TenantContextSerializer(ContextSerializer):
    class Meta(ContextSerializer.Meta):
        fields = ["id", "server", "name", "description"]


# The res_parking options, then the timeout chain's own fields, that the API reads and
# writes as they are (lots.options).
LOT_OPTIONS = [*options.PLAIN, *options.CHAIN_PLAIN, *options.ALERT_FIELDS]


def lot_data(lot: ParkingLot) -> dict:
    """A lot as the API shows it. Written out rather than field by field (and without
    building a serializer): lists of thousands of lots, and each write's answer, stay fast."""
    return {
        "slug": lot.slug,
        "name": lot.name,
        "enabled": lot.enabled,
        "server": lot.server.name,
        "context": lot.context.name,
        "comebackcontext": lot.comebackcontext.name if lot.comebackcontext else None,
        **{field: getattr(lot, field) for field in LOT_OPTIONS},
        "fallback_context": lot.fallback_context.name if lot.fallback_context else None,
        "asterisk_name": lot.asterisk_name,
        "set_aside": set_aside(lot),
        "created_at": lot.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": lot.updated_at.isoformat().replace("+00:00", "Z"),
    }


def set_aside(lot: ParkingLot) -> dict | None:
    if not lot.held_reason:
        return None
    return {
        "reason": lot.held_reason,
        "since": lot.held_at.isoformat().replace("+00:00", "Z") if lot.held_at else None,
        "runs_previous": not lot.held_extension,
    }


class LotSerializer(ModelSerializer):
    """A lot of the tenant in the URL; contexts are named, and must be the tenant's own."""

    server = NameField(
        slug_field="name",
        queryset=AsteriskServer.objects.none(),
        error_messages={"does_not_exist": rules.SERVER_NOT_OFFERED},
    )
    # Written as names, read back by to_representation (never through str(), which would
    # cost a query per lot).
    context = serializers.CharField(
        max_length=63, write_only=True, help_text="Name of one of your contexts."
    )
    comebackcontext = serializers.CharField(
        max_length=63,
        write_only=True,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Name of one of your contexts, for calls that do not come back to origin.",
    )
    fallback_context = serializers.CharField(
        max_length=63,
        write_only=True,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Name of one of your contexts: where the fallback extension is, for a "
        "timeout chain whose fallback is `destination`.",
    )
    asterisk_name = serializers.CharField(read_only=True)
    set_aside = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="null while the lot is deployed as saved. Else Asterisk refused it: "
        '{"reason": why, "since": when, "runs_previous": whether the lot still runs as it '
        "last did}. Saving the lot again tries again.",
    )

    class Meta:
        model = ParkingLot
        fields = [
            "slug",
            "name",
            "enabled",
            "server",
            "context",
            "comebackcontext",
            *LOT_OPTIONS,
            "fallback_context",
            "asterisk_name",
            "set_aside",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def __init__(self, *args, tenant: Tenant | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        # Only servers where the tenant owns a context: nothing else is theirs to use.
        self.fields["server"].queryset = (
            AsteriskServer.objects.filter(contexts__tenant=tenant).distinct()
            if tenant is not None
            else AsteriskServer.objects.none()
        )
        if self.instance is not None and not isinstance(self.instance, list):
            self.fields["slug"].read_only = True

    def to_representation(self, lot):
        return lot_data(lot)

    def _own_context(self, server, name: str | None, field: str):
        if not name:
            return None
        context = DialplanContext.objects.filter(
            server=server, tenant=self.tenant, name=name
        ).first()
        if context is None:
            raise serializers.ValidationError({field: rules.CONTEXT_NOT_OWNED})
        return context

    def validate(self, attrs):
        server = attrs.get("server") or getattr(self.instance, "server", None)
        if server is None:
            raise serializers.ValidationError({"server": "This field is required."})
        if "context" in attrs:
            attrs["context"] = self._own_context(server, attrs["context"], "context")
        if "comebackcontext" in attrs:
            attrs["comebackcontext"] = self._own_context(
                server, attrs["comebackcontext"], "comebackcontext"
            )
        if "fallback_context" in attrs:
            attrs["fallback_context"] = self._own_context(
                server, attrs["fallback_context"], "fallback_context"
            )
        return attrs


class IntegrationSerializer(serializers.Serializer):
    dialplan = serializers.CharField(help_text="extensions.conf lines to paste as they are.")
    phones_context = serializers.CharField(
        allow_null=True,
        help_text="Where the tenant's phones are on the lot's server (staff set it).",
    )
    lamps = serializers.BooleanField(help_text="Whether the lot has busy-lamp hints.")
    spaces_dialable = serializers.BooleanField(
        help_text="Whether the park extension and the spaces can be dialled: false for a "
        "lot without a park extension, whose spaces Asterisk makes no extensions for."
    )
    park_with = serializers.CharField(help_text="How a call is parked in this lot.")
    pick_up_with = serializers.CharField(help_text="How a parked call is picked up.")


class DeploymentSerializer(ModelSerializer):
    """Everything about a deployment: for staff."""

    server = serializers.SlugRelatedField(slug_field="name", read_only=True)
    live = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "server",
            "status",
            "live",
            "trigger",
            "reason",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
            "worker",
            "changes",
            "config_hash",
            "reloaded",
            "error",
            "set_aside",
            "diff",
            "replies",
        ]
        read_only_fields = fields

    def get_live(self, deployment) -> bool:
        return deployment.status == Deployment.Status.OK


class TenantDeploymentSerializer(DeploymentSerializer):
    """What a tenant may know of a deployment: the server's config is other tenants' too.
    `set_aside` lists only the caller's own tenants' lots (the view filters it)."""

    set_aside = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="Your lots that Asterisk refused in this deployment: [{lot, tenant, reason}].",
    )

    class Meta(DeploymentSerializer.Meta):
        fields = ["id", "status", "live", "created_at", "started_at", "finished_at", "set_aside"]
        read_only_fields = fields


class ParkedCallSerializer(ModelSerializer):
    """A parked call: the same representation as the board's frames (lots.frames)."""

    lot = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    outcome = serializers.ChoiceField(
        choices=ParkedCall.Outcome.choices,
        read_only=True,
        allow_null=True,
        help_text="null while the call is parked",
    )

    after_timeout = serializers.ChoiceField(
        choices=ParkedCall.AfterTimeout.choices,
        read_only=True,
        allow_null=True,
        help_text="For a call that timed out in a lot with parkweb's timeout chain: what "
        "followed (answered by the parker, sent to the fallback, parked again, hung up). "
        "null otherwise, or until the chain says.",
    )

    def to_representation(self, call):
        return call_data(call)

    class Meta:
        model = ParkedCall
        fields = [
            "id",
            "lot",
            "lot_name",
            "space",
            "uniqueid",
            "caller_id_num",
            "caller_id_name",
            "connected_line_num",
            "connected_line_name",
            "parker_dial_string",
            "parked_at",
            "timeout_at",
            "ended_at",
            "outcome",
            "after_timeout",
            "reminders_sent",
            "retriever_channel",
            "retriever_caller_id_num",
            "retriever_caller_id_name",
        ]
        read_only_fields = fields


class CallActionSerializer(serializers.Serializer):
    call = serializers.IntegerField(
        required=False,
        help_text="The id of the call meant (from the board or parked-calls). When the space "
        "holds another call by now, the answer is 409 and nothing is done.",
    )


class RetrieveSerializer(CallActionSerializer):
    extension = serializers.CharField(
        max_length=20,
        required=False,
        help_text="One of your tenant's phones, like 201: parkweb rings it and, when it "
        "answers, connects it to the call. Default: your own extension (PATCH .../me/).",
    )

    def validate(self, attrs):
        if "device" in self.initial_data:
            raise serializers.ValidationError(
                {
                    "device": 'Devices are no longer named: send {"extension": "201"}, an '
                    "extension of your tenant's phones (or none, for your own extension)."
                }
            )
        return attrs


class MemberSerializer(ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = ["id", "created_at"]


class MemberRoleSerializer(serializers.Serializer):
    role = BoundedChoiceField(choices=Role.choices)


class InviteSerializer(serializers.Serializer):
    """Someone to add: an e-mail address, or else the username of an account."""

    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    username = serializers.CharField(required=False, allow_blank=True, max_length=150)
    role = BoundedChoiceField(choices=Role.choices)


class InvitationSerializer(ModelSerializer):
    invited = serializers.CharField(source="invitee", read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "invited", "role", "created_by", "created_at", "expires_at"]
        read_only_fields = fields


class ApiKeySerializer(ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = [*ApiKeySerializer.Meta.read_only_fields, "key"]


class WebhookSerializer(ModelSerializer):
    """A tenant's webhook endpoint. Its signing secret is shown once, when it is made."""

    events = serializers.ListField(
        child=serializers.ChoiceField(choices=webhooks.EVENT_TYPES),
        required=False,
        help_text="Event types to deliver; empty or left out: all of them.",
    )

    class Meta:
        model = Webhook
        fields = [
            "id",
            "url",
            "events",
            "description",
            "active",
            "paused_at",
            "paused_reason",
            "created_at",
        ]
        read_only_fields = ["id", "paused_at", "paused_reason", "created_at"]
        extra_kwargs = {
            "url": {
                "help_text": "https only; the host must resolve to public addresses (staff "
                "may allow private ones). Redirects are not followed."
            },
            "active": {"help_text": "Saving it true resumes a paused endpoint."},
        }


class NewWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Shown once: the key of every delivery's X-Parkweb-Signature. Store it now.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookSerializer.Meta.read_only_fields, "secret"]


class WebhookEventSerializer(serializers.Serializer):
    """What a delivery's body holds (JSON, signed: see the README's "Webhooks")."""

    id = serializers.CharField(help_text="The event's id: the same on every retry of it.")
    type = serializers.ChoiceField(choices=webhooks.EVENT_TYPES)
    time = serializers.DateTimeField(help_text="When parkweb recorded it.")
    tenant = serializers.CharField(help_text="The tenant's slug.")
    lot = serializers.CharField(allow_null=True, help_text="The lot's slug, if any.")
    call = ParkedCallSerializer(required=False, help_text="call.* events: the parked call.")


class WebhookDeliverySerializer(ModelSerializer):
    payload = WebhookEventSerializer(read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "occurred_at",
            "status",
            "attempts",
            "next_attempt_at",
            "response_code",
            "duration_ms",
            "response_prefix",
            "error",
            "created_at",
            "finished_at",
            "payload",
        ]
        read_only_fields = fields

"""The parking domain: Asterisk servers, tenants' dialplan contexts, and parking lots."""

import hashlib

from django.conf import settings
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
    RegexValidator,
)
from django.db import models
from django.db.models.functions import Lower

from tenants.models import (
    SLUG_RULE,
    ConstraintFieldsMixin,
    ImmutableFieldsMixin,
    Tenant,
    safe_text_validator,
)

from . import crypto, rules

server_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,62}\Z",
    "Use 1-63 characters: lowercase letters, digits, '_' or '-'.",
    code="server_name_format",
)
host_validator = RegexValidator(
    # Labels of at most 63 characters, as DNS has them; IPv6 addresses have no dots. The
    # whole name's 253 is the field's max_length (a lookahead here said it twice, and made
    # every OpenAPI client's generator of matching names twenty times slower).
    r"^[A-Za-z0-9][A-Za-z0-9:-]{0,62}(\.[A-Za-z0-9][A-Za-z0-9:-]{0,62})*\.?\Z",
    "Give a host name or an IP address.",
    code="host_format",
)
ami_username_validator = RegexValidator(
    r"^[A-Za-z0-9_.@-]{1,64}\Z",
    "Use 1-64 characters: letters, digits, '_', '.', '@' or '-'.",
    code="ami_username_format",
)
config_dir_validator = RegexValidator(
    r"^/(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/-]{0,250}\Z",
    "Give an absolute directory path of letters, digits, '.', '_', '-' and '/' (no '..').",
    code="config_dir_format",
)
parkcall_validator = RegexValidator(
    r"^[0-9*#]{1,8}\Z",
    "Use 1-8 characters from 0-9, '*' and '#', like #72; leave empty to turn it off.",
    code="parkcall_format",
)


class AsteriskServer(models.Model):
    """An Asterisk whose res_parking.conf and features.conf parkweb writes."""

    name = models.CharField(max_length=63, unique=True, validators=[server_name_validator])
    ami_host = models.CharField("AMI host", max_length=253, validators=[host_validator])
    ami_port = models.PositiveIntegerField(
        "AMI port", default=5038, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    ami_username = models.CharField(
        "AMI username", max_length=64, validators=[ami_username_validator]
    )
    ami_secret_encrypted = models.TextField(editable=False, blank=True, default="")
    config_dir = models.CharField(
        "config directory",
        max_length=251,
        default="/etc/asterisk",
        validators=[config_dir_validator],
        help_text="Where parkweb writes res_parking.conf and features.conf for this Asterisk.",
    )
    parkcall = models.CharField(
        "one-touch park code",
        max_length=8,
        blank=True,
        validators=[parkcall_validator],
        help_text="DTMF code for parkcall in features.conf, like #72. Empty: off.",
    )
    default_lot = models.ForeignKey(
        "ParkingLot",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=(
            "The lot that stands for Asterisk's built-in 'default' lot (used when a channel "
            "names no lot). Empty: parkweb confines the built-in lot to a context no tenant "
            "can reach."
        ),
    )
    delivery = models.CharField(
        max_length=4,
        choices=[
            ("file", "write files into the config directory"),
            ("ami", "send them over AMI (UpdateConfig), for an Asterisk on another host"),
        ],
        default="file",
    )
    lot_budget = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most lots this server may hold. Empty: PARKWEB_MAX_LOTS_PER_SERVER.",
    )
    reserved_contexts = models.TextField(
        blank=True,
        validators=[ProhibitNullCharactersValidator()],
        help_text="Dialplan contexts of this server that no tenant may own, comma-separated.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def ami_secret(self) -> str:
        return crypto.decrypt(self.ami_secret_encrypted) if self.ami_secret_encrypted else ""

    @ami_secret.setter
    def ami_secret(self, value: str) -> None:
        self.ami_secret_encrypted = crypto.encrypt(value) if value else ""

    @property
    def reserved_context_names(self) -> list[str]:
        return [name.strip() for name in self.reserved_contexts.split(",") if name.strip()]

    def clean(self) -> None:
        from .validation import validate_server

        validate_server(self)


class DialplanContext(ConstraintFieldsMixin, ImmutableFieldsMixin, models.Model):
    """A dialplan context on one server, owned by exactly one tenant."""

    server = models.ForeignKey(AsteriskServer, on_delete=models.CASCADE, related_name="contexts")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="contexts")
    name = models.CharField(max_length=63)
    description = models.CharField(max_length=200, blank=True, validators=[safe_text_validator])

    tenant_path = "tenant"
    immutable_fields = ("server", "tenant")
    constraint_fields = {"context_taken": "name"}

    class Meta:
        ordering = ["server__name", "name"]
        constraints = [
            models.UniqueConstraint(
                "server",
                Lower("name"),
                name="context_name_unique_per_server",
                violation_error_code="context_taken",
                violation_error_message="This server already has a context of that name.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.server.name})" if self.server_id else self.name

    def clean(self) -> None:
        from .validation import validate_context

        validate_context(self)


class TenantPhones(ConstraintFieldsMixin, models.Model):
    """Where one tenant's phones are on one server: the context they are dialled in (one
    of the tenant's own) and, if staff wish, the extensions that are the tenant's.

    Retrieving a parked call rings an extension here and nowhere else: parkweb builds the
    channel (`Local/<extension>@<context>`) itself, so no tenant ever names a channel.
    """

    server = models.ForeignKey(AsteriskServer, on_delete=models.CASCADE, related_name="phones")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="phones")
    context = models.ForeignKey(
        DialplanContext,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The tenant's context in which dialling an extension rings that phone.",
    )
    extensions = models.CharField(
        max_length=200,
        blank=True,
        help_text="The tenant's extensions, as numbers and ranges like '201-249, 300'. "
        "Empty: any extension of digits in the context.",
    )

    tenant_path = "tenant"
    constraint_fields = {"phones_taken": "tenant"}

    class Meta:
        verbose_name = "tenant phones"
        verbose_name_plural = "tenant phones"
        constraints = [
            models.UniqueConstraint(
                fields=["server", "tenant"],
                name="one_phones_per_tenant",
                violation_error_code="phones_taken",
                violation_error_message="This tenant's phones on this server are set already: "
                "change those.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} phones in {self.context_id}"

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return rules.parse_extension_ranges(self.extensions)

    def clean(self) -> None:
        from .validation import validate_phones

        validate_phones(self)


FEATURE_PARTY_CHOICES = [(value, value) for value in rules.FEATURE_PARTIES]


def _party_field(verbose_name: str, default: str = "no") -> models.CharField:
    return models.CharField(
        verbose_name, max_length=6, default=default, choices=FEATURE_PARTY_CHOICES
    )


def lot_etag(pk, updated_at) -> str:
    digest = hashlib.sha256(f"{pk}:{updated_at.isoformat()}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def asterisk_lot_name(tenant_slug: str, lot_slug: str) -> str:
    return f"{tenant_slug}_{lot_slug}"


class ParkingLot(ConstraintFieldsMixin, ImmutableFieldsMixin, models.Model):
    """One res_parking lot. Field defaults are Asterisk's own."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="lots")
    server = models.ForeignKey(AsteriskServer, on_delete=models.PROTECT, related_name="lots")
    slug = models.CharField(
        max_length=31,
        validators=[
            RegexValidator(
                SLUG_RULE,
                "Use 2-31 characters: a lowercase letter, then lowercase letters, digits or '-'.",
                code="slug_format",
            )
        ],
        help_text="Identifier within the tenant; part of the Asterisk lot name. Cannot be changed.",
    )
    name = models.CharField("display name", max_length=200, validators=[safe_text_validator])
    enabled = models.BooleanField(default=True)

    parkext = models.CharField(
        "park extension",
        max_length=20,
        blank=True,
        help_text=(
            "Dial this to park a call (like 700). One-touch parking (#72) also needs it: "
            "Asterisk parks the call by transferring it here. Empty: no park extension."
        ),
    )
    parkext_exclusive = models.BooleanField(
        "park extension exclusive",
        default=False,
        help_text="Refuse to share the park extension with other lots in the context.",
    )
    parkpos_start = models.PositiveIntegerField("first space", default=701)
    parkpos_end = models.PositiveIntegerField("last space", default=750)
    context = models.ForeignKey(
        DialplanContext,
        on_delete=models.PROTECT,
        related_name="lots",
        help_text="Context where the park extension, the spaces and their hints are created.",
    )
    parkinghints = models.BooleanField(
        "BLF hints",
        default=False,
        help_text="Busy lamps: phones subscribe to the space numbers (701, 702, ...) from their "
        "own context, which includes parkweb's hints (park:<space>@<context>, in "
        "parkweb-hints-<context>); the dialplan snippet shows the lines.",
    )
    parkingtime = models.PositiveIntegerField(
        "parking time (s)",
        default=45,
        help_text="Seconds before a parked call comes back; 0 = never.",
    )
    parkedmusicclass = models.CharField("music on hold class", max_length=80, blank=True)
    comebacktoorigin = models.BooleanField(
        "come back to origin",
        default=True,
        help_text="On timeout, ring the phone that parked the call.",
    )
    comebackdialtime = models.PositiveIntegerField(
        "come back dial time (s)", default=30, help_text="How long the parker's phone rings."
    )
    comebackcontext = models.ForeignKey(
        DialplanContext,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="comeback_lots",
        verbose_name="come back context",
        help_text="Where timed-out calls go when they do not come back to origin.",
    )
    # parkweb's own timeout chain (lots.asterisk.comeback): generated dialplan, not
    # res_parking options. With it on, res_parking sends timed-out calls to the lot's
    # generated context (comebacktoorigin and comebackcontext above are not used).
    timeout_policy = models.CharField(
        "when the parking time runs out",
        max_length=8,
        default=rules.TIMEOUT_ASTERISK,
        choices=[
            (rules.TIMEOUT_ASTERISK, "as Asterisk does it (the come-back options above)"),
            (rules.TIMEOUT_CHAIN, "ring the parker back, then a fallback (parkweb's dialplan)"),
        ],
    )
    comeback_ring_parker = models.BooleanField(
        "ring the parker back first",
        default=True,
        help_text="Ring the phone that parked the call for the come-back dial time; "
        "if nobody answers, the fallback follows.",
    )
    comeback_cid_prefix = models.CharField(
        "caller ID prefix",
        max_length=8,
        blank=True,
        help_text="Put before the returning call's name with its space: 'P' shows "
        "'P701 Jane Doe' on the parker's phone. Empty: the name as it is.",
    )
    comeback_alert_info = models.CharField(
        "distinctive ring (Alert-Info)",
        max_length=100,
        blank=True,
        help_text="Sent to SIP phones with the returning call, like "
        "<urn:alert:service:call-waiting> or info=alert-internal.",
    )
    comeback_announcement = models.CharField(
        "announcement to the parker",
        max_length=120,
        blank=True,
        help_text="A sound played to the parker on answering, before connecting.",
    )
    fallback = models.CharField(
        "then, if nobody answers",
        max_length=11,
        default=rules.FALLBACK_HANGUP,
        choices=[
            (rules.FALLBACK_HANGUP, "hang up"),
            (rules.FALLBACK_DESTINATION, "send the call to an extension"),
            (rules.FALLBACK_REPARK, "park it again"),
        ],
    )
    fallback_context = models.ForeignKey(
        DialplanContext,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="fallback_lots",
        verbose_name="fallback context",
        help_text="The context of the fallback extension: one of the tenant's own.",
    )
    fallback_extension = models.CharField(
        "fallback extension",
        max_length=40,
        blank=True,
        help_text="Like 200 (the reception) or a ring group's or voicemail's extension.",
    )
    repark_limit = models.PositiveSmallIntegerField(
        "park again at most (times)",
        default=1,
        help_text="How many more times a call is parked again before it is hung up.",
    )
    reminder_seconds = models.PositiveIntegerField(
        "remind the parker every (s)",
        default=0,
        help_text="While the call stays parked, ring the parker's phone this often; "
        "answering picks the call up. 0: no reminders.",
    )
    reminder_announcement = models.CharField(
        "reminder announcement",
        max_length=120,
        blank=True,
        help_text="A sound played to the parker on answering a reminder.",
    )
    courtesytone = models.CharField("courtesy tone", max_length=120, blank=True)
    parkedplay = _party_field("play courtesy tone to", default="caller")
    parkedcalltransfers = _party_field("transfers after pickup")
    parkedcallreparking = _party_field("re-parking after pickup")
    parkedcallhangup = _party_field("hang-up after pickup")
    parkedcallrecording = _party_field("recording after pickup")
    findslot = models.CharField(
        "slot choice",
        max_length=5,
        default="first",
        choices=[("first", "first free space"), ("next", "next space after the last used")],
    )
    # Alerts (lots.services.alerts): shown on the board, mailed to members who opt in, and
    # sent to webhooks; each fires once per condition and clears when it passes.
    alert_free_spaces = models.PositiveIntegerField(
        "almost full at (free spaces)",
        default=0,
        help_text="Warn when this many spaces or fewer are free. 0: no warning.",
    )
    alert_wait_seconds = models.PositiveIntegerField(
        "waiting too long after (s)",
        default=0,
        help_text="Warn when a call has been parked longer than this. 0: no warning.",
    )
    full_since = models.DateTimeField(null=True, blank=True, editable=False)
    almost_full_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set by a deploy that Asterisk refused because of this lot: the lot is left out of the
    # server's config (other lots go live) until it is saved again or staff retry it.
    # Written only with update(), so a save of the lot's options never races with it.
    held_reason = models.TextField(
        "not live because",
        blank=True,
        editable=False,
        help_text="Why Asterisk refused this lot; empty while it is deployed normally.",
    )
    # The extension of the PBX's own dialplan it collided with, if that was the cause: the
    # reconcile brings the lot back once that extension is gone.
    held_extension = models.CharField(max_length=20, blank=True, editable=False)
    held_at = models.DateTimeField(null=True, blank=True, editable=False)

    tenant_path = "tenant"
    immutable_fields = ("tenant", "slug")
    constraint_fields = {"slug_taken": "slug"}

    class Meta:
        ordering = ["tenant__slug", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "slug"],
                name="lot_slug_unique_per_tenant",
                violation_error_code="slug_taken",
                violation_error_message="Your tenant already has a lot with this slug.",
            ),
            models.CheckConstraint(
                condition=models.Q(parkpos_start__gte=1)
                & models.Q(parkpos_start__lte=models.F("parkpos_end")),
                name="lot_parkpos_ordered",
            ),
        ]
        indexes = [models.Index(fields=["server", "enabled"])]

    def __str__(self) -> str:
        return self.name

    @property
    def asterisk_name(self) -> str:
        """The lot's section name in res_parking.conf (its `PARKINGLOT` value).

        Built from two immutable validated slugs; '_' cannot occur in either, so the name
        is unique per server and never equal to 'general' or 'default'.
        """
        return asterisk_lot_name(self.tenant.slug, self.slug)

    @property
    def parkpos(self) -> str:
        return f"{self.parkpos_start}-{self.parkpos_end}"

    @property
    def etag(self) -> str:
        """An HTTP entity tag: changes with every save of the lot."""
        return lot_etag(self.pk, self.updated_at)

    def clean(self) -> None:
        from .validation import validate_lot

        validate_lot(self)


class ServerDeployState(models.Model):
    """Where a server's config stands: what changed, what Asterisk confirmed.

    Kept apart from AsteriskServer so that saving a server's settings never overwrites
    what a deploy worker recorded at the same moment.
    """

    server = models.OneToOneField(
        AsteriskServer, on_delete=models.CASCADE, primary_key=True, related_name="deploy_state"
    )
    # Bumped in the same transaction as every change that can alter the server's config.
    config_version = models.PositiveBigIntegerField(default=0)
    # The version and the hash of the files Asterisk last confirmed running.
    deployed_version = models.PositiveBigIntegerField(default=0)
    deployed_hash = models.CharField(max_length=64, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    # parkweb's hints contexts that hold lamps on this server (lots.asterisk.hints).
    hint_contexts = models.JSONField(default=list, blank=True)
    # Lease for databases without advisory locks (SQLite in the embedded mode).
    lock_owner = models.CharField(max_length=64, blank=True)
    lock_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.server_id}: v{self.config_version}, live v{self.deployed_version}"


class Deployment(models.Model):
    """One attempt to make a server's config live, with everything needed to audit it."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        OK = "ok", "live"
        FAILED = "failed", "failed (Asterisk refused it; previous config restored)"
        ROLLED_BACK = "rolled_back", "rolled back (Asterisk ran something else)"

    class Trigger(models.TextChoices):
        USER = "user", "user"
        API_KEY = "api_key", "API key"
        SYSTEM = "system", "system"

    server = models.ForeignKey(AsteriskServer, on_delete=models.CASCADE, related_name="deployments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.SYSTEM)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    config_version = models.PositiveBigIntegerField(null=True, blank=True)
    config_hash = models.CharField(max_length=64, blank=True)
    res_parking_conf = models.TextField(blank=True)
    features_conf = models.TextField(blank=True)
    dialplan_conf = models.TextField(
        blank=True, help_text="parkweb_timeout.conf: the generated timeout chains."
    )
    diff = models.TextField(blank=True, help_text="Unified diff against the last good config.")
    changes = models.PositiveIntegerField(
        default=1, help_text="Changes carried: saves made while it was queued join it."
    )
    forced = models.BooleanField(
        default=False, help_text="Deploy even when the config equals the last confirmed one."
    )
    reloaded = models.BooleanField(default=False)
    reload_seconds = models.FloatField(
        null=True, blank=True, help_text="Time Asterisk took over this deploy's reloads."
    )
    worker = models.CharField(
        max_length=120, blank=True, help_text="The process that ran it last: host:pid."
    )
    replies = models.JSONField(default=list, blank=True, help_text="What Asterisk answered.")
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="While Asterisk is unreachable: when to try again."
    )
    set_aside = models.JSONField(
        default=list,
        blank=True,
        help_text="Lots Asterisk refused, left out so that the others went live: "
        "[{lot, tenant, reason}].",
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # At most one queued deployment per server: saves made meanwhile join it.
            models.UniqueConstraint(
                fields=["server"],
                condition=models.Q(status="pending"),
                name="one_pending_deployment_per_server",
            )
        ]
        indexes = [models.Index(fields=["server", "status"])]

    def __str__(self) -> str:
        return f"deployment {self.pk} of {self.server_id}: {self.status}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ParkedCall(models.Model):
    """One parking episode: from the park to its end (retrieved, timed out, ...)."""

    class Outcome(models.TextChoices):
        RETRIEVED = "retrieved", "retrieved"
        TIMED_OUT = "timed_out", "timed out"
        ABANDONED = "abandoned", "abandoned (caller hung up)"
        SWAPPED = "swapped", "swapped"
        LOST = "lost", "lost (ended while parkweb was disconnected)"

    class AfterTimeout(models.TextChoices):
        """What the lot's timeout chain did with a timed-out call (its dialplan says so
        in a UserEvent, lots.asterisk.comeback)."""

        ANSWERED = "answered", "answered by the parker"
        FALLBACK = "fallback", "sent to the fallback"
        REPARKED = "reparked", "parked again"
        HUNG_UP = "hung_up", "hung up"

    server = models.ForeignKey(AsteriskServer, on_delete=models.CASCADE, related_name="+")
    # Null for a lot parkweb does not manage: its events are kept, never dropped.
    lot = models.ForeignKey(
        ParkingLot, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="parked_calls"
    )
    lot_name = models.CharField(max_length=80, help_text="The lot's name in Asterisk.")
    space = models.PositiveIntegerField(null=True, blank=True)
    parkee_channel = models.CharField(max_length=200)
    uniqueid = models.CharField(max_length=64)
    linkedid = models.CharField(max_length=64, blank=True)
    caller_id_num = models.CharField(max_length=80, blank=True)
    caller_id_name = models.CharField(max_length=80, blank=True)
    connected_line_num = models.CharField(max_length=80, blank=True)
    connected_line_name = models.CharField(max_length=80, blank=True)
    parker_dial_string = models.CharField(max_length=200, blank=True)
    parked_at = models.DateTimeField()
    timeout_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    after_timeout = models.CharField(max_length=10, choices=AfterTimeout.choices, blank=True)
    reminders_sent = models.PositiveIntegerField(default=0)
    # When the call passed its lot's alert_wait_seconds (the alert fired, once).
    waiting_long_at = models.DateTimeField(null=True, blank=True)
    retriever_channel = models.CharField(max_length=200, blank=True)
    retriever_caller_id_num = models.CharField(max_length=80, blank=True)
    retriever_caller_id_name = models.CharField(max_length=80, blank=True)
    # The last retrieve parkweb was asked for: the phone rung (an extension of the
    # tenant's, or a device staff named), the unique id parkweb gave that channel, and who
    # asked. History names them as the retriever.
    retrieve_target = models.CharField(max_length=100, blank=True)
    retrieve_channel_id = models.CharField(max_length=64, blank=True)
    retrieve_requested_by = models.CharField(max_length=150, blank=True)
    retrieve_requested_at = models.DateTimeField(null=True, blank=True)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-parked_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "uniqueid"],
                condition=models.Q(ended_at__isnull=True),
                name="one_open_episode_per_channel",
            )
        ]
        indexes = [
            models.Index(fields=["server", "ended_at"]),
            # A lot's calls parked now (its alerts count them at every change).
            models.Index(fields=["lot", "ended_at"]),
            models.Index(fields=["tenant", "-parked_at"]),
            models.Index(fields=["ended_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.lot_name} {self.space}: {self.caller_id_num or self.parkee_channel}"

    @property
    def active(self) -> bool:
        return self.ended_at is None


class ServerHealth(models.Model):
    """The live link to one Asterisk, as its watcher sees it."""

    server = models.OneToOneField(
        AsteriskServer, on_delete=models.CASCADE, primary_key=True, related_name="health"
    )
    connected = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    asterisk_version = models.CharField(max_length=120, blank=True)
    # False from each login until the state has been rebuilt from Asterisk.
    synced = models.BooleanField(default=False)
    watcher = models.CharField(max_length=120, blank=True)
    error = models.CharField(max_length=300, blank=True)
    # Written by the watcher at most once a second (lots.metrics.EventStats): events
    # applied since the server was added, and how long each took from its arrival on the
    # AMI connection to its commit, as counts per bucket of lots.metrics.LAG_BUCKETS.
    events_applied = models.PositiveBigIntegerField(default=0)
    event_lag_counts = models.JSONField(default=list, blank=True)
    event_lag_sum = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.server_id}: {'connected' if self.connected else 'disconnected'}"


class EventProblem(models.Model):
    """An AMI event (or a resynced call) that could not be applied. It is logged and kept
    here against its call and tenant; the watcher goes on with every other event."""

    created_at = models.DateTimeField(auto_now_add=True)
    server = models.ForeignKey(AsteriskServer, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    uniqueid = models.CharField(max_length=64, blank=True)
    lot_name = models.CharField(max_length=80, blank=True)
    kind = models.CharField(max_length=20)
    error = models.CharField(max_length=300)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.uniqueid}: {self.error[:60]}"


class Webhook(models.Model):
    """A tenant's endpoint for parking events (lots.webhooks): events are delivered to it,
    signed with its secret, in order, by Celery workers."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField("URL", max_length=500)
    # Event types wanted (lots.webhooks.EVENT_TYPES); empty: all of them.
    events = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=200, blank=True, validators=[safe_text_validator])
    secret_encrypted = models.TextField(editable=False)
    # Staff only: deliver to addresses of private networks (a receiver inside the PBX's
    # own network). Never settable by a tenant.
    allow_private = models.BooleanField(
        "allow private addresses",
        default=False,
        help_text="Staff only: let this endpoint's host resolve to a private, loopback or "
        "link-local address.",
    )
    active = models.BooleanField(default=True)
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    paused_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant__slug", "pk"]
        indexes = [models.Index(fields=["tenant", "active"])]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.url}"

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_encrypted = crypto.encrypt(value)

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class WebhookEvent(models.Model):
    """An event recorded for its tenant's endpoints, in the transaction that made it (the
    watcher's, for a call's change): one row whatever the number of endpoints, so that
    the watcher's commit, which the boards' pushes wait for, carries one small row, not a
    delivery row and its indexes per endpoint. The delivery workers fan it out into
    WebhookDelivery rows, one per endpoint, and delete it
    (lots.services.webhooks.webhook_events_fan_out) before they deliver."""

    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    # The delivery's body: checked as JSON as it is recorded, so that a body the database
    # would refuse fails its own event in the watcher, never a fan-out of every tenant's.
    body = models.JSONField()
    endpoints = models.JSONField()  # the ids of the endpoints that want it

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> {self.endpoints}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: delivered in order of `occurred_at`, retried with
    backoff until PARKWEB_WEBHOOK_RETRY_SECONDS have passed."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    # No index of its own: the log's and the queue's indexes, and the one-per-event
    # constraint, all lead with it.
    webhook = models.ForeignKey(
        Webhook, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    response_prefix = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    tenant_path = "webhook__tenant"

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event_id"], name="one_delivery_per_event")
        ]
        indexes = [
            # The log, newest first (the webhooks page, the API's list, the purge).
            models.Index(fields=["webhook", "occurred_at", "id"], name="webhook_delivery_log"),
            # The queue: only the deliveries still to make, whatever the log holds. Every
            # delivery batch asks it for its endpoints' heads and for what is due.
            models.Index(
                fields=["webhook", "occurred_at", "id"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_queue",
            ),
            # The deliveries given up, newest first (the admin's "failed" filter): few
            # rows, written only as a delivery is given up, never on the delivery path.
            models.Index(
                fields=["-id"], condition=models.Q(status="failed"), name="webhook_delivery_failed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> {self.webhook_id}"

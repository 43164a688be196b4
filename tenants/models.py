"""Who may do what: tenants, their members and their API keys."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.deconstruct import deconstructible

SLUG_RULE = r"^[a-z][a-z0-9-]{1,30}\Z"
slug_validator = RegexValidator(
    SLUG_RULE,
    "Use 2-31 characters: a lowercase letter, then lowercase letters, digits or '-'.",
    code="slug_format",
)

SAFE_TEXT_MESSAGE = (
    "Use text on one line: no control characters (like NUL, tab or a line break) and no "
    "Unicode line or paragraph separators."
)
# Any C0 or C1 control (NUL, tab, CR, LF, VT, FF, NEL U+0085, ...), and U+2028/U+2029.
UNSAFE_TEXT_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@deconstructible
class SafeTextValidator:
    """Free text (names, descriptions) is one line of text: it reaches pages, logs and
    exports, so nothing in it may break a line or hide from view."""

    message = SAFE_TEXT_MESSAGE
    code = "unsafe_text"

    def __call__(self, value) -> None:
        if UNSAFE_TEXT_RE.search(str(value)):
            raise ValidationError(self.message, code=self.code)

    def __eq__(self, other) -> bool:
        return isinstance(other, SafeTextValidator)

    def __hash__(self) -> int:
        return hash(type(self))


safe_text_validator = SafeTextValidator()


# A phone's extension: digits only, never a dialplan pattern, a context or a channel.
extension_validator = RegexValidator(
    r"^[0-9]{1,20}\Z",
    "Give an extension of 1-20 digits, like 201.",
    code="extension_format",
)


class ConstraintFieldsMixin:
    """Unique constraints told at the field a person would change: each constraint has a
    `violation_error_code`, and `constraint_fields` maps that code to the field."""

    constraint_fields: dict[str, str] = {}

    def validate_constraints(self, exclude=None) -> None:
        try:
            super().validate_constraints(exclude)
        except ValidationError as exc:
            errors: dict[str, list] = {}
            for field, field_errors in exc.update_error_dict({}).items():
                for error in field_errors:
                    errors.setdefault(self.constraint_fields.get(error.code, field), []).append(
                        error
                    )
            raise ValidationError(errors) from exc


class ImmutableFieldsMixin:
    """Refuses changes to the fields named in `immutable_fields` once the row exists."""

    immutable_fields: tuple[str, ...] = ()

    def clean_immutable_fields(self) -> None:
        if self.pk is None or not self.immutable_fields:
            return
        stored = type(self).objects.filter(pk=self.pk).values(*self.immutable_fields).first()
        if stored is None:
            return
        errors = {
            name: ValidationError("This cannot be changed after creation.", code="immutable")
            for name in self.immutable_fields
            if stored[name] != getattr(self, self._meta.get_field(name).attname)
        }
        if errors:
            raise ValidationError(errors)


class Tenant(ImmutableFieldsMixin, models.Model):
    slug = models.CharField(
        max_length=31,
        unique=True,
        validators=[slug_validator],
        help_text="Short identifier, used in URLs and in Asterisk lot names. Cannot be changed.",
    )
    name = models.CharField(max_length=200, validators=[safe_text_validator])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    immutable_fields = ("slug",)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def clean(self) -> None:
        self.clean_immutable_fields()


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    extension = models.CharField(
        "own extension",
        max_length=20,
        blank=True,
        validators=[extension_validator],
        help_text="The member's own phone, rung by Retrieve: one of the tenant's extensions.",
    )
    alert_mail = models.BooleanField(
        "mail me alerts",
        default=False,
        help_text="A lot almost full or full, a call waiting too long: mailed to the member.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    tenant_path = "tenant"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_tenant")
        ]
        ordering = ["tenant__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant.slug} ({self.role})"


class ApiKey(models.Model):
    """A tenant's key for the REST API: one tenant, one role, stored as a hash only.

    The full key (`pk_<prefix>_<secret>`) is shown once, when it is created.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, validators=[safe_text_validator])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    prefix = models.CharField(max_length=12, unique=True)
    digest = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant.slug}, {self.role})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.tenant.active


class Invitation(models.Model):
    """An invitation to join a tenant with a role, by e-mail address or by username.

    It is answered the same whether or not such a person exists, so inviting reveals no
    username. The link carries a one-time token, stored as a hash; accepting it (after
    logging in, or setting a password for a new account) makes the membership.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(blank=True)
    username = models.CharField(max_length=150, blank=True, validators=[safe_text_validator])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email or self.username} to {self.tenant_id} ({self.role})"

    @property
    def invitee(self) -> str:
        return self.email or self.username

    @property
    def pending(self) -> bool:
        from django.utils import timezone

        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AuditEntry(models.Model):
    """Who did what: every write a service makes, and every action on a live call."""

    created_at = models.DateTimeField(auto_now_add=True)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="audit"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor = models.CharField(
        max_length=150, blank=True, help_text="The person, API key or parkweb itself."
    )
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200)
    detail = models.JSONField(default=dict, blank=True)
    ok = models.BooleanField(default=True)

    tenant_path = "tenant"

    class Meta:
        db_table = "lots_auditentry"  # where it was made, before it moved to this app
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target}"

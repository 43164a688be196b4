"""Who may do what: tenants, their members and their API keys."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from django.db import models

SLUG_RULE = r"^[a-z][a-z0-9-]{1,30}\Z"
slug_validator = RegexValidator(
    SLUG_RULE,
    "Use 2-31 characters: a lowercase letter, then lowercase letters, digits or '-'.",
    code="slug_format",
)

# A phone's extension: digits only, never a dialplan pattern, a context or a channel.
extension_validator = RegexValidator(
    r"^[0-9]{1,20}\Z",
    "Give an extension of 1-20 digits, like 201.",
    code="extension_format",
)


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
    name = models.CharField(max_length=200, validators=[ProhibitNullCharactersValidator()])
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
    name = models.CharField(max_length=100, validators=[ProhibitNullCharactersValidator()])
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

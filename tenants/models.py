"""Who may do what: tenants and their members."""

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_tenant")
        ]
        ordering = ["tenant__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant.slug} ({self.role})"

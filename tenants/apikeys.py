"""Tenant API keys: made, checked and revoked here; only their hashes are stored."""

import hashlib
import hmac
import re
import secrets

from django.utils import timezone

from .models import ApiKey, Role, Tenant

KEY_PREFIX = "pk_"
PREFIX_RE = re.compile(r"[0-9a-f]{12}")


class ApiKeyPrincipal:
    """Who a request is when an API key authenticated it: no person, one tenant, one role."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None

    def __init__(self, key: ApiKey):
        self.key = key

    def get_username(self) -> str:
        return f"api-key {self.key.prefix} ({self.key.name})"


def _digest(secret: str) -> str:
    # Keys are 256 random bits: a plain SHA-256 is enough, no slow hash needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(tenant: Tenant, *, name: str, role: str, created_by=None) -> tuple[ApiKey, str]:
    """A new key and its full text, which is shown once and never again."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        tenant=tenant,
        name=name,
        role=role,
        prefix=prefix,
        digest=_digest(secret),
        created_by=created_by,
    )
    key.full_clean()
    key.save()
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_key_check(text: str) -> ApiKey | None:
    """The active key that `text` is, or None."""
    if not text.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = text[len(KEY_PREFIX) :].partition("_")
    if not PREFIX_RE.fullmatch(prefix):  # nothing else is ever looked up
        return None
    key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if key is None or not key.active or not hmac.compare_digest(key.digest, _digest(secret)):
        return None
    now = timezone.now()
    # Recorded to the minute: a write on every request would cost more than it tells.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def api_key_revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])

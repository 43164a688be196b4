"""Tenant API keys: checked here (made and revoked by tenants.services); only their
hashes are stored."""

import hashlib
import hmac
import re

from django.utils import timezone

from .models import ApiKey

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


def digest(secret: str) -> str:
    # Keys are 256 random bits: a plain SHA-256 is enough, no slow hash needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_check(text: str) -> ApiKey | None:
    """The active key that `text` is, or None."""
    if not text.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = text[len(KEY_PREFIX) :].partition("_")
    if not PREFIX_RE.fullmatch(prefix):  # nothing else is ever looked up
        return None
    key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if key is None or not key.active or not hmac.compare_digest(key.digest, digest(secret)):
        return None
    now = timezone.now()
    # Recorded to the minute: a write on every request would cost more than it tells.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key

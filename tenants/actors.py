"""Who does something: a person, a tenant's API key, or parkweb itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .apikeys import ApiKeyPrincipal


@dataclass(frozen=True)
class Actor:
    """Passed to every service: recorded on the audit entry and on the deployment a
    change triggers. `SYSTEM` (no person, no key) is parkweb's own doing."""

    user: Any = None
    api_key: Any = None

    @classmethod
    def of(cls, user) -> Actor:
        """From a request's user: a person, an ApiKeyPrincipal, or anonymous (SYSTEM)."""
        if isinstance(user, ApiKeyPrincipal):
            return cls(api_key=user.key)
        if user is None or not getattr(user, "is_authenticated", False):
            return SYSTEM
        return cls(user=user)

    @property
    def trigger(self) -> str:
        """As Deployment.Trigger has it: user, api_key or system."""
        if self.user is not None:
            return "user"
        return "api_key" if self.api_key is not None else "system"

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.get_username()
        if self.api_key is not None:
            return f"api-key {self.api_key.prefix} ({self.api_key.name})"
        return "parkweb"

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and self.user.is_staff)

    @property
    def principal(self):
        """What tenants.scoping asks about: the person, or the key as a principal."""
        if self.api_key is not None:
            return ApiKeyPrincipal(self.api_key)
        return self.user


SYSTEM = Actor()

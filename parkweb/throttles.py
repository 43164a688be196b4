"""Rate limits built on Django REST framework's throttles (their cache, rates and client
addresses), for the API and for the pages that must not be guessed at."""

from __future__ import annotations

from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    """Requests per caller: an API key, a staff token's user, or a logged-in user."""

    scope = "caller"

    def get_cache_key(self, request, view) -> str | None:
        user = request.user
        key = getattr(user, "key", None)  # an ApiKeyPrincipal
        if key is not None:
            ident = f"key-{key.prefix}"
        elif getattr(user, "is_authenticated", False):
            ident = f"user-{user.pk}"
        else:
            return None  # AnonRateThrottle counts those, by address
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AttemptThrottle(SimpleRateThrottle):
    """Counts only failed attempts (a wrong API key, a password-reset request), per address
    or per `ident`; once there are too many, every attempt is refused until they age out."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _load(self, request, ident: str | None) -> None:
        self.key = (
            self.cache_format % {"scope": self.scope, "ident": ident}
            if ident is not None
            else self.get_cache_key(request, None)
        )
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()

    def check(self, request, ident: str | None = None) -> None:
        """Raise Throttled (429) while there have been too many attempts."""
        self._load(request, ident)
        if len(self.history) >= self.num_requests:
            raise Throttled(wait=self.wait())

    def count(self, request, ident: str | None = None) -> None:
        self._load(request, ident)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)

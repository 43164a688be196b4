"""Who is calling the API: a tenant API key, a staff token, or a browser session."""

from __future__ import annotations

import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import (
    BaseAuthentication,
    TokenAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed

from parkweb.throttles import AttemptThrottle
from tenants.apikeys import ApiKeyPrincipal, api_key_check


def failures() -> AttemptThrottle:
    """Wrong keys and tokens, counted per address: past the rate, every try is a 429."""
    return AttemptThrottle("auth_failures")


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key pk_<prefix>_<secret>`."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = get_authorization_header(request).decode("latin-1")
        if not header.startswith(f"{self.keyword} "):
            return None
        throttle = failures()
        throttle.check(request)
        key = api_key_check(header[len(self.keyword) + 1 :].strip())
        if key is None:
            throttle.count(request)
            raise AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return self.keyword


class StaffTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, for staff provisioning systems only."""

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None
        throttle = failures()
        throttle.check(request)
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.count(request)
            raise

    def authenticate_credentials(self, key):
        if not re.fullmatch(r"[0-9a-f]{40}", key):  # never look up anything else
            raise AuthenticationFailed("Invalid token.")
        user, token = super().authenticate_credentials(key)
        if not user.is_staff:
            raise AuthenticationFailed("Tokens are for staff provisioning systems.")
        return user, token


def is_staff_caller(request) -> bool:
    user = request.user
    return bool(getattr(user, "is_staff", False)) and not isinstance(user, ApiKeyPrincipal)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "lots.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key pk_<prefix>_<secret>`: a tenant's key.",
        }

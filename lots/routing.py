"""Websocket routes, and the stack every websocket passes through: this site's own origins
only, then the Django session, then the route."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path

from .consumers import ParkingConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant>/parking/", ParkingConsumer.as_asgi()),
]

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin like https://parkweb.example.com:8443."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


class SameOriginValidator:
    """Open a websocket only for a page of this very site: the Origin's scheme, host and
    port must be those the request came to (a Host that ALLOWED_HOSTS allows), or one of
    CSRF_TRUSTED_ORIGINS. A host's other ports are other sites."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not self.allowed(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)

    @staticmethod
    def allowed(scope) -> bool:
        headers = dict(scope.get("headers", []))
        origin = origin_of(headers.get(b"origin", b"").decode("latin-1"))
        if origin is None:
            return False
        trusted = {origin_of(o) for o in settings.CSRF_TRUSTED_ORIGINS}
        if origin in trusted:
            return True
        host = headers.get(b"host", b"").decode("latin-1")
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return False
        secure = scope.get("scheme") == "wss"
        proxy = settings.SECURE_PROXY_SSL_HEADER
        if proxy:  # behind a TLS-terminating proxy that says so
            name, value = proxy
            wanted = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
            secure = secure or headers.get(wanted, b"").decode("latin-1") == value
        return origin == origin_of(f"{'https' if secure else 'http'}://{host}")


websocket_application = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))

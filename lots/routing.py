"""Websocket routes, and the stack every websocket passes through: own origins only,
then the Django session, then the route."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import ParkingConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant>/parking/", ParkingConsumer.as_asgi()),
]

websocket_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
)

"""ASGI entry point: HTTP and the live parking websockets.

Websockets are authenticated by the Django session and accepted only from this site's
own origins (ALLOWED_HOSTS). In the embedded mode (no REDIS_URL) the AMI watchers run in
this process.
"""

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
django_asgi_app = get_asgi_application()

from lots.routing import websocket_application  # noqa: E402  (needs Django set up)
from lots.supervisor import start_embedded_watchers  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application,
    }
)

start_embedded_watchers()

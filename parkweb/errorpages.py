"""Django's own error answers (an unknown address, a request it refuses before any view,
a crash outside the API's views): JSON under /api/, the usual pages elsewhere."""

from __future__ import annotations

import logging
import uuid

from django.http import JsonResponse
from django.views import defaults

log = logging.getLogger("parkweb.api")


def _api(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception):
    if _api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _api(request):
        return JsonResponse({"detail": "You do not have permission to do this."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _api(request):
        request_id = uuid.uuid4().hex[:16]
        log.error("request %s: %s %s failed", request_id, request.method, request.path)
        return JsonResponse(
            {
                "detail": "Something went wrong on our side; nothing you sent was wrong.",
                "request_id": request_id,
            },
            status=500,
        )
    return defaults.server_error(request)

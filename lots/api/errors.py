"""One answer shape for every error the API gives: JSON, with messages at their fields.

Domain errors (parkweb.errors) carry their own status; Django's own validation and
permission errors are mapped like them; a unique constraint names its field. Anything
unexpected is a JSON 500 with a request id that is also in the log, never an HTML page.
"""

from __future__ import annotations

import logging
import uuid

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from parkweb.errors import NON_FIELD, DomainError, Forbidden, Invalid, NotFound

log = logging.getLogger("parkweb.api")

NON_FIELD_KEY = "non_field_errors"  # DRF's name for messages about the whole request


MESSAGE_MAX = 300  # a message longer than this repeated too much of what was sent


def _bounded(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[:MESSAGE_MAX] + "..."


def error_body(error: DomainError) -> dict[str, list[str]]:
    return {
        (NON_FIELD_KEY if field == NON_FIELD else field): [_bounded(m) for m in messages]
        for field, messages in error.errors.items()
    }


def as_domain_error(exc: Exception) -> DomainError | None:
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, DjangoValidationError):
        return Invalid.of(exc)
    if isinstance(exc, DjangoPermissionDenied):
        return Forbidden(str(exc) or "You may not do this.")
    if isinstance(exc, Http404):
        return NotFound("Not found.")
    return None


def exception_handler(exc: Exception, context: dict) -> Response:
    domain = as_domain_error(exc)
    if domain is not None:
        body = error_body(domain)
        if domain.status != status.HTTP_400_BAD_REQUEST and list(body) == [NON_FIELD_KEY]:
            body = {"detail": " ".join(body[NON_FIELD_KEY])}
        return Response(body, status=domain.status)
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    request_id = uuid.uuid4().hex[:16]
    request = context.get("request")
    log.exception(
        "request %s: %s %s failed",
        request_id,
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
    )
    return Response(
        {
            "detail": "Something went wrong on our side; nothing you sent was wrong.",
            "request_id": request_id,
        },
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )

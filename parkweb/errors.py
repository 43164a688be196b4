"""The one kind of error every service raises, with what went wrong field by field.

Services refuse with a `DomainError` subclass; each door turns it into its own answer: a
form puts the messages next to its fields, the API answers with the status and the same
messages (see `lots.api.errors`), a management command prints them. The messages are the
same whichever door a request came through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

NON_FIELD = NON_FIELD_ERRORS  # "__all__": a message about the whole request


class DomainError(Exception):
    status = 400
    default_code = "invalid"

    def __init__(
        self,
        errors: str | Mapping[str, str | Iterable[str]],
        code: str | None = None,
        codes: Mapping[str, list[str]] | None = None,
    ) -> None:
        if isinstance(errors, str):
            errors = {NON_FIELD: errors}
        self.errors: dict[str, list[str]] = {
            field: [messages] if isinstance(messages, str) else list(messages)
            for field, messages in errors.items()
        }
        self.code = code or self.default_code
        # The rule behind each message, field by field (like "spaces_overlap").
        self.codes: dict[str, list[str]] = dict(codes or {}) or {
            field: [self.code] * len(messages) for field, messages in self.errors.items()
        }
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """Every message in one line, fields named (for logs and command lines)."""
        return "; ".join(
            " ".join(messages) if field == NON_FIELD else f"{field}: {' '.join(messages)}"
            for field, messages in self.errors.items()
        )

    @classmethod
    def of(cls, exc: ValidationError) -> DomainError:
        """A Django ValidationError (a model's own checks) as a domain error."""
        if hasattr(exc, "error_dict"):
            return cls(
                {
                    field: [message for error in errors for message in error.messages]
                    for field, errors in exc.error_dict.items()
                },
                codes={
                    field: [error.code or "invalid" for error in errors]
                    for field, errors in exc.error_dict.items()
                },
            )
        return cls({NON_FIELD: exc.messages})


class Invalid(DomainError):
    """The request breaks a rule: 400, with each message at its field."""


class Forbidden(DomainError):
    status = 403
    default_code = "forbidden"


class NotFound(DomainError):
    status = 404
    default_code = "not_found"


class Conflict(DomainError):
    """The request met a state that does not allow it now (another call in the space)."""

    status = 409
    default_code = "conflict"


class PreconditionFailed(DomainError):
    """The object changed since the caller read it (If-Match)."""

    status = 412
    default_code = "precondition_failed"


class Unavailable(DomainError):
    """Asterisk could not be reached or did not answer; nothing was done."""

    status = 503
    default_code = "unavailable"


def checked(full_clean: Callable[[], None]) -> None:
    """Run a model's own checks; its ValidationError becomes the domain's Invalid."""
    try:
        full_clean()
    except ValidationError as exc:
        raise Invalid.of(exc) from exc

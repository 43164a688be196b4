"""`manage.py check --deploy`: settings left as deploy/parkweb.env's placeholders, or keys
that cannot work, are errors before anything runs with them."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

PLACEHOLDER = "change-me"


@register(Tags.security, deploy=True)
def production_settings(app_configs, **kwargs):
    errors = []
    values = {
        "SECRET_KEY": settings.SECRET_KEY,
        "PARKWEB_METRICS_TOKEN": settings.PARKWEB_METRICS_TOKEN,
        **{
            f"PARKWEB_ENCRYPTION_KEYS[{i}]": key
            for i, key in enumerate(settings.PARKWEB_ENCRYPTION_KEYS)
        },
    }
    for name, value in values.items():
        if value.startswith(PLACEHOLDER):
            errors.append(
                Error(
                    f"{name} is still the example's placeholder.",
                    hint="Generate one as deploy/parkweb.env says.",
                    id="parkweb.E001",
                )
            )
    from cryptography.fernet import Fernet

    for i, key in enumerate(settings.PARKWEB_ENCRYPTION_KEYS):
        if key.startswith(PLACEHOLDER):
            continue
        try:
            Fernet(key)
        except ValueError:
            errors.append(
                Error(
                    f"PARKWEB_ENCRYPTION_KEYS[{i}] is not a Fernet key (32 bytes, url-safe "
                    "base64).",
                    id="parkweb.E002",
                )
            )
    token = settings.PARKWEB_METRICS_TOKEN
    if token and not token.startswith(PLACEHOLDER) and len(token) < 24:
        errors.append(
            Error("PARKWEB_METRICS_TOKEN must be at least 24 characters.", id="parkweb.E003")
        )
    return errors


RETENTION = ("PARKWEB_HISTORY_DAYS", "PARKWEB_WEBHOOK_LOG_DAYS")


@register("parkweb")
def retention_settings(app_configs, **kwargs):
    """History kept for less than a day would be purged as soon as it is written."""
    return [
        Error(f"{name} must be a whole number of days, at least 1.", id="parkweb.E004")
        for name in RETENTION
        if getattr(settings, name) < 1
    ]


DELIVERY_LIMITS = {  # name: (the least it may be, what it is)
    "PARKWEB_WEBHOOK_THREADS": (1, "a whole number, at least 1"),
    "PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT": (1, "a whole number, at least 1"),
    "PARKWEB_WEBHOOK_PATIENCE": (0.01, "a number of seconds, at least 0.01"),
    "PARKWEB_WEBHOOK_SEND_BUDGET": (0.01, "a number of seconds, at least 0.01"),
}


@register("parkweb")
def delivery_limits(app_configs, **kwargs):
    """Webhook deliveries' limits that would stop them (no thread, a round that never
    waits for a send, a run that sends nothing)."""
    return [
        Error(f"{name} must be {rule}.", id="parkweb.E005")
        for name, (least, rule) in DELIVERY_LIMITS.items()
        if getattr(settings, name) < least
    ]

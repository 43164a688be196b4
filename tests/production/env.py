"""deploy/parkweb.env as an operator fills it in: the settings the production tests run
parkweb with."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings

METRICS_TOKEN = "a-metrics-token-long-enough-0123"


def production_env(**overrides: str) -> dict[str, str]:
    """The example settings file's values, its placeholders filled in, then `overrides`."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    example = Path(settings.BASE_DIR) / "deploy" / "parkweb.env"
    for line in example.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update(
        SECRET_KEY="production-" + "s" * 60,
        PARKWEB_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        PARKWEB_METRICS_TOKEN=METRICS_TOKEN,
    )
    env.update(overrides)
    return env

"""The systemd units in deploy/ agree with the settings file they read."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from django.conf import settings

from .env import production_env

UNITS = Path(settings.BASE_DIR) / "deploy" / "systemd"


def unit(name: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", (UNITS / name).read_text(), re.MULTILINE))


def test_the_delivery_workers_serve_the_queue_deliveries_go_to_and_yield_the_cpu():
    webhooks = unit("parkweb-webhooks.service")
    args = shlex.split(webhooks["ExecStart"])
    assert args[0].endswith("/celery") and args[args.index("-Q") + 1] == "webhooks"
    assert production_env()["PARKWEB_WEBHOOK_QUEUE"] == "webhooks"
    assert webhooks["CPUSchedulingPolicy"] == "idle"
    # The policy ranks the unit's tasks only among themselves: its cgroup yields too.
    assert webhooks["CPUWeight"] == "idle"
    assert webhooks["EnvironmentFile"] == unit("parkweb-worker.service")["EnvironmentFile"]
    # The watchers' workers serve the default queue only: a slow receiver never holds a
    # deploy back.
    assert "-Q" not in shlex.split(unit("parkweb-worker.service")["ExecStart"])

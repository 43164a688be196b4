"""`manage.py demo_calls` makes calls that park in the demo lots of the sandbox."""

import pytest
from django.core.management import call_command

from lots.models import ParkedCall, ServerHealth
from lots.supervisor import LocalLeases, Supervisor

from .test_deploy import wait_for

pytestmark = pytest.mark.integration


def test_demo_calls_park_in_the_demo_lots(transactional_db, asterisk):
    asterisk.hangup_all()
    call_command(
        "seed_demo",
        "--ami-port",
        str(asterisk.ami_port),
        "--ami-secret",
        asterisk.ami_secret,
        "--config-dir",
        str(asterisk.config_dir),
    )
    supervisor = Supervisor(LocalLeases(), name="demo-test").start()
    try:
        wait_for(
            lambda: ServerHealth.objects.filter(synced=True).exists(),
            timeout=20,
            what="the watcher",
        )
        call_command("demo_calls", "--interval", "0.5", "--calls", "3")
        wait_for(
            lambda: ParkedCall.objects.filter(lot__isnull=False).count() >= 3,
            what="three demo calls parked in managed lots",
        )
    finally:
        supervisor.stop()
        asterisk.hangup_all()

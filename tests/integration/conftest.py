"""A real Asterisk for the whole session: started once, stopped only if we started it."""

import os
from pathlib import Path

import pytest

from .sandbox import Sandbox, sandbox

DIALPLAN = Path(__file__).parent / "extensions_local.conf"


@pytest.fixture(scope="session")
def asterisk():
    name = os.environ.get("PARKWEB_TEST_SANDBOX", "test")
    port = os.environ.get("PARKWEB_TEST_AMI_PORT", "5039")
    was_running = sandbox("status", "--name", name, check=False).returncode == 0
    started = sandbox("start", "--name", name, "--ami-port", port, check=False)
    if started.returncode != 0:
        pytest.fail(
            "The Asterisk sandbox did not start (integration tests need root and "
            f"`scripts/asterisk-sandbox build`):\n{started.stderr}"
        )
    box = Sandbox.from_env_output(started.stdout)
    box.write("extensions_local.conf", DIALPLAN.read_text())
    box.cli("dialplan reload")
    yield box
    if not was_running:
        sandbox("stop", "--name", name, check=False)

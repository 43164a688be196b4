import os
from pathlib import Path

import pytest

from tests.factories import make_context, make_server, make_tenant
from tests.integration.sandbox import Sandbox, sandbox


@pytest.fixture
def server(db):
    return make_server("pbx1")


@pytest.fixture
def acme(db):
    return make_tenant("acme", name="Acme")


@pytest.fixture
def globex(db):
    return make_tenant("globex", name="Globex")


@pytest.fixture
def acme_ctx(server, acme):
    return make_context(server, acme, "acme-parking")


@pytest.fixture
def globex_ctx(server, globex):
    return make_context(server, globex, "globex-parking")


@pytest.fixture(autouse=True, scope="session")
def tasks_run_inline():
    """Tasks run in the test's own process unless a test starts real workers."""
    from parkweb.celery import app

    app.conf.update(task_always_eager=True, task_eager_propagates=True)


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Rate limits count in the cache: each test starts with none spent."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests make many users; the production hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


DIALPLAN = Path(__file__).parent / "integration" / "extensions_local.conf"


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

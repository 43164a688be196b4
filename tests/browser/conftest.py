"""A whole parkweb for the browser tests: daphne serving the pages, a real Celery worker
(deploys and the AMI watcher) and the sandbox Asterisk, all on one Redis."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from playwright.sync_api import sync_playwright

from lots.models import ServerHealth
from tenants.models import Membership, Role
from tests.factories import make_context, make_phones, make_server, make_tenant
from tests.integration.test_deploy import wait_for
from tests.integration.workers import celery_workers, isolated_redis_url, shared_test_database_url

from .pages import ARTIFACTS, PASSWORD, PORT

LAYER = isolated_redis_url()
ASGI_APP = "parkweb.asgi:application"
# Who logs in: one of each tenant role, and a staff operator for the admin site.
PEOPLE = {"ada": Role.ADMIN, "ola": Role.OPERATOR, "vic": Role.VIEWER}


@pytest.fixture
def site(transactional_db, asterisk, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [LAYER]},
        }
    }
    asterisk.hangup_all()
    server = make_server("pbx-web", parkcall="#72", **asterisk.server_fields())
    tenant = make_tenant("acme", name="Acme")
    make_context(server, tenant, "acme-parking")
    make_phones(server, tenant, "acme-phones", "201-209")
    # daphne checks passwords with the production hasher, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    users = get_user_model().objects
    for name, role in PEOPLE.items():
        user = users.create_user(name, password=PASSWORD.format(name))
        Membership.objects.create(user=user, tenant=tenant, role=role)
    users.create_superuser("sam", password=PASSWORD.format("sam"))
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": shared_test_database_url(),
        "REDIS_URL": LAYER,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "0",
        "SECURE_COOKIES": "0",
    }
    with celery_workers() as start_worker:
        start_worker("web-worker", PARKWEB_WORKER_WATCHERS="1")
        web = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(PORT), ASGI_APP],
            cwd=django_settings.BASE_DIR,
            env=env,
            start_new_session=True,
            stdout=open(ARTIFACTS / "daphne.log", "w"),  # noqa: SIM115 (lives with daphne)
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: ServerHealth.objects.filter(server=server, synced=True).exists(),
                timeout=30,
                what="the watcher",
            )
            yield server
        finally:
            web.terminate()
            web.wait(timeout=20)
            asterisk.hangup_all()


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # ORM calls are still synchronous (as Django's docs advise for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()

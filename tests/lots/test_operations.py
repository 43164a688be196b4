"""What an operator's monitoring and tooling meet: health, readiness, metrics, retiring a
server, logs, recovering a deploy a dead worker left, and the production checks."""

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from lots import metrics, services
from lots.models import (
    AsteriskServer,
    Deployment,
    DialplanContext,
    ParkedCall,
    ServerHealth,
    TenantPhones,
)
from lots.supervisor import RedisLeases
from parkweb.logs import JsonFormatter
from tests.factories import (
    make_context,
    make_delivery,
    make_lot,
    make_phones,
    make_server,
    make_tenant,
)
from tests.integration.workers import isolated_redis_url
from tests.production.env import METRICS_TOKEN, production_env

TOKEN = METRICS_TOKEN
ROOT = Path(django_settings.BASE_DIR)


@pytest.fixture
def redis_site(settings):
    """Readiness as with workers: leases and the cache in a Redis of the test's own."""
    url = isolated_redis_url()
    settings.REDIS_URL = url
    redis.Redis.from_url(url).flushdb()
    from parkweb import operations

    operations._redis.cache_clear()
    yield redis.Redis.from_url(url)
    redis.Redis.from_url(url).flushdb()
    operations._redis.cache_clear()


@pytest.fixture
def metrics_token(settings):
    from parkweb import operations

    settings.PARKWEB_METRICS_TOKEN = TOKEN
    settings.PARKWEB_METRICS_ALLOW = []
    operations._allowed_networks.cache_clear()
    yield
    operations._allowed_networks.cache_clear()


def scrape(client=None, **headers) -> str:
    client = client or Client()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    return response.content.decode()


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample of the exposition (labels in any order), or None."""
    for line in text.splitlines():
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if found and found.group(1) == name:
            have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
            if have == {k: str(v) for k, v in labels.items()}:
                return float(found.group(3))
    return None


def test_healthz_answers_without_login_or_database(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_when_every_server_has_a_live_watcher(redis_site, db):
    server = make_server("pbx1", ami_host="10.9.8.7", ami_username="secret-user")
    ServerHealth.objects.create(server=server, connected=True, synced=True)
    Deployment.objects.create(server=server, status="ok", finished_at=timezone.now())

    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False and body["unwatched"] == ["pbx1"]
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}

    RedisLeases(django_settings.REDIS_URL, "worker-a").acquire(server.pk)
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["servers"] == [
        {
            "name": "pbx1",
            "watcher": True,
            "connected": True,
            "synced": True,
            "last_event_at": None,
            "last_deploy": {
                "status": "ok",
                "finished_at": body["servers"][0]["last_deploy"]["finished_at"],
            },
        }
    ]
    # Nothing that reaches the PBX or logs in is shown to an unauthenticated caller.
    text = response.content.decode()
    assert "10.9.8.7" not in text and "secret-user" not in text and "s3cret" not in text


def test_readyz_stays_ready_while_a_watched_pbx_is_down(redis_site, db):
    server = make_server("pbx1")
    ServerHealth.objects.create(server=server, connected=False, error="refused")
    RedisLeases(django_settings.REDIS_URL, "worker-a").acquire(server.pk)
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["servers"][0]["connected"] is False


def test_readyz_in_the_embedded_mode_counts_this_processs_own_watchers(
    transactional_db, settings, monkeypatch
):
    from lots import supervisor

    settings.REDIS_URL = ""  # `make run`: no workers, the web process watches
    server = make_server("pbx1", ami_port=1)  # nothing listens: watched, not connected
    assert Client().get("/readyz").json()["unwatched"] == ["pbx1"]
    embedded = supervisor.Supervisor(supervisor.LocalLeases(), name="embedded-test")
    monkeypatch.setattr(supervisor, "_embedded", embedded.start())
    try:
        deadline = time.monotonic() + 10
        while server.pk not in embedded.watching:
            assert time.monotonic() < deadline, "the embedded supervisor did not take the server"
            time.sleep(0.05)
        response = Client().get("/readyz")
        assert response.status_code == 200
        assert response.json()["servers"][0]["watcher"] is True
        assert response.json()["servers"][0]["connected"] is False
    finally:
        embedded.stop()
    assert Client().get("/readyz").status_code == 503  # its thread is gone


def test_readyz_is_unready_when_redis_does_not_answer(redis_site, db, settings):
    from parkweb import operations

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    operations._redis.cache_clear()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}


def test_metrics_refuse_callers_without_the_token_or_an_allowed_address(db, metrics_token):
    assert Client().get("/metrics").status_code == 403
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-it")
    assert wrong.status_code == 403
    assert "PARKWEB_METRICS_TOKEN" in wrong.json()["detail"]
    assert "parkweb_" in scrape()


def test_metrics_allow_listed_network(db, settings):
    from parkweb import operations

    settings.PARKWEB_METRICS_TOKEN = ""
    settings.PARKWEB_METRICS_ALLOW = ["10.0.0.0/8"]
    operations._allowed_networks.cache_clear()
    try:
        assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
        assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 403
        # A forged X-Forwarded-For is not an address.
        forged = Client(REMOTE_ADDR="192.0.2.1").get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3")
        assert forged.status_code == 403
    finally:
        operations._allowed_networks.cache_clear()


def test_metrics_count_deploys_lots_calls_and_events(db, metrics_token, settings):
    settings.PARKWEB_MAX_LOTS_PER_SERVER = 1500
    server = make_server("pbx1", ami_port=1)
    tenant = make_tenant("acme")
    lot = make_lot(tenant, make_context(server, tenant, "acme-parking"), "main")
    now = timezone.now()
    Deployment.objects.filter(server=server).delete()
    for took, reload, status in [(0.4, 0.08, "ok"), (3.0, 0.3, "ok"), (1.0, 0.2, "failed")]:
        deployment = Deployment.objects.create(server=server, status=status)
        Deployment.objects.filter(pk=deployment.pk).update(
            created_at=now - timedelta(seconds=took), finished_at=now, reload_seconds=reload
        )
    Deployment.objects.create(server=server, status="pending")
    ParkedCall.objects.create(
        server=server,
        lot=lot,
        tenant=tenant,
        lot_name="acme_main",
        space=701,
        parkee_channel="PJSIP/a-1",
        uniqueid="1.1",
        parked_at=now,
    )
    stats = metrics.EventStats()
    for lag in (0.002, 0.03, 0.03, 7.0):
        stats.add(lag)
    ServerHealth.objects.create(server=server, connected=True, synced=True)
    services.server_events_count(server.pk, stats)

    text = scrape()
    assert sample(text, "parkweb_deployments_total", server="pbx1", outcome="ok") == 2
    assert sample(text, "parkweb_deployments_total", server="pbx1", outcome="failed") == 1
    assert sample(text, "parkweb_deployments_pending", server="pbx1") == 1
    # Save to live counts the ok ones only: 0.4 s and 3 s.
    assert sample(text, "parkweb_deploy_save_to_live_seconds_bucket", server="pbx1", le="0.5") == 1
    assert sample(text, "parkweb_deploy_save_to_live_seconds_bucket", server="pbx1", le="5.0") == 2
    assert sample(text, "parkweb_deploy_save_to_live_seconds_count", server="pbx1") == 2
    assert sample(text, "parkweb_asterisk_reload_seconds_bucket", server="pbx1", le="0.1") == 1
    assert sample(text, "parkweb_asterisk_reload_seconds_count", server="pbx1") == 3
    assert sample(text, "parkweb_asterisk_reload_seconds_sum", server="pbx1") == pytest.approx(0.58)
    assert sample(text, "parkweb_lots", server="pbx1") == 1
    assert sample(text, "parkweb_lots_budget", server="pbx1") == 1500
    assert sample(text, "parkweb_parked_calls", server="pbx1") == 1
    assert sample(text, "parkweb_watcher_connected", server="pbx1") == 1
    assert sample(text, "parkweb_ami_events_applied_total", server="pbx1") == 4
    assert sample(text, "parkweb_ami_event_lag_seconds_bucket", server="pbx1", le="0.005") == 1
    assert sample(text, "parkweb_ami_event_lag_seconds_bucket", server="pbx1", le="0.05") == 3
    assert sample(text, "parkweb_ami_event_lag_seconds_bucket", server="pbx1", le="+Inf") == 4
    assert sample(text, "parkweb_watcher_last_event_timestamp_seconds", server="pbx1") > 0
    # Labels stay bounded: a server's name and an outcome, never a tenant, call or user.
    labels = set(re.findall(r"(\w+)=\"", text))
    assert labels <= {"server", "outcome", "le", "state"}


def test_metrics_show_the_webhook_queue_and_endpoints_by_state(db, metrics_token):
    from lots.models import Webhook
    from tenants.actors import SYSTEM

    text = scrape()
    assert sample(text, "parkweb_webhook_deliveries_pending") == 0
    assert sample(text, "parkweb_webhook_events_recorded") == 0
    assert sample(text, "parkweb_webhook_oldest_pending_seconds") == 0
    tenant = make_tenant("acme")
    hooks = [
        services.webhook_create(tenant, actor=SYSTEM, url=f"https://hooks{n}.example/")[0]
        for n in range(4)
    ]
    active, busy, paused, off = hooks
    now = timezone.now()
    for hook, status, seconds in [
        (active, "pending", 90),  # the oldest waiting
        (busy, "pending", 5),
        (busy, "delivered", 3600),
        (paused, "pending", 7200),  # a paused endpoint's are held back, not waiting
        (off, "pending", 7200),
    ]:
        make_delivery(
            hook, f"evt_{hook.pk}_{status}", age=timedelta(seconds=seconds), status=status
        )
    Webhook.objects.filter(pk=paused.pk).update(paused_at=now)
    Webhook.objects.filter(pk=off.pk).update(active=False)

    text = scrape()
    assert sample(text, "parkweb_webhook_deliveries_pending") == 2
    assert 90 <= sample(text, "parkweb_webhook_oldest_pending_seconds") < 150
    assert sample(text, "parkweb_webhook_endpoints", state="active") == 2
    assert sample(text, "parkweb_webhook_endpoints", state="paused") == 1
    assert sample(text, "parkweb_webhook_endpoints", state="inactive") == 1
    assert sample(text, "parkweb_webhook_events_recorded") == 0

    # An event recorded, no delivery worker running to fan it out: it waits too.
    from lots.models import WebhookEvent
    from lots.services.webhooks import event_emit

    assert event_emit(tenant.pk, "lot.full", "main", lambda: {"n": 1}) == 2
    WebhookEvent.objects.update(occurred_at=now - timedelta(seconds=600))
    text = scrape()
    assert sample(text, "parkweb_webhook_events_recorded") == 1
    assert 600 <= sample(text, "parkweb_webhook_oldest_pending_seconds") < 660
    assert sample(text, "parkweb_webhook_deliveries_pending") == 2  # fanned out: not yet


def test_metrics_read_in_a_bounded_number_of_queries(
    db, metrics_token, django_assert_max_num_queries
):
    for i in range(20):
        server = make_server(f"pbx{i}", ami_port=1)
        Deployment.objects.create(server=server, status="ok", finished_at=timezone.now())
    with django_assert_max_num_queries(12):
        text = scrape()
    assert sample(text, "parkweb_deployments_total", server="pbx7", outcome="ok") == 1


@pytest.fixture
def staff_api(db):
    user = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_a_server_with_lots_is_not_retired(staff_api):
    server = make_server("pbx1", ami_port=1)
    tenant = make_tenant("acme")
    make_lot(tenant, make_context(server, tenant, "acme-parking"), "main")
    response = staff_api.delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 409
    assert "still holds 1 lot(s) (acme/main)" in response.json()["detail"]
    assert AsteriskServer.objects.filter(pk=server.pk).exists()


def test_a_server_without_lots_is_retired_with_its_contexts_and_phones(staff_api):
    server = make_server("pbx1", ami_port=1)
    tenant = make_tenant("acme")
    make_context(server, tenant, "acme-parking")
    make_phones(server, tenant, "acme-phones", "201-209")
    ServerHealth.objects.create(server=server, connected=True)
    response = staff_api.delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 204
    assert not AsteriskServer.objects.filter(pk=server.pk).exists()
    assert not DialplanContext.objects.filter(server_id=server.pk).exists()
    assert not TenantPhones.objects.filter(server_id=server.pk).exists()
    assert staff_api.delete(f"/api/v1/servers/{server.pk}/").status_code == 404


def test_only_staff_retire_servers(db):
    server = make_server("pbx1", ami_port=1)
    tenant = make_tenant("acme")
    user = get_user_model().objects.create_user("ada", password="pw-ada-123")
    from tenants.models import Membership, Role

    Membership.objects.create(user=user, tenant=tenant, role=Role.ADMIN)
    client = APIClient()
    client.force_authenticate(user)
    assert client.delete(f"/api/v1/servers/{server.pk}/").status_code == 403
    assert AsteriskServer.objects.filter(pk=server.pk).exists()


def test_admin_refuses_to_retire_a_server_with_lots_and_says_why(db):
    server = make_server("pbx1", ami_port=1)
    tenant = make_tenant("acme")
    make_lot(tenant, make_context(server, tenant, "acme-parking"), "main")
    staff = get_user_model().objects.create_superuser("sam", password="pw-sam-123")
    client = Client()
    client.force_login(staff)
    url = f"/admin/lots/asteriskserver/{server.pk}/delete/"
    response = client.post(url, {"post": "yes"}, follow=True)
    assert AsteriskServer.objects.filter(pk=server.pk).exists()
    assert "still holds 1 lot(s) (acme/main)" in response.content.decode()

    server.lots.all().delete()
    response = client.post(url, {"post": "yes"}, follow=True)
    assert not AsteriskServer.objects.filter(pk=server.pk).exists()
    assert "Server pbx1 retired." in response.content.decode()


def test_health_writes_for_a_retired_server_are_dropped(db):
    server = make_server("pbx1", ami_port=1)
    ServerHealth.objects.create(server=server, connected=True)
    server_id = server.pk
    services.server_retire(server)
    stats = metrics.EventStats()
    stats.add(0.01)
    assert services.server_health_update(server_id, connected=False) is None
    services.server_events_count(server_id, stats)  # no error, nothing written
    assert not ServerHealth.objects.filter(server_id=server_id).exists()


def test_a_deploy_left_running_by_a_dead_worker_is_run_again_when_a_worker_starts(db):
    server = make_server("pbx1", ami_port=1)  # nothing listens: the rerun waits as pending
    Deployment.objects.filter(server=server).delete()
    left = Deployment.objects.create(server=server, status="running", started_at=timezone.now())
    assert services.deployments_recover() == 1  # tasks run inline in these tests
    left.refresh_from_db()
    assert left.status == "failed" and "Interrupted" in left.error
    again = Deployment.objects.filter(server=server).exclude(pk=left.pk).get()
    assert again.reason.startswith("redeploy: the last deploy was interrupted")
    assert again.status == "pending" and again.attempts == 1  # tried: Asterisk unreachable
    assert again.worker == f"{socket.gethostname()}:{os.getpid()}"  # who tried


def test_json_logs_carry_the_deploy_fields():
    record = logging.LogRecord("lots", logging.INFO, __file__, 1, "deployment %s ok", (7,), None)
    record.server, record.deployment, record.outcome, record.tenants = "pbx1", 7, "ok", ["acme"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "deployment 7 ok"
    assert (line["server"], line["deployment"], line["outcome"], line["tenants"]) == (
        "pbx1",
        7,
        "ok",
        ["acme"],
    )
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")


def _production_env(**overrides) -> dict:
    """deploy/parkweb.env as an operator fills it in, on a local SQLite database."""
    return production_env(
        DATABASE_URL="sqlite:////tmp/parkweb-check-deploy.sqlite3",
        STATIC_ROOT="/tmp/parkweb-check-deploy-static",
        **overrides,
    )


def _check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_production_settings_pass_check_deploy():
    result = _check_deploy(_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_placeholders_and_plain_http():
    result = _check_deploy(
        _production_env(SECRET_KEY="change-me-" + "x" * 50, SECURE_SSL_REDIRECT="0")
    )
    assert result.returncode != 0
    assert "SECRET_KEY is still the example's placeholder" in result.stderr
    assert "security.W008" in result.stderr  # SECURE_SSL_REDIRECT off

"""Monitoring against the real thing: the sandbox Asterisk, real Celery workers, daphne,
PostgreSQL and Redis. Metrics count a deploy and a parked call; /readyz turns unready
within 10 s of the database, Redis or the watcher going away and ready again after; a
retired server's watcher stops cleanly; a deploy a dead worker left is run when a worker
starts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from lots import services
from lots.models import Deployment, ParkedCall, ServerHealth
from tests.factories import make_context, make_lot, make_server, make_tenant
from tests.lots.test_operations import TOKEN, sample

from .test_deploy import wait_for
from .workers import LOGS, celery_workers, isolated_redis_url, shared_test_database_url

pytestmark = pytest.mark.integration

READY_WITHIN = 10.0  # what the README promises


@pytest.fixture
def site(transactional_db, asterisk):
    asterisk.hangup_all()
    server = make_server("pbx-ops", parkcall="#72", **asterisk.server_fields())
    tenant = make_tenant("acme")
    yield server, tenant, make_context(server, tenant, "acme-parking")
    asterisk.hangup_all()


def watched(server) -> bool:
    health = ServerHealth.objects.filter(server=server).first()
    return bool(health and health.connected and health.synced)


def scrape() -> str:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return response.content.decode()


def test_metrics_count_a_deploy_and_a_parked_call(site, asterisk, settings):
    settings.PARKWEB_METRICS_TOKEN = TOKEN
    server, tenant, context = site
    with celery_workers() as start_worker:
        start_worker("ops-metrics", PARKWEB_WORKER_WATCHERS="1")
        wait_for(lambda: watched(server), timeout=30, what="the watcher")
        before = scrape()
        lot = make_lot(tenant, context, "main", parkext="700", parkpos_start=701, parkpos_end=709)
        wait_for(
            lambda: (
                Deployment.objects.filter(server=server, status="ok").exists()
                and not Deployment.objects.filter(server=server, status__in=["pending", "running"])
            ),
            timeout=30,
            what="the deploy",
        )
        asterisk.park_call("parkacme_main", "#72", keep=True)
        wait_for(
            lambda: ParkedCall.objects.filter(lot=lot, ended_at__isnull=True).exists(),
            what="the parked call",
        )
        # The watcher writes its tally at most once a second, and at each check.
        wait_for(
            lambda: ServerHealth.objects.get(server=server).events_applied > 0,
            timeout=10,
            what="the event tally",
        )
        after = scrape()

    def count(text, name, **labels):
        return sample(text, name, server="pbx-ops", **labels) or 0

    assert count(after, "parkweb_deployments_total", outcome="ok") == (
        count(before, "parkweb_deployments_total", outcome="ok") + 1
    )
    for histogram in ("parkweb_deploy_save_to_live_seconds", "parkweb_asterisk_reload_seconds"):
        assert count(after, f"{histogram}_count") == count(before, f"{histogram}_count") + 1
    assert count(after, "parkweb_asterisk_reload_seconds_sum") > 0
    assert count(after, "parkweb_lots") == 1
    assert count(after, "parkweb_parked_calls") == 1
    assert count(after, "parkweb_watcher_connected") == 1
    assert count(after, "parkweb_watcher_synced") == 1
    assert count(after, "parkweb_ami_events_applied_total") >= 1
    assert count(after, "parkweb_ami_event_lag_seconds_count") >= 1
    assert count(after, "parkweb_watcher_last_event_timestamp_seconds") > time.time() - 60


class Forwarder:
    """tests.forwarder in a process of its own: killing it is a dependency
    going away (every connection through it drops); starting it again on the same port
    brings it back."""

    def __init__(self, target: str):
        self.target = target
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> Forwarder:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.forwarder",
                f"127.0.0.1:{self.port}={self.target}",
            ],
            cwd=django_settings.BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for line in self.process.stdout:
            if line.startswith("listening"):
                port = int(line.split()[2].rpartition(":")[2])
                assert self.port in (0, port), "the forwarder could not take its port back"
                self.port = port
            if line.strip() == "ready":
                return self
        raise RuntimeError("the forwarder did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def through(url: str, forwarder: Forwarder) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    host = f"127.0.0.1:{forwarder.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}{netloc[1]}{host}"))


@contextmanager
def daphne(env: dict, port: int):
    log = open(LOGS / "daphne-readyz.log", "w")  # noqa: SIM115 (lives with daphne)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "parkweb.asgi:application",
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def readiness(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=8) as response:  # noqa: S310 (http on loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())
    except (OSError, ValueError):
        return 0, {}


def becomes(base: str, status: int, within: float = READY_WITHIN) -> tuple[float, dict]:
    """Seconds until /readyz answers `status` (asserted within `within`), and its body."""
    started = time.monotonic()
    while True:
        code, body = readiness(base)
        took = time.monotonic() - started
        if code == status:
            return took, body
        assert took < within, f"/readyz still {code} after {took:.1f} s: {body}"
        time.sleep(0.25)


def test_readyz_follows_the_database_redis_and_the_watcher(site, asterisk):
    connection.close()  # the test database is shared with daphne through the forwarder
    database, cache = (
        Forwarder("127.0.0.1:" + str(urlsplit(shared_test_database_url()).port or 5432)).start(),
        Forwarder("127.0.0.1:" + str(urlsplit(isolated_redis_url()).port or 6379)).start(),
    )
    port = int(os.environ.get("PARKWEB_TEST_WEB_PORT", "8766")) + 1
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": through(shared_test_database_url(), database),
        "REDIS_URL": through(isolated_redis_url(), cache),
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    try:
        with celery_workers() as start_worker, daphne(env, port):
            worker = start_worker("ops-ready-1", PARKWEB_WORKER_WATCHERS="1")
            _, body = becomes(base, 200, within=40)
            assert body["servers"][0]["name"] == "pbx-ops" and body["servers"][0]["synced"]

            gone = {}
            database.stop()
            gone["database"], body = becomes(base, 503)
            assert body["checks"]["database"]["ok"] is False
            database.start()
            becomes(base, 200)

            cache.stop()
            gone["redis"], body = becomes(base, 503)
            assert body["checks"]["redis"]["ok"] is False
            cache.start()
            becomes(base, 200)

            worker.kill(signal.SIGKILL)
            gone["watcher"], body = becomes(base, 503)
            assert body["unwatched"] == ["pbx-ops"]
            assert all(check["ok"] for check in body["checks"].values())
            start_worker("ops-ready-2", PARKWEB_WORKER_WATCHERS="1")
            back, _ = becomes(base, 200, within=20)
            print("readyz unready after (s):", {k: round(v, 1) for k, v in gone.items()})
            print(f"readyz ready again {back:.1f} s after a worker started")
    finally:
        database.stop()
        cache.stop()


def test_a_retired_server_stops_its_watcher_cleanly(site):
    server, _, _ = site
    with celery_workers() as start_worker:
        worker = start_worker("ops-retire", PARKWEB_WORKER_WATCHERS="1")
        wait_for(lambda: watched(server), timeout=30, what="the watcher")
        services.server_retire(server)
        stopped = f"stopped watching server {server.pk}"
        wait_for(lambda: stopped in worker.log_path.read_text(), timeout=10, what=stopped)
        time.sleep(5)  # two more supervisor checks
        log = worker.log_path.read_text()
    assert "Traceback" not in log, log
    assert not re.search(r"ERROR.*pbx-ops", log), log


def test_a_deploy_a_dead_worker_left_runs_when_a_worker_starts(site, asterisk):
    server, tenant, context = site
    with celery_workers() as start_worker:
        start_worker("ops-before")
        make_lot(tenant, context, "main", parkext="700", parkpos_start=701, parkpos_end=709)
        wait_for(
            lambda: Deployment.objects.filter(server=server, status="ok").exists(),
            timeout=30,
            what="the first deploy",
        )
    # A change whose worker died mid-deploy: its deployment says running, nothing is queued
    # (the broker gives an unacknowledged task back only after its visibility timeout).
    with celery_workers():  # no worker: the task waits in the broker, then is flushed
        services.lot_update(server.lots.get(), parkpos_start=721, parkpos_end=729)
    Deployment.objects.filter(server=server, status="pending").update(status="running")
    left = Deployment.objects.get(server=server, status="running")

    with celery_workers() as start_worker:
        started = time.monotonic()
        start_worker("ops-after")
        wait_for(
            lambda: (
                ("acme_main", 721) in [(p.name, p.start_space) for p in asterisk.running_state()[0]]
            ),
            timeout=20,
            interval=0.2,
            what="the change to go live",
        )
        took = time.monotonic() - started
    left.refresh_from_db()
    assert left.status == "failed" and "Interrupted" in left.error
    assert Deployment.objects.filter(server=server).order_by("-pk").first().status == "ok"
    assert took < django_settings.PARKWEB_RECONCILE_SECONDS
    print(f"recovered {took:.1f} s after the worker started")

"""API benchmark: one page of a 10,000-lot tenant, and 1,000 lots created through the API.

    .venv/bin/python bench/api.py [--lots 10000] [--creates 1000]

Listing is timed in process (Django's test client, no network). Creation goes through the
API from 8 threads against a real Celery worker and the sandbox Asterisk ("bench", AMI
127.0.0.1:5041); the figure that matters is how many reloads the burst caused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import fresh_database  # noqa: E402  (bench/ is on the path)

os.environ["DATABASE_URL"] = fresh_database("parkweb_bench_api")
os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"  # Django's test client, in process
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from lots import services  # noqa: E402
from lots.models import AsteriskServer, Deployment, ParkingLot  # noqa: E402
from parkweb.celery import app  # noqa: E402
from tenants.actors import SYSTEM  # noqa: E402
from tenants.models import Role, Tenant  # noqa: E402
from tenants.services import api_key_create  # noqa: E402
from tests.factories import bulk_lots, make_server  # noqa: E402
from tests.integration.sandbox import Sandbox, sandbox  # noqa: E402
from tests.integration.workers import (  # noqa: E402
    Worker,
    isolated_redis_url,
    reset_broker_connections,
)


def list_pages(lots: int, requests: int = 200) -> tuple[float, float, int]:
    """(p50, p95) ms of GET one page of 50 lots of a tenant holding `lots` lots."""
    server = AsteriskServer(
        name="listing", ami_host="127.0.0.1", ami_username="x", lot_budget=lots + 1
    )
    server.ami_secret = "x"
    server.save()
    tenant = Tenant.objects.create(slug="big", name="Big")
    bulk_lots(server, tenant, lots, prefix="lot")
    _, text = api_key_create(tenant, actor=SYSTEM, name="bench", role=Role.VIEWER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {text}")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum would have, after a bulk load
    samples = []
    url = "/api/v1/tenants/big/lots/?limit=50"
    for _ in range(requests):  # walk the pages, start again at the end
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200 and len(response.json()["results"]) == 50
        url = response.json()["next"] or "/api/v1/tenants/big/lots/?limit=50"
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], requests


def create_through_api(count: int, box: Sandbox) -> tuple[int, float]:
    """Create `count` lots with 8 threads; returns (reloads, seconds)."""
    app.conf.update(task_always_eager=True)
    server = make_server("bench-api", lot_budget=count + 10, **box.server_fields())
    tenant = Tenant.objects.create(slug="prov", name="Provisioned")
    for i in range(count // 10):
        services.context_create(server=server, tenant=tenant, name=f"prov-{i}")
    _, text = api_key_create(tenant, actor=SYSTEM, name="bench", role=Role.ADMIN)
    mark = Deployment.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    url = isolated_redis_url()
    redis.Redis.from_url(url).flushdb()
    app.conf.update(broker_url=url, task_always_eager=False)
    reset_broker_connections()
    worker = Worker("bench-api", {**os.environ, "REDIS_URL": url, "PARKWEB_WORKER_WATCHERS": "0"})
    errors = []
    start = time.perf_counter()
    try:

        def create(first: int, step: int) -> None:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {text}")
            try:
                for i in range(first, count, step):
                    response = client.post(
                        "/api/v1/tenants/prov/lots/",
                        {
                            "slug": f"lot{i}",
                            "name": f"Lot {i}",
                            "server": "bench-api",
                            "context": f"prov-{i // 10}",
                            "parkext": str(100 + i % 10 * 20),
                            "parkpos_start": 101 + i % 10 * 20,
                            "parkpos_end": 110 + i % 10 * 20,
                        },
                        format="json",
                    )
                    if response.status_code != 201:
                        errors.append(response.content[:200])
            finally:
                close_old_connections()

        threads = [threading.Thread(target=create, args=(n, 8)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        deadline = time.monotonic() + 900
        while Deployment.objects.filter(server=server, status__in=["pending", "running"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("deploys did not settle")
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
    finally:
        worker.stop()
    assert not errors, errors[:3]
    assert ParkingLot.objects.filter(server=server).count() == count
    latest = Deployment.objects.filter(server=server).order_by("-pk").first()
    assert latest.status == "ok", latest.error
    reloads = Deployment.objects.filter(server=server, pk__gt=mark, reloaded=True).count()
    return reloads, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=1_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    get_user_model()  # the auth app is ready
    p50, p95, n = list_pages(args.lots)
    print(f"database: {os.environ['DATABASE_URL'].split('@')[-1]}")
    print(
        f"list one page of 50 of {args.lots} lots, {n} requests in process: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 <= 30 ms)"
    )
    sandbox("stop", "--name", "bench")
    box = Sandbox.from_env_output(sandbox("start", "--name", "bench", "--ami-port", "5041").stdout)
    try:
        reloads, elapsed = create_through_api(args.creates, box)
    finally:
        sandbox("stop", "--name", "bench")
    print(
        f"create {args.creates} lots through the API (8 threads, one worker): {reloads} "
        f"reloads in {elapsed:.1f} s (target <= 3)"
    )


if __name__ == "__main__":
    main()

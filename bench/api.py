"""API benchmark: one page of a 10,000-lot tenant, and 1,000 lots created through the API.

    .venv/bin/python bench/api.py [--lots 10000] [--creates 1000] [--smoke]

Listing is timed in process (Django's test client, no network), walking every page once:
each lot must be listed exactly once. Creation goes through the API from 8 threads
against a real Celery worker (Redis database 12) and the sandbox Asterisk ("bench-api",
AMI 127.0.0.1:5042); every lot must end up running on Asterisk, and the figure that
matters is how many reloads the burst caused. `--smoke`: a few seconds, small counts.
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
from common import (  # noqa: E402  (bench/ is on the path)
    counts,
    exit_on_wrong_counts,
    live_lots,
    place,
    start_sandbox,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=1_000)
    parser.add_argument("--smoke", action="store_true", help="small counts, a few seconds")
    args = parser.parse_args()
    if args.smoke:
        args.lots, args.creates = 250, 40
    return args


ARGS = arguments()
PLACE = place("api", ARGS.smoke, redis_db=12, sandbox="bench-api", ami_port=5042)
os.environ["DATABASE_URL"] = PLACE.database_url
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
from lots.models import AsteriskServer, Deployment  # noqa: E402
from parkweb.celery import app  # noqa: E402
from tenants.actors import SYSTEM  # noqa: E402
from tenants.models import Role, Tenant  # noqa: E402
from tenants.services import api_key_create  # noqa: E402
from tests.factories import bulk_lots, make_server  # noqa: E402
from tests.integration.sandbox import Sandbox  # noqa: E402
from tests.integration.workers import Worker, reset_broker_connections  # noqa: E402


def list_pages(lots: int) -> tuple[float, float, int, dict[str, int]]:
    """Walk every page of 50 of a tenant holding `lots` lots: (p50, p95) ms of one page,
    the requests made, and the counts of lots listed."""
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
    samples, listed, errors = [], [], 0
    url = "/api/v1/tenants/big/lots/?limit=50"
    for _ in range(lots // 50 + 1):  # one more than the pages there should be
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            errors += 1
            break
        listed += [lot["slug"] for lot in response.json()["results"]]
        url = response.json()["next"]
        if url is None:
            break
    samples.sort()
    figures = {
        "expected": lots,
        "seen": len(set(listed) & {f"lot{i}" for i in range(lots)}),
        "duplicate": len(listed) - len(set(listed)),
        "errors": errors,
    }
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], len(samples), figures


def create_through_api(count: int, box: Sandbox) -> tuple[int, float, dict[str, int]]:
    """Create `count` lots with 8 threads; returns (reloads, seconds, counts of the lots
    running on Asterisk; errors include refused requests)."""
    app.conf.update(task_always_eager=True)
    server = make_server("bench-api", lot_budget=count + 10, **box.server_fields())
    tenant = Tenant.objects.create(slug="prov", name="Provisioned")
    for i in range(count // 10):
        services.context_create(server=server, tenant=tenant, name=f"prov-{i}")
    _, text = api_key_create(tenant, actor=SYSTEM, name="bench", role=Role.ADMIN)
    mark = Deployment.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    url = PLACE.redis_url
    redis.Redis.from_url(url).flushdb()
    app.conf.update(broker_url=url, task_always_eager=False)
    reset_broker_connections()
    worker = Worker(PLACE.name, {**os.environ, "REDIS_URL": url, "PARKWEB_WORKER_WATCHERS": "0"})
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
            except Exception as error:
                errors.append(repr(error))
                raise
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
    if errors:
        print("refused:", *errors[:3], file=sys.stderr)
    figures = live_lots(box, server)
    figures["expected"] = count  # every lot asked for, whether or not it was saved
    figures["errors"] += len(errors)
    reloads = Deployment.objects.filter(server=server, pk__gt=mark, reloaded=True).count()
    return reloads, elapsed, figures


def main() -> None:
    call_command("migrate", verbosity=0)
    get_user_model()  # the auth app is ready
    p50, p95, n, listed = list_pages(ARGS.lots)
    print(f"database: {PLACE.database_url.split('@')[-1]}")
    print(
        f"list one page of 50 of {ARGS.lots} lots, {n} requests in process: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 <= 30 ms)"
    )
    right = [counts("lots listed", **listed)]
    box = start_sandbox(PLACE)
    try:
        reloads, elapsed, created = create_through_api(ARGS.creates, box)
    finally:
        box.stop()
    print(
        f"create {ARGS.creates} lots through the API (8 threads, one worker): {reloads} "
        f"reloads in {elapsed:.1f} s (target <= 3)"
    )
    right.append(counts("lots created and live", **created))
    exit_on_wrong_counts(right)


if __name__ == "__main__":
    main()

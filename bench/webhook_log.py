"""Webhook log benchmark: what the delivery queue's queries cost once the log is large.

    .venv/bin/python bench/webhook_log.py [--rows 1000000] [--endpoints 100] [--tenants 20]
        [--repeat 200] [--backlog 7] [--smoke]

Every delivery ever made stays in the log until it is purged, so a production log holds
far more finished deliveries than pending ones: 50 events a second to 5 endpoints each is
21 million rows a day. The queries on the delivery path must cost what the pending ones
cost, not what the log holds. This fills a fresh database's log with `--rows` delivered
rows (events of the last 60 days, a call's payload each) over `--endpoints` endpoints,
leaves a batch's worth of pending deliveries (`--backlog`: that many events per endpoint
of the batch, 7 by default; thousands stand for a receiver that is down or slow), and
times, each `--repeat` times, first with the table's statistics as they stand after the
fill (autovacuum may not have analyzed it yet), then after ANALYZE:

- a delivery loop's batch for one tenant's endpoints, without sending: the locks, the
  queue heads and the release with its re-check of what is due (services.webhooks);
- beat's search for due endpoints (every 30 s);
- the watcher's share of an event for the tenant's endpoints: what it records, committed
  (one event row since round 12; a delivery row per endpoint before), and then, where the
  code has one, a delivery run's fan-out of that event into its endpoints' deliveries;
- the log's newest 20 rows of one endpoint (the tenant's webhooks page, the API's list);
- staff's "failed" filter of the whole log, newest first (the admin's list: a page of
  100), with the log's 5 oldest rows given up and no other;
- then the purge of the rows older than PARKWEB_WEBHOOK_LOG_DAYS, once (when the code
  has one), counting the rows deleted and kept against those it should have.

Prints p50/p99 ms per step and the log's size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import percentile, place  # noqa: E402  (bench/ is on the path)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="delivered rows in the log")
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument(
        "--backlog", type=int, default=7, help="pending events per endpoint of the batch"
    )
    parser.add_argument("--smoke", action="store_true", help="a small log, a few repeats")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.endpoints, args.tenants, args.repeat = 2000, 10, 2, 5
    return args


ARGS = arguments()
PLACE = place("webhook_log", ARGS.smoke, redis_db=13)
os.environ["DATABASE_URL"] = PLACE.database_url
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from lots import models  # noqa: E402
from lots.locks import webhook_locks  # noqa: E402
from lots.models import Webhook, WebhookDelivery  # noqa: E402
from lots.services import webhooks as service  # noqa: E402
from tenants.models import Tenant  # noqa: E402

DAYS = 60  # the filled log's events spread over this many days back
PAYLOAD = {  # about the size of a call.parked body
    "call": {
        "id": 1,
        "lot": "main",
        "space": "701",
        "caller": {"number": "+15551234567", "name": "A caller with a name"},
        "parked_by": {"number": "201", "name": "Reception"},
        "parked_at": "2026-12-07T09:00:00Z",
        "timeout_at": "2026-12-07T09:00:45Z",
        "state": "parked",
        "uniqueid": "1765098000.12345",
    }
}


def setup() -> list[list[int]]:
    """The tenants, their endpoints, and the filled log. Returns each tenant's endpoint ids."""
    hooks_of: list[list[int]] = []
    for number in range(ARGS.tenants):
        tenant = Tenant.objects.create(slug=f"t{number}", name=f"Tenant {number}")
        hooks_of.append([])
        for place_ in range(number, ARGS.endpoints, ARGS.tenants):
            hook = Webhook(tenant=tenant, url=f"https://hooks{place_}.example/")
            hook.secret = "s" * 32
            hook.save()
            hooks_of[-1].append(hook.pk)
    ids = [pk for hooks in hooks_of for pk in hooks]
    table = WebhookDelivery._meta.db_table
    started = time.monotonic()
    chunk = 200_000
    with connection.cursor() as cursor:
        for start in range(0, ARGS.rows, chunk):
            count = min(chunk, ARGS.rows - start)
            cursor.execute(
                f"INSERT INTO {table} (webhook_id, event_id, event_type, occurred_at, payload,"  # noqa: S608
                " status, attempts, response_code, duration_ms, response_prefix, error,"
                " created_at, finished_at)"
                " SELECT (%s::bigint[])[1 + n %% %s], 'evt_' || n, 'call.parked',"
                " now() - (%s * interval '1 day') * (1 - (n + 0.5) / %s), %s::jsonb,"
                " 'delivered', 1, 200, 5, '', '', now(), now()"
                " FROM generate_series(%s::bigint, %s::bigint) AS n",
                [ids, len(ids), DAYS, ARGS.rows, json.dumps(PAYLOAD), start, start + count - 1],
            )
    print(f"filled {ARGS.rows} delivered rows in {time.monotonic() - started:.1f} s")
    oldest = WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True)[:5]
    WebhookDelivery.objects.filter(pk__in=list(oldest)).update(status="failed")
    return hooks_of


def pending(hooks: list[int]) -> None:
    """`--backlog` events' pending deliveries for these endpoints."""
    now = timezone.now()
    WebhookDelivery.objects.filter(webhook_id__in=hooks, status="pending").delete()
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            webhook_id=hook,
            event_id=f"evt_pending_{n}",
            event_type="call.parked",
            occurred_at=now,
            payload=PAYLOAD,
        )
        for n in range(ARGS.backlog)
        for hook in hooks
    )


def timed(label: str, stats: str, step, repeat: int, prepare=None, after=None) -> None:
    """`prepare` runs before each time the step runs, untimed; `after` once at the end."""
    took = []
    for n in range(repeat + 1):  # the first warms caches and plans
        if prepare is not None:
            prepare()
        started = time.perf_counter()
        step()
        if n:
            took.append((time.perf_counter() - started) * 1000)
    if after is not None:
        after()
    median, p99 = statistics.median(took), percentile(took, 99)
    print(f"| {label} | {stats} | {repeat} | {median:.2f} | {p99:.2f} |")


def batch(hooks: list[int]):
    def run() -> None:
        with webhook_locks(hooks) as held:
            service._heads(held)
        service._due(set(hooks))

    return run


def watcher_records(hooks: list[int]):
    """The watcher's share of one event, committed (the commit is the boards' wait)."""
    event = {"id": "", "type": "call.parked", **PAYLOAD}

    def run() -> None:
        with transaction.atomic():
            event["id"] = f"evt_bench_{time.perf_counter_ns()}"
            service._queue_for(hooks, event, timezone.now())

    return run


def forget_recorded() -> None:
    """What the watcher's and fan-out steps left: the queue as the other steps found it."""
    WebhookDelivery.objects.filter(event_id__startswith="evt_bench_").delete()
    recorded = getattr(models, "WebhookEvent", None)
    if recorded is not None:
        recorded.objects.filter(event_id__startswith="evt_bench_").delete()


def newest(hook: int):
    def run() -> None:
        list(WebhookDelivery.objects.filter(webhook_id=hook).order_by("-occurred_at", "-pk")[:20])

    return run


def failed_filter():
    """The admin's list with its status filter set to failed (WebhookDeliveryAdmin)."""
    listed = WebhookDelivery.objects.filter(status="failed").select_related("webhook")
    return lambda: list(listed.order_by("-pk")[:101])


def size() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_table_size(%s)), pg_size_pretty(pg_indexes_size(%s))",
            [WebhookDelivery._meta.db_table] * 2,
        )
        table, indexes = cursor.fetchone()
    return f"table {table}, indexes {indexes}"


def main() -> None:
    call_command("migrate", verbosity=0)
    if connection.vendor != "postgresql":
        raise SystemExit("bench/webhook_log.py measures PostgreSQL's plans: start PostgreSQL")
    hooks_of = setup()
    tenant_hooks = hooks_of[0]
    pending(tenant_hooks)
    print(f"log: {size()}")
    print(f"| step ({ARGS.rows} rows in the log) | statistics | times | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for stats in ("as filled", "analyzed"):
        if stats == "analyzed":
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {WebhookDelivery._meta.db_table}")
        steps = {
            f"a loop's batch, {len(tenant_hooks)} endpoints (locks, heads, due)": batch(
                tenant_hooks
            ),
            "beat's due endpoints": lambda: list(service._due_endpoints()),
            "an endpoint's newest 20 log rows": newest(tenant_hooks[0]),
            "staff's failed filter, a page": failed_filter(),
        }
        for label, step in steps.items():
            timed(label, stats, step, ARGS.repeat)
        records = watcher_records(tenant_hooks)
        label = f"the watcher's records of an event, {len(tenant_hooks)} endpoints, committed"
        timed(label, stats, records, ARGS.repeat, after=forget_recorded)
        fan_out = getattr(service, "webhook_events_fan_out", None)
        if fan_out is not None:
            label = f"a run's fan-out of that event to its {len(tenant_hooks)} endpoints"
            timed(label, stats, fan_out, ARGS.repeat, prepare=records, after=forget_recorded)
    purge = getattr(service, "webhook_deliveries_purge", None)
    if purge is None:
        print("purge: none in this code")
        return
    now = timezone.now()
    cutoff = now - timedelta(days=settings.PARKWEB_WEBHOOK_LOG_DAYS)
    total = WebhookDelivery.objects.count()
    older = WebhookDelivery.objects.filter(occurred_at__lt=cutoff).count()
    started = time.monotonic()
    deleted = purge(now)
    print(
        f"purge: {deleted} rows older than {settings.PARKWEB_WEBHOOK_LOG_DAYS} days deleted"
        f" in {time.monotonic() - started:.1f} s; log: {size()} (space reused, not returned)"
    )
    left = WebhookDelivery.objects.count()
    count("deliveries purged", older, deleted)
    count("deliveries kept", total - older, left)


def count(label: str, expected: int, seen: int) -> None:
    lost, extra = max(expected - seen, 0), max(seen - expected, 0)
    print(f"counts {label}: expected {expected}, seen {seen}, lost {lost}, duplicate 0,", end="")
    print(f" errors {extra}")
    if lost or extra:
        raise SystemExit(f"{label}: {seen} where {expected} were expected")


if __name__ == "__main__":
    main()

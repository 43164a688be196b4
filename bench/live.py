"""Live-state benchmark: parking events from the sandbox Asterisk to many websocket clients.

    .venv/bin/python bench/live.py [--clients 200] [--tenants 20] [--rate 50] [--seconds 20]

The production shape on one machine: daphne serving the websockets, one Celery worker
running the AMI watcher, Redis as broker and channel layer, PostgreSQL (else SQLite).
Calls are parked by dialling each tenant's park extension and hang up a second later, so
each call gives two events (parked, abandoned). A second, raw AMI connection in this
process timestamps every event as it leaves Asterisk: the floor. Each websocket frame is
measured against it. Prints p50/p95/p99/max of event-to-frame latency over the floor, lost
and duplicate frames, and the watcher process's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import fresh_database, session_for, start_daphne  # noqa: E402  (bench/ is on the path)

PORT = 8765
REDIS = "redis://127.0.0.1:6379/11"


os.environ["DATABASE_URL"] = fresh_database("parkweb_bench_live")
os.environ["REDIS_URL"] = REDIS
os.environ["PARKWEB_WORKER_WATCHERS"] = "0"  # this process watches nothing itself
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
import websockets  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from lots.asterisk import actions, events  # noqa: E402
from lots.models import AsteriskServer, ServerHealth  # noqa: E402
from parkweb.celery import app  # noqa: E402
from tenants.models import Membership, Role, Tenant  # noqa: E402
from tests.factories import make_context, make_lot, make_server  # noqa: E402
from tests.integration.sandbox import Sandbox, sandbox  # noqa: E402
from tests.integration.workers import Worker  # noqa: E402


def setup(tenants: int, box: Sandbox) -> tuple[AsteriskServer, dict[str, str]]:
    """Tenants with one lot each on the sandbox; returns the server and a session per tenant."""
    app.conf.update(task_always_eager=True)  # deploy inline here
    server = make_server("bench-live", **box.server_fields())
    sessions = {}
    users = get_user_model().objects
    for i in range(tenants):
        tenant = Tenant.objects.create(slug=f"t{i}", name=f"Tenant {i}")
        make_lot(
            tenant,
            make_context(server, tenant, f"t{i}-parking"),
            "main",
            parkext="700",
            parkext_exclusive=True,  # dialling 700 runs Park(<this lot>)
            parkpos_start=701,
            parkpos_end=799,
            parkingtime=0,
        )
        user = users.create_user(f"user{i}", password="bench-pw-123")
        Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
        sessions[tenant.slug] = session_for(user)
    return server, sessions


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


async def run_load(box, sessions, clients, rate, seconds):
    floor: dict[tuple[str, str], float] = {}
    floor_tenant: dict[tuple[str, str], str] = {}
    frames: dict[tuple[int, tuple[str, str]], list[float]] = defaultdict(list)
    client_tenant: dict[int, str] = {}
    ready = asyncio.Event()
    done = asyncio.Event()
    slugs = sorted(sessions)

    def on_event(headers: dict) -> None:
        event = events.parse(headers)
        if event is not None:
            key = (event.key, str(event.kind))
            floor.setdefault(key, time.monotonic())
            floor_tenant[key] = event.lot.split("_")[0]

    async def client(number: int, slug: str) -> None:
        client_tenant[number] = slug
        async with websockets.connect(
            f"ws://127.0.0.1:{PORT}/ws/t/{slug}/parking/",
            additional_headers={
                "Cookie": f"sessionid={sessions[slug]}",
                "Origin": f"http://127.0.0.1:{PORT}",
            },
            max_queue=None,
        ) as ws:
            json.loads(await ws.recv())  # snapshot
            ready_clients.append(number)
            if len(ready_clients) == clients:
                ready.set()
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                arrived = time.monotonic()
                message = json.loads(raw)
                if "call" in message:
                    frames[(number, (message["call"]["uniqueid"], message["type"]))].append(arrived)

    ready_clients: list[int] = []
    async with box.ami(events="call", timeout=30) as raw, box.ami(events="call") as dialer:
        raw.on_event("*", on_event)
        tasks = [asyncio.create_task(client(n, slugs[n % len(slugs)])) for n in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        calls = int(rate / 2 * seconds)  # two events per call
        interval = 2 / rate
        start_at = time.monotonic()
        for n in range(calls):
            slug = slugs[n % len(slugs)]
            await actions.call_into(dialer, exten="700", context=f"{slug}-parking", seconds=1)
            delay = start_at + (n + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_for = time.monotonic() - start_at
        await asyncio.sleep(5)  # the last calls hang up; frames drain
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    latencies, lost, duplicates = [], 0, 0
    by_tenant = defaultdict(list)
    for number, slug in client_tenant.items():
        by_tenant[slug].append(number)
    for key, at in floor.items():
        for number in by_tenant.get(floor_tenant[key], []):
            seen = frames.get((number, key), [])
            if not seen:
                lost += 1
                continue
            duplicates += len(seen) - 1
            latencies.append(seen[0] - at)
    return {
        "events": len(floor),
        "sent_for": sent_for,
        "latencies": latencies,
        "lost": lost,
        "duplicates": duplicates,
        "calls": calls,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50, help="parking events per second")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    (ROOT / "artifacts").mkdir(exist_ok=True)
    redis.Redis.from_url(REDIS).flushdb()
    call_command("migrate", verbosity=0)
    sandbox("stop", "--name", "bench")
    box = Sandbox.from_env_output(sandbox("start", "--name", "bench", "--ami-port", "5041").stdout)
    server, sessions = setup(args.tenants, box)
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "PARKWEB_WORKER_WATCHERS": "1"}
    web = start_daphne(PORT, env, "bench-live-web")
    worker = Worker("bench-live", env)  # the production worker: deploys and the watcher
    try:
        deadline = time.monotonic() + 60
        while not ServerHealth.objects.filter(server=server, synced=True).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the watcher did not connect")
            time.sleep(0.2)
        result = asyncio.run(run_load(box, sessions, args.clients, args.rate, args.seconds))
        current, peak = rss_mb(worker.pid)
    finally:
        worker.stop()
        web.terminate()
        web.wait(timeout=30)
        box.hangup_all()
        sandbox("stop", "--name", "bench")
    latencies = [x * 1000 for x in result["latencies"]]
    achieved = result["events"] / result["sent_for"] if result["sent_for"] else 0
    print(f"database: {os.environ['DATABASE_URL'].split('@')[-1]}  layer: Redis")
    print(
        f"{args.clients} websocket clients over {args.tenants} tenants; {result['calls']} calls "
        f"-> {result['events']} parking events at {achieved:.1f}/s "
        f"(asked {args.rate:g}/s for {args.seconds:g} s)"
    )
    print(
        "| frames | p50 ms | p95 ms | p99 ms | max ms | mean ms | lost | duplicate | "
        "watcher RSS MB (peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    if latencies:
        print(
            f"| {len(latencies)} | {percentile(latencies, 50):.1f} | "
            f"{percentile(latencies, 95):.1f} | {percentile(latencies, 99):.1f} | "
            f"{max(latencies):.1f} | {statistics.mean(latencies):.1f} | {result['lost']} | "
            f"{result['duplicates']} | {current:.0f} ({peak:.0f}) |"
        )
    print(
        "targets: p99 <= 100 ms over the raw AMI arrival, no lost or duplicate frames, "
        "watcher RSS <= 150 MB"
    )


if __name__ == "__main__":
    main()

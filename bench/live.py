"""Live-state benchmark: parking events from the sandbox Asterisk to many websocket clients,
then a thundering herd of boards after a web restart.

    .venv/bin/python bench/live.py [--clients 200] [--tenants 20] [--rate 50] [--seconds 20]
        [--herd 1000] [--herd-tenants 50] [--handshake-timeout S]
        [--idle-load N] [--idle-load-groups yield|keep] [--smoke]

The production shape on one machine: daphne serving the websockets, one Celery worker
running the AMI watcher, Redis as broker and channel layer, PostgreSQL (else SQLite).

First the events: calls are parked by dialling each tenant's park extension and hang up a
second later, so each call gives two events (parked, abandoned). A second, raw AMI
connection in this process timestamps every event as it leaves Asterisk: the floor. Each
websocket frame is measured against it. Prints p50/p95/p99/max of event-to-frame latency
over the floor, lost and duplicate frames, and the watcher process's memory.

Then the herd: daphne is restarted and `--herd` board clients spread over `--herd-tenants`
tenants, each a member of its tenant with a session of its own, open their tenant's board
websocket all at once, as boards do when their web process comes back. Each must get its
own tenant's snapshot. Prints p50/p99/max from the start of the connect to the snapshot
received, the handshakes answered with an HTTP error or failed otherwise (daphne drops a
handshake the application has not answered within its --websocket_connect_timeout: the
Procfile's 60 s, unless `--handshake-timeout` says otherwise), and the clients left
without a snapshot.

`--idle-load N` runs N busy loops during the events, under the idle CPU policy, each in a
session of its own, as the webhook deliveries run: with `--idle-load-groups yield` (the
default) their scheduling groups get the lowest weight too, as parkweb's idle workers
give theirs; with `keep`, the policy alone (parkweb/cpu.py says why that is not enough).

Every wait is bounded; a wrong count (a lost or duplicate frame or snapshot, a failed
handshake or client) makes it exit non-zero. `--smoke`: a few seconds of events and a herd
of 100 over 10 tenants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import board as common_board  # noqa: E402
from common import (  # noqa: E402  (bench/ is on the path)
    counts,
    exit_on_wrong_counts,
    percentile,
    place,
    rss_mb,
    start_daphne,
    start_sandbox,
    stop,
    viewers,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--herd", type=int, default=1000, help="boards connecting at once")
    parser.add_argument("--herd-tenants", type=int, default=50)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50, help="parking events per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--handshake-timeout",
        type=int,
        help="daphne's --websocket_connect_timeout (default: the Procfile's)",
    )
    parser.add_argument(
        "--idle-load",
        type=int,
        default=0,
        help="busy loops under the idle CPU policy during the events, each in a session of "
        "its own (work that should only take CPU time nothing else wants)",
    )
    parser.add_argument(
        "--idle-load-groups",
        choices=["yield", "keep"],
        default="yield",
        help="whether the busy loops' scheduling groups yield too (parkweb.cpu), or keep "
        "their weight (the idle policy alone)",
    )
    parser.add_argument("--smoke", action="store_true", help="small counts, a few seconds")
    args = parser.parse_args()
    if args.smoke:
        args.herd, args.herd_tenants = 100, 10
        args.clients, args.tenants, args.rate, args.seconds = 20, 5, 20, 3
        args.handshake_timeout = 60  # a smoke run judges no time, daphne's handshake limit too
    args.seconds = min(args.seconds, 600)
    return args


ARGS = arguments()
PLACE = place("live", ARGS.smoke, redis_db=11, sandbox="bench-live", ami_port=5043, web_port=8765)
PORT = PLACE.web_port
HERD_SECONDS = 120  # the longest a herd client may take to get its snapshot
DRAIN_SECONDS = 3 if ARGS.smoke else 5  # after the last call: its hang-up, frames on their way

os.environ["DATABASE_URL"] = PLACE.database_url
os.environ["REDIS_URL"] = PLACE.redis_url
os.environ["PARKWEB_WORKER_WATCHERS"] = "0"  # this process watches nothing itself
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
import websockets  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.exceptions import InvalidHandshake, InvalidStatus  # noqa: E402

from lots.asterisk import actions, events  # noqa: E402
from lots.models import AsteriskServer, ServerHealth  # noqa: E402
from parkweb.celery import app  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tests.factories import make_context, make_lot, make_server  # noqa: E402
from tests.integration.sandbox import Sandbox  # noqa: E402
from tests.integration.workers import Worker  # noqa: E402


def setup(tenants: int, box: Sandbox) -> tuple[AsteriskServer, list[Tenant]]:
    """Tenants with one lot each on the sandbox."""
    app.conf.update(task_always_eager=True)  # deploy inline here
    server = make_server("bench-live", **box.server_fields())
    made = []
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
        made.append(tenant)
    return server, made


def board(slug: str, session_key: str, **options):
    return common_board(PORT, slug, session_key, **options)


class WrongSnapshot(Exception):
    """A board got something other than its own tenant's snapshot first."""


def is_snapshot_of(message: dict, slug: str) -> bool:
    lots = message.get("lots") or []
    return message.get("type") == "snapshot" and [lot["asterisk_name"] for lot in lots] == [
        f"{slug}_main"
    ]


async def herd(clients: list[tuple[str, str]]) -> dict:
    """Every client opens its board at once; each socket stays open until the whole herd is
    done (or HERD_SECONDS have passed), then any second snapshot it got is counted."""
    opened = []

    async def one(slug: str, session_key: str) -> float:
        start = time.monotonic()
        ws = await board(slug, session_key, open_timeout=None, close_timeout=5)
        opened.append(ws)
        first = json.loads(await ws.recv())
        if not is_snapshot_of(first, slug):
            raise WrongSnapshot(str(first)[:80])
        return time.monotonic() - start

    tasks = [asyncio.create_task(one(slug, key)) for slug, key in clients]
    try:
        done, pending = await asyncio.wait(tasks, timeout=HERD_SECONDS)
        for task in pending:
            task.cancel()
        took, failures = [], Counter()
        for task in done:
            error = task.exception()
            if error is None:
                took.append(task.result())
            elif isinstance(error, InvalidStatus):
                failures[f"HTTP {error.response.status_code}"] += 1
            elif isinstance(error, InvalidHandshake):
                failures[f"handshake failed ({type(error).__name__})"] += 1
            else:
                failures[type(error).__name__] += 1
        if pending:
            failures[f"no snapshot within {HERD_SECONDS} s"] = len(pending)

        async def later_snapshots(ws) -> int:
            """Snapshots after the first that reach a board in the next half second."""
            again = 0
            with suppress(TimeoutError, websockets.ConnectionClosed):
                async with asyncio.timeout(0.5):
                    while True:
                        again += json.loads(await ws.recv()).get("type") == "snapshot"
            return again

        again = await asyncio.gather(*(later_snapshots(ws) for ws in opened))
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    return {
        "took": took,
        "http_errors": sum(n for what, n in failures.items() if what.startswith("HTTP")),
        "failed_handshakes": sum(n for what, n in failures.items() if what.startswith("hand")),
        "wrong": failures["WrongSnapshot"],
        "failures": failures,
        "again": sum(again),
    }


async def run_load(box, sessions, clients, rate, seconds):
    floor: dict[tuple[str, str], float] = {}
    floor_tenant: dict[tuple[str, str], str] = {}
    frames: dict[tuple[int, tuple[str, str]], list[float]] = defaultdict(list)
    client_tenant: dict[int, str] = {}
    settled: list[int] = []  # clients with their snapshot, or failed
    failed: Counter = Counter()
    ready = asyncio.Event()
    done = asyncio.Event()
    slugs = sorted(sessions)

    def on_event(headers: dict) -> None:
        event = events.parse(headers)
        if event is not None:
            key = (event.key, str(event.kind))
            floor.setdefault(key, time.monotonic())
            floor_tenant[key] = event.lot.split("_")[0]

    def settle(number: int) -> None:
        settled.append(number)
        if len(settled) == clients:
            ready.set()

    async def client(number: int, slug: str) -> None:
        client_tenant[number] = slug
        try:
            async with board(slug, sessions[slug]) as ws:
                json.loads(await ws.recv())  # snapshot
                settle(number)
                while not done.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    arrived = time.monotonic()
                    message = json.loads(raw)
                    if "call" in message:
                        key = (message["call"]["uniqueid"], message["type"])
                        frames[(number, key)].append(arrived)
        except Exception as error:
            failed[type(error).__name__] += 1
            if number not in settled:
                settle(number)

    async with box.ami(events="call", timeout=30) as raw, box.ami(events="call") as dialer:
        raw.on_event("*", on_event)
        tasks = [asyncio.create_task(client(n, slugs[n % len(slugs)])) for n in range(clients)]
        try:
            await asyncio.wait_for(ready.wait(), 60)
        except TimeoutError:
            failed["no snapshot within 60 s"] += clients - len(settled)
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
        await asyncio.sleep(DRAIN_SECONDS)
        done.set()
        await asyncio.wait(tasks, timeout=10)

    latencies, seen, duplicates, unexpected = [], 0, 0, 0
    by_tenant = defaultdict(list)
    for number, slug in client_tenant.items():
        by_tenant[slug].append(number)
    for (number, key), arrivals in frames.items():
        if key not in floor or floor_tenant[key] != client_tenant[number]:
            unexpected += 1  # not an event of this client's tenant
            continue
        seen += 1
        duplicates += len(arrivals) - 1
        latencies.append(arrivals[0] - floor[key])
    # Each call gives two events, each owed to every client of the call's tenant.
    expected = sum(2 * len(by_tenant[slugs[n % len(slugs)]]) for n in range(calls))
    return {
        "events": len(floor),
        "sent_for": sent_for,
        "latencies": latencies,
        "calls": calls,
        "counts": {
            "expected": expected,
            "seen": seen,
            "duplicate": duplicates,
            "errors": unexpected + sum(failed.values()),
        },
        "failed": failed,
    }


# A busy loop under the idle policy, in a session of its own, its group yielding or not;
# it ends by itself after argv[2] seconds should nobody stop it.
BURNER = """
import os, sys, time
from parkweb import cpu
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
if sys.argv[1] == "yield":
    assert cpu.group_yield()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pass
"""


def idle_load(groups: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BURNER, groups, str(ARGS.seconds + 120)],
        cwd=ROOT,
        start_new_session=True,
    )


def main() -> None:
    (ROOT / "artifacts").mkdir(exist_ok=True)
    redis.Redis.from_url(PLACE.redis_url).flushdb()
    call_command("migrate", verbosity=0)
    box = start_sandbox(PLACE)
    web = worker = None
    try:
        server, tenants = setup(max(ARGS.tenants, ARGS.herd_tenants), box)
        sessions = dict(viewers(tenants[: ARGS.tenants], ARGS.tenants, "user"))
        herd_clients = viewers(tenants[: ARGS.herd_tenants], ARGS.herd, "herd")
        env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "PARKWEB_WORKER_WATCHERS": "1"}
        worker = Worker(PLACE.name, env)  # the production worker: deploys and the watcher
        daphne = ["--websocket_connect_timeout", str(ARGS.handshake_timeout)]
        daphne = daphne if ARGS.handshake_timeout else []
        web = start_daphne(PORT, env, f"{PLACE.name}-web", *daphne)
        deadline = time.monotonic() + 60
        while not ServerHealth.objects.filter(server=server, synced=True).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the watcher did not connect")
            time.sleep(0.2)
        burners = [idle_load(ARGS.idle_load_groups) for _ in range(ARGS.idle_load)]
        try:
            result = asyncio.run(run_load(box, sessions, ARGS.clients, ARGS.rate, ARGS.seconds))
        finally:
            for burner in burners:
                stop(burner)
        current, peak = rss_mb(worker.pid)
        stop(web)  # a web restart: then every board comes back at once
        web = start_daphne(PORT, env, f"{PLACE.name}-web-restarted", *daphne)
        crowd = asyncio.run(herd(herd_clients))
    finally:
        if worker is not None:
            worker.stop()
        if web is not None:
            stop(web)
        box.hangup_all()
        box.stop()
    print(f"database: {PLACE.database_url.split('@')[-1]}  layer: Redis")
    latencies = [x * 1000 for x in result["latencies"]]
    achieved = result["events"] / result["sent_for"] if result["sent_for"] else 0
    print(
        f"{ARGS.clients} websocket clients over {ARGS.tenants} tenants; {result['calls']} calls "
        f"-> {result['events']} parking events at {achieved:.1f}/s "
        f"(asked {ARGS.rate:g}/s for {ARGS.seconds:g} s)"
    )
    if result["failed"]:
        print("client failures:", dict(result["failed"]))
    if ARGS.idle_load:
        print(
            f"meanwhile {ARGS.idle_load} busy loop(s) under the idle policy, their groups' "
            f"weight: {'lowest' if ARGS.idle_load_groups == 'yield' else 'kept'}"
        )
    print(
        "| frames | p50 ms | p95 ms | p99 ms | max ms | mean ms | lost | duplicate | "
        "watcher RSS MB (peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    figures = result["counts"]
    if latencies:
        print(
            f"| {len(latencies)} | {percentile(latencies, 50):.1f} | "
            f"{percentile(latencies, 95):.1f} | {percentile(latencies, 99):.1f} | "
            f"{max(latencies):.1f} | {statistics.mean(latencies):.1f} | "
            f"{figures['expected'] - figures['seen']} | {figures['duplicate']} | "
            f"{current:.0f} ({peak:.0f}) |"
        )
    right = [counts("event frames", **figures)]

    took = [x * 1000 for x in crowd["took"]]
    print(
        f"herd after a web restart: {ARGS.herd} boards over {ARGS.herd_tenants} tenants "
        f"connecting at once: {len(took)} snapshots; connect to snapshot p50 "
        f"{percentile(took, 50) if took else 0:.0f} ms, p99 "
        f"{percentile(took, 99) if took else 0:.0f} ms, max {max(took, default=0):.0f} ms; "
        f"HTTP errors {crowd['http_errors']}, other failed handshakes "
        f"{crowd['failed_handshakes']}, no snapshot {ARGS.herd - len(took)}"
    )
    if crowd["failures"]:
        print("herd failures:", dict(crowd["failures"]))
    right.append(
        counts(
            "herd snapshots",
            expected=ARGS.herd,
            seen=len(took),
            duplicate=crowd["again"],
            errors=crowd["http_errors"] + crowd["failed_handshakes"] + crowd["wrong"],
        )
    )
    print(
        "targets: p99 <= 100 ms over the raw AMI arrival, no lost or duplicate frames, "
        "watcher RSS <= 150 MB; herd: a snapshot for every board, no failed handshake"
    )
    exit_on_wrong_counts(right)


if __name__ == "__main__":
    main()

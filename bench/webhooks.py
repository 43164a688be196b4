"""Webhook benchmark: parking events from the sandbox Asterisk to the tenants' webhook
endpoints on a loopback receiver, while boards watch the same events.

    .venv/bin/python bench/webhooks.py [--rate 50] [--seconds 20] [--tenants 20]
        [--endpoints 100] [--clients 100] [--webhook-workers 2] [--priority idle]
        [--rounds 4] [--warm-up 4] [--slow-answer SECONDS] [--slow-tenants 1] [--smoke]

The production shape on one machine: daphne serving the boards, one Celery worker running
the AMI watcher (and deploys), `--webhook-workers` workers serving the deliveries' own
queue (PARKWEB_WEBHOOK_QUEUE), Redis, PostgreSQL (else SQLite), and the receiver in a
process of its own. Delivery is plain http to this machine (DEBUG, as only there it may
be): TLS would add its handshake to every delivery.

The same load runs on both sides: calls parked by dialling each tenant's park extension
that hang up a second later (two events each), with every endpoint inactive (boards only)
and with all of them active. After a warm-up that is not measured (connections opened,
caches filled), the sides alternate in mirrored pairs (off, on, on, off, off, on ...:
the side that runs second in one round runs first in the next) for `--rounds` rounds of
`--seconds / --rounds` each, and each side's rounds are pooled. `--endpoints 0` runs the
same side twice: how far apart two runs of one side fall is the comparison's noise. A
raw AMI connection in this process timestamps every event as it leaves Asterisk: the
floor. Prints, for the deliveries, p50/p95/p99/max from the floor to the receiver, lost
and duplicate deliveries, and each event's order per endpoint; for the boards, the same
figures of bench/live.py on both sides and their ratio. Every wait is bounded; a wrong
count makes it exit non-zero. `--smoke`: a few seconds, a few endpoints.

`--slow-answer SECONDS`: the first `--slow-tenants` tenants' receivers answer each
delivery that many seconds late (a slow CRM), more than their endpoints' share of the
events can keep up with. The other tenants' deliveries are then reported apart: a slow
receiver must hold up its own tenant only. The slow tenants' are judged for duplicates
and order, not for loss (their queues grow while the load lasts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import (  # noqa: E402  (bench/ is on the path)
    board,
    counts,
    exit_on_wrong_counts,
    free_port,
    percentile,
    place,
    start_daphne,
    start_sandbox,
    stop,
    viewers,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="parking events per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--endpoints", type=int, default=100, help="spread over the tenants")
    parser.add_argument("--clients", type=int, default=100, help="boards, over the tenants")
    parser.add_argument("--webhook-workers", type=int, default=2)
    parser.add_argument(
        "--priority",
        choices=["idle", "nice", "normal"],  # tests.integration.workers.PRIORITIES
        default="idle",
        help="the delivery workers' and the receiver's CPU priority (idle: SCHED_IDLE)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="phases alternate off, on, on, off ...: each gets --seconds / rounds a round",
    )
    parser.add_argument(
        "--warm-up", type=float, default=4, help="seconds of load first, not measured"
    )
    parser.add_argument(
        "--slow-answer",
        type=float,
        default=0,
        metavar="SECONDS",
        help="the slow tenants' receivers answer this late (0: none is slow)",
    )
    parser.add_argument("--slow-tenants", type=int, default=1, help="with --slow-answer")
    parser.add_argument("--smoke", action="store_true", help="small counts, a few seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds, args.tenants, args.rounds, args.warm_up = 10, 2, 3, 1, 0
        args.endpoints, args.clients, args.webhook_workers = 6, 6, 1
    args.rounds = max(args.rounds, 1)
    args.seconds = min(args.seconds, 600)
    return args


ARGS = arguments()
PLACE = place(
    "webhooks", ARGS.smoke, redis_db=9, sandbox="bench-hooks", ami_port=5044, web_port=8768
)
DRAIN_SECONDS = 3 if ARGS.smoke else 6  # after the last call: its hang-up, deliveries
ROUND_SECONDS = ARGS.seconds / ARGS.rounds  # each side's share of a round
# --slow-answer: the receiver paths of the slow tenants' endpoints start so
SLOW_PATHS = tuple(f"/t{n}/" for n in range(ARGS.slow_tenants if ARGS.slow_answer else 0))


def is_slow(path: str) -> bool:
    return bool(SLOW_PATHS) and path.startswith(SLOW_PATHS)


os.environ["DATABASE_URL"] = PLACE.database_url
os.environ["REDIS_URL"] = PLACE.redis_url
os.environ["PARKWEB_WORKER_WATCHERS"] = "0"  # this process watches nothing itself
os.environ["PARKWEB_WEBHOOK_QUEUE"] = "webhooks"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from lots import services  # noqa: E402
from lots.asterisk import actions, events  # noqa: E402
from lots.models import ServerHealth, Webhook  # noqa: E402
from parkweb.celery import app  # noqa: E402
from parkweb.cpu import yield_cpu  # noqa: E402
from tenants.actors import SYSTEM  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tests.factories import make_context, make_lot, make_server  # noqa: E402
from tests.integration.workers import Worker  # noqa: E402


class _Answering(asyncio.Protocol):
    """One keep-alive connection of the receiver: each POST is recorded with its arrival
    time and answered 200 at once. Lean on purpose (no HTTP library): it stands for
    other machines, and every millisecond of CPU it spends here is taken from parkweb."""

    def __init__(self, records: list):
        self.records, self.buffer = records, b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, length = self.buffer[:end].split(b"\r\n"), 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the body is on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = head[0].split(b" ")[1]
            self.records.append((path.decode(), body, time.time()))
            if is_slow(path.decode()):
                asyncio.get_running_loop().call_later(ARGS.slow_answer, self.answer)
            else:
                self.answer()

    def answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def receive(port: int, pipe) -> None:
    """The receiver, in a process of its own: answers 200 and sends back (path, event id,
    type, call's unique id, arrival) of each POST when asked."""
    # It stands for another machine: here it yields to parkweb, as the deliveries do.
    if ARGS.priority == "idle":
        os.setsid()  # a scheduling group of its own, which yields as a whole (parkweb.cpu)
        yield_cpu()
    elif ARGS.priority == "nice":
        os.nice(10)
    records: list = []
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: _Answering(records), "127.0.0.1", port, backlog=512)
    )
    threading.Thread(target=loop.run_forever, daemon=True).start()
    pipe.send("ready")
    while pipe.recv() == "dump":
        taken = records[:]  # appended to by the loop's thread only
        del records[: len(taken)]
        dumped = []
        for path, body, at in taken:
            event = json.loads(body)
            call = event.get("call") or {}
            dumped.append((path, event["id"], event["type"], call.get("uniqueid"), at))
        pipe.send(dumped)
    loop.call_soon_threadsafe(server.close)


def setup(box) -> tuple:
    """Tenants with one lot each, and `--endpoints` webhooks spread round them (inactive)."""
    app.conf.update(task_always_eager=True)  # deploy inline here
    settings.DEBUG = True  # the endpoints are plain http on this machine
    server = make_server("bench-hooks", **box.server_fields())
    tenants = []
    for i in range(ARGS.tenants):
        tenant = Tenant.objects.create(slug=f"t{i}", name=f"Tenant {i}")
        make_lot(
            tenant,
            make_context(server, tenant, f"t{i}-parking"),
            "main",
            parkext="700",
            parkext_exclusive=True,
            parkpos_start=701,
            parkpos_end=799,
            parkingtime=0,
        )
        tenants.append(tenant)
    return server, tenants


def endpoints(tenants, port: int) -> dict[str, str]:
    """{receiver path: tenant slug} of the webhooks made, all inactive for now."""
    made = {}
    for n in range(ARGS.endpoints):
        tenant = tenants[n % len(tenants)]
        path = f"/{tenant.slug}/hook{n}"
        services.webhook_create(
            tenant,
            actor=SYSTEM,
            url=f"http://127.0.0.1:{port}{path}",
            events=["call.parked", "call.abandoned"],
        )
        made[path] = tenant.slug
    Webhook.objects.update(active=False)
    return made


async def load(box, sessions: dict[str, str], port: int, seconds: float) -> dict:
    """One phase of `seconds`: the calls, the floor, and what the boards got."""
    floor: dict[tuple[str, str], float] = {}
    floor_tenant: dict[str, str] = {}
    frames: dict[tuple[int, tuple[str, str]], list[float]] = defaultdict(list)
    clients: dict[int, str] = {}
    done = asyncio.Event()
    slugs = sorted(sessions)
    ready = 0

    mine: set[str] = set()  # the calls parked in this phase

    def on_event(headers: dict) -> None:
        # Only the events of calls parked once every board is subscribed. A late hang-up
        # of the last phase's calls reaches no board of this phase, and is no frame lost:
        # this loop, busy with 100 boards, may see it only after the last board is ready,
        # though the watcher applied it while boards were still subscribing.
        event = events.parse(headers)
        if event is None:
            return
        if event.kind == events.Kind.PARKED and ready == ARGS.clients:
            mine.add(event.key)
        if event.key in mine:
            floor.setdefault((event.key, str(event.kind)), time.time())
            floor_tenant[event.key] = event.lot.split("_")[0]

    async def client(number: int, slug: str) -> None:
        nonlocal ready
        clients[number] = slug
        async with board(port, slug, sessions[slug]) as ws:
            json.loads(await ws.recv())  # the snapshot
            ready += 1
            while not done.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if "call" in message:
                    key = (message["call"]["uniqueid"], message["type"])
                    frames[(number, key)].append(time.time())

    async with box.ami(events="call", timeout=30) as raw, box.ami(events="call") as dialer:
        raw.on_event("*", on_event)
        tasks = [asyncio.create_task(client(n, slugs[n % len(slugs)])) for n in range(ARGS.clients)]
        deadline = time.monotonic() + 60
        while ready < ARGS.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        calls = int(ARGS.rate / 2 * seconds)
        interval, started = 2 / ARGS.rate, time.monotonic()
        started_at = last_call_at = time.time()
        for n in range(calls):
            slug = slugs[n % len(slugs)]
            last_call_at = time.time()
            await actions.call_into(dialer, exten="700", context=f"{slug}-parking", seconds=1)
            delay = started + (n + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(DRAIN_SECONDS)
        done.set()
        await asyncio.wait(tasks, timeout=10)

    latencies, seen, duplicate, wrong = [], 0, 0, 0
    per_tenant = defaultdict(int)
    for slug in clients.values():
        per_tenant[slug] += 1
    for (number, key), arrivals in frames.items():
        if key not in floor or floor_tenant[key[0]] != clients[number]:
            wrong += 1
            continue
        seen += 1
        duplicate += len(arrivals) - 1
        latencies.append(arrivals[0] - floor[key])
    expected = sum(per_tenant[floor_tenant[uid]] for uid, _ in floor)
    got = defaultdict(int)
    for _, key in frames:
        got[key] += 1
    for key in [key for key in floor if got[key] < per_tenant[floor_tenant[key[0]]]][:3]:
        print(  # a lost frame, to look into: when its event came, against the phase's calls
            f"missing on {per_tenant[floor_tenant[key[0]]] - got[key]} board(s): {key}, "
            f"{floor[key] - started_at:+.2f} s after the first call (the last at "
            f"{last_call_at - started_at:+.2f} s)",
            flush=True,
        )
    return {
        "floor": floor,
        "floor_tenant": floor_tenant,
        "calls": calls,
        "boards": latencies,
        "board_counts": {
            "expected": expected,
            "seen": seen,
            "duplicate": duplicate,
            "errors": wrong + ARGS.clients - ready,
        },
    }


def pooled(phases: list[dict]) -> dict:
    """One side's rounds as one phase."""
    total = {
        "floor": {},
        "floor_tenant": {},
        "calls": 0,
        "boards": [],
        "board_counts": defaultdict(int),
    }
    for phase in phases:
        total["floor"].update(phase["floor"])
        total["floor_tenant"].update(phase["floor_tenant"])
        total["calls"] += phase["calls"]
        total["boards"] += phase["boards"]
        for key, value in phase["board_counts"].items():
            total["board_counts"][key] += value
    return total


def deliveries(phase: dict, got: list[tuple], paths: dict[str, str]) -> dict:
    """Floor-to-receiver latency, lost and duplicate deliveries, and order per endpoint."""
    per_tenant = defaultdict(list)
    for path, slug in paths.items():
        per_tenant[slug].append(path)
    expected = {
        (path, uid, kind)
        for (uid, kind) in phase["floor"]
        for path in per_tenant[phase["floor_tenant"][uid]]
    }
    latencies, seen, duplicate, wrong, out_of_order = [], set(), 0, 0, 0
    last: dict[str, float] = {}
    for path, _, kind, uid, arrived in sorted(got, key=lambda g: g[4]):
        key = (path, uid, kind.removeprefix("call."))
        if key not in expected:
            wrong += 1
            continue
        if key in seen:
            duplicate += 1
            continue
        seen.add(key)
        happened = phase["floor"][key[1:]]
        latencies.append(arrived - happened)
        out_of_order += happened < last.get(path, 0.0)
        last[path] = happened
    return {
        "latencies": latencies,
        "out_of_order": out_of_order,
        "counts": {
            "expected": len(expected),
            "seen": len(seen),
            "duplicate": duplicate,
            "errors": wrong,
        },
    }


def row(label: str, values: list[float], extra: str) -> str:
    ms = [v * 1000 for v in values] or [0.0]
    return (
        f"| {label} | {len(values)} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} | "
        f"{percentile(ms, 99):.1f} | {max(ms):.1f} | {extra} |"
    )


def main() -> None:
    (ROOT / "artifacts").mkdir(exist_ok=True)
    redis.Redis.from_url(PLACE.redis_url).flushdb()
    call_command("migrate", verbosity=0)
    box = start_sandbox(PLACE)
    receiver_port = free_port()
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    receiver = multiprocessing.get_context("fork").Process(
        target=receive, args=(receiver_port, theirs), daemon=True
    )
    receiver.start()
    assert ours.poll(30) and ours.recv() == "ready"
    web, workers = None, []
    try:
        server, tenants = setup(box)
        paths = endpoints(tenants, receiver_port)
        sessions = dict(viewers(tenants, len(tenants), "user"))
        env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "PARKWEB_WORKER_WATCHERS": "1"}
        workers.append(Worker(f"{PLACE.name}-watcher", env))  # deploys and the watcher
        # Delivery workers: DEBUG lets them post plain http to this machine.
        quiet = {**env, "PARKWEB_WORKER_WATCHERS": "0", "DEBUG": "1"}
        for n in range(ARGS.webhook_workers):
            workers.append(
                Worker(f"{PLACE.name}-hooks{n}", quiet, queues="webhooks", priority=ARGS.priority)
            )
        web = start_daphne(PLACE.web_port, env, f"{PLACE.name}-web")
        deadline = time.monotonic() + 60
        while not ServerHealth.objects.filter(server=server, synced=True).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the watcher did not connect")
            time.sleep(0.2)
        if ARGS.warm_up:  # connections opened, caches filled: then measured
            Webhook.objects.update(active=True)
            asyncio.run(load(box, sessions, PLACE.web_port, ARGS.warm_up))
            time.sleep(DRAIN_SECONDS)
            box.hangup_all()
            Webhook.objects.update(active=False)
            ours.send("dump")
            ours.recv()
        alone, both, stray, got = [], [], [], []

        def off_side() -> None:
            alone.append(asyncio.run(load(box, sessions, PLACE.web_port, ROUND_SECONDS)))
            ours.send("dump")
            for delivery in ours.recv():  # nothing may arrive while every endpoint is inactive
                # but the slow tenant's last sends of the side before, answered late
                late = is_slow(delivery[0])
                (got if late else stray).append(delivery)
            box.hangup_all()

        def on_side() -> None:
            Webhook.objects.update(active=True)
            both.append(asyncio.run(load(box, sessions, PLACE.web_port, ROUND_SECONDS)))
            time.sleep(DRAIN_SECONDS)  # the last deliveries on their way
            ours.send("dump")
            got.extend(ours.recv())
            box.hangup_all()
            Webhook.objects.update(active=False)

        # Alternated in mirrored pairs (off, on, on, off, off, on ...), so that neither side
        # has the machine's quieter minutes, nor the place after the other, to itself.
        for number in range(ARGS.rounds):
            for side in (off_side, on_side) if number % 2 == 0 else (on_side, off_side):
                side()
        alone, both = pooled(alone), pooled(both)
    finally:
        ours.send("stop")
        receiver.join(5)
        for worker in workers:
            worker.stop()
        if web is not None:
            stop(web)
        box.hangup_all()
        box.stop()
    slow = {path: slug for path, slug in paths.items() if is_slow(path)}
    others = {path: slug for path, slug in paths.items() if path not in slow}
    sent = deliveries(both, [g for g in got if g[0] in others], others)
    late = deliveries(both, [g for g in got if g[0] in slow], slow)
    print(f"database: {PLACE.database_url.split('@')[-1]}  layer and broker: Redis")
    print(
        f"{ARGS.endpoints} endpoints and {ARGS.clients} boards over {ARGS.tenants} tenants; "
        f"{both['calls']} calls a side, {len(both['floor'])} parking events at "
        f"{ARGS.rate:g}/s for {ARGS.seconds:g} s, in {ARGS.rounds} round(s) of off then on "
        f"after {ARGS.warm_up:g} s of warm-up; {ARGS.webhook_workers} delivery worker(s)"
    )
    if slow:
        print(
            f"{len(SLOW_PATHS)} tenant(s)' {len(slow)} endpoints answer {ARGS.slow_answer:g} s late"
        )
    print(
        "| from the event on a raw AMI connection to | count | p50 ms | p95 ms | p99 ms "
        "| max ms | |"
    )
    print("|---|---|---|---|---|---|---|")
    label = "the receiver, the other tenants" if slow else "the receiver (webhooks)"
    print(row(label, sent["latencies"], f"{sent['out_of_order']} out of order"))
    if slow:
        late_order = f"{late['out_of_order']} out of order"
        print(row("the receiver, the slow tenants", late["latencies"], late_order))
    print(row("a board, webhooks off", alone["boards"], ""))
    print(row("a board, webhooks on", both["boards"], ""))
    if alone["boards"] and both["boards"]:
        ratio = percentile(both["boards"], 99) / max(percentile(alone["boards"], 99), 1e-6)
        print(f"board p99 with webhooks / without: {ratio:.2f}")
    delivered = counts("webhook deliveries", **sent["counts"])
    right = [
        delivered or not ARGS.endpoints,  # the same side twice: nothing to deliver
        counts("board frames without webhooks", **alone["board_counts"]),
        counts("board frames with webhooks", **both["board_counts"]),
        not stray,
    ]
    if slow:
        c = late["counts"]
        print(
            f"the slow tenants' deliveries: {c['seen']} of {c['expected']} arrived by the end "
            f"of each side's drain, {c['duplicate']} duplicate, {c['errors']} unexpected"
        )
        right.append(not c["duplicate"] and not c["errors"])
    if stray:
        print(f"{len(stray)} deliveries reached the receiver while every endpoint was inactive")
    if sent["out_of_order"] or late["out_of_order"]:
        right.append(False)
        print(
            f"{sent['out_of_order'] + late['out_of_order']} deliveries reached their endpoint "
            "out of order"
        )
    print(
        "targets: webhook p99 <= 250 ms, 0 lost, 0 duplicate, in order per endpoint; the "
        "boards' p99 no worse with webhooks on"
    )
    exit_on_wrong_counts(right)


if __name__ == "__main__":
    main()

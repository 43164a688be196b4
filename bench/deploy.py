"""Deploy benchmark: render time, save-to-live against Asterisk's bare reload, the call-setup
stall during a reload, and how many reloads a burst of edits costs.

    .venv/bin/python bench/deploy.py [--sizes 100,1000,3000] [--burst 1000]
        [--chain-sizes 100,1000] [--smoke]

Runs against its own Asterisk sandbox ("bench", AMI 127.0.0.1:5041), its own database
(PostgreSQL `parkweb_bench_deploy` when one answers on 127.0.0.1:5432, else SQLite) and,
for the burst's worker, Redis database 14. Figures are compared as ratios within one run:
these machines are shared and noisy. After each size and after the burst, every lot must
run on Asterisk as saved (a counts line each). Then, with every lot on parkweb's timeout
chain, one lot's chain is changed: save-to-live and reloads, against the same change
made through res_parking. `--smoke`: a few seconds, small sizes.
"""

from __future__ import annotations

import argparse
import asyncio
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
    parser.add_argument("--sizes", default="100,1000,3000")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument(
        "--chain-sizes", default="100,1000", help="lots, for the timeout chain's changes"
    )
    parser.add_argument("--render", type=int, default=10_000, help="lots rendered in memory")
    parser.add_argument("--smoke", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.burst, args.render = "10,50", 40, 1_000
        args.chain_sizes = "10,50"
    return args


ARGS = arguments()
PLACE = place("deploy", ARGS.smoke, redis_db=14, sandbox="bench", ami_port=5041)
os.environ["DATABASE_URL"] = PLACE.database_url
os.environ.pop("REDIS_URL", None)  # deploys run inline in this process, except the burst
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from lots import rules, services  # noqa: E402
from lots.asterisk import actions, comeback, confgen  # noqa: E402
from lots.asterisk.ami import AmiClient  # noqa: E402
from lots.models import (  # noqa: E402
    AsteriskServer,
    Deployment,
    DialplanContext,
    ParkingLot,
)
from lots.selectors import server_config  # noqa: E402
from parkweb.celery import app  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tests.factories import bulk_lots, make_server  # noqa: E402
from tests.integration.sandbox import Sandbox  # noqa: E402

BENCH_DIALPLAN = """
[bench]
exten => ring,1,Answer()
 same => n,Wait(2)
 same => n,Hangup()
"""


def start_asterisk() -> Sandbox:
    box = start_sandbox(PLACE)
    box.write("extensions_local.conf", BENCH_DIALPLAN)
    box.cli("dialplan reload")
    return box


def populate(server: AsteriskServer, tenant: Tenant, count: int) -> None:
    """`count` valid lots: one context per 10 lots, 10 spaces each, as tenants would have."""
    ParkingLot.objects.filter(server=server).delete()
    DialplanContext.objects.filter(server=server).delete()
    bulk_lots(server, tenant, count, prefix="lot")


def deploy_now(server: AsteriskServer) -> Deployment:
    services.deployment_request(server.pk, enqueue=False, force=True)
    _, deployment = services.deployment_run(server.pk)
    deployment.refresh_from_db()
    assert deployment.status == "ok", deployment.error
    return deployment


def timed(function, repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def live_and_bare(
    server: AsteriskServer, box: Sandbox, repeat: int = 5
) -> tuple[float, float, float]:
    """Medians, in seconds, of: a one-lot save until its deployment is verified live;
    Asterisk's own reload inside that deployment; and Asterisk's bare reload of the same
    file written by hand (interleaved with the saves, so both see the same Asterisk)."""
    lot = ParkingLot.objects.filter(server=server).order_by("pk").first()
    path = box.config_dir / "res_parking.conf"
    live, inside, bare = [], [], []

    async def reload_by_hand(text: str) -> float:
        async with box.ami(timeout=600) as ami:
            path.write_text(text)
            start = time.perf_counter()
            reply = await actions.reload_module(ami, "res_parking.so")
            assert reply.success, reply.message
            return time.perf_counter() - start

    for i in range(repeat):
        start = timezone.now()
        services.lot_update(lot, parkingtime=46 + i)
        deployment = Deployment.objects.filter(server=server).order_by("-pk").first()
        assert deployment.status == "ok", deployment.error
        live.append((deployment.finished_at - start).total_seconds())
        inside.append(
            sum(r.get("seconds", 0) for r in deployment.replies if r["action"] == "Reload")
        )
        text = deployment.res_parking_conf.replace(
            f"parkingtime => {46 + i}", f"parkingtime => {146 + i}", 1
        )
        bare.append(asyncio.run(reload_by_hand(text)))
        deploy_now(server)  # parkweb's own file back, and Asterisk running it
    return statistics.median(live), statistics.median(inside), statistics.median(bare)


def policy_live(server: AsteriskServer, box: Sandbox, repeat: int = 5) -> dict:
    """Every lot with parkweb's timeout chain (the generated dialplan), then medians, in
    seconds, of one lot's comeback ring time changed and saved until its deployment is
    verified live: with the chain (a dialplan change only), and for the same change on a
    lot without it (res_parking's comebackdialtime: a reload)."""
    ParkingLot.objects.filter(server=server).update(timeout_policy=rules.TIMEOUT_CHAIN)
    start = time.perf_counter()
    first = deploy_now(server)
    figures = {"first": time.perf_counter() - start, "reloads": 0, "dialplan_ok": 0}
    figures["first_dialplan"] = sum(
        r.get("seconds", 0) for r in first.replies if r["action"] == "dialplan"
    )
    lot = ParkingLot.objects.filter(server=server).order_by("pk").first()
    chain, plain = [], []
    for i in range(repeat):
        for samples, policy in ((chain, rules.TIMEOUT_CHAIN), (plain, rules.TIMEOUT_ASTERISK)):
            if lot.timeout_policy != policy:  # switch outside the timing
                services.lot_update(lot, timeout_policy=policy)
            began = timezone.now()
            services.lot_update(lot, comebackdialtime=21 + i + (10 if samples is plain else 0))
            deployment = Deployment.objects.filter(server=server).order_by("-pk").first()
            assert deployment.status == "ok", deployment.error
            samples.append((deployment.finished_at - began).total_seconds())
            if samples is chain:
                figures["reloads"] += deployment.reloaded
                wanted = comeback.parse(deployment.dialplan_conf)
                context = confgen.timeout_context(lot.asterisk_name)

                async def check(wanted=wanted, context=context) -> list[str]:
                    async with box.ami() as ami:
                        return await comeback.differences(ami, wanted, [context])

                figures["dialplan_ok"] += not asyncio.run(check())
    ParkingLot.objects.filter(server=server).update(timeout_policy=rules.TIMEOUT_ASTERISK)
    deploy_now(server)
    figures.update(chain=statistics.median(chain), plain=statistics.median(plain))
    return figures


def originate_times(box: Sandbox, text: str) -> tuple[float, float]:
    """Seconds until an Originate into the dialplan is answered: idle, and mid-reload."""
    path = box.config_dir / "res_parking.conf"

    async def originate(ami: AmiClient) -> float:
        """Until Asterisk reports the call answered (its OriginateResponse event)."""
        answered = asyncio.get_running_loop().create_future()
        action_id = f"bench-{time.perf_counter_ns()}"

        def on_response(event: dict) -> None:
            if event.get("ActionID") == action_id and not answered.done():
                answered.set_result(event.get("Response"))

        ami.on_event("OriginateResponse", on_response)
        start = time.perf_counter()
        await actions.call_into(ami, exten="ring", context="bench", seconds=1, action_id=action_id)
        assert await asyncio.wait_for(answered, 60) == "Success"
        return time.perf_counter() - start

    async def run():
        async with box.ami(events="call", timeout=60) as ami, box.ami(timeout=600) as other:
            idle = await originate(ami)
            path.write_text(text.replace("parkingtime => 45", "parkingtime => 61", 1))
            reload = asyncio.create_task(actions.reload_module(other, "res_parking.so"))
            await asyncio.sleep(0.01)
            during = await originate(ami)
            await reload
            return idle, during

    try:
        return asyncio.run(run())
    finally:
        box.hangup_all()


def render(count: int) -> float:
    """Pure rendering of `count` lots (objects in memory, no database)."""
    server = AsteriskServer(pk=1, name="render")
    tenant = Tenant(pk=1, slug="bench")
    lots = []
    for i in range(count):
        context = DialplanContext(pk=i // 10 + 1, server=server, tenant=tenant, name=f"c{i // 10}")
        lot = ParkingLot(
            pk=i + 1,
            tenant=tenant,
            server=server,
            context=context,
            slug=f"lot{i}",
            name="x",
            parkext="700",
            parkpos_start=701 + i % 10 * 10,
            parkpos_end=709 + i % 10 * 10,
        )
        lot.server_id = 1
        lots.append(lot)
    return timed(lambda: confgen.render_res_parking(server, lots))


def burst(server: AsteriskServer, tenant: Tenant, edits: int, size: int) -> tuple[int, float, int]:
    """`edits` edits of `size` lots from 8 threads against a real Celery worker: (reloads
    sent, seconds, edits that raised)."""
    import redis

    from tests.integration.workers import Worker, reset_broker_connections

    populate(server, tenant, size)
    deploy_now(server)
    lots = list(ParkingLot.objects.filter(server=server))
    mark = Deployment.objects.order_by("-pk").values_list("pk", flat=True).first()
    redis.Redis.from_url(PLACE.redis_url).flushdb()
    app.conf.update(broker_url=PLACE.redis_url, task_always_eager=False)
    reset_broker_connections()
    worker = Worker(PLACE.name, {**os.environ, "REDIS_URL": PLACE.redis_url})
    failed = []
    start = time.perf_counter()
    try:
        per_thread = edits // 8

        def edit(offset: int) -> None:
            try:
                for i in range(per_thread):
                    lot = lots[(offset * per_thread + i) % len(lots)]
                    services.lot_update(lot, parkingtime=46 + (offset * per_thread + i) % 500)
            except Exception as error:
                failed.append(error)
                raise
            finally:
                close_old_connections()

        threads = [threading.Thread(target=edit, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        deadline = time.monotonic() + 600
        while Deployment.objects.filter(server=server, status__in=["pending", "running"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("deploys did not settle")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    finally:
        worker.stop()
    reloads = Deployment.objects.filter(server=server, pk__gt=mark, reloaded=True).count()
    return reloads, elapsed, len(failed)


def main() -> None:
    call_command("migrate", verbosity=0)
    box = start_asterisk()
    try:
        measure(box)
    finally:
        box.stop()


def measure(box: Sandbox) -> None:
    tenant = Tenant.objects.create(slug="bench", name="Bench")
    server = make_server("bench", lot_budget=100_000, parkcall="#72", **box.server_fields())

    print(f"database: {PLACE.database_url.split('@')[-1]}  asterisk: sandbox '{box.name}'")
    print(
        f"render of {ARGS.render:,} lots (pure, in memory): {render(ARGS.render) * 1000:.0f} ms"
        "  (target < 500 ms for 10,000)"
    )
    header = (
        "lots",
        "render ms",
        "save-to-live ms",
        "its reload ms",
        "bare reload ms",
        "live/reload",
        "1.2 x reload + 100 ms",
        "originate idle ms",
        "originate mid-reload ms",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    live_counts = []
    for size in [int(s) for s in ARGS.sizes.split(",")]:
        populate(server, tenant, size)
        deploy_now(server)
        render_s = timed(lambda: server_config(server))
        live, inside, bare = live_and_bare(server, box)
        idle, during = originate_times(box, server_config(server)["res_parking.conf"])
        deploy_now(server)  # put parkweb's file back
        live_counts.append((f"{size} lots live", live_lots(box, server)))
        budget = 1.2 * inside + 0.1
        cells = [
            size,
            f"{render_s * 1000:.0f}",
            f"{live * 1000:.0f}",
            f"{inside * 1000:.0f}",
            f"{bare * 1000:.0f}",
            f"{live / inside:.2f}",
            f"{budget * 1000:.0f}{'' if live <= budget else ' MISSED'}",
            f"{idle * 1000:.0f}",
            f"{during * 1000:.0f}",
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)
    right = [counts(label, **figures) for label, figures in live_counts]
    print("\ntimeout chain on every lot; one lot's ring-back time changed (medians of 5):")
    header = (
        "lots",
        "first deploy of every chain s",
        "its dialplan s",
        "chain change save-to-live ms",
        "reloads",
        "same change via res_parking ms",
        "target < 100 ms, no reload",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in [int(s) for s in ARGS.chain_sizes.split(",")]:
        populate(server, tenant, size)
        deploy_now(server)
        policy = policy_live(server, box)
        met = policy["chain"] < 0.1 and policy["reloads"] == 0
        cells = [
            size,
            f"{policy['first']:.1f}",
            f"{policy['first_dialplan']:.1f}",
            f"{policy['chain'] * 1000:.0f}",
            policy["reloads"],
            f"{policy['plain'] * 1000:.0f}",
            "met" if met else "MISSED",
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)
        right.append(
            counts(
                f"{size} lots, chain changes live without a reload",
                expected=5,
                seen=policy["dialplan_ok"],
                duplicate=0,
                errors=policy["reloads"],
            )
        )
    if ARGS.burst:
        lots = 20 if ARGS.smoke else 100
        reloads, elapsed, failed = burst(server, tenant, ARGS.burst, lots)
        print(
            f"burst of {ARGS.burst} edits (8 threads, {lots} lots, one worker): {reloads} "
            f"reloads in {elapsed:.1f} s (target <= 3)"
        )
        figures = live_lots(box, server)
        figures["errors"] += failed
        right.append(counts("burst edits live", **figures))
    ParkingLot.objects.filter(server=server).delete()
    deploy_now(server)
    exit_on_wrong_counts(right)


if __name__ == "__main__":
    main()

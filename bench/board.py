"""Live-board benchmark: how the page copes as a tenant's board grows.

    .venv/bin/python bench/board.py [--changes 400] [--smoke]

daphne serves the board to Debian's chromium over a Redis channel layer; each scenario is a
tenant with more lots and spaces, a fifth of them busy. Prints, per scenario: the time from
opening the page to the whole board drawn, the page's JavaScript heap, the time per
change (a call parked or gone) from being sent to the channel layer to being seen on the
page by Playwright, and the page's own share of it: the board's handler ("script") and the
time to the frame that shows it. A change redraws one space, so the page's share should
not grow with the board. (The end-to-end figure also holds Playwright's own search of the
page for the changed space, which does grow with the page.) No Asterisk is needed: calls
are rows and messages. Every change must show on the page, each frame arrive once, and
the page load and run without an error. `--smoke`: two small boards, a few changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import (  # noqa: E402  (bench/ is on the path)
    counts,
    exit_on_wrong_counts,
    place,
    session_for,
    start_daphne,
    stop,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=400, help="changes per scenario (max 5000)")
    parser.add_argument("--smoke", action="store_true", help="two small boards, a few changes")
    args = parser.parse_args()
    args.changes = 20 if args.smoke else min(args.changes, 5000)
    return args


ARGS = arguments()
# (lots, spaces per lot)
SCENARIOS = [(1, 9), (3, 20)] if ARGS.smoke else [(1, 9), (10, 100), (40, 250)]
PLACE = place("board", ARGS.smoke, redis_db=10, web_port=8767)
PORT = PLACE.web_port
os.environ["DATABASE_URL"] = PLACE.database_url
os.environ["REDIS_URL"] = PLACE.redis_url
os.environ["PARKWEB_WORKER_WATCHERS"] = "0"
os.environ["PARKWEB_EMBEDDED_WATCHERS"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import TimeoutError as PageTimeout  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from lots.frames import tenant_group  # noqa: E402
from lots.models import AsteriskServer, DialplanContext, ParkedCall, ParkingLot  # noqa: E402
from tenants.models import Membership, Role, Tenant  # noqa: E402


def make_board(server: AsteriskServer, index: int, lots: int, size: int):
    """A tenant with `lots` lots of `size` spaces, every fifth space busy; returns the
    tenant, its lots, and a logged-in session key."""
    tenant = Tenant.objects.create(slug=f"board{index}", name=f"Board {index}")
    contexts = DialplanContext.objects.bulk_create(
        DialplanContext(server=server, tenant=tenant, name=f"b{index}-{i}") for i in range(lots)
    )
    made = ParkingLot.objects.bulk_create(
        ParkingLot(
            tenant=tenant,
            server=server,
            context=contexts[i],
            slug=f"lot{i}",
            name=f"Lot {i}",
            parkext="1000",
            parkpos_start=1001,
            parkpos_end=1000 + size,
        )
        for i in range(lots)
    )
    now = timezone.now()
    ParkedCall.objects.bulk_create(
        ParkedCall(
            server=server,
            lot=lot,
            tenant=tenant,
            lot_name=f"{tenant.slug}_{lot.slug}",
            space=space,
            parkee_channel=f"PJSIP/c-{lot.pk}-{space}",
            uniqueid=f"{lot.pk}.{space}",
            caller_id_num=f"555{space}",
            parked_at=now,
        )
        for lot in made
        for space in range(1001, 1001 + size, 5)
    )
    user = get_user_model().objects.create_user(f"viewer{index}", password="bench-pw-123")
    Membership.objects.create(user=user, tenant=tenant, role=Role.OPERATOR)
    return tenant, made, session_for(user)


def change(lot: ParkingLot, space: int, n: int, parked: bool) -> dict:
    call = {
        "id": 10_000_000 + space * 1000 + lot.pk,
        "lot": lot.slug,
        "space": space,
        "caller_id_num": f"556{n}",
        "caller_id_name": "Bench",
        "parker_dial_string": "PJSIP/desk",
        "parked_at": timezone.now().isoformat(),
        "timeout_at": None,
        "ended_at": None if parked else timezone.now().isoformat(),
    }
    return {"type": "parked" if parked else "unparked", "call": call}


HANDLER_TIMING = """
window.__handled = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  set onmessage(handler) {
    super.onmessage = event => {
      const start = performance.now();
      handler(event);
      const ran = performance.now() - start;
      requestAnimationFrame(() => setTimeout(() => {
        const shown = performance.now() - start;
        const message = JSON.parse(event.data);  // which frame, once the timing is taken
        window.__handled.push([ran, shown, message.type, message.call?.caller_id_num]);
      }, 0));
    };
  }
};
"""


def measure(browser, tenant, lots, session_key, size, changes: int) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": session_key, "url": f"http://127.0.0.1:{PORT}"}]
    )
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    # Time the board's own work per message (its handler, then the frame that shows it),
    # apart from the transport: the page's WebSocket wraps the handler the board sets.
    page.add_init_script(HANDLER_TIMING)
    expected = len(lots) * size
    started = time.perf_counter()
    page.goto(f"http://127.0.0.1:{PORT}/t/{tenant.slug}/board/")
    # The board draws every lot from the snapshot at once: its last space is the last drawn.
    # (A selector, not a script: the page's Content-Security-Policy forbids eval.)
    last = f"section[data-lot='{tenant.slug}_{lots[-1].slug}'] li.space[data-space='{1000 + size}']"
    page.wait_for_selector(last, state="attached", timeout=120_000)
    drawn_ms = (time.perf_counter() - started) * 1000
    if page.locator("li.space").count() != expected:
        errors.append(f"{page.locator('li.space').count()} spaces drawn, not {expected}")
    heap_mb = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : -1")

    # Park a call in a free space and take it away again, round the lots: one change at a
    # time, each waited for on the page, so the figure is per change, end to end.
    # Sent from a thread of its own: Playwright's event loop runs in this one.
    layer = get_channel_layer()
    sender = ThreadPoolExecutor(max_workers=1)
    send = async_to_sync(layer.group_send)
    group = tenant_group(tenant.pk)
    free = [s for s in range(1001, 1001 + size) if (s - 1001) % 5]
    per_change, lost = [], 0
    for n in range(changes):
        lot = lots[n % len(lots)]
        space = free[(n // (2 * len(lots))) % len(free)]
        parked = n % 2 == 0
        state = "busy" if parked else "free"
        selector = (
            f"section[data-lot='{tenant.slug}_{lot.slug}'] li.space.{state}[data-space='{space}']"
        )
        begin = time.perf_counter()
        message = {"type": "parking.message", "message": change(lot, space, n, parked)}
        sender.submit(send, group, message).result()
        try:
            page.wait_for_selector(selector, state="attached", timeout=10_000)
        except PageTimeout:
            lost += 1
            continue
        per_change.append((time.perf_counter() - begin) * 1000)
    sender.shutdown()
    page.wait_for_timeout(500)  # a frame sent twice would come now
    handled = page.evaluate("window.__handled")
    context.close()
    frames = [(kind, caller) for _, _, kind, caller in handled if kind in ("parked", "unparked")]
    snapshots = sum(kind == "snapshot" for _, _, kind, _ in handled)
    if errors:
        print(f"page errors on {tenant.slug}:", *errors[:3], file=sys.stderr)
    none = [float("nan")]  # nothing to time: the counts say why
    per_change = sorted(per_change) or none
    script = sorted(ran for ran, _, kind, _ in handled if kind != "snapshot") or none
    shown = sorted(frame for _, frame, kind, _ in handled if kind != "snapshot") or none
    return {
        "counts": {
            "expected": changes,
            "seen": changes - lost,
            "duplicate": len(frames) - len(set(frames)) + max(snapshots - 1, 0),
            "errors": len(errors) + (snapshots == 0),
        },
        "drawn_ms": drawn_ms,
        "heap_mb": heap_mb,
        "change_p50": per_change[len(per_change) // 2],
        "change_p95": per_change[int(len(per_change) * 0.95)],
        "script_p50": script[len(script) // 2],
        "shown_p50": shown[len(shown) // 2],
    }


def main() -> None:
    changes = ARGS.changes
    (ROOT / "artifacts").mkdir(exist_ok=True)
    redis.Redis.from_url(PLACE.redis_url).flushdb()
    call_command("migrate", verbosity=0)
    server = AsteriskServer.objects.create(name="bench-board", ami_host="127.0.0.1", ami_port=1)
    boards = [make_board(server, i, lots, size) for i, (lots, size) in enumerate(SCENARIOS)]
    env = {**os.environ, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", "SECURE_COOKIES": "0"}
    web = start_daphne(PORT, env, f"{PLACE.name}-daphne")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--enable-precise-memory-info"],
            )
            results = []
            for (tenant, lots, key), (count, size) in zip(boards, SCENARIOS, strict=True):
                results.append((count, size, measure(browser, tenant, lots, key, size, changes)))
            browser.close()
    finally:
        stop(web)
    base = results[0][2]
    print(f"live board, {changes} changes per board (each: channel layer -> daphne -> page)")
    print(
        "  lots x spaces  drawn ms  heap MB  change p50 ms  p95 ms  vs smallest"
        "  page: script p50 ms  to frame p50 ms"
    )
    for count, size, r in results:
        ratio = r["change_p50"] / base["change_p50"]
        print(
            f"{count:>7} x {size:<5} {r['drawn_ms']:9.0f} {r['heap_mb']:8.1f}"
            f" {r['change_p50']:14.1f} {r['change_p95']:7.1f} {ratio:11.2f}x"
            f" {r['script_p50']:20.2f} {r['shown_p50']:16.1f}"
        )
    right = [counts(f"changes on {count} x {size}", **r["counts"]) for count, size, r in results]
    exit_on_wrong_counts(right)


if __name__ == "__main__":
    main()

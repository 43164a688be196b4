"""A trickle of demo calls on the demo server: they park, wait, and are retrieved or time out.

    python manage.py demo_calls [--interval 8] [--calls 0]

Each call dials a demo lot's park extension from a Local channel; about half are picked
up again after a few seconds by dialling their space, the rest wait until the lot's
parking time sends them back. Meant for `make demo-calls` beside `make run`.
"""

import asyncio
import contextlib
import random

from django.core.management.base import BaseCommand, CommandError

from lots.asterisk import actions
from lots.asterisk.events import Kind, parse
from lots.models import AsteriskServer, ParkingLot
from lots.services import ami_client


class Command(BaseCommand):
    help = "Generate demo calls that park and are retrieved or time out (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--server", default="pbx1")
        parser.add_argument("--interval", type=float, default=8.0, help="seconds between calls")
        parser.add_argument("--calls", type=int, default=0, help="stop after N calls (0: never)")

    def handle(self, *args, server: str, interval: float, calls: int, **options):
        found = AsteriskServer.objects.filter(name=server).first()
        if found is None:
            raise CommandError(f"No server named {server!r}; run `manage.py seed_demo` first.")
        lots = [
            (lot.asterisk_name, lot.context.name, lot.parkext)
            for lot in ParkingLot.objects.filter(server=found, enabled=True, parkext_exclusive=True)
            .exclude(parkext="")
            .select_related("tenant", "context")
        ]
        if not lots:
            raise CommandError("No enabled lot with an exclusive park extension to call into.")
        client = ami_client(found, events="call")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.run(client, lots, interval, calls))

    async def run(self, client, lots, interval: float, calls: int) -> None:
        contexts = {name: context for name, context, _ in lots}
        rng = random.Random()  # noqa: S311 - demo traffic, not security

        async with client as ami:
            pickups: set[asyncio.Task] = set()

            def on_event(headers: dict) -> None:
                event = parse(headers)
                if event is None or event.lot not in contexts:
                    return
                self.stdout.write(f"{event.kind:>9}  {event.lot} space {event.space}")
                if event.kind == Kind.PARKED and rng.random() < 0.5:
                    task = asyncio.create_task(pick_up(event.lot, event.space))
                    pickups.add(task)
                    task.add_done_callback(pickups.discard)

            async def pick_up(lot: str, space: int) -> None:
                await asyncio.sleep(rng.uniform(4, 20))
                await actions.call_into(ami, exten=str(space), context=contexts[lot], seconds=3)

            ami.on_event("*", on_event)
            made = 0
            while not calls or made < calls:
                _, context, parkext = rng.choice(lots)
                caller = f"555{rng.randint(1000, 9999)}"
                await actions.call_into(
                    ami,
                    exten=parkext,
                    context=context,
                    seconds=120,
                    caller_id=f"Demo caller <{caller}>",
                )
                made += 1
                await asyncio.sleep(interval)
            if pickups:  # let the last pick-ups happen
                await asyncio.wait(pickups, timeout=25)

"""One Asterisk's event stream, watched: connect, rebuild the state, apply events in order,
watch the link. No database here: a `Sink` (see `lots.supervisor`) records what happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from . import actions, comeback, events
from .ami import AmiClient, AmiConnectError, AmiError

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def connected(self, version: str) -> None: ...
    async def disconnected(self, error: str) -> None: ...
    async def resync(
        self, parked: list[events.ParkingEvent], earlier: list[events.ParkingEvent]
    ) -> None: ...
    # Parking events in order, each with the loop's clock when the AMI message that made
    # it ready came in.
    async def apply(self, batch: list[tuple[events.ParkingEvent, float]]) -> None: ...
    # What a lot's timeout chain did with a timed-out call (lots.asterisk.comeback).
    async def step(self, step: comeback.Step) -> None: ...


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str
    secret: str


class ServerWatcher:
    """Keeps one AMI session to one Asterisk for as long as `run` runs."""

    def __init__(
        self,
        target: Target,
        sink: Sink,
        *,
        ping_interval: float = 5.0,
        timeout: float = 5.0,
        backoff_max: float = 5.0,
        batch: int = 100,
    ):
        self.target = target
        self.sink = sink
        self.ping_interval = ping_interval
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.batch = batch  # parking events applied together at most
        self.client: AmiClient | None = None

    async def _apply(self, work: list) -> None:
        """Parking events in batches, and a chain step after the events before it."""
        batch: list[tuple[events.ParkingEvent, float]] = []
        for item in work:
            if isinstance(item, tuple):
                batch.append(item)
                continue
            if batch:
                await self.sink.apply(batch)
                batch = []
            await self.sink.step(item)
        if batch:
            await self.sink.apply(batch)

    def drop(self) -> None:
        """Cut the TCP connection, as a network fault would (tests, operators)."""
        if self.client is not None:
            self.client.abort()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.2
            except AmiError as exc:
                log.info("watcher %s:%s: %s", self.target.host, self.target.port, exc)
                await self.sink.disconnected(str(exc))
            except Exception as exc:  # keep watching whatever went wrong
                log.exception("watcher %s:%s failed", self.target.host, self.target.port)
                await self.sink.disconnected(f"watcher error: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _session(self, stop: asyncio.Event) -> None:
        # AMI messages with the loop's clock at their arrival; None: the link is gone.
        queue: asyncio.Queue[tuple[dict, float] | None] = asyncio.Queue()
        clock = asyncio.get_running_loop().time
        client = AmiClient(
            self.target.host,
            self.target.port,
            self.target.username,
            self.target.secret,
            events="call,system,user",
            timeout=self.timeout,
            on_disconnect=lambda: queue.put_nowait(None),
        )
        self.client = client
        await client.connect()
        # Never block the reader: events only go into the queue here.
        client.on_event("*", lambda headers: queue.put_nowait((headers, clock())))
        stopping = asyncio.create_task(stop.wait())
        getting: asyncio.Task | None = None
        try:
            version = (await actions.command(client, "core show version")).strip()
            await self.sink.connected(version)
            parked = [e for e in map(events.parse, await actions.parked_calls(client)) if e]
            order = events.Retrievals()
            order.seed(parked)
            # Events that arrived before the snapshot's answer happened before it: applied
            # first, they give calls that ended meanwhile their real outcome.
            earlier = []
            while not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    raise AmiConnectError("connection lost during the resync")
                earlier += order.push(item[0], clock())
            await self.sink.resync(parked, earlier + order.flush())
            client.start_watchdog(self.ping_interval, on_dead=lambda: queue.put_nowait(None))
            while True:
                getting = getting or asyncio.create_task(queue.get())
                due = order.next_due()
                done, _ = await asyncio.wait(
                    {getting, stopping},
                    timeout=None if due is None else max(0.0, due - clock()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping in done:
                    return
                work: list = []  # parking events with their arrival, and chain steps
                ending = None  # the link is gone: what came before it is applied first
                if getting in done:
                    item, getting = getting.result(), None
                    # What else has arrived meanwhile is taken too, and applied in batches:
                    # under load the watcher's cost per event falls, so it keeps up.
                    while True:
                        if item is None:
                            ending = AmiConnectError("connection to Asterisk lost")
                            break
                        headers, arrived = item
                        if headers.get("Event") == "Shutdown":
                            shutdown = headers.get("Shutdown", "")
                            ending = AmiConnectError(f"Asterisk shut down ({shutdown})")
                            break
                        work += [(event, arrived) for event in order.push(headers, clock())]
                        step = comeback.parse_step(headers)
                        if step is not None:
                            work.append(step)
                        if queue.empty() or len(work) >= self.batch:
                            break
                        item = queue.get_nowait()
                # Calls held back for their retriever (events.Retrievals): their wait was
                # on purpose, so their lag counts from now.
                work += [(event, clock()) for event in order.due(clock())]
                await self._apply(work)
                if ending is not None:
                    raise ending
        finally:
            stopping.cancel()
            if getting is not None:
                getting.cancel()
            await client.close()

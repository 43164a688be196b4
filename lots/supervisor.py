"""Run the AMI watchers: exactly one per Asterisk server across all worker processes.

A `Supervisor` runs in a thread of its own with an event loop. Every few seconds it takes
(or renews) a lease per server and runs a `ServerWatcher` for each server it holds; a
server whose lease it loses stops being watched here. With Redis the leases are Redis keys
with an expiry, so when a worker dies another takes its servers over within
`LEASE_SECONDS`; without Redis (the embedded mode of `make run`) there is one process and
the leases are local.

Celery workers start a supervisor when they are ready (see `lots.apps`); the embedded
web process starts one from `parkweb.asgi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from . import services
from .asterisk import events
from .asterisk.server_watcher import ServerWatcher, Target
from .metrics import EventStats
from .models import AsteriskServer

log = logging.getLogger(__name__)

LEASE_SECONDS = 6.0
CHECK_SECONDS = 2.0
STATS_SECONDS = 1.0


def _db(function):
    """Run ORM code from the event loop, in a worker thread, one call at a time."""

    def call(*args, **kwargs):
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=False)


class PagesOutbox:
    """The pages' pushes of a watcher's events, and their webhooks' wake-ups, sent from
    its event loop by one task, in the order they were committed: the thread that applies
    events hands them over and goes on to the next ones instead of waiting for the channel
    layer or Redis."""

    LIMIT = 10_000  # batches waiting at most; beyond, the pages miss them (and say so)

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple] = asyncio.Queue()
        self.task = self.loop.create_task(self._run())

    def put(self, messages: list) -> None:
        """From any thread."""
        self.loop.call_soon_threadsafe(self._put, messages)

    def wake(self, entries: list) -> None:
        """From any thread: webhook endpoints whose events committed (services.webhooks).
        Never dropped: a wake-up costs a few bytes, and the deliveries wait on it."""
        self.loop.call_soon_threadsafe(
            self.queue.put_nowait, (services.webhooks_wake_async, entries)
        )

    def _put(self, messages: list) -> None:
        if self.queue.qsize() >= self.LIMIT:
            log.warning("pages' outbox full: %d push(es) dropped", len(messages))
            return
        self.queue.put_nowait((services.pages_send, messages))

    async def _run(self) -> None:
        while True:
            send, items = await self.queue.get()
            try:
                await send(items)
            except Exception:  # pages_send logs its own; a wake-up lost waits for beat
                log.exception("watcher outbox: %s failed", getattr(send, "__name__", send))
            self.queue.task_done()

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is waiting (for `timeout` at most), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class DatabaseSink:
    """Records one server's events through the services (in order: awaited one by one)."""

    def __init__(self, server_id: int, watcher_name: str, server_name: str = ""):
        self.server_id = server_id
        self.watcher_name = watcher_name
        self.server_name = server_name or str(server_id)
        self.stats = EventStats()
        self.stats_written = 0.0
        self.stats_lock = asyncio.Lock()
        self.outbox: PagesOutbox | None = None

    def _log_state(self, state: str, detail: str = "", level: int = logging.INFO) -> None:
        """One line per watcher state change (see parkweb.logs)."""
        log.log(
            level,
            "watcher %s: server %s %s%s",
            self.watcher_name,
            self.server_name,
            state,
            f" ({detail})" if detail else "",
            extra={"server": self.server_name, "watcher": self.watcher_name, "state": state},
        )

    async def connected(self, version: str) -> None:
        self._log_state("connected", version.split(" built ")[0][:60])
        await _db(services.server_health_update)(
            self.server_id,
            connected=True,
            synced=False,
            asterisk_version=version[:120],
            watcher=self.watcher_name,
            error="",
        )
        # A restarted Asterisk (or a dialplan reload) has lost parkweb's lamps.
        await _db(self._queue_hints)()

    def _queue_hints(self) -> None:
        from .tasks import hints_sync  # tasks call services; imported here

        try:
            hints_sync.delay(self.server_id)
        except Exception:  # the next reconcile puts them back; watching goes on
            log.exception("server %s: lamps not queued for a sync", self.server_id)

    async def disconnected(self, error: str) -> None:
        self._log_state("disconnected", error[:200], logging.WARNING)
        await self.write_stats()
        await _db(services.server_health_update)(
            self.server_id, connected=False, synced=False, error=error[:300]
        )

    async def resync(
        self, parked: list[events.ParkingEvent], earlier: list[events.ParkingEvent]
    ) -> None:
        def run() -> None:
            for event in earlier:
                services.parking_event_apply(self.server_id, event)
            summary = services.server_resync(self.server_id, parked)
            services.server_health_update(self.server_id, synced=True)
            self._log_state("synced", str(summary))

        await _db(run)()

    async def apply(self, batch: list[tuple[events.ParkingEvent, float]]) -> None:
        # One event's trouble is logged and kept against its call; only the database
        # being away reaches the watcher (it reconnects, then resyncs).
        if self.outbox is None:
            self.outbox = PagesOutbox()
        await _db(self._apply)([event for event, _ in batch])
        clock = asyncio.get_running_loop().time
        done = clock()
        for _, arrived in batch:
            self.stats.add(done - arrived)
        if clock() - self.stats_written >= STATS_SECONDS:
            await self.write_stats()

    def _apply(self, found: list[events.ParkingEvent]) -> None:
        with services.webhooks_wakes_together(self.outbox.wake):
            services.parking_events_apply(self.server_id, found, self.outbox.put)

    async def close(self) -> None:
        """The watcher has stopped: its pages' last pushes go out."""
        if self.outbox is not None:
            await self.outbox.close()

    async def step(self, step) -> None:
        await _db(services.timeout_step_apply)(self.server_id, step.call, step.step)

    async def write_stats(self) -> None:
        """Add the events tallied since the last write to the server's health (read by
        /metrics and /readyz); one write a second at most, not one per event."""
        async with self.stats_lock:
            stats, self.stats = self.stats, EventStats()
            self.stats_written = asyncio.get_running_loop().time()
            if stats.count:
                await _db(services.server_events_count)(self.server_id, stats)


class LocalLeases:
    """Leases within one process (the embedded mode)."""

    def __init__(self):
        self.held: set[int] = set()

    def acquire(self, server_id: int) -> bool:
        self.held.add(server_id)
        return True

    renew = acquire

    def release(self, server_id: int) -> None:
        self.held.discard(server_id)


class RedisLeases:
    """One key per server, holding its watcher's id, expiring unless renewed."""

    RENEW = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
    )
    RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('del', KEYS[1]) else return 0 end"
    )

    def __init__(self, url: str, owner: str, seconds: float = LEASE_SECONDS):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.owner = owner
        self.ms = int(seconds * 1000)

    @staticmethod
    def key(server_id: int) -> str:
        return f"parkweb:watcher:{server_id}"

    def acquire(self, server_id: int) -> bool:
        if self.redis.set(self.key(server_id), self.owner, nx=True, px=self.ms):
            return True
        return self.renew(server_id)

    def renew(self, server_id: int) -> bool:
        return bool(self.redis.eval(self.RENEW, 1, self.key(server_id), self.owner, self.ms))

    def release(self, server_id: int) -> None:
        self.redis.eval(self.RELEASE, 1, self.key(server_id), self.owner)


def default_leases(owner: str):
    return RedisLeases(settings.REDIS_URL, owner) if settings.REDIS_URL else LocalLeases()


class Supervisor:
    """Watches every server whose lease it holds, in a background thread. In the embedded
    mode it also retries deployments that wait for Asterisk (`retry_deploys`): there is no
    broker to retry through there."""

    def __init__(
        self,
        leases=None,
        name: str | None = None,
        *,
        watch: bool = True,
        retry_deploys: bool = False,
    ):
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.leases = leases or default_leases(self.name)
        self.watch = watch
        self.retry_deploys = retry_deploys
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="parkweb-watchers", daemon=True)
        self._stop: asyncio.Event | None = None
        self._watching: dict[int, tuple[asyncio.Task, asyncio.Event]] = {}
        self._watchers: dict[int, ServerWatcher] = {}

    def start(self) -> Supervisor:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout)

    @property
    def watching(self) -> set[int]:
        return set(self._watching)

    def drop_connections(self) -> None:
        """Cut every watcher's TCP connection (as a network fault would); they reconnect."""
        for watcher in self._watchers.values():
            self.loop.call_soon_threadsafe(watcher.drop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            while not self._stop.is_set():
                try:
                    await self._check()
                except Exception:
                    log.exception("watcher supervisor check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), CHECK_SECONDS)
        finally:
            for server_id in list(self._watching):
                await self._unwatch(server_id)

    async def _check(self) -> None:
        if self.retry_deploys:
            await _db(services.deployments_retry_due)()
            await _db(services.webhook_deliveries_due)()
        if not self.watch:
            return
        servers = await _db(lambda: list(AsteriskServer.objects.all()))()
        wanted = {server.pk: server for server in servers}
        for server_id in list(self._watching):
            task, _ = self._watching[server_id]
            keep = server_id in wanted and not task.done()
            if not keep or not await asyncio.to_thread(self.leases.renew, server_id):
                await self._unwatch(server_id)
        for server_id, watcher in list(self._watchers.items()):
            await watcher.sink.write_stats()  # a tally left since the last event
            # Each on its own: reminders that fail must not keep the alerts back, nor the
            # other way round; the leases and the other servers go on either way.
            for step in (services.reminders_send, services.waiting_alerts_check):
                try:
                    await _db(step)(server_id)
                except Exception:
                    log.exception("server %s: %s failed", server_id, step.__name__)
        for server_id, server in wanted.items():
            if server_id in self._watching:
                continue
            if await asyncio.to_thread(self.leases.acquire, server_id):
                self._watch(server)

    def _watch(self, server: AsteriskServer) -> None:
        stop = asyncio.Event()
        watcher = ServerWatcher(
            Target(server.ami_host, server.ami_port, server.ami_username, server.ami_secret),
            DatabaseSink(server.pk, self.name, server.name),
        )
        task = asyncio.create_task(watcher.run(stop), name=f"watch-{server.name}")
        self._watching[server.pk] = (task, stop)
        self._watchers[server.pk] = watcher
        log.info("%s watches %s", self.name, server.name)

    async def _unwatch(self, server_id: int) -> None:
        task, stop = self._watching.pop(server_id)
        watcher = self._watchers.pop(server_id, None)
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        if watcher is not None:
            await watcher.sink.close()
        await asyncio.to_thread(self.leases.release, server_id)
        log.info("%s stopped watching server %s", self.name, server_id)


_embedded: Supervisor | None = None


def start_embedded_watchers() -> None:
    """In the embedded mode (no Redis, so no Celery workers), watch from this process and
    retry the deployments that wait for Asterisk."""
    global _embedded
    if settings.REDIS_URL or _embedded is not None:
        return
    _embedded = Supervisor(
        LocalLeases(), watch=settings.PARKWEB_EMBEDDED_WATCHERS, retry_deploys=True
    ).start()


def embedded_watching() -> set[int]:
    """The servers this process watches in the embedded mode (none when it does not)."""
    if _embedded is None or not _embedded.thread.is_alive():
        return set()
    return _embedded.watching

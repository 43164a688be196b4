"""parkweb on several hosts: the web process on one, Celery workers on two, sharing
PostgreSQL, Redis and the Asterisk over a network.

Each host is a network namespace of its own (tests/multihost/hosts.py) with its own
address and host name. PostgreSQL, Redis and the sandbox Asterisk's AMI listen on this
machine's loopback only; a forwarder in the root namespace (tests/forwarder.py)
makes them reachable at each host's gateway, so the hosts reach them over their links.

    host "web"  (namespace pw-web-<pid>):  daphne, a Celery worker (deploys, watchers)
    host "work" (namespace pw-work-<pid>): a Celery worker (deploys, watchers)

Checked: a lot saved through the web host's API goes live on the Asterisk, deployed by a
worker; killing the worker that holds the server's watcher moves the watcher to the
other host within the lease; and the board on the web host, on the socket it opened
before the failover, hears the new watcher, stays open while idle, and shows a call
parked after the failover. Logs: artifacts/multihost/<sandbox name>/.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis
import websockets
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from lots.models import AsteriskServer, Deployment, ServerHealth
from lots.supervisor import CHECK_SECONDS, LEASE_SECONDS
from parkweb.celery import app
from tenants.actors import Actor
from tenants.models import Membership, Role
from tenants.services import api_key_create
from tests.factories import make_context, make_server, make_tenant
from tests.integration.test_deploy import wait_for
from tests.integration.workers import (
    isolated_redis_url,
    reset_broker_connections,
    worker_argv,
)

from .hosts import Host, Network, Process, ensure_iproute2, wait_for_log, wait_for_port

pytestmark = pytest.mark.integration

BASE = Path(settings.BASE_DIR)
# Runs sharing a machine (and a work tree) use sandboxes of their own: so do the logs.
LOGS = BASE / "artifacts" / "multihost" / os.environ.get("PARKWEB_TEST_SANDBOX", "test")
WEB_PORT = 8000  # on the web host's own address: no other run's port to meet
# A Redis database of its own: the run's (PARKWEB_TEST_REDIS_DB), else 12. Flushed first.
REDIS_DB = os.environ.get("PARKWEB_TEST_REDIS_DB", "12")
# The watcher moves within the lease plus one supervisor check; the rest is the new
# watcher's login and resync on a machine shared with other work.
TAKEOVER_MARGIN = 4.0
# A board idles between calls: longer than channels_redis' blocking read of 5 s.
IDLE_SECONDS = 6.0


DAPHNE = [sys.executable, "-m", "daphne"]


class Forwarder:
    """tests/forwarder.py in the root namespace: loopback services made
    reachable at the hosts' gateways."""

    def __init__(self, routes: dict[str, str]):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / "forwarder.log"
        with open(self.log_path, "w") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tests.forwarder"]
                + [f"{listen}={target}" for listen, target in routes.items()],
                cwd=BASE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while "ready\n" not in self.log():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the forwarder did not start:\n{self.log()}")
            time.sleep(0.05)
        # Where each route listens ("host:port" asked -> "host:port" got).
        self.bound = dict(re.findall(r"^listening (\S+) (\S+) ->", self.log(), re.MULTILINE))

    def log(self) -> str:
        return self.log_path.read_text()

    def peers(self, listen: str, start: int = 0) -> set[str]:
        """Addresses that connected to a route (since `start` in the log)."""
        return set(
            re.findall(rf"^connect {re.escape(listen)} from (\S+):\d+$", self.log()[start:], re.M)
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


class Board:
    """A tenant member's board websocket, read in a thread of its own; its frames queue up."""

    def __init__(self, url: str, headers: dict[str, str], server_log: Path):
        self.url = url
        self.headers = headers
        self.server_log = server_log  # named when the server closes the socket
        self.frames: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.closed_by_server: int | None = None  # the close code, if the server closed it
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))
        self.thread.start()
        if not self.opened.wait(20) or self.error is not None:
            self.close()
            raise AssertionError(f"the board's websocket did not open: {self.error!r}")

    async def _run(self) -> None:
        try:
            async with websockets.connect(
                self.url, additional_headers=self.headers, open_timeout=15, close_timeout=5
            ) as ws:
                self.opened.set()
                reader = asyncio.ensure_future(self._read(ws))
                stopped = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    self.closed_by_server = ws.close_code
                for task in (reader, stopped):
                    task.cancel()
        except Exception as exc:  # reported by the test, not lost in this thread
            self.error = exc
        finally:
            self.opened.set()

    async def _read(self, ws) -> None:
        async for raw in ws:
            self.frames.put(json.loads(raw))

    @property
    def open(self) -> bool:
        return self.thread.is_alive() and self.error is None and self.closed_by_server is None

    def next(self, match, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=min(left, 0.5))
            except queue.Empty:
                if not self.thread.is_alive():
                    break
                continue
            self.seen.append(frame)
            if match(frame):
                return frame
        types = [frame.get("type") for frame in self.seen]
        raise AssertionError(
            f"no {what} on the board within {timeout}s (frames: {types}, "
            f"closed by the server: {self.closed_by_server}, error: {self.error!r}; "
            f"see {self.server_log})"
        )

    def quiet(self, seconds: float, timeout: float) -> None:
        """Until no frame has come for `seconds` (as a board sits between calls)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < seconds and time.monotonic() < deadline:
            try:
                self.seen.append(self.frames.get(timeout=0.2))
                last = time.monotonic()
            except queue.Empty:
                if not self.thread.is_alive():
                    return

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        if not self.thread.is_alive():
            self.loop.close()


def session_for(user) -> str:
    """A logged-in session of `user`, stored where every web process reads it."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def database_url(host: str, port: int) -> str:
    """The test database, reached at host:port."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


@dataclass
class Site:
    web: Host
    work: Host
    forwarder: Forwarder
    services: dict[str, str]  # name -> where it listens on loopback
    daphne: Process | None = None
    workers: list[Process] = field(default_factory=list)
    server: AsteriskServer | None = None
    api_key: str = ""
    session: str = ""

    def route(self, host: Host, service: str) -> str:
        """The forwarder's route to `service` at `host`'s gateway ("address:port" asked)."""
        return f"{host.gateway}:{split(self.services[service])[1]}"

    def at(self, host: Host, service: str) -> tuple[str, int]:
        """Where `host` reaches `service`."""
        return split(self.forwarder.bound[self.route(host, service)])

    @property
    def base(self) -> str:
        return f"http://{self.web.address}:{WEB_PORT}"

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(  # noqa: S310 (self.base is http://)
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Api-Key {self.api_key}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=40) as reply:  # noqa: S310
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as reply:
            return reply.code, json.loads(reply.read() or b"{}")

    def watcher(self) -> Process | None:
        """The worker whose watcher is connected and synced to the server now."""
        health = ServerHealth.objects.filter(server=self.server).first()
        if not (health and health.connected and health.synced):
            return None
        for worker in self.workers:
            if health.watcher.startswith(f"{worker.host.hostname}:{worker.pid}:"):
                return worker
        return None


def reachable(host: Host, address: str, port: int) -> bool:
    """Whether `host` can open a TCP connection to address:port."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return (
        subprocess.run(
            host.command([sys.executable, "-c", probe]), capture_output=True, timeout=20
        ).returncode
        == 0
    )


@pytest.fixture
def site(transactional_db, asterisk):
    if os.geteuid() != 0:
        pytest.fail("tests/multihost needs root (ip netns), as the Asterisk sandbox does")
    if connection.vendor != "postgresql":
        pytest.skip("the hosts share PostgreSQL over the network (DATABASE_URL is SQLite)")
    ensure_iproute2()
    asterisk.hangup_all()

    redis_base = urlsplit(isolated_redis_url())
    redis_url = f"redis://{redis_base.hostname}:{redis_base.port or 6379}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=redis_url, task_always_eager=False)  # tasks go to the workers
    reset_broker_connections()

    network = forwarder = None
    try:
        network = Network(["web", "work"], tag=str(os.getpid()))
        web, work = network.hosts
        db = connection.settings_dict
        services = {
            "postgres": f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}",
            "redis": f"{redis_base.hostname}:{redis_base.port or 6379}",
            "ami": f"{asterisk.ami_host}:{asterisk.ami_port}",
        }
        # PostgreSQL and Redis at each host's gateway; the PBX at the web host's gateway,
        # as every host sees it (the work host routes there over its own link).
        wanted = [
            (web, "postgres"),
            (web, "redis"),
            (web, "ami"),
            (work, "postgres"),
            (work, "redis"),
        ]
        routes = {
            f"{host.gateway}:{split(services[name])[1]}": services[name] for host, name in wanted
        }
        forwarder = Forwarder(routes)
        site = Site(web, work, forwarder, services)
        at = site.at
        ami_host, ami_port = at(web, "ami")
        server = make_server(
            "pbx-hosts",
            parkcall="#72",
            delivery="ami",  # no shared disk: the config goes over AMI
            ami_host=ami_host,
            ami_port=ami_port,
            ami_username=asterisk.ami_user,
            secret=asterisk.ami_secret,
        )
        acme = make_tenant("acme", name="Acme")
        make_context(server, acme, "acme-parking")
        users = get_user_model().objects
        admin = users.create_user("ada", password="pw-ada-123")
        operator = users.create_user("ola", password="pw-ola-123")
        Membership.objects.create(user=admin, tenant=acme, role=Role.ADMIN)
        Membership.objects.create(user=operator, tenant=acme, role=Role.OPERATOR)
        _, api_key = api_key_create(acme, actor=Actor.of(admin), name="provisioning", role="admin")

        def env(host: Host) -> dict[str, str]:
            return {
                **os.environ,
                "DATABASE_URL": database_url(*at(host, "postgres")),
                "REDIS_URL": "redis://{}:{}/{}".format(*at(host, "redis"), REDIS_DB),
                "ALLOWED_HOSTS": web.address,
                "DEBUG": "0",
                "SECURE_COOKIES": "0",
                "PARKWEB_WORKER_WATCHERS": "1",
                "PARKWEB_DEPLOY_RETRY_MAX_SECONDS": "2",
            }

        started = time.monotonic()
        daphne = web.start(
            "daphne",
            [*DAPHNE, "-b", web.address, "-p", str(WEB_PORT), "parkweb.asgi:application"],
            env(web),
            BASE,
            LOGS,
        )
        workers = [
            web.start("worker-web", worker_argv("worker"), env(web), BASE, LOGS),
            work.start("worker-work", worker_argv("worker"), env(work), BASE, LOGS),
        ]
        for worker in workers:
            wait_for_log(worker, "ready.", timeout=90)
        wait_for_port(web.address, WEB_PORT, daphne, timeout=90)
        site.daphne, site.workers, site.server = daphne, workers, server
        site.api_key, site.session = api_key, session_for(operator)
        wait_for(site.watcher, timeout=30, interval=0.2, what="a worker's watcher")
        print(f"\nmultihost: daphne and two workers up in {time.monotonic() - started:.1f}s")
        yield site
    finally:
        asterisk.hangup_all()
        if network is not None:
            network.close()  # the processes (by pid), the namespaces and their links
        if forwarder is not None:
            forwarder.stop()
        app.conf.update(**saved)
        reset_broker_connections()
        redis.Redis.from_url(redis_url).flushdb()


def test_web_and_workers_on_separate_hosts(site, asterisk):
    web, work = site.web, site.work
    # The work host reaches the services only over its link, never on its loopback.
    for service in ("postgres", "redis", "ami"):
        assert not reachable(work, *split(site.services[service])), service
    for address in (site.at(work, "postgres"), site.at(work, "redis"), site.at(web, "ami")):
        assert reachable(work, *address), address

    # (1) A lot saved through the web host's API goes live, deployed by a worker.
    wait_for(
        lambda: (
            not Deployment.objects.filter(
                server=site.server, status__in=["pending", "running"]
            ).exists()
        ),
        timeout=30,
        what="the server's first deployment",
    )
    marks = {worker: len(worker.log()) for worker in site.workers}
    saved_at = time.monotonic()
    status, lot = site.api(
        "PUT",
        "/api/v1/tenants/acme/lots/main/",
        {
            "name": "Reception",
            "server": "pbx-hosts",
            "context": "acme-parking",
            "parkext": "700",
            "parkext_exclusive": True,
            "parkpos_start": 701,
            "parkpos_end": 709,
        },
    )
    assert status == 201, lot
    status, done = site.api("GET", f"/api/v1/deployments/{lot['deployment']['id']}/?wait=30")
    assert status == 200, done
    assert (done["status"], done["live"]) == ("ok", True), done
    live_in = time.monotonic() - saved_at
    deployment = Deployment.objects.get(pk=lot["deployment"]["id"])
    assert deployment.trigger == "api_key" and deployment.reloaded
    assert "acme_main" in asterisk.cli("parking show")
    deployed_on = wait_for(
        lambda: [
            worker
            for worker in site.workers
            if re.search(r"deploy_server\[[^\]]+\] succeeded", worker.log(marks[worker]))
        ],
        timeout=10,
        what="a worker's log of the deploy",
    )
    # The deployment names the worker that ran it (host:pid), for an operator to find.
    assert deployment.worker in {f"{w.host.hostname}:{w.pid}" for w in deployed_on}, (
        deployment.worker
    )

    # The board on the web host, as a tenant operator sees it.
    board = Board(
        f"ws://{web.address}:{WEB_PORT}/ws/t/acme/parking/",
        {"Cookie": f"sessionid={site.session}", "Origin": site.base},
        site.daphne.log_path,
    )
    try:
        snapshot = board.next(lambda f: f["type"] == "snapshot", 15, "snapshot")
        assert [lot["asterisk_name"] for lot in snapshot["lots"]] == ["acme_main"]
        assert [(h["connected"], h["synced"]) for h in snapshot["health"]] == [(True, True)]

        # (2) Kill the worker holding the watcher: the other host's worker takes it over.
        holder = site.watcher()
        assert holder is not None
        survivor = next(worker for worker in site.workers if worker is not holder)
        assert survivor.host is not holder.host
        ami_mark = len(site.forwarder.log())
        holder.kill()
        killed_at = time.monotonic()
        bound = LEASE_SECONDS + CHECK_SECONDS + TAKEOVER_MARGIN
        wait_for(
            lambda: site.watcher() is survivor,
            timeout=bound + 10,
            interval=0.1,
            what=f"the watcher to move to {survivor.host.hostname}",
        )
        takeover = time.monotonic() - killed_at
        assert takeover <= bound, f"takeover took {takeover:.1f}s, more than {bound}s"
        # The new watcher came from the survivor's host, over the network.
        assert survivor.host.address in site.forwarder.peers(site.route(web, "ami"), ami_mark)

        # (3) The board hears the new watcher, sits idle a while (longer than any
        # Redis read of the web process may wait), and shows a call parked then: all on
        # the socket it opened before the failover.
        board.next(
            lambda f: f["type"] == "health" and f["connected"] and f["synced"],
            10,
            "health from the new watcher",
        )
        board.quiet(IDLE_SECONDS, timeout=IDLE_SECONDS + 10)
        assert board.open, (
            f"the web host closed the board's websocket ({board.closed_by_server}, "
            f"{board.error!r}); see {site.daphne.log_path}"
        )
        event = asterisk.park_call("parkacme_main", "#72", keep=True)
        parked_at = time.monotonic()
        frame = board.next(
            lambda f: f["type"] == "parked" and f["call"]["uniqueid"] == event["ParkeeUniqueid"],
            10,
            "parked call",
        )
        on_board = time.monotonic() - parked_at
        assert (frame["call"]["lot"], frame["call"]["space"]) == (
            "main",
            int(event["ParkingSpace"]),
        )
        assert frame["call"]["caller_id_num"] == "5551234"
        assert board.open
    finally:
        board.close()

    # Every host used its own link to PostgreSQL and Redis.
    for host in (web, work):
        for service in ("postgres", "redis"):
            assert host.address in site.forwarder.peers(site.route(host, service)), service
    print(
        f"multihost: lot live in {live_in:.2f}s, deployed by "
        f"{', '.join(f'{w.host.hostname} (pid {w.pid})' for w in deployed_on)}; "
        f"watcher moved {holder.host.hostname} -> {survivor.host.hostname} in {takeover:.1f}s "
        f"(lease {LEASE_SECONDS}s, bound {bound}s); parked call on the board in {on_board:.2f}s"
    )

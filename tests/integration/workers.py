"""Real Celery workers for tests, on a real Redis, sharing the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from parkweb.celery import app

LOGS = Path(settings.BASE_DIR) / "artifacts"


def isolated_redis_url() -> str:
    """A Redis database of its own, so tests never consume another run's tasks (13, or
    PARKWEB_TEST_REDIS_DB when two runs share one Redis)."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return base.rsplit("/", 1)[0] + "/" + os.environ.get("PARKWEB_TEST_REDIS_DB", "13")


def shared_test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_argv(name: str, queues: str = "", pool: str = "solo") -> list[str]:
    """A Celery worker for tests: one process (`pool` "prefork": one pool child as well),
    nothing chatty between workers; `queues`, when given, the queues it serves (`-Q`)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "parkweb",
        "worker",
        "-P",
        pool,
        *(["-c", "1"] if pool == "prefork" else []),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        *(["-Q", queues] if queues else []),
    ]


# How a worker whose work may wait yields the CPU (deploy/systemd/parkweb-webhooks.service):
# "idle", Linux's SCHED_IDLE, only what no other process wants; "nice", nice 10.
PRIORITIES = {"normal": [], "nice": ["nice", "-n", "10"], "idle": ["chrt", "--idle", "0"]}


class Worker:
    def __init__(
        self,
        name: str,
        env: dict[str, str],
        queues: str = "",
        priority: str = "normal",
        pool: str = "solo",
    ):
        """`priority`: one of PRIORITIES."""
        LOGS.mkdir(exist_ok=True)
        self.log_path = LOGS / f"celery-{name}.log"
        self.process = subprocess.Popen(
            PRIORITIES[priority] + worker_argv(name, queues, pool),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=open(self.log_path, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while "ready." not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)


def reset_broker_connections() -> None:
    """Forget pooled connections so the next publish uses the broker configured now.
    (Not closed: kombu keeps its pools in a registry and would hand a closed one back.)"""
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def celery_workers():
    """Route tasks through Redis for the test; yields a function that starts a worker."""
    redis_url = isolated_redis_url()
    env = {
        **os.environ,
        "DATABASE_URL": shared_test_database_url(),
        "REDIS_URL": redis_url,
        "PARKWEB_DEPLOY_RETRY_MAX_SECONDS": "2",
        "PARKWEB_AMI_TIMEOUT": "3",
        "PARKWEB_DEPLOY_LEASE_SECONDS": "6",
        "PARKWEB_WORKER_WATCHERS": "0",
    }
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=redis_url, task_always_eager=False)
    reset_broker_connections()
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    workers: list[Worker] = []

    def start(
        name: str = "w1", priority: str = "normal", pool: str = "solo", **extra_env: str
    ) -> Worker:
        worker = Worker(name, {**env, **extra_env}, priority=priority, pool=pool)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
        app.conf.update(**saved)
        reset_broker_connections()
        redis.Redis.from_url(redis_url).flushdb()

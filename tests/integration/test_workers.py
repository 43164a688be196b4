"""Real Celery workers: one keeps its PostgreSQL connection from one task to the next
(Celery's Django fixup would otherwise open one per task: a backend started each time,
which slowed every other query on the machine under webhook load); one started as
parkweb-webhooks.service starts it yields the CPU."""

from pathlib import Path

import pytest
from django.db import connection

from lots.tasks import webhook_deliveries_due

from .test_deploy import wait_for
from .workers import celery_workers

pytestmark = pytest.mark.integration

TASKS = 12


def sessions() -> int:
    """Connections ever opened to this database (PostgreSQL 14 and later)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_worker_reuses_its_database_connection_between_tasks(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL's sessions; CI runs this on PostgreSQL")
    with celery_workers() as start_worker:
        worker = start_worker()
        webhook_deliveries_due.delay()  # the worker's first connection
        wait_for(lambda: "succeeded" in worker.log_path.read_text(), what="a first task")
        before = sessions()
        for _ in range(TASKS):
            webhook_deliveries_due.delay()
        wait_for(
            lambda: worker.log_path.read_text().count("webhook_deliveries_due[") >= 2 * (TASKS + 1),
            what="the tasks run",  # one line as each is received, one as it succeeds
        )
        opened = sessions() - before
    assert opened <= 2, f"{opened} connections opened for {TASKS} tasks"


def test_an_idle_worker_runs_every_thread_under_sched_idle_and_its_group_yields(
    transactional_db,
):
    """What parkweb-webhooks.service's CPUSchedulingPolicy=idle and CPUWeight=idle do, and
    what the webhook benchmark runs its delivery workers with: only CPU time nothing else
    wants. The policy ranks a task only within its scheduling group, so the worker (in a
    session of its own) gives its autogroup the lowest weight too; a worker under the
    normal policy leaves its group as it was."""
    import os

    with celery_workers() as start_worker:
        worker = start_worker("idle", priority="idle")
        normal = start_worker("normal")
        for started in (worker, normal):
            wait_for(lambda w=started: "ready" in w.log_path.read_text(), what="the worker")
        policies = {
            os.sched_getscheduler(int(thread)) for thread in os.listdir(f"/proc/{worker.pid}/task")
        }
        groups = {w: Path(f"/proc/{w.pid}/autogroup").read_text() for w in (worker, normal)}
    assert policies == {os.SCHED_IDLE}
    assert groups[worker].endswith(" nice 19\n") and groups[normal].endswith(" nice 0\n")


def test_the_watchers_publish_from_a_child_process_and_lose_no_run_when_it_dies(
    transactional_db, monkeypatch
):
    """A worker that runs watchers hands each event's endpoints to a child process, which
    queues the delivery run under the idle CPU policy (not the watchers' interpreter lock),
    its pipe small enough that a child starved of CPU is noticed within seconds.
    A dead child costs no run: the thread publishes meanwhile, and a new child starts."""
    import fcntl
    import os
    import time

    from lots.services import webhooks as hooks

    from .workers import isolated_redis_url

    monkeypatch.setenv("REDIS_URL", isolated_redis_url())  # the child's broker: the test's
    with celery_workers() as start_worker:
        worker = start_worker()
        publisher = hooks._PublisherProcess()
        publisher.start()
        try:
            child = publisher.child
            wait_for(
                lambda: os.sched_getscheduler(child.pid) == os.SCHED_IDLE,
                what="the child's idle CPU policy",
            )
            assert os.getsid(child.pid) == child.pid != os.getsid(0)  # its own group's
            wait_for(
                lambda: Path(f"/proc/{child.pid}/autogroup").read_text().endswith(" nice 19\n"),
                what="the child's group's lowest weight",
            )
            assert fcntl.fcntl(child.stdin.fileno(), fcntl.F_GETPIPE_SZ) == 4096

            def ran(webhook_id: int) -> bool:  # the worker's log: the run's result
                return f"{{{webhook_id}: 'idle'}}" in worker.log_path.read_text()

            publisher.put([9101])
            wait_for(lambda: ran(9101), what="the run the child queued")

            child.kill()
            child.wait()
            publisher.started = time.monotonic()  # as if it had just been restarted
            publisher.put([9102])  # not taken by a child: published by the thread
            wait_for(lambda: ran(9102), what="the run the thread queued")

            publisher.started = -publisher.RESTART_SECONDS  # may start one again
            publisher.put([9103])
            assert publisher.child.pid != child.pid and publisher.child.poll() is None
            wait_for(lambda: ran(9103), what="the run the new child queued")
            last = publisher.child
        finally:
            publisher.stop()
    assert last.returncode == 0  # its input closed, it stopped by itself

"""Real Celery workers: one keeps its PostgreSQL connection from one task to the next
(Celery's Django fixup would otherwise open one per task: a backend started each time,
which slowed every other query on the machine under webhook load); one started as
parkweb-webhooks.service starts it yields the CPU."""

import time
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


def test_a_delivery_worker_takes_events_from_the_wake_list_without_a_task_per_event(
    transactional_db, settings, acme
):
    """A committed event wakes a worker's delivery loop through the Redis list: it is
    delivered with no Celery message. Events committed while no worker runs wait in the
    list and in the database, and the next worker to start delivers them, in order."""
    import redis as redis_lib
    from django.db import transaction

    from lots import services
    from lots.services.webhooks import WAKE_KEY, event_emit, wakes_drained
    from parkweb.celery import app
    from tenants.actors import SYSTEM
    from tests.receiver import Receiver

    settings.DEBUG = True
    receiver = Receiver()

    def emit(n: int) -> None:
        with transaction.atomic():  # the wake goes out once this commits
            event_emit(acme.pk, "lot.full", "main", lambda: {"n": n})

    try:
        with celery_workers() as start_worker:
            worker = start_worker("loop1", DEBUG="1")
            client = redis_lib.Redis.from_url(app.conf.broker_url)
            hook, _ = services.webhook_create(acme, actor=SYSTEM, url=receiver.url)
            emit(1)
            wait_for(lambda: len(receiver.received) == 1, what="the first event")
            log = worker.log_path.read_text()
            assert "Task lots.tasks.webhooks_deliver" not in log  # no task: the loop took it
            worker.stop()

            for n in (2, 3, 4):  # no worker runs: they wait
                emit(n)
            assert wakes_drained()
            assert client.llen(WAKE_KEY) == 3
            time.sleep(0.5)
            assert len(receiver.received) == 1

            # As parkweb-webhooks.service runs it: a prefork pool, whose child runs the loop.
            start_worker("loop2", pool="prefork", DEBUG="1")
            wait_for(lambda: len(receiver.received) == 4, what="the waiting events")
            assert [event["n"] for event in receiver.events()] == [1, 2, 3, 4]
            assert client.llen(WAKE_KEY) == 0
            assert hook.deliveries.filter(status="delivered").count() == 4
    finally:
        receiver.close()

from django.apps import AppConfig


class LotsConfig(AppConfig):
    name = "lots"
    verbose_name = "Parking"

    def ready(self) -> None:
        from celery.signals import (
            task_postrun,
            task_prerun,
            worker_init,
            worker_process_init,
            worker_process_shutdown,
            worker_ready,
            worker_shutdown,
        )

        import parkweb.checks  # noqa: F401  (registers the production checks)

        from .live_access import connect_signals

        connect_signals()
        worker_init.connect(idle_worker_yields_as_a_group, weak=False)
        worker_ready.connect(start_worker_watchers, weak=False)
        worker_shutdown.connect(stop_worker_watchers, weak=False)
        worker_process_init.connect(start_delivery_loop_in_pool_child, weak=False)
        worker_process_shutdown.connect(stop_delivery_loop, weak=False)
        task_prerun.connect(database_connections_kept, weak=False)
        task_postrun.connect(database_connections_kept, weak=False)


_supervisor = None

# Seconds a Python thread keeps the interpreter before another may take it (Python's
# default: 0.005). A watcher waits on PostgreSQL several times per event, and a delivery
# worker on PostgreSQL and on receivers; each time its answer is in, the thread needs the
# interpreter back, and while another thread of the process computes (reading AMI,
# queueing deliveries) it waited up to the whole interval: that doubled the watcher's time
# per event under load (bench/webhooks.py). Shorter turns cost a little CPU, not latency.
SWITCH_INTERVAL = 0.0005


def hand_the_gil_over_quickly(**kwargs) -> None:
    """In every Celery worker process: the main one (the watchers) and pool children."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL)


def idle_worker_yields_as_a_group(**kwargs) -> None:
    """A worker started under the idle policy (the webhook deliveries') lowers its
    scheduling group's weight too, without which the policy does not reach past its own
    session (parkweb.cpu)."""
    from parkweb import cpu

    if cpu.yields():
        cpu.group_yield()


def database_connections_kept(sender=None, **kwargs) -> None:
    """Around each task, as around each web request: a connection older than CONN_MAX_AGE
    or left broken is closed, any other is kept for the next task (see
    CELERY_DB_REUSE_MAX). Not for a task run eagerly, inside its caller's transaction."""
    from django.db import close_old_connections

    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close_old_connections()


def start_worker_watchers(**kwargs) -> None:
    """Each Celery worker competes for the servers' watcher leases (see lots.supervisor)."""
    global _supervisor
    from django.conf import settings

    from .supervisor import Supervisor

    hand_the_gil_over_quickly()
    if settings.PARKWEB_WORKER_WATCHERS and _supervisor is None:
        _supervisor = Supervisor().start()
    consumer = kwargs.get("sender")
    if not _prefork(consumer) and serves_deliveries(getattr(consumer, "app", None)):
        _delivery_loop_start()  # solo or thread pool: beside its tasks, in this process
    recover_unfinished_deploys()


def _prefork(consumer) -> bool:
    from celery.concurrency.prefork import TaskPool

    return isinstance(getattr(consumer, "pool", None), TaskPool)


def start_delivery_loop_in_pool_child(**kwargs) -> None:
    """Each prefork pool child of a worker that serves the deliveries runs a delivery
    loop: never the worker's main process, where the watchers run."""
    from parkweb.celery import app

    if serves_deliveries(app):
        _delivery_loop_start()


def _delivery_loop_start() -> None:
    from .services.webhooks import delivery_loop_start
    from .tasks import loop_deliver_run

    delivery_loop_start(loop_deliver_run)


def stop_delivery_loop(**kwargs) -> None:
    from .services.webhooks import delivery_loop_stop

    delivery_loop_stop()


def serves_deliveries(app) -> bool:
    """Whether this worker consumes the deliveries' queue (PARKWEB_WEBHOOK_QUEUE, or the
    default queue when that is empty): such a worker runs delivery loops (DeliveryLoop)."""
    from django.conf import settings

    if app is None or app.conf.task_always_eager:
        return False
    queue = settings.PARKWEB_WEBHOOK_QUEUE or app.conf.task_default_queue
    return queue in app.amqp.queues.consume_from


def recover_unfinished_deploys() -> None:
    """A worker that starts (often: the one restarted after a crash) runs at once what a
    dead worker left half done, instead of waiting for the next reconcile."""
    import logging

    from .tasks import recover_deployments

    try:
        recover_deployments.delay()
    except Exception:  # the broker is away: the next reconcile does it
        logging.getLogger(__name__).exception("unfinished deploys not queued for recovery")


def stop_worker_watchers(**kwargs) -> None:
    from .services.webhooks import delivery_loop_stop, wakes_drained

    if _supervisor is not None:
        _supervisor.stop()
    wakes_drained()  # after the watchers: what they queued last is handed over
    delivery_loop_stop()

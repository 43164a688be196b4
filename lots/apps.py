from django.apps import AppConfig


class LotsConfig(AppConfig):
    name = "lots"
    verbose_name = "Parking"

    def ready(self) -> None:
        from celery.signals import (
            task_postrun,
            task_prerun,
            worker_init,
            worker_ready,
            worker_shutdown,
        )

        import parkweb.checks  # noqa: F401  (registers the production checks)

        from .live_access import connect_signals

        connect_signals()
        worker_init.connect(idle_worker_yields_as_a_group, weak=False)
        worker_ready.connect(start_worker_watchers, weak=False)
        worker_shutdown.connect(stop_worker_watchers, weak=False)
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

    from .services.webhooks import publish_from_a_child_process
    from .supervisor import Supervisor

    hand_the_gil_over_quickly()
    if settings.PARKWEB_WORKER_WATCHERS and _supervisor is None:
        publish_from_a_child_process()  # webhook runs: not in the watchers' process
        _supervisor = Supervisor().start()
    recover_unfinished_deploys()


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
    from .services.webhooks import publisher_stop

    if _supervisor is not None:
        _supervisor.stop()
    publisher_stop()  # after the watchers: what they queued last is published

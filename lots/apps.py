from django.apps import AppConfig


class LotsConfig(AppConfig):
    name = "lots"
    verbose_name = "Parking"

    def ready(self) -> None:
        from celery.signals import worker_ready, worker_shutdown

        from .live_access import connect_signals

        connect_signals()
        worker_ready.connect(start_worker_watchers, weak=False)
        worker_shutdown.connect(stop_worker_watchers, weak=False)


_supervisor = None


def start_worker_watchers(**kwargs) -> None:
    """Each Celery worker competes for the servers' watcher leases (see lots.supervisor)."""
    global _supervisor
    from django.conf import settings

    from .supervisor import Supervisor

    if settings.PARKWEB_WORKER_WATCHERS and _supervisor is None:
        _supervisor = Supervisor().start()


def stop_worker_watchers(**kwargs) -> None:
    if _supervisor is not None:
        _supervisor.stop()

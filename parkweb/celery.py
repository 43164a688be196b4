"""The Celery app: `celery -A parkweb worker`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")

app = Celery("parkweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def schedule_periodic_tasks(sender, **kwargs):
    from django.conf import settings

    sender.add_periodic_task(
        settings.PARKWEB_RECONCILE_SECONDS,
        sender.signature("lots.tasks.reconcile_servers"),
        name="reconcile servers with the database",
    )
    sender.add_periodic_task(
        24 * 3600, sender.signature("lots.tasks.purge_parked_calls"), name="purge history"
    )
    sender.add_periodic_task(
        24 * 3600,
        sender.signature("lots.tasks.purge_webhook_deliveries"),
        name="purge the webhook log",
    )
    sender.add_periodic_task(
        30, sender.signature("lots.tasks.webhook_deliveries_due"), name="webhooks due"
    )

"""The Celery app: `celery -A parkweb worker`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")

app = Celery("parkweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

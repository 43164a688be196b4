"""The delivery log's indexes: one for the log (an endpoint's deliveries by time) and a
partial one for the queue (the pending deliveries alone), in place of one on every row
keyed by status and a plain one on the endpoint. The new ones are built before the old
ones go, so no query runs without an index meanwhile."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("lots", "0014_host_pattern_without_lookahead"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(
                fields=["webhook", "occurred_at", "id"], name="webhook_delivery_log"
            ),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["webhook", "occurred_at", "id"],
                name="webhook_delivery_queue",
            ),
        ),
        migrations.RemoveIndex(
            model_name="webhookdelivery",
            name="lots_webhoo_webhook_686433_idx",
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="webhook",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="lots.webhook",
            ),
        ),
    ]

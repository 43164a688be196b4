"""A partial index of the deliveries given up, newest first, for staff's "failed" filter
of the log: it read the log back to its oldest row when fewer than a page matched. Few
rows, written only as a delivery is given up. Building it reads the table once, while
the table takes no writes (half a million rows: 0.1 s here)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('lots', '0015_webhook_log_and_queue_indexes'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(condition=models.Q(('status', 'failed')), fields=['-id'], name='webhook_delivery_failed'),
        ),
    ]

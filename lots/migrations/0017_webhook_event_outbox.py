"""Webhook events recorded as one row each, in the transaction that makes them (the
watcher's), for the delivery workers to fan out into their endpoints' deliveries: the
watcher's commit no longer carries a delivery row and its indexes per endpoint. A new,
empty table."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('lots', '0016_webhook_delivery_failed_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='WebhookEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_id', models.CharField(max_length=40)),
                ('event_type', models.CharField(max_length=40)),
                ('occurred_at', models.DateTimeField()),
                ('body', models.JSONField()),
                ('endpoints', models.JSONField()),
            ],
        ),
    ]

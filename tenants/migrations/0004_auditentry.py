# The audit log, moved here from the lots app with its table (lots_auditentry) and rows;
# it now also records writes without a tenant (servers, tenants) and who did them.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_membership_extension"),
        ("lots", "0005_auditentry_moves_to_tenants"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEntry",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("action", models.CharField(max_length=40)),
                        ("target", models.CharField(max_length=200)),
                        ("detail", models.JSONField(blank=True, default=dict)),
                        ("ok", models.BooleanField(default=True)),
                        (
                            "tenant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="audit",
                                to="tenants.tenant",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={"ordering": ["-created_at"], "db_table": "lots_auditentry"},
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="tenant",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="audit",
                to="tenants.tenant",
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="actor",
            field=models.CharField(
                blank=True, help_text="The person, API key or parkweb itself.", max_length=150
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["tenant", "-created_at"], name="lots_audite_tenant__becda0_idx"),
        ),
    ]

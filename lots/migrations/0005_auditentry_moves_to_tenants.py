# The audit log moves to the tenants app (tenants.AuditEntry), keeping its table: this
# only removes the model from this app's state.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("lots", "0004_containment"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")],
            database_operations=[],
        ),
    ]

"""Deploy one server's parking config now, or show what a deploy would change."""

from django.core.management.base import BaseCommand, CommandError

from lots import services
from lots.models import AsteriskServer
from lots.selectors import pending_change


class Command(BaseCommand):
    help = (
        "Deploy a server's res_parking.conf, features.conf and parkweb_timeout.conf "
        "(or --dry-run: show the diff)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="the AsteriskServer's name")
        parser.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
        parser.add_argument(
            "--force", action="store_true", help="rewrite and reload even if nothing changed"
        )

    def handle(self, *args, server: str, dry_run: bool, force: bool, **options):
        try:
            found = AsteriskServer.objects.get(name=server)
        except AsteriskServer.DoesNotExist:
            names = ", ".join(AsteriskServer.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No Asterisk server named {server!r} (known: {names}).") from None

        if dry_run:
            change = pending_change(found)
            self.stdout.write(
                change.diff or "No difference from the last good config.\n", ending=""
            )
            self.stdout.write(
                "Asterisk already runs this config: no reload would be sent.\n"
                if change.live
                else "A deploy would write these files and reload Asterisk.\n"
            )
            return

        services.deployment_request(
            found.pk, services.SYSTEM, "manage.py deploy", force=force, enqueue=False
        )
        outcome, deployment = services.deployment_run(found.pk)
        if outcome == services.Outcome.BUSY:
            self.stdout.write("Another deploy of this server is running; it will include this.")
            return
        if deployment is None:
            self.stdout.write("Nothing to deploy.")
            return
        deployment.refresh_from_db()
        self.stdout.write(f"Deployment {deployment.pk}: {deployment.get_status_display()}")
        if deployment.error:
            self.stdout.write(deployment.error)
        if deployment.status not in ("ok",):
            raise CommandError(f"deploy of {found.name} did not go live")

"""Print the config parkweb generates for one server."""

from django.core.management.base import BaseCommand, CommandError

from lots.models import AsteriskServer
from lots.selectors import server_config


class Command(BaseCommand):
    help = "Print res_parking.conf (or, with --features, features.conf) for a server."

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="the AsteriskServer's name")
        parser.add_argument("--features", action="store_true", help="print features.conf instead")

    def handle(self, *args, server: str, features: bool, **options):
        try:
            found = AsteriskServer.objects.get(name=server)
        except AsteriskServer.DoesNotExist:
            names = ", ".join(AsteriskServer.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No Asterisk server named {server!r} (known: {names}).") from None
        files = server_config(found)
        self.stdout.write(files["features.conf" if features else "res_parking.conf"], ending="")

"""Demo data: two tenants, one Asterisk server, their contexts and a few lots. Idempotent."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from lots import services
from lots.models import AsteriskServer, DialplanContext, ParkingLot
from tenants.actors import SYSTEM
from tenants.models import Role, Tenant
from tenants.services import member_set, tenant_save

DEMO_PASSWORD = "parkweb-demo"  # noqa: S105 - printed for the local demo only

TENANTS = [
    ("acme", "Acme Corporation"),
    ("globex", "Globex Inc."),
]
CONTEXTS = [
    ("acme", "acme-parking", "Acme's parking spaces"),
    ("acme", "acme-timeout", "Where Acme's timed-out calls go"),
    ("globex", "globex-parking", "Globex's parking spaces"),
]
LOTS = [
    # tenant, slug, name, context, options
    (
        "acme",
        "main",
        "Reception",
        "acme-parking",
        {
            "parkext": "700",
            "parkext_exclusive": True,
            "parkpos_start": 701,
            "parkpos_end": 720,
            "findslot": "next",
        },
    ),
    (
        "acme",
        "warehouse",
        "Warehouse",
        "acme-parking",
        {
            "parkext": "750",
            "parkext_exclusive": True,
            "parkpos_start": 751,
            "parkpos_end": 759,
            "parkingtime": 120,
            "comebacktoorigin": False,
            "comebackcontext": "acme-timeout",
        },
    ),
    (
        "globex",
        "main",
        "Front desk",
        "globex-parking",
        {
            "parkext": "700",
            "parkext_exclusive": True,
            "parkpos_start": 701,
            "parkpos_end": 720,
            "parkinghints": True,
        },
    ),
]
USERS = [
    # username, staff, tenant, role
    ("admin", True, None, None),
    ("acme-admin", False, "acme", Role.ADMIN),
    ("acme-viewer", False, "acme", Role.VIEWER),
    ("globex-admin", False, "globex", Role.ADMIN),
]


class Command(BaseCommand):
    help = "Create (or refresh) demo tenants, users, a server, contexts and lots."

    def add_arguments(self, parser):
        parser.add_argument("--ami-host", default="127.0.0.1")
        parser.add_argument("--ami-port", type=int, default=5038)
        parser.add_argument("--ami-username", default="parkweb")
        parser.add_argument("--ami-secret", default="", help="kept as is when empty")
        parser.add_argument("--config-dir", default="/etc/asterisk")

    @transaction.atomic
    def handle(self, *args, **opts):
        tenants = {}
        for slug, name in TENANTS:
            tenants[slug] = Tenant.objects.filter(slug=slug).first() or tenant_save(
                Tenant(slug=slug, name=name)
            )

        server = AsteriskServer.objects.filter(name="pbx1").first() or AsteriskServer(name="pbx1")
        server.ami_host = opts["ami_host"]
        server.ami_port = opts["ami_port"]
        server.ami_username = opts["ami_username"]
        server.config_dir = opts["config_dir"]
        server.parkcall = server.parkcall or "#72"
        secret = opts["ami_secret"] or (None if server.ami_secret_encrypted else "change-me")
        services.server_save(server, ami_secret=secret)

        contexts = {}
        for tenant, name, description in CONTEXTS:
            context = DialplanContext.objects.filter(server=server, name=name).first()
            if context is None:
                context = services.context_create(
                    server=server, tenant=tenants[tenant], name=name, description=description
                )
            contexts[name] = context

        for tenant, slug, name, context, options in LOTS:
            if ParkingLot.objects.filter(tenant=tenants[tenant], slug=slug).exists():
                continue
            options = dict(options)
            if "comebackcontext" in options:
                options["comebackcontext"] = contexts[options["comebackcontext"]]
            services.lot_create(
                tenant=tenants[tenant],
                server=server,
                slug=slug,
                name=name,
                context=contexts[context],
                **options,
            )

        User = get_user_model()
        for username, staff, tenant, role in USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = staff
            user.save()
            if tenant:
                member_set(tenants[tenant], user, role, actor=SYSTEM)

        self.stdout.write(
            f"Demo data ready: {Tenant.objects.count()} tenants, "
            f"{ParkingLot.objects.count()} lots on server {server.name} "
            f"(AMI {server.ami_host}:{server.ami_port}, config in {server.config_dir})."
        )

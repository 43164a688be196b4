"""A sandbox Asterisk that speaks SIP, three real phones (201 Alice, 202 Bob, 203 Carol)
and a busy-lamp key, registered over PJSIP in Acme's phones context, whose dialplan is
exactly what the lot page tells a tenant to paste."""

import os
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from lots import services
from lots.models import ServerHealth
from lots.supervisor import LocalLeases, Supervisor
from tenants.models import Membership, Role
from tests.factories import make_context, make_lot, make_phones, make_server, make_tenant
from tests.integration.sandbox import Sandbox, sandbox
from tests.integration.test_deploy import wait_for

from .harness import ALICE, BOB, CAROL, LAMP, Phone

WORKDIR = Path(django_settings.BASE_DIR) / "artifacts" / "phones"
PHONES_CONTEXT = "acme-phones"


@pytest.fixture(scope="session")
def pbx():
    """The sandbox named "phones" (AMI 5046, SIP 5160), its endpoints written."""
    name = os.environ.get("PARKWEB_PHONES_SANDBOX", "phones")
    was_running = sandbox("status", "--name", name, check=False).returncode == 0
    if was_running:  # it may have been started without SIP: start it afresh
        sandbox("stop", "--name", name)
    started = sandbox(
        "start", "--name", name, "--ami-port", "5046", "--sip-port", "5160", check=False
    )
    if started.returncode != 0:
        pytest.fail(f"The phones sandbox did not start:\n{started.stderr}")
    box = Sandbox.from_env_output(started.stdout)
    box.sip_port = 5160
    box.write(
        "pjsip_local.conf",
        "".join(line.endpoint(PHONES_CONTEXT) for line in (ALICE, BOB, CAROL, LAMP)),
    )
    box.cli("module reload res_pjsip.so")
    yield box
    sandbox("stop", "--name", name, check=False)


@pytest.fixture(scope="module")
def phones(pbx):
    WORKDIR.mkdir(parents=True, exist_ok=True)
    made = {line.name.lower(): Phone(line, pbx.sip_port, WORKDIR) for line in (ALICE, BOB, CAROL)}
    wait_for(
        lambda: all(
            f"{line.number}/sip:" in pbx.cli("pjsip show contacts") for line in (ALICE, BOB, CAROL)
        ),
        timeout=20,
        what="the phones to register",
    )
    yield made
    for phone in made.values():
        phone.stop()


class World:
    """Acme on the phones sandbox: a lot with busy lamps, its phones, an admin and an
    operator, and the lot page's dialplan pasted in."""

    def __init__(self, pbx):
        self.pbx = pbx
        self.server = make_server("pbx-phones", parkcall="#72", **pbx.server_fields())
        self.acme = make_tenant("acme", name="Acme")
        self.phones = make_phones(self.server, self.acme, PHONES_CONTEXT, "201-209")
        self.lot = make_lot(
            self.acme,
            make_context(self.server, self.acme, "acme-parking"),
            "main",
            name="Reception",
            parkext="700",
            parkext_exclusive=True,
            parkpos_start=701,
            parkpos_end=709,
            parkinghints=True,
            parkingtime=300,
        )
        users = get_user_model().objects
        self.admin = users.create_user("ada", password="pw-ada-123")
        Membership.objects.create(user=self.admin, tenant=self.acme, role=Role.ADMIN)
        self.api = APIClient()
        self.api.force_authenticate(self.admin)
        # What the lot page tells the tenant to paste, pasted as it is.
        self.dialplan = self.api.get("/api/v1/tenants/acme/lots/main/integration/").json()[
            "dialplan"
        ]
        pbx.write("extensions_local.conf", self.dialplan)
        pbx.cli("dialplan reload")
        services.hints_sync(self.server)  # a dialplan reload drops them; parkweb puts them back

    def calls(self):
        from lots.models import ParkedCall

        return ParkedCall.objects.filter(server=self.server)


@pytest.fixture
def world(transactional_db, pbx, phones):
    pbx.hangup_all()
    world = World(pbx)
    supervisor = Supervisor(LocalLeases(), name="phones-supervisor").start()
    wait_for(
        lambda: ServerHealth.objects.filter(server=world.server, synced=True).exists(),
        timeout=20,
        what="the watcher",
    )
    yield world
    supervisor.stop()
    for phone in phones.values():
        phone.hang_up()
    pbx.hangup_all()
    time.sleep(0.2)

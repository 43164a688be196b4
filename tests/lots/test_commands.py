"""Management commands: render_parking_config and seed_demo."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from lots.models import AsteriskServer, DialplanContext, ParkingLot
from lots.selectors import server_config
from tenants.models import Membership, Tenant
from tests.lots.scenarios import guide_server


def test_render_prints_res_parking_and_features(db, capsys):
    server = guide_server("a")
    call_command("render_parking_config", "--server", server.name)
    assert capsys.readouterr().out == server_config(server)["res_parking.conf"]
    call_command("render_parking_config", "--server", server.name, "--features")
    assert "parkcall => #72" in capsys.readouterr().out


def test_render_names_known_servers_when_the_name_is_wrong(db):
    guide_server("a")
    with pytest.raises(CommandError, match="known: guide-a"):
        call_command("render_parking_config", "--server", "nope")


def test_seed_demo_is_idempotent(db):
    call_command("seed_demo")
    counts = (
        Tenant.objects.count(),
        AsteriskServer.objects.count(),
        DialplanContext.objects.count(),
        ParkingLot.objects.count(),
        get_user_model().objects.count(),
        Membership.objects.count(),
    )
    call_command("seed_demo", "--ami-port", "5040", "--ami-secret", "new")
    assert (
        Tenant.objects.count(),
        AsteriskServer.objects.count(),
        DialplanContext.objects.count(),
        ParkingLot.objects.count(),
        get_user_model().objects.count(),
        Membership.objects.count(),
    ) == counts
    assert counts[:4] == (2, 1, 3, 3)
    server = AsteriskServer.objects.get()
    assert (server.ami_port, server.ami_secret) == (5040, "new")

"""The operator admin: every model reachable, same validation, secrets never shown."""

import pytest
from django.contrib.auth import get_user_model

from lots.models import AsteriskServer, ParkingLot
from tests.factories import lot_form_data, make_delivery, make_lot


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/lots/asteriskserver/",
        "/admin/lots/dialplancontext/",
        "/admin/lots/parkinglot/",
        "/admin/tenants/tenant/",
        "/admin/tenants/membership/",
        "/admin/lots/parkinglot/add/",
        "/admin/lots/parkedcall/",
        "/admin/lots/serverhealth/",
        "/admin/tenants/auditentry/",
        "/admin/tenants/invitation/",
        "/admin/tenants/apikey/",
        "/admin/lots/tenantphones/",
        "/admin/lots/tenantphones/add/",
        "/admin/lots/eventproblem/",
        "/admin/lots/deployment/",
        "/admin/lots/asteriskserver/add/",
    ],
)
def test_admin_pages_load(staff_client, url, acme_ctx):
    assert staff_client.get(url).status_code == 200


def test_admin_never_shows_the_ami_secret(staff_client, server):
    page = staff_client.get(f"/admin/lots/asteriskserver/{server.pk}/change/").content.decode()
    assert "s3cret" not in page
    assert server.ami_secret_encrypted not in page


def test_admin_server_edit_keeps_secret_when_left_empty(staff_client, server):
    response = staff_client.post(
        f"/admin/lots/asteriskserver/{server.pk}/change/",
        {
            "name": "pbx1",
            "ami_host": "127.0.0.1",
            "ami_port": "5038",
            "ami_username": "pw",
            "ami_secret": "",
            "config_dir": "/etc/asterisk",
            "parkcall": "#72",
            "reserved_contexts": "",
            "delivery": "file",
        },
    )
    assert response.status_code == 302
    assert AsteriskServer.objects.get(pk=server.pk).ami_secret == "s3cret"


def lot_form(acme, server, context, **overrides):
    fields = {"parkext": "700", "parkpos_start": "705", "parkpos_end": "712", **overrides}
    return lot_form_data(server, context, tenant=acme.pk, **fields)


def test_admin_lot_form_shows_collision_next_to_the_field(staff_client, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=709)
    response = staff_client.post("/admin/lots/parkinglot/add/", lot_form(acme, server, acme_ctx))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Spaces 705-709 are already used by lot 'Reception'" in errors["parkpos_start"][0]
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_admin_lot_form_refuses_injection_in_parkext(staff_client, acme, server, acme_ctx):
    response = staff_client.post(
        "/admin/lots/parkinglot/add/",
        lot_form(
            acme, server, acme_ctx, parkext="700\n[evil](+)", parkpos_start="801", parkpos_end="809"
        ),
    )
    assert "parkext" in response.context["adminform"].form.errors
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_admin_creates_a_valid_lot(staff_client, acme, server, acme_ctx):
    response = staff_client.post(
        "/admin/lots/parkinglot/add/",
        lot_form(acme, server, acme_ctx, parkpos_start="801", parkpos_end="809"),
    )
    assert response.status_code == 302
    assert ParkingLot.objects.get(slug="sales").parkpos == "801-809"


def test_the_webhook_log_is_listed_newest_first_without_reading_it_whole(
    staff_client, acme, monkeypatch
):
    """The log holds millions of rows: the list goes by id, counts up to a cap, and takes
    its event-type filter from the code, not from a DISTINCT over every row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lots import admin as lots_admin
    from lots import services
    from tenants.actors import SYSTEM

    monkeypatch.setattr(lots_admin.CappedCountPaginator, "CAP", 10)
    hook, _ = services.webhook_create(acme, actor=SYSTEM, url="https://crm.example/")
    made = [
        make_delivery(hook, f"evt_{n}", event_type="lot.full" if n == 3 else "call.parked")
        for n in range(15)
    ]
    with CaptureQueriesContext(connection) as queries:
        page = staff_client.get("/admin/lots/webhookdelivery/")
    assert page.status_code == 200
    assert [d.pk for d in page.context["cl"].result_list][:3] == [d.pk for d in made[::-1][:3]]
    assert page.context["cl"].result_count == 11  # the cap, plus one: "more than 10"
    sql = " ".join(q["sql"] for q in queries).upper()
    assert "DISTINCT" not in sql
    assert all("LIMIT" in q["sql"].upper() for q in queries if "COUNT(" in q["sql"].upper())
    filtered = staff_client.get("/admin/lots/webhookdelivery/?event_type=lot.full")
    assert [d.event_id for d in filtered.context["cl"].result_list] == ["evt_3"]
    assert b"deployment.finished" in filtered.content  # every type offered, seen or not

"""Tenant self-service pages, server side: who sees what, and the same validation."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from lots.models import ParkingLot
from tenants.models import Membership, Role
from tests.factories import make_lot


@pytest.fixture
def people(acme, globex, acme_ctx):
    users = get_user_model().objects
    made = {}
    for name, tenant, role in [
        ("boss", acme, Role.ADMIN),
        ("desk", acme, Role.OPERATOR),
        ("watcher", acme, Role.VIEWER),
        ("other", globex, Role.ADMIN),
    ]:
        made[name] = users.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(user=made[name], tenant=tenant, role=role)
    return made


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lot_post(server, context, **overrides):
    data = {
        "name": "Sales",
        "slug": "sales",
        "server": server.pk,
        "context": context.pk,
        "parkext": "710",
        "parkpos_start": "711",
        "parkpos_end": "719",
        "parkingtime": "45",
        "findslot": "first",
        "enabled": "on",
        "comebacktoorigin": "on",
        "comebackdialtime": "30",
        "parkedplay": "caller",
        "parkedcalltransfers": "no",
        "parkedcallreparking": "no",
        "parkedcallhangup": "no",
        "parkedcallrecording": "no",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "path", ["/t/acme/", "/t/acme/board/", "/t/acme/history/", "/t/acme/lots/new/"]
)
def test_pages_need_login_and_membership(people, path):
    assert Client().get(path).status_code == 302  # to the login page
    assert client_for(people["other"]).get(path).status_code == 404
    assert client_for(people["watcher"]).get(path).status_code == 200


def test_admin_creates_a_lot_and_sees_its_integration_snippet(people, server, acme_ctx):
    client = client_for(people["boss"])
    response = client.post("/t/acme/lots/new/", lot_post(server, acme_ctx))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "include => acme-parking" in page
    assert "__PARKINGLOT=acme_sales" in page


def test_invalid_input_shows_the_message_next_to_the_field(people, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=719)
    response = client_for(people["boss"]).post(
        "/t/acme/lots/new/", lot_post(server, acme_ctx, parkpos_start="715")
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="error-parkpos_start"' in page and "lot &#x27;Reception&#x27;" in page
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_viewer_sees_no_edit_button_and_cannot_post(people, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main")
    client = client_for(people["watcher"])
    page = client.get("/t/acme/lots/main/").content.decode()
    assert ">Save<" not in page and "New lot" not in client.get("/t/acme/").content.decode()
    assert client.post("/t/acme/lots/new/", lot_post(server, acme_ctx)).status_code == 403
    board = client.get("/t/acme/board/").content.decode()
    assert 'data-can-act="0"' in board
    assert 'data-can-act="1"' in client_for(people["desk"]).get("/t/acme/board/").content.decode()


def test_another_tenants_context_is_not_offered(people, server, globex_ctx):
    response = client_for(people["boss"]).post("/t/acme/lots/new/", lot_post(server, globex_ctx))
    assert "context" in response.context["form"].errors


def test_admin_manages_members_and_viewers_cannot(people, acme):
    get_user_model().objects.create_user("newbie", password="pw-newbie-123")
    client = client_for(people["boss"])
    client.post("/t/acme/members/", {"action": "add", "username": "newbie", "role": "operator"})
    membership = Membership.objects.get(user__username="newbie", tenant=acme)
    assert membership.role == "operator"
    client.post(
        "/t/acme/members/", {"action": "role", "membership": membership.pk, "role": "viewer"}
    )
    membership.refresh_from_db()
    assert membership.role == "viewer"
    client.post("/t/acme/members/", {"action": "remove", "membership": membership.pk})
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert client_for(people["watcher"]).get("/t/acme/members/").status_code == 403
    other = Membership.objects.get(user=people["other"])  # globex's: not reachable here
    assert (
        client.post("/t/acme/members/", {"action": "remove", "membership": other.pk}).status_code
        == 404
    )


def test_admin_creates_a_key_shown_once_and_revokes_it(people, acme):
    from tenants.models import ApiKey

    client = client_for(people["boss"])
    page = client.post("/t/acme/api-keys/", {"name": "pbx sync", "role": "viewer"})
    text = page.content.decode()
    key = ApiKey.objects.get(tenant=acme)
    assert f"pk_{key.prefix}_" in text and 'id="new-key"' in text
    assert 'id="new-key"' not in client.get("/t/acme/api-keys/").content.decode()
    client.post("/t/acme/api-keys/", {"action": "revoke", "key": key.pk})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert client_for(people["desk"]).get("/t/acme/api-keys/").status_code == 403

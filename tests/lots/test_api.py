"""The REST API: who may call what, the same rules as every save path, safe retries."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import HttpRequest
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from lots import rules
from lots.api import urls as api_urls
from lots.models import Deployment, ParkedCall, ParkingLot
from lots.services import webhook_create
from tenants.actors import SYSTEM
from tenants.models import ApiKey, Membership, Role
from tenants.services import api_key_create, invitation_create
from tests.factories import make_context, make_lot, make_server, make_tenant

PRINCIPALS = ["anonymous", "viewer_a", "operator_a", "admin_a", "admin_b", "key_a", "staff"]


class World:
    """Two tenants on one server, a lot, a parked call, a deployment, members and keys."""

    def __init__(self):
        # Asterisk is not running for these tests: nothing listens on this port.
        self.server = make_server("pbx1", ami_port=1)
        self.a, self.b = make_tenant("tenant-a"), make_tenant("tenant-b")
        self.ctx_a = make_context(self.server, self.a, "a-parking")
        self.ctx_b = make_context(self.server, self.b, "b-parking")
        self.lot = make_lot(
            self.a, self.ctx_a, "main", parkext="700", parkpos_start=701, parkpos_end=709
        )
        self.call = ParkedCall.objects.create(
            server=self.server,
            lot=self.lot,
            tenant=self.a,
            lot_name="tenant-a_main",
            space=701,
            parkee_channel="PJSIP/x-1",
            uniqueid="1.1",
            parked_at=timezone.now(),
        )
        self.deployment = Deployment.objects.create(server=self.server, status="ok")
        users = get_user_model().objects
        self.users = {}
        for name, tenant, role in [
            ("viewer_a", self.a, Role.VIEWER),
            ("operator_a", self.a, Role.OPERATOR),
            ("admin_a", self.a, Role.ADMIN),
            ("admin_b", self.b, Role.ADMIN),
        ]:
            user = users.create_user(name, password=f"pw-{name}-123")
            self.membership = Membership.objects.create(user=user, tenant=tenant, role=role)
            self.users[name] = user
        self.member_a = Membership.objects.get(user=self.users["viewer_a"])
        self.users["staff"] = users.create_user("staff", password="pw-staff-123", is_staff=True)
        self.staff_token = Token.objects.create(user=self.users["staff"]).key
        self.key, self.key_text = api_key_create(
            self.a, actor=SYSTEM, name="provisioning", role=Role.ADMIN
        )
        self.webhook, _ = webhook_create(self.a, actor=SYSTEM, url="https://crm.example.com/p")
        self.invitation = invitation_create(
            self.a, actor=SYSTEM, role=Role.VIEWER, site_url="http://x/", email="new@example.com"
        )

    def client(self, principal: str) -> APIClient:
        client = APIClient()
        if principal == "key_a":
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.key_text}")
        elif principal == "staff":
            client.credentials(HTTP_AUTHORIZATION=f"Token {self.staff_token}")
        elif principal != "anonymous":
            client.force_authenticate(self.users[principal])
        return client


@pytest.fixture
def world(db):
    return World()


T = "/api/v1/tenants/tenant-a"
STAFF_ONLY = [401, 403, 403, 403, 403, 403]
A_READ = [401, 200, 200, 200, 404, 200, 200]
# name: (method, path, body, expected status per PRINCIPALS)
MATRIX = {
    "api-schema": ("get", "/api/v1/schema/", None, [200] * 7),
    "api-docs": ("get", "/api/v1/docs/", None, [200] * 7),
    "api-tenants": ("get", "/api/v1/tenants/", None, [*STAFF_ONLY, 200]),
    "api-tenant": ("get", T + "/", None, [*STAFF_ONLY, 200]),
    "api-servers": ("get", "/api/v1/servers/", None, [*STAFF_ONLY, 200]),
    "api-server": ("get", "/api/v1/servers/{server}/", None, [*STAFF_ONLY, 200]),
    "api-server-deploy": ("post", "/api/v1/servers/{server}/deploy/", None, [*STAFF_ONLY, 202]),
    "api-server-deployments": (
        "get",
        "/api/v1/servers/{server}/deployments/",
        None,
        [*STAFF_ONLY, 200],
    ),
    "api-server-config": ("get", "/api/v1/servers/{server}/config/", None, [*STAFF_ONLY, 200]),
    "api-server-health": ("get", "/api/v1/servers/{server}/health/", None, [*STAFF_ONLY, 200]),
    "api-server-contexts": ("get", "/api/v1/servers/{server}/contexts/", None, [*STAFF_ONLY, 200]),
    "api-deployment": ("get", "/api/v1/deployments/{deployment}/", None, A_READ),
    "api-lots": ("get", T + "/lots/", None, A_READ),
    "api-lot": ("get", T + "/lots/main/", None, A_READ),
    "api-lot-integration": ("get", T + "/lots/main/integration/", None, A_READ),
    "api-lot-parked-calls": ("get", T + "/lots/main/parked-calls/", None, A_READ),
    "api-parked-call-retrieve": (
        "post",
        T + "/lots/main/parked-calls/701/retrieve/",
        {"device": "not a device"},
        [401, 403, 400, 400, 404, 400, 400],
    ),
    "api-parked-call-hangup": (
        "post",
        T + "/lots/main/parked-calls/701/hangup/",
        None,
        [401, 403, 503, 503, 404, 503, 503],  # Asterisk is not running: nothing was done
    ),
    "api-parked-call-history": ("get", T + "/parked-calls/history/", None, A_READ),
    "api-members": ("get", T + "/members/", None, A_READ),
    "api-member": ("get", T + "/members/{member}/", None, A_READ),
    "api-invitations": ("get", T + "/invitations/", None, [401, 403, 403, 200, 404, 200, 200]),
    "api-invitation": (
        "delete",
        T + "/invitations/{invitation}/",
        None,
        [401, 403, 403, 204, 404, 204, 204],
    ),
    "api-keys": ("get", T + "/api-keys/", None, [401, 403, 403, 200, 404, 200, 200]),
    "api-key": ("get", T + "/api-keys/{key}/", None, [401, 403, 403, 200, 404, 200, 200]),
    "api-contexts": ("get", T + "/contexts/", None, A_READ),
    "api-server-phones": ("get", "/api/v1/servers/{server}/phones/", None, [*STAFF_ONLY, 200]),
    "api-phones": ("get", T + "/phones/", None, A_READ),
    # Webhooks: the tenant's admins (and staff); never another tenant (404).
    "api-webhooks": ("get", T + "/webhooks/", None, [401, 403, 403, 200, 404, 200, 200]),
    "api-webhook": ("get", T + "/webhooks/{webhook}/", None, [401, 403, 403, 200, 404, 200, 200]),
    "api-webhook-deliveries": (
        "get",
        T + "/webhooks/{webhook}/deliveries/",
        None,
        [401, 403, 403, 200, 404, 200, 200],
    ),
    "api-webhook-test": (
        "post",
        T + "/webhooks/{webhook}/test/",
        None,
        [401, 403, 403, 202, 404, 202, 202],
    ),
    # API keys and staff have no membership, so no "me".
    "api-me": ("get", T + "/me/", None, [401, 200, 200, 200, 404, 404, 404]),
}


def test_every_api_url_has_a_row_in_the_matrix():
    names = {p.name for p in api_urls.urlpatterns if isinstance(p, URLPattern)}
    assert names == set(MATRIX)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_who_may_call_what(world, name):
    method, path, body, expected = MATRIX[name]
    path = path.format(
        server=world.server.pk,
        deployment=world.deployment.pk,
        member=world.member_a.pk,
        key=world.key.pk,
        invitation=world.invitation.pk,
        webhook=world.webhook.pk,
    )
    got = []
    for principal in PRINCIPALS:
        response = getattr(world.client(principal), method)(path, body, format="json")
        got.append(response.status_code)
    assert dict(zip(PRINCIPALS, got, strict=True)) == dict(zip(PRINCIPALS, expected, strict=True))


def lot_body(**overrides):
    body = {
        "slug": "sales",
        "name": "Sales",
        "server": "pbx1",
        "context": "a-parking",
        "parkext": "710",
        "parkpos_start": 711,
        "parkpos_end": 719,
    }
    body.update(overrides)
    return body


def test_create_lot_returns_it_with_its_deployment(world):
    response = world.client("key_a").post(T + "/lots/", lot_body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["asterisk_name"] == "tenant-a_sales" and data["deployment"]["id"]
    assert response["ETag"]
    assert ParkingLot.objects.get(slug="sales").tenant == world.a


def test_validation_errors_are_field_level_and_name_the_rule(world):
    response = world.client("admin_a").post(
        T + "/lots/", lot_body(parkpos_start=705, parkpos_end=712), format="json"
    )
    assert response.status_code == 400
    assert "Spaces 705-709 are already used by lot 'Main'" in response.json()["parkpos_start"][0]
    response = world.client("admin_a").post(
        T + "/lots/",
        lot_body(parkext="7\n[x]", parkpos_start=801, parkpos_end=809),
        format="json",
    )
    assert response.status_code == 400 and "parkext" in response.json()


def test_the_tenant_is_never_taken_from_the_payload(world):
    response = world.client("admin_a").post(
        T + "/lots/", lot_body(tenant="tenant-b"), format="json"
    )
    assert response.status_code == 201
    assert ParkingLot.objects.get(slug="sales").tenant == world.a


def test_another_tenants_context_is_a_400(world):
    response = world.client("admin_a").post(
        T + "/lots/", lot_body(context="b-parking"), format="json"
    )
    assert response.status_code == 400
    assert response.json()["context"] == [rules.CONTEXT_NOT_OWNED]


def test_put_by_slug_creates_then_updates_and_if_match_stops_stale_writes(world):
    client = world.client("admin_a")
    body = lot_body()
    body.pop("slug")
    created = client.put(T + "/lots/sales/", body, format="json")
    assert created.status_code == 201
    again = client.put(T + "/lots/sales/", body, format="json")
    assert again.status_code == 200  # retrying is safe
    etag = again["ETag"]
    fresh = client.patch(T + "/lots/sales/", {"parkingtime": 60}, format="json", HTTP_IF_MATCH=etag)
    assert fresh.status_code == 200
    stale = client.patch(T + "/lots/sales/", {"parkingtime": 90}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert ParkingLot.objects.get(slug="sales").parkingtime == 60


def test_api_keys_are_shown_once_hashed_at_rest_and_revocable(world):
    client = world.client("admin_a")
    made = client.post(T + "/api-keys/", {"name": "ci", "role": "viewer"}, format="json")
    assert made.status_code == 201
    text = made.json()["key"]
    stored = ApiKey.objects.get(pk=made.json()["id"])
    assert text not in (stored.digest, stored.prefix) and stored.prefix in text
    listed = client.get(T + "/api-keys/").json()["results"]
    assert all("key" not in item for item in listed)
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Api-Key {text}")
    assert reader.get(T + "/lots/").status_code == 200
    assert reader.post(T + "/lots/", lot_body(), format="json").status_code == 403  # viewer
    assert client.delete(T + f"/api-keys/{stored.pk}/").status_code == 204
    assert reader.get(T + "/lots/").status_code == 401


def test_tokens_are_for_staff_only(world):
    token = Token.objects.create(user=world.users["admin_a"]).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(T + "/lots/").status_code == 401


def test_browser_sessions_need_the_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    client.login(request=HttpRequest(), username="admin_a", password="pw-admin_a-123")
    assert client.post(T + "/lots/", lot_body(), format="json").status_code == 403


def test_server_secret_is_write_only(world):
    client = world.client("staff")
    made = client.post(
        "/api/v1/servers/",
        {
            "name": "pbx2",
            "ami_host": "127.0.0.1",
            "ami_port": 5038,
            "ami_username": "pw",
            "ami_secret": "very-secret",
            "config_dir": "/etc/asterisk",
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    assert "ami_secret" not in made.json()
    assert "very-secret" not in client.get(f"/api/v1/servers/{made.json()['id']}/").content.decode()


def test_a_servers_host_name_is_held_to_253_characters_through_the_api(world):
    client = world.client("staff")
    body = {
        "ami_port": 5038,
        "ami_username": "pw",
        "ami_secret": "very-secret",
        "config_dir": "/etc/asterisk",
    }
    longest = ("a" * 62 + ".") * 4 + "a"  # 253 characters
    made = client.post(
        "/api/v1/servers/", {**body, "name": "pbx3", "ami_host": longest}, format="json"
    )
    assert made.status_code == 201, made.json()
    refused = client.post(
        "/api/v1/servers/", {**body, "name": "pbx4", "ami_host": longest + "a"}, format="json"
    )
    assert refused.status_code == 400 and "ami_host" in refused.json(), refused.json()


def test_deployment_as_a_tenant_sees_it_without_other_tenants_config(world):
    world.deployment.set_aside = [
        {"lot": "tenant-a_main", "tenant": "tenant-a", "reason": "A's own"},
        {"lot": "tenant-b_x", "tenant": "tenant-b", "reason": "B's, not A's to know"},
    ]
    world.deployment.save()
    data = world.client("viewer_a").get(f"/api/v1/deployments/{world.deployment.pk}/").json()
    assert set(data) == {
        "id",
        "status",
        "live",
        "created_at",
        "started_at",
        "finished_at",
        "set_aside",
    }
    assert [entry["lot"] for entry in data["set_aside"]] == ["tenant-a_main"]
    staff = world.client("staff").get(f"/api/v1/deployments/{world.deployment.pk}/").json()
    assert "diff" in staff and "replies" in staff


@pytest.mark.parametrize(
    "path", [T + "/parked-calls/history/", T + "/lots/", "/api/v1/servers/{server}/deployments/"]
)
def test_list_queries_do_not_grow_with_page_size(world, path):
    for i in range(60):
        ParkedCall.objects.create(
            server=world.server,
            lot=world.lot,
            tenant=world.a,
            lot_name="tenant-a_main",
            space=701,
            parkee_channel=f"PJSIP/x-{i}",
            uniqueid=f"9.{i}",
            parked_at=timezone.now(),
            ended_at=timezone.now(),
            outcome="retrieved",
        )
        make_lot(world.a, world.ctx_a, f"extra{i}", parkpos_start=1000 + i, parkpos_end=1000 + i)
        Deployment.objects.create(server=world.server, status="ok")
    client = world.client("staff")
    counts = []
    for limit in (5, 50):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path.format(server=world.server.pk), {"limit": limit})
        assert response.status_code == 200 and len(response.json()["results"]) == limit
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize(
    "header", ["Api-Key pk_\x00abc_x", "Token abc\x00def", "Api-Key pk_" + "a" * 500]
)
def test_malformed_credentials_are_refused_without_a_lookup(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get(T + "/lots/").status_code == 401


def test_nul_in_a_name_is_a_400_not_a_database_error(world):
    client = world.client("staff")
    response = client.post(
        f"/api/v1/servers/{world.server.pk}/contexts/",
        {"name": "x-ctx", "tenant": "ten\x00ant"},
        format="json",
    )
    assert response.status_code == 400 and "tenant" in response.json()
    assert client.get(T + "/parked-calls/history/", {"lot": "a\x00b"}).status_code == 400


def test_absurd_page_requests_are_bounded(world):
    response = world.client("staff").get("/api/v1/servers/", {"limit": 10**21, "offset": 10**30})
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("action", ["retrieve", "hangup"])
def test_an_action_meant_for_another_call_is_a_409_and_does_nothing(world, action):
    from tenants.models import AuditEntry

    url = T + f"/lots/main/parked-calls/701/{action}/"
    body = {"call": world.call.pk + 1000, "extension": "201"}
    response = world.client("operator_a").post(url, body, format="json")
    assert response.status_code == 409
    assert "Another call is parked in that space" in response.json()["call"][0]
    assert not AuditEntry.objects.filter(action__in=["retrieve", "hangup"]).exists()
    bad = world.client("operator_a").post(url, {"call": "x", "extension": "201"}, format="json")
    assert bad.status_code == 400 and "call" in bad.json()

"""The API end to end on the sandbox Asterisk: provision everything, see it go live, see a
parked call."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from lots.supervisor import LocalLeases, Supervisor

from .test_deploy import wait_for

pytestmark = pytest.mark.integration


def test_provision_through_the_api_and_see_a_parked_call(transactional_db, asterisk):
    staff = get_user_model().objects.create_user("prov", password="pw-prov-123", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")

    assert api.put("/api/v1/tenants/acme/", {"name": "Acme"}, format="json").status_code == 201
    server = api.post(
        "/api/v1/servers/",
        {
            "name": "pbx-api",
            "ami_host": asterisk.ami_host,
            "ami_port": asterisk.ami_port,
            "ami_username": asterisk.ami_user,
            "ami_secret": asterisk.ami_secret,
            "config_dir": str(asterisk.config_dir),
            "parkcall": "#72",
        },
        format="json",
    )
    assert server.status_code == 201, server.json()
    server_id = server.json()["id"]
    context = api.post(
        f"/api/v1/servers/{server_id}/contexts/",
        {"tenant": "acme", "name": "acme-parking"},
        format="json",
    )
    assert context.status_code == 201, context.json()

    key = api.post(
        "/api/v1/tenants/acme/api-keys/", {"name": "pbx", "role": "admin"}, format="json"
    ).json()["key"]
    tenant = APIClient()
    tenant.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    lot = tenant.put(
        "/api/v1/tenants/acme/lots/main/",
        {
            "name": "Reception",
            "server": "pbx-api",
            "context": "acme-parking",
            "parkext": "700",
            "parkext_exclusive": True,
            "parkpos_start": 701,
            "parkpos_end": 709,
        },
        format="json",
    )
    assert lot.status_code == 201, lot.json()
    deployment = lot.json()["deployment"]
    done = tenant.get(f"/api/v1/deployments/{deployment['id']}/", {"wait": 20}).json()
    assert (done["status"], done["live"]) == ("ok", True)
    parkinglots, _ = asterisk.running_state()
    assert ("acme_main", 701, 709) in [(p.name, p.start_space, p.stop_space) for p in parkinglots]

    supervisor = Supervisor(LocalLeases(), name="api-test").start()
    try:
        wait_for(
            lambda: api.get(f"/api/v1/servers/{server_id}/health/").json()["synced"],
            timeout=20,
            what="the watcher",
        )
        event = asterisk.park_call("parkacme_main", "#72", keep=True)
        calls = wait_for(
            lambda: tenant.get("/api/v1/tenants/acme/lots/main/parked-calls/").json(),
            what="the call at parked-calls/",
        )
        assert [(c["space"], c["caller_id_num"]) for c in calls] == [
            (int(event["ParkingSpace"]), "5551234")
        ]
    finally:
        supervisor.stop()
        asterisk.hangup_all()

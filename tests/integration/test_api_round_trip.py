"""Every lot field through the API on the real Asterisk: read it, change one field, write
it back with If-Match, and Asterisk runs exactly what the database holds."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from lots import rules
from lots.models import Deployment
from tenants.models import Membership, Role
from tests.factories import make_context, make_lot, make_server, make_tenant

from .test_deploy import asterisk_equals_database

pytestmark = pytest.mark.integration

# One change per field the API writes, each valid on its own.
CHANGES = {
    "name": "Reception, 2nd floor",
    "enabled": False,
    "parkext": "800",
    "parkext_exclusive": True,
    "parkpos_start": 702,
    "parkpos_end": 708,
    "parkinghints": True,
    "parkingtime": 99,
    "parkedmusicclass": "default",
    "comebacktoorigin": False,  # with comebackcontext, below
    "comebackdialtime": 11,
    "comebackcontext": "acme-timeout",  # with comebacktoorigin off
    "courtesytone": "beep",
    "parkedplay": "both",
    "parkedcalltransfers": "caller",
    "parkedcallreparking": "callee",
    "parkedcallhangup": "both",
    "parkedcallrecording": "caller",
    "findslot": "next",
    "context": "acme-other",
    # The timeout chain (each with timeout_policy "chain", below) and reminders.
    "timeout_policy": "chain",
    "comeback_ring_parker": False,
    "comeback_cid_prefix": "P",
    "comeback_alert_info": "<urn:alert:service:call-waiting>",
    "comeback_announcement": "beep",
    "fallback": "repark",
    "fallback_context": "acme-other",  # with fallback "destination" and an extension
    "fallback_extension": "200",  # with fallback "destination" and a context
    "repark_limit": 3,
    "reminder_seconds": 30,
    "reminder_announcement": "beep",
    # Alerts (the board, mail, webhooks): nothing in Asterisk.
    "alert_free_spaces": 2,
    "alert_wait_seconds": 60,
}
CHAIN = {"timeout_policy", *(name for name in CHANGES if name.startswith(("comeback_", "fall")))}


@pytest.fixture
def site(transactional_db, asterisk):
    server = make_server("pbx-trip", parkcall="#72", **asterisk.server_fields())
    acme, globex = make_tenant("acme"), make_tenant("globex")
    make_context(server, acme, "acme-timeout")
    make_context(server, acme, "acme-other")
    make_context(server, globex, "globex-timeout")
    make_lot(
        acme,
        make_context(server, acme, "acme-trip"),
        "main",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
    )
    admin = get_user_model().objects.create_user("ada", password="pw-ada-123")
    Membership.objects.create(user=admin, tenant=acme, role=Role.ADMIN)
    api = APIClient()
    api.force_authenticate(admin)
    return server, api


URL = "/api/v1/tenants/acme/lots/main/"


def test_the_api_covers_every_lot_field():
    from lots.api.serializers import LotSerializer

    writable = {name for name, field in LotSerializer().get_fields().items() if not field.read_only}
    assert writable - {"slug", "server"} == set(CHANGES)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_get_change_one_field_put_with_if_match_and_it_is_live(site, asterisk, field):
    server, api = site
    read = api.get(URL)
    body = {**read.json(), field: CHANGES[field]}
    if field == "comebacktoorigin":
        body["comebackcontext"] = "acme-timeout"
    if field == "comebackcontext":
        body["comebacktoorigin"] = False
    if field in CHAIN or field == "repark_limit":
        body["timeout_policy"] = "chain"
    if field in ("fallback_context", "fallback_extension"):
        body.update(fallback="destination", fallback_context="acme-other", fallback_extension="200")
    response = api.put(URL, body, format="json", HTTP_IF_MATCH=read["ETag"])
    assert response.status_code == 200, response.json()
    assert response.json()[field] == CHANGES[field]
    deployment = Deployment.objects.get(pk=response.json()["deployment"]["id"])
    assert deployment.status == "ok", deployment.error
    assert asterisk_equals_database(asterisk, server) == []
    # The same ETag again is stale now.
    again = api.put(URL, body, format="json", HTTP_IF_MATCH=read["ETag"])
    assert again.status_code == 412


def test_put_of_exactly_what_get_returned_is_accepted(site):
    _, api = site
    read = api.get(URL)
    assert api.put(URL, read.json(), format="json", HTTP_IF_MATCH=read["ETag"]).status_code == 200


def test_a_comeback_context_must_be_the_tenants_own_and_needed(site):
    _, api = site
    read = api.get(URL).json()
    foreign = api.put(
        URL, {**read, "comebacktoorigin": False, "comebackcontext": "globex-timeout"}, format="json"
    )
    assert (foreign.status_code, foreign.json()) == (
        400,
        {"comebackcontext": [rules.CONTEXT_NOT_OWNED]},
    )
    missing = api.put(
        URL, {**read, "comebacktoorigin": False, "comebackcontext": None}, format="json"
    )
    assert missing.status_code == 400
    assert list(missing.json()) == ["comebackcontext"]


def test_a_fallback_must_be_an_extension_in_the_tenants_own_context(site):
    _, api = site
    read = api.get(URL).json()
    chain = {**read, "timeout_policy": "chain", "fallback": "destination"}
    foreign = api.put(
        URL,
        {**chain, "fallback_context": "globex-timeout", "fallback_extension": "200"},
        format="json",
    )
    assert (foreign.status_code, foreign.json()) == (
        400,
        {"fallback_context": [rules.CONTEXT_NOT_OWNED]},
    )
    generated = api.put(
        URL,
        {**chain, "fallback_context": "parkweb-timeout-acme_main", "fallback_extension": "s"},
        format="json",
    )
    assert (generated.status_code, generated.json()) == (
        400,
        {"fallback_context": [rules.CONTEXT_NOT_OWNED]},
    )
    missing = api.put(URL, {**chain, "fallback_context": "acme-other"}, format="json")
    assert missing.status_code == 400
    assert list(missing.json()) == ["fallback_extension"]
    pattern = api.put(
        URL,
        {**chain, "fallback_context": "acme-other", "fallback_extension": "_X."},
        format="json",
    )
    assert pattern.status_code == 400
    assert "fallback_extension" in pattern.json()

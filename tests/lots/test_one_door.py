"""One door for every write: the same write through the pages, the API and the admin has
the same outcome and the same message, because each only adapts input and output to one
service. (No management command writes lots or members one at a time; `seed_demo` goes
through the same services.)"""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import close_old_connections
from django.test import Client
from rest_framework.test import APIClient

from lots import rules
from lots.models import ParkingLot
from parkweb.errors import Conflict
from tenants import services as tenant_services
from tenants.actors import Actor
from tenants.models import Membership, Role, safe_text_validator
from tests.factories import lot_form_data, make_lot

LAST_ADMIN = tenant_services.LAST_ADMIN


@pytest.fixture
def doors(acme, globex, acme_ctx, globex_ctx, server):
    users = get_user_model().objects
    boss = users.create_user("boss", password="pw-boss-123")
    Membership.objects.create(user=boss, tenant=acme, role=Role.ADMIN)
    root = users.create_superuser("root", "root@example.com", "pw-root-123")
    page, admin, api = Client(), Client(), APIClient()
    page.force_login(boss)
    admin.force_login(root)
    api.force_authenticate(boss)
    return {"page": page, "admin": admin, "api": api, "boss": boss, "root": root, "acme": acme.pk}


def lot_write(doors, door: str, server, context, **values) -> dict[str, list[str]]:
    """Create a lot through one door; the field errors it answers with ({} if saved)."""
    if door == "api":
        body = {
            "slug": values.get("slug", "sales"),
            "name": values.get("name", "Sales"),
            "server": server.name,
            "context": context.name,
            "parkext": values.get("parkext", "710"),
            "parkpos_start": int(values.get("parkpos_start", 711)),
            "parkpos_end": int(values.get("parkpos_end", 719)),
        }
        for name, value in values.items():  # the rest as the API names them
            if name not in body and not name.startswith("parkpos"):
                body[name] = getattr(value, "name", value)
        response = doors["api"].post("/api/v1/tenants/acme/lots/", body, format="json")
        return {} if response.status_code == 201 else response.json()
    post = lot_form_data(server, context, **{k: getattr(v, "pk", v) for k, v in values.items()})
    if door == "page":
        response = doors["page"].post("/t/acme/new-lot/", post)
        return {} if response.status_code == 302 else dict(response.context["form"].errors)
    response = doors["admin"].post("/admin/lots/parkinglot/add/", {**post, "tenant": doors["acme"]})
    return {} if response.status_code == 302 else dict(response.context["adminform"].form.errors)


DOORS = ["page", "api", "admin"]


@pytest.mark.parametrize("door", DOORS)
def test_a_valid_lot_is_saved_alike(doors, door, server, acme_ctx):
    assert lot_write(doors, door, server, acme_ctx) == {}
    lot = ParkingLot.objects.get(slug="sales")
    assert (lot.name, lot.parkext, lot.parkpos, lot.context) == (
        "Sales",
        "710",
        "711-719",
        acme_ctx,
    )


@pytest.mark.parametrize("door", DOORS)
def test_a_collision_is_refused_alike(doors, door, acme, server, acme_ctx):
    make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=715)
    errors = lot_write(doors, door, server, acme_ctx)
    assert list(errors["parkpos_start"]) == [
        "Spaces 711-715 are already used by lot 'Reception' (701-715) in this context."
    ]
    assert not ParkingLot.objects.filter(slug="sales").exists()


@pytest.mark.parametrize("door", DOORS)
def test_another_tenants_context_is_refused_alike(doors, door, server, globex_ctx):
    errors = lot_write(doors, door, server, globex_ctx)
    assert list(errors["context"]) == [rules.CONTEXT_NOT_OWNED]


@pytest.mark.parametrize("door", DOORS)
def test_a_bad_park_extension_is_refused_alike(doors, door, server, acme_ctx):
    errors = lot_write(doors, door, server, acme_ctx, parkext="7x")
    assert list(errors["parkext"]) == [rules.check_parkext("7x")[0].message]


@pytest.mark.parametrize("door", DOORS)
def test_a_fallback_in_another_tenants_context_is_refused_alike(
    doors, door, server, acme_ctx, globex_ctx
):
    errors = lot_write(
        doors,
        door,
        server,
        acme_ctx,
        timeout_policy="chain",
        fallback="destination",
        fallback_context=globex_ctx,
        fallback_extension="200",
    )
    assert list(errors["fallback_context"]) == [rules.CONTEXT_NOT_OWNED]
    assert not ParkingLot.objects.filter(slug="sales").exists()


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("comeback_cid_prefix", "P,x", "cid_prefix_format"),
        ("comeback_alert_info", "info=x;y", "alert_info_format"),
        ("fallback_extension", "_X.", "extension_format"),
        ("comeback_announcement", "../../etc/passwd", "sound_format"),
        ("reminder_seconds", "3", "out_of_range"),
        ("repark_limit", "9", "out_of_range"),
    ],
)
@pytest.mark.parametrize("door", DOORS)
def test_timeout_chain_values_that_could_reach_the_dialplan_are_refused_alike(
    doors, door, server, acme_ctx, field, value, rule
):
    errors = lot_write(doors, door, server, acme_ctx, timeout_policy="chain", **{field: value})
    expected = next(v.message for v in lots_rules_violations(field, value) if v.rule == rule)
    assert list(errors[field]) == [expected]


def lots_rules_violations(field: str, value: str):
    """What rules.py says of one value of the timeout chain (the message every door gives)."""
    if field == "comeback_announcement":
        return rules.check_sound(field, value)
    policy = {
        "policy": "chain",
        "cid_prefix": "",
        "alert_info": "",
        "fallback": "hangup",
        "fallback_extension": "",
        "has_fallback_context": False,
        "repark_limit": 1,
        "reminder_seconds": 0,
    }
    key = {
        "comeback_cid_prefix": "cid_prefix",
        "comeback_alert_info": "alert_info",
    }.get(field, field)
    policy[key] = int(value) if value.isdigit() else value
    return rules.check_timeout_policy(**policy)


UNSAFE = ["\n", "\r", "\u2028", "\u2029", "\u0085", "\x00", "\x0b", "\x0c"]


@pytest.mark.parametrize("char", UNSAFE, ids=[f"U+{ord(c):04X}" for c in UNSAFE])
@pytest.mark.parametrize("door", DOORS)
def test_a_display_name_with_a_line_breaking_character_is_refused_alike(
    doors, door, char, server, acme_ctx
):
    errors = lot_write(doors, door, server, acme_ctx, name=f"Sales{char}floor 2")
    assert list(errors["name"]) == [safe_text_validator.message]


@pytest.mark.parametrize("char", UNSAFE, ids=[f"U+{ord(c):04X}" for c in UNSAFE])
def test_every_other_free_text_refuses_line_breaking_characters(doors, char, server, acme):
    """Tenant names (API, admin), context descriptions (API, admin), API key names (page,
    API): the same message everywhere."""
    staff = APIClient()
    staff.force_authenticate(doors["root"])
    refused = [
        staff.post("/api/v1/tenants/", {"slug": "newco", "name": f"New{char}Co"}, format="json"),
        staff.post(
            f"/api/v1/servers/{server.pk}/contexts/",
            {"tenant": "acme", "name": "acme-x", "description": f"a{char}b"},
            format="json",
        ),
        doors["api"].post(
            "/api/v1/tenants/acme/api-keys/",
            {"name": f"c{char}rm", "role": "viewer"},
            format="json",
        ),
    ]
    for response in refused:
        assert response.status_code == 400, response.json()
        assert safe_text_validator.message in str(response.json())
    page = doors["page"].post("/t/acme/api-keys/", {"name": f"crm{char}x", "role": "viewer"})
    assert safe_text_validator.message in page.content.decode()
    admin = doors["admin"].post(
        "/admin/tenants/tenant/add/", {"slug": "newco", "name": f"N{char}ew"}
    )
    assert list(admin.context["adminform"].form.errors["name"]) == [safe_text_validator.message]


def test_the_last_admin_stays_whatever_the_door(doors, acme):
    boss = Membership.objects.get(user=doors["boss"])
    page = doors["page"].post("/t/acme/members/", {"action": "remove", "id": boss.pk})
    assert LAST_ADMIN in page.content.decode()
    page = doors["page"].post(
        "/t/acme/members/", {"action": "role", "id": boss.pk, "role": "viewer"}
    )
    assert LAST_ADMIN in page.content.decode()

    api = doors["api"].delete(f"/api/v1/tenants/acme/members/{boss.pk}/")
    assert (api.status_code, api.json()) == (409, {"role": [LAST_ADMIN]})
    api = doors["api"].patch(
        f"/api/v1/tenants/acme/members/{boss.pk}/", {"role": "viewer"}, format="json"
    )
    assert (api.status_code, api.json()) == (409, {"role": [LAST_ADMIN]})

    admin = doors["admin"].post(f"/admin/tenants/membership/{boss.pk}/change/", {"role": "viewer"})
    assert list(admin.context["adminform"].form.errors["role"]) == [LAST_ADMIN]
    admin = doors["admin"].post(f"/admin/tenants/membership/{boss.pk}/delete/", {"post": "yes"})
    assert any(LAST_ADMIN in str(m) for m in get_messages(admin.wsgi_request))
    boss.refresh_from_db()
    assert boss.role == Role.ADMIN


def test_adding_someone_already_a_member_gives_the_role_whatever_the_door(doors, acme):
    desk = get_user_model().objects.create_user("desk", password="pw-desk-123")
    membership = Membership.objects.create(user=desk, tenant=acme, role=Role.VIEWER)
    doors["page"].post(
        "/t/acme/members/", {"action": "invite", "username": "desk", "role": "operator"}
    )
    membership.refresh_from_db()
    assert membership.role == Role.OPERATOR
    api = doors["api"].post(
        "/api/v1/tenants/acme/members/", {"username": "desk", "role": "admin"}, format="json"
    )
    assert (api.status_code, api.json()["role"]) == (200, "admin")
    doors["admin"].post(
        "/admin/tenants/membership/add/", {"user": desk.pk, "tenant": acme.pk, "role": "viewer"}
    )
    assert Membership.objects.filter(user=desk, tenant=acme).count() == 1
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


def test_an_unknown_username_is_told_exactly_as_a_known_one(doors, acme):
    get_user_model().objects.create_user("known", password="pw-known-123")
    answers = [
        doors["api"].post(
            "/api/v1/tenants/acme/members/", {"username": name, "role": "viewer"}, format="json"
        )
        for name in ("known", "unknown-one")
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert [set(a.json()) for a in answers] == [set(answers[0].json())] * 2


@pytest.mark.django_db(transaction=True)
def test_two_admins_stepping_down_at_once_leave_one(acme):
    users = get_user_model().objects
    admins = [
        Membership.objects.create(
            user=users.create_user(f"a{n}", password="pw-1234567"), tenant=acme, role=Role.ADMIN
        )
        for n in range(2)
    ]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def step_down(membership):
        try:
            barrier.wait(timeout=10)
            tenant_services.member_role_set(
                membership, Role.VIEWER, actor=Actor.of(membership.user)
            )
            outcomes.append("done")
        except Conflict:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=step_down, args=(m,)) for m in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["done", "refused"]
    assert Membership.objects.filter(tenant=acme, role=Role.ADMIN).count() == 1

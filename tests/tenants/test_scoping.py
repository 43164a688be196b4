"""The tenant-scoped query helper and roles."""

import pytest
from django.contrib.auth import get_user_model

from lots.models import AsteriskServer, DialplanContext, ParkingLot
from tenants.models import Membership, Role, Tenant
from tenants.scoping import has_role, role_of, scoped, tenants_for_user
from tests.factories import make_lot, make_tenant


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


def test_scoped_returns_only_the_tenants_objects(acme, globex, acme_ctx, globex_ctx):
    mine = make_lot(acme, acme_ctx, "main")
    make_lot(globex, globex_ctx, "main")
    assert list(scoped(ParkingLot, acme)) == [mine]
    assert list(scoped(DialplanContext, globex)) == [globex_ctx]


def test_scoped_narrows_an_existing_queryset(acme, globex, acme_ctx, globex_ctx):
    make_lot(acme, acme_ctx, "main")
    other = make_lot(globex, globex_ctx, "main")
    assert list(scoped(ParkingLot.objects.filter(pk=other.pk), acme)) == []


def test_scoped_refuses_models_without_an_owner(db, acme):
    with pytest.raises(TypeError):
        scoped(AsteriskServer, acme)


def test_tenant_slug_is_validated_and_immutable(db):
    with pytest.raises(Exception, match="lowercase"):
        make_tenant("Acme")
    tenant = make_tenant("acme")
    tenant.slug = "acme2"
    with pytest.raises(Exception, match="cannot be changed"):
        tenant.full_clean()


def test_members_see_their_tenants_and_roles(user, acme, globex):
    Membership.objects.create(user=user, tenant=acme, role=Role.OPERATOR)
    assert list(tenants_for_user(user)) == [acme]
    assert role_of(user, acme) == Role.OPERATOR
    assert role_of(user, globex) is None
    assert has_role(user, acme, Role.VIEWER) and has_role(user, acme, Role.OPERATOR)
    assert not has_role(user, acme, Role.ADMIN)


def test_inactive_tenant_grants_nothing(user, acme):
    Membership.objects.create(user=user, tenant=acme, role=Role.ADMIN)
    Tenant.objects.filter(pk=acme.pk).update(active=False)
    acme.refresh_from_db()
    assert role_of(user, acme) is None
    assert list(tenants_for_user(user)) == []


def test_staff_are_admins_of_every_tenant(user, acme, globex):
    user.is_staff = True
    assert set(tenants_for_user(user)) == {acme, globex}
    assert role_of(user, globex) == Role.ADMIN

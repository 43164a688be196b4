"""An open board websocket follows its user's access: removed, demoted or logged out, the
socket is closed at once; asking for snapshots is rate limited."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.contrib.auth import get_user_model
from django.test import Client

from lots.consumers import FORBIDDEN, RESYNC_INTERVAL, ROLE_CHANGED
from tenants.models import Membership, Role
from tests.factories import make_tenant
from tests.integration.test_live import communicator


@pytest.fixture
def people(transactional_db, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    acme = make_tenant("acme")
    users = get_user_model().objects
    made = {}
    for name, role in (("alice", Role.OPERATOR), ("bob", Role.VIEWER)):
        made[name] = users.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(user=made[name], tenant=acme, role=role)
    yield made
    channel_layers.backends.clear()


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_board(client: Client):
    ws = communicator("acme", client.cookies["sessionid"].value)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    return ws


async def closed_with(ws) -> int | None:
    message = await ws.receive_output(timeout=3)
    return message.get("code") if message["type"] == "websocket.close" else None


def test_a_removed_member_is_cut_off_and_others_keep_watching(people):
    alice, bob = logged_in(people["alice"]), logged_in(people["bob"])

    async def scenario():
        alice_ws, bob_ws = await open_board(alice), await open_board(bob)
        await sync_to_async(Membership.objects.filter(user=people["alice"]).delete)()
        assert await closed_with(alice_ws) == FORBIDDEN
        assert await bob_ws.receive_nothing(timeout=0.5)
        await bob_ws.disconnect()

    asyncio.run(scenario())


def test_a_role_change_closes_the_board_so_it_reloads_with_the_right_buttons(people):
    alice = logged_in(people["alice"])

    def set_role(role):
        membership = Membership.objects.get(user=people["alice"])
        membership.role = role
        membership.save()

    async def scenario():
        ws = await open_board(alice)
        await sync_to_async(set_role)(Role.OPERATOR)  # saved, not changed: stays open
        assert await ws.receive_nothing(timeout=0.5)
        await sync_to_async(set_role)(Role.VIEWER)
        assert await closed_with(ws) == ROLE_CHANGED

    asyncio.run(scenario())


def test_logging_out_or_deactivation_closes_the_sessions_boards(people):
    alice, bob = logged_in(people["alice"]), logged_in(people["bob"])

    def deactivate(user):
        user.is_active = False
        user.save()

    async def scenario():
        alice_ws, bob_ws = await open_board(alice), await open_board(bob)
        await sync_to_async(alice.post)("/accounts/logout/")
        assert await closed_with(alice_ws) == FORBIDDEN
        await sync_to_async(deactivate)(people["bob"])
        assert await closed_with(bob_ws) == FORBIDDEN

    asyncio.run(scenario())


def test_resync_requests_merge_into_one_snapshot_a_second_and_changes_keep_flowing(people):
    from channels.layers import get_channel_layer

    from lots.frames import tenant_group

    alice = logged_in(people["alice"])
    acme = people["alice"].memberships.get().tenant_id

    async def scenario():
        loop = asyncio.get_running_loop()
        # The board's first snapshot, the one the next is due a second after, is sent
        # after this (opening may take a while on a loaded machine).
        opened = loop.time()
        ws = await open_board(alice)
        start = loop.time()
        for _ in range(5):
            await ws.send_json_to({"type": "resync"})
        # A change while the snapshot is not yet due is not held behind it.
        change = {"type": "parking.message", "message": {"type": "health", "server": 0}}
        await get_channel_layer().group_send(tenant_group(acme), change)
        first = await ws.receive_json_from(timeout=5)
        assert first["type"] == "health" and loop.time() - start < RESYNC_INTERVAL
        assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
        snapshot_at = loop.time() - opened
        assert await ws.receive_nothing(timeout=1.5)  # five requests, one snapshot
        await ws.send_json_to({"type": "resync"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
        await ws.disconnect()
        return snapshot_at

    assert asyncio.run(scenario()) >= RESYNC_INTERVAL * 0.9


def test_a_password_changed_elsewhere_ends_the_other_sessions_boards(people):
    first, second = logged_in(people["alice"]), logged_in(people["alice"])

    def change_password(client):
        response = client.post(
            "/accounts/password_change/",
            {
                "old_password": "pw-alice-123",
                "new_password1": "calm-lagoon-77",
                "new_password2": "calm-lagoon-77",
            },
        )
        assert response.status_code == 302

    async def scenario():
        here, elsewhere = await open_board(first), await open_board(second)
        await sync_to_async(change_password)(first)
        # Both sockets close: the session that changed it has a new key now (its browser
        # reconnects with it), the other session is over.
        assert await closed_with(elsewhere) == FORBIDDEN
        assert await closed_with(here) == FORBIDDEN
        again = await open_board(first)
        await again.disconnect()
        refused = communicator("acme", second.cookies["sessionid"].value)
        assert not (await refused.connect())[0]

    asyncio.run(scenario())


def test_a_deactivated_tenant_or_a_membership_moved_away_closes_the_boards(people):
    from tenants.models import Tenant

    alice, bob = logged_in(people["alice"]), logged_in(people["bob"])
    carol = get_user_model().objects.create_user("carol", password="pw-carol-123")

    def move_alices_membership_to_carol():
        membership = Membership.objects.get(user=people["alice"])
        membership.user = carol
        membership.save()

    def deactivate_acme():
        tenant = Tenant.objects.get(slug="acme")
        tenant.active = False
        tenant.save()

    async def scenario():
        alice_ws, bob_ws = await open_board(alice), await open_board(bob)
        await sync_to_async(move_alices_membership_to_carol)()
        assert await closed_with(alice_ws) == FORBIDDEN
        assert await bob_ws.receive_nothing(timeout=0.3)
        await sync_to_async(deactivate_acme)()
        assert await closed_with(bob_ws) == FORBIDDEN

    asyncio.run(scenario())

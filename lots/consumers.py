"""The live parking board's websocket: /ws/t/<tenant-slug>/parking/."""

import asyncio
from contextlib import suppress
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from tenants.models import Tenant
from tenants.scoping import tenant_access

from . import metrics
from .frames import snapshot, tenant_group
from .live_access import session_group, user_group

FORBIDDEN = 4403  # close code: not (or no longer) a member of this tenant, or logged out
ROLE_CHANGED = 4409  # close code: still a member, with another role: reload the page
RESYNC_INTERVAL = 1.0  # seconds between two snapshots for one socket
RECHECK_SECONDS = 300  # an expiring session sends no signal: look again this often


@database_sync_to_async
def _active_tenant(slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug, active=True).first()


@database_sync_to_async
def _role_now(user, tenant_id: int, session_key: str | None):
    """The user's role in the tenant now, or None when the tenant or user is inactive or the
    login session is over (logged out, expired, or the password changed elsewhere)."""
    user = get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()
    tenant = Tenant.objects.filter(pk=tenant_id, active=True).first()
    if tenant is None or user is None:
        return None
    if session_key is not None:
        data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
        if str(data.get(SESSION_KEY)) != str(user.pk) or not constant_time_compare(
            data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
        ):
            return None
    access = tenant_access(user, tenant)
    return access.role if access else None


class ParkingConsumer(AsyncJsonWebsocketConsumer):
    """Sends a snapshot of the tenant's board on connect, then every change."""

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.tenant = await _active_tenant(self.scope["url_route"]["kwargs"]["tenant"])
        if self.tenant is None or not getattr(self.user, "is_authenticated", False):
            await self.close(code=FORBIDDEN)
            return
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        # Join first, then check: a removal between the two is then heard, not missed.
        self.groups_joined = [tenant_group(self.tenant.pk), user_group(self.user.pk)]
        if self.session_key:
            self.groups_joined.append(session_group(self.session_key))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.role = await _role_now(self.user, self.tenant.pk, self.session_key)
        if self.role is None:
            await self.close(code=FORBIDDEN)
            return
        self.next_snapshot_at = 0.0
        self.resync_task: asyncio.Task | None = None
        self.recheck_task = asyncio.create_task(self.recheck_now_and_then())
        await self.accept()
        self.counted = True
        metrics.websockets.add(1)
        await self.send_snapshot()

    async def disconnect(self, code) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            metrics.websockets.add(-1)
        for task in (getattr(self, "recheck_task", None), getattr(self, "resync_task", None)):
            if task is not None:
                task.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send_snapshot(self) -> None:
        self.next_snapshot_at = asyncio.get_running_loop().time() + RESYNC_INTERVAL
        frame = await database_sync_to_async(snapshot)(self.tenant)
        await self.send_json({**frame, "role": str(self.role)})

    async def receive_json(self, content, **kwargs) -> None:
        # The board only listens; a client asking for a fresh snapshot is all it may say.
        # Asking again before one is due changes nothing: requests merge into one snapshot,
        # at most one a second, and the changes meanwhile keep flowing.
        if content != {"type": "resync"} or self.resync_task is not None:
            return
        self.resync_task = asyncio.create_task(self.resync_when_due())

    async def resync_when_due(self) -> None:
        try:
            wait = self.next_snapshot_at - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            if await self.still_allowed():
                await self.send_snapshot()
        finally:
            self.resync_task = None

    async def recheck_now_and_then(self) -> None:
        with suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(RECHECK_SECONDS)
                if not await self.still_allowed():
                    return

    async def still_allowed(self) -> bool:
        role = await _role_now(self.user, self.tenant.pk, self.session_key)
        if role is None:
            await self.close(code=FORBIDDEN)
        elif role != self.role:
            await self.close(code=ROLE_CHANGED)
        return role == self.role

    async def access_changed(self, event) -> None:
        if event.get("logged_out"):
            await self.close(code=FORBIDDEN)
        else:  # someone's membership, this user, or the tenant changed: look again
            await self.still_allowed()

    async def parking_message(self, event) -> None:
        await self.send_json(event["message"])

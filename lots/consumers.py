"""The live parking board's websocket: /ws/t/<tenant-slug>/parking/."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.models import Tenant
from tenants.scoping import role_of

from .selectors import board_snapshot, tenant_group

FORBIDDEN = 4403  # close code: not a member of this tenant (or not logged in)


@database_sync_to_async
def _tenant_and_role(user, slug: str):
    tenant = Tenant.objects.filter(slug=slug, active=True).first()
    return tenant, (role_of(user, tenant) if tenant else None)


class ParkingConsumer(AsyncJsonWebsocketConsumer):
    """Sends a snapshot of the tenant's board on connect, then every change."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["tenant"]
        tenant, role = await _tenant_and_role(user, slug)
        if tenant is None or role is None:
            await self.close(code=FORBIDDEN)
            return
        self.group = tenant_group(tenant.pk)
        self.tenant = tenant
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(board_snapshot)(tenant)
        await self.send_json({**snapshot, "role": str(role)})

    async def disconnect(self, code) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # The board only listens; a client asking for a fresh snapshot is all it may say.
        if content == {"type": "resync"}:
            await self.send_json(await database_sync_to_async(board_snapshot)(self.tenant))

    async def parking_message(self, event) -> None:
        await self.send_json(event["message"])

"""Who may keep watching a live board. A websocket is checked when it opens; these signals
tell the open ones when that changes (membership removed or changed, user deactivated or
given a new password, logout), so a removed member stops receiving caller IDs at once,
not at the next reload."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .frames import tenant_group

log = logging.getLogger(__name__)

CHANGED = "access.changed"  # the consumer's handler: access_changed


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    """A group per login session; the key itself never leaves the server."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


SEND_TIMEOUT = 2.0  # seconds: an unreachable Redis must not hold up a logout or a save
# What makes a user's open boards look again at their access (a login only stamps
# last_login, and other edits change nothing they may see).
ACCESS_FIELDS = ("password", "is_active")


def _tell(*groups: str, **fields) -> None:
    async def send_all() -> None:
        layer = get_channel_layer()
        for group in groups:
            await asyncio.wait_for(
                layer.group_send(group, {"type": CHANGED, **fields}), SEND_TIMEOUT
            )

    def send() -> None:
        try:
            async_to_sync(send_all)()
        except Exception:  # the change is saved; open sockets look again within minutes
            log.exception("could not tell %s about an access change", ", ".join(groups))

    transaction.on_commit(send)


def membership_before(sender, instance, **kwargs) -> None:
    """Remember whose membership this was: an edit may move it to another user or tenant."""
    instance._access_before = (
        sender.objects.filter(pk=instance.pk).values_list("user_id", flat=True).first()
        if instance.pk
        else None
    )


def membership_changed(sender, instance, **kwargs) -> None:
    users = {instance.user_id, getattr(instance, "_access_before", None)} - {None}
    _tell(*(user_group(user_id) for user_id in sorted(users)))


def user_before(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and not set(update_fields) & set(ACCESS_FIELDS):
        instance._access_changed = False  # a login stamping last_login: no query
        return
    old = sender._default_manager.filter(pk=instance.pk).values(*ACCESS_FIELDS).first()
    instance._access_changed = bool(old) and any(
        old[name] != getattr(instance, name) for name in ACCESS_FIELDS
    )


def user_saved(sender, instance, created=False, **kwargs) -> None:
    # Deactivated, or a new password (which ends the user's other sessions).
    if not created and getattr(instance, "_access_changed", False):
        _tell(user_group(instance.pk))


def tenant_saved(sender, instance, created=False, **kwargs) -> None:
    if not created and not instance.active:
        _tell(tenant_group(instance.pk))


def logged_out(sender, request, user, **kwargs) -> None:
    if request is not None and request.session.session_key:
        _tell(session_group(request.session.session_key), logged_out=True)


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save, pre_save

    from tenants.models import Membership, Tenant

    pre_save.connect(membership_before, sender=Membership, weak=False)
    post_save.connect(membership_changed, sender=Membership, weak=False)
    post_delete.connect(membership_changed, sender=Membership, weak=False)
    pre_save.connect(user_before, sender=get_user_model(), weak=False)
    post_save.connect(user_saved, sender=get_user_model(), weak=False)
    post_save.connect(tenant_saved, sender=Tenant, weak=False)
    user_logged_out.connect(logged_out, weak=False)

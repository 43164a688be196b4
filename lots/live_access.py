"""Who may keep watching a live board. A websocket is checked when it opens; these signals
tell the open ones when that changes (membership removed or changed, user deactivated or
given a new password, logout), so a removed member stops receiving caller IDs at once,
not at the next reload."""

from __future__ import annotations

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

CHANGED = "access.changed"  # the consumer's handler: access_changed


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    """A group per login session; the key itself never leaves the server."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def _tell(group: str, **fields) -> None:
    def send() -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(group, {"type": CHANGED, **fields})
        except Exception:  # the change itself is saved; sockets re-check on their next resync
            log.exception("could not tell %s about an access change", group)

    transaction.on_commit(send)


def membership_changed(sender, instance, **kwargs) -> None:
    _tell(user_group(instance.user_id), tenant=instance.tenant_id)


def user_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    # Deactivated, or a new password (which ends the user's other sessions): each open
    # socket checks its session and role again. A login only stamps last_login.
    if not created and set(update_fields or ()) != {"last_login"}:
        _tell(user_group(instance.pk), user=True)


def logged_out(sender, request, user, **kwargs) -> None:
    if request is not None and request.session.session_key:
        _tell(session_group(request.session.session_key), logged_out=True)


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save

    from tenants.models import Membership

    post_save.connect(membership_changed, sender=Membership, weak=False)
    post_delete.connect(membership_changed, sender=Membership, weak=False)
    post_save.connect(user_saved, sender=get_user_model(), weak=False)
    user_logged_out.connect(logged_out, weak=False)

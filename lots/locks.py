"""The locks parkweb takes, named in one place.

`server_row_lock`: saves that must see every other lot of a server (collision checks, the
lot budget) hold the server's row lock from their checks to their commit.

`server_deploy_lock`: one deploy at a time per server, with a lock that a dead worker
cannot leave held. On PostgreSQL: a session advisory lock, released by the server the
moment the worker's connection closes, however the worker died. Elsewhere (SQLite, the
single-process embedded mode): a lease row with an expiry, renewed while its holder
lives, so a dead holder's lease runs out within PARKWEB_DEPLOY_LEASE_SECONDS.
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from .models import AsteriskServer, ServerDeployState

LOCK_NAMESPACE = 0x504B  # "PK": keeps parkweb's advisory locks apart from others'
WEBHOOK_NAMESPACE = 0x5748  # "WH": one worker at a time delivers an endpoint's queue
_local_webhook_locks: dict[int, threading.Lock] = {}


def server_row_lock(server_id: int | None) -> None:
    """Serialise check-then-save per server, so two concurrent saves cannot both pass the
    collision check. Held until the transaction ends; a no-op outside one (and on SQLite,
    which locks the whole database on write anyway)."""
    if server_id is not None and transaction.get_connection().in_atomic_block:
        list(AsteriskServer.objects.select_for_update().filter(pk=server_id).values("pk"))


@contextmanager
def _advisory_lock(namespace: int, key: int) -> Iterator[bool]:
    """A PostgreSQL session advisory lock, tried without waiting: yields whether it is
    held, and lets it go on the way out."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            _unlock("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])


def _unlock(sql: str, params: list) -> None:
    """Let session advisory locks go. Workers keep their connection from one task to the
    next: if the unlock itself fails, the connection is closed, which lets go of every
    lock it held, rather than kept with locks nobody will release."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except Exception:
        connection.close()
        raise


@contextmanager
def server_deploy_lock(server_id: int) -> Iterator[bool]:
    """Yields True when this process holds the server's deploy lock, False when another does."""
    if connection.vendor == "postgresql":
        with _advisory_lock(LOCK_NAMESPACE, server_id) as held:
            yield held
        return

    owner = uuid.uuid4().hex
    lease = settings.PARKWEB_DEPLOY_LEASE_SECONDS
    ServerDeployState.objects.get_or_create(server_id=server_id)
    held = _take_lease(server_id, owner, lease)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_lease, args=(server_id, owner, lease, stop), daemon=True
    )
    if held:
        renewer.start()
    try:
        yield held
    finally:
        if held:
            stop.set()
            renewer.join()
            ServerDeployState.objects.filter(server_id=server_id, lock_owner=owner).update(
                lock_owner="", lock_until=None
            )


def _take_lease(server_id: int, owner: str, lease: int) -> bool:
    now = timezone.now()
    return bool(
        ServerDeployState.objects.filter(server_id=server_id)
        .filter(Q(lock_until__isnull=True) | Q(lock_until__lt=now))
        .update(lock_owner=owner, lock_until=now + timedelta(seconds=lease))
    )


def _renew_lease(server_id: int, owner: str, lease: int, stop: threading.Event) -> None:
    """Keep a live holder's lease fresh, so only a dead holder's lease runs out."""
    try:
        while not stop.wait(lease / 3):
            ServerDeployState.objects.filter(server_id=server_id, lock_owner=owner).update(
                lock_until=timezone.now() + timedelta(seconds=lease)
            )
    finally:
        connections.close_all()


@contextmanager
def webhook_locks(webhook_ids, kept: set[int] | None = None) -> Iterator[set[int]]:
    """Yields the endpoints among `webhook_ids` whose queues this process may deliver (no
    other worker does), tried without waiting: PostgreSQL advisory locks, taken and let go
    in one round trip for all of them; within one process (SQLite, the embedded mode)
    plain locks. Those the body adds to `kept` stay held on the way out (a delivery
    loop's endpoints still sending: lots.services.webhooks.Stragglers), until
    webhook_locks_release lets them go."""
    ids = sorted(set(webhook_ids))
    kept = set() if kept is None else kept
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT key FROM unnest(%s::int[]) AS key WHERE pg_try_advisory_lock(%s, key)",
                [ids, WEBHOOK_NAMESPACE],
            )
            held = {row[0] for row in cursor.fetchall()}
    else:
        locks = {i: _local_webhook_locks.setdefault(i, threading.Lock()) for i in ids}
        held = {i for i, lock in locks.items() if lock.acquire(blocking=False)}
    try:
        yield held
    finally:
        webhook_locks_release(held - kept)


_local_fan_out_lock = threading.Lock()
FAN_OUT_KEY = 0  # in WEBHOOK_NAMESPACE: no endpoint's id


@contextmanager
def webhook_fan_out_lock() -> Iterator[None]:
    """A transaction in which no other fan-out of recorded webhook events runs
    (lots.services.webhooks), waited for: on PostgreSQL an advisory lock held until the
    transaction ends; within one process (SQLite) a plain lock around it."""
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [WEBHOOK_NAMESPACE, FAN_OUT_KEY]
                )
            yield
        return
    with _local_fan_out_lock, transaction.atomic():
        yield


def webhook_locks_release(webhook_ids) -> None:
    """Let go of endpoints' locks taken by webhook_locks (this thread's connection's, on
    PostgreSQL)."""
    ids = sorted(webhook_ids)
    if not ids:
        return
    if connection.vendor == "postgresql":
        _unlock(
            "SELECT pg_advisory_unlock(%s, key) FROM unnest(%s::int[]) AS key",
            [WEBHOOK_NAMESPACE, ids],
        )
        return
    for i in ids:
        _local_webhook_locks[i].release()

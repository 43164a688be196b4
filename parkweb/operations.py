"""What monitoring asks: /healthz (the process answers), /readyz (what it needs answers,
and every server has a watcher) and /metrics (Prometheus). See "Production" in the README.

/healthz and /readyz need no login and say nothing secret: no addresses, users or keys,
only each server's name and state. /metrics is refused unless the caller brings
PARKWEB_METRICS_TOKEN or comes from an address in PARKWEB_METRICS_ALLOW.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from functools import cache

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from lots.models import AsteriskServer, Deployment

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0  # seconds each dependency gets to answer a readiness probe


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        connection.close()  # the next probe reconnects instead of reusing a dead link
        raise


@cache
def _redis():
    import redis

    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
    )


def _cache() -> None:
    _redis().ping()


def _channel_layer() -> None:
    layer = get_channel_layer()
    if not hasattr(layer, "connection"):  # the in-memory layer of the embedded mode
        return

    async def ping() -> None:
        await asyncio.wait_for(layer.connection(0).ping(), PROBE_TIMEOUT)

    async_to_sync(ping)()


def _check(probe) -> dict:
    try:
        probe()
    except Exception as exc:
        log.warning("readiness: %s failed: %s", probe.__name__.strip("_"), exc)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _watched(server_ids: list[int]) -> set[int]:
    """Servers whose watcher is alive: a lease renewed within LEASE_SECONDS (Redis), or
    this process's own watchers (the embedded mode)."""
    from lots import supervisor

    if settings.REDIS_URL:
        keys = [supervisor.RedisLeases.key(pk) for pk in server_ids]
        holders = _redis().mget(keys) if keys else []
        return {pk for pk, holder in zip(server_ids, holders, strict=True) if holder}
    return supervisor.embedded_watching()


def _servers() -> list[dict]:
    latest = Deployment.objects.filter(server=OuterRef("pk")).order_by("-pk")
    servers = list(
        AsteriskServer.objects.select_related("health")
        .annotate(
            deploy_status=Subquery(latest.values("status")[:1]),
            deploy_finished=Subquery(latest.values("finished_at")[:1]),
        )
        .order_by("name")
    )
    watched = _watched([s.pk for s in servers])
    rows = []
    for server in servers:
        health = getattr(server, "health", None)
        rows.append(
            {
                "name": server.name,
                "watcher": server.pk in watched,
                "connected": bool(health and health.connected),
                "synced": bool(health and health.connected and health.synced),
                "last_event_at": health.last_event_at if health else None,
                "last_deploy": {
                    "status": server.deploy_status,
                    "finished_at": server.deploy_finished,
                },
            }
        )
    return rows


@never_cache
@require_GET
def readyz(request):
    """200 when the database, Redis and the channel layer answer and every server has a
    live watcher; else 503. A PBX that is down shows as `connected: false` without
    making this process unready: a load balancer must not take the web away for that."""
    checks = {"database": _check(_database)}
    if settings.REDIS_URL:
        checks["redis"] = _check(_cache)
    checks["channel_layer"] = _check(_channel_layer)
    servers = []
    if checks["database"]["ok"]:
        try:
            servers = _servers()
        except Exception as exc:
            checks["servers"] = {"ok": False, "error": type(exc).__name__}
            log.warning("readiness: servers not read: %s", exc)
    unwatched = [s["name"] for s in servers if not s["watcher"]]
    ready = all(c["ok"] for c in checks.values()) and not unwatched
    body = {"ready": ready, "checks": checks, "servers": servers, "unwatched": unwatched}
    return JsonResponse(body, status=200 if ready else 503)


@cache
def _allowed_networks() -> tuple:
    return tuple(
        ipaddress.ip_network(item, strict=False) for item in settings.PARKWEB_METRICS_ALLOW
    )


def metrics_allowed(request) -> bool:
    """The token (Authorization: Bearer ...) when one is set, or an allowed address. The
    address is the connection's own: behind a proxy that is the proxy (see the README)."""
    token = settings.PARKWEB_METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


@never_cache
@require_GET
def metrics(request):
    from lots.metrics import render  # imports prometheus_client: only when scraped

    if not metrics_allowed(request):
        return JsonResponse(
            {
                "detail": "Metrics need PARKWEB_METRICS_TOKEN or an address in "
                "PARKWEB_METRICS_ALLOW."
            },
            status=403,
        )
    body, seconds = render()
    if seconds > 1:
        log.warning("metrics took %.2f s to read", seconds)
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")

"""Prometheus metrics, read from the database on each scrape.

Deploys run in Celery workers and watchers in whichever worker holds their lease, on any
host, while the scrape reaches one web process: so what they do is read from the rows
they write (deployments, watcher health), not from counters in some other process. Only
the websocket count is this process's own. Every label is a server's name or a bounded
choice (deploy outcome, endpoint state): never a call, a user or a tenant.
"""

from __future__ import annotations

import bisect
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from .models import (
    AsteriskServer,
    Deployment,
    ParkedCall,
    ParkingLot,
    ServerHealth,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
)

# Upper bounds, in seconds. Lag: an event's arrival on the AMI connection to its commit.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Save to live: a deployment's creation (the save that queued it) to its end.
DEPLOY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
RELOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class EventStats:
    """A watcher's tally of applied events, between two writes to its ServerHealth."""

    def __init__(self) -> None:
        self.count = 0
        self.lag_counts = [0] * (len(LAG_BUCKETS) + 1)  # the last: above every bound
        self.lag_sum = 0.0

    def add(self, lag: float) -> None:
        self.count += 1
        self.lag_counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.lag_sum += lag

    def merged_into(self, counts: list[int]) -> list[int]:
        """Stored per-bucket counts plus these (stored ones from other bounds are reset)."""
        if len(counts) != len(self.lag_counts):
            counts = [0] * len(self.lag_counts)
        return [a + b for a, b in zip(counts, self.lag_counts, strict=True)]


class WebsocketCount:
    """Board websockets open in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.value += delta


websockets = WebsocketCount()


def _cumulative(counts: list[int], bounds: tuple[float, ...]) -> list[tuple[str, int]]:
    buckets, total = [], 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=False):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), total))
    return buckets


class ParkwebCollector:
    """Everything parkweb knows about its servers, as metric families."""

    def collect(self):
        servers = dict(AsteriskServer.objects.values_list("pk", "name"))
        yield from self._deployments(servers)
        yield from self._lots(servers)
        yield from self._watchers(servers)
        yield from self._calls(servers)
        yield from self._webhooks()
        clients = GaugeMetricFamily(
            "parkweb_websocket_clients", "Board websockets open in this web process."
        )
        clients.add_metric([], websockets.value)
        yield clients

    def _deployments(self, servers: dict[int, str]):
        outcomes = CounterMetricFamily(
            "parkweb_deployments",
            "Deployments that ended, by outcome (ok, failed, rolled_back).",
            labels=["server", "outcome"],
        )
        pending = GaugeMetricFamily(
            "parkweb_deployments_pending",
            "Deployments queued or running (a lasting one: Asterisk unreachable).",
            labels=["server"],
        )
        waiting = {name: 0 for name in servers.values()}
        rows = Deployment.objects.values("server__name", "status").annotate(n=Count("pk"))
        for row in rows:
            if row["status"] in (Deployment.Status.PENDING, Deployment.Status.RUNNING):
                waiting[row["server__name"]] += row["n"]
            else:
                outcomes.add_metric([row["server__name"], row["status"]], row["n"])
        for name, count in waiting.items():
            pending.add_metric([name], count)
        yield outcomes
        yield pending

        finished = Deployment.objects.filter(finished_at__isnull=False).exclude(
            status__in=[Deployment.Status.PENDING, Deployment.Status.RUNNING]
        )
        save_to_live = HistogramMetricFamily(
            "parkweb_deploy_save_to_live_seconds",
            "From the save that queued a deployment to Asterisk running it (ok ones).",
            labels=["server"],
        )
        took = finished.filter(status=Deployment.Status.OK).annotate(
            took=ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
        )
        for name, buckets, total in _histogram(took, DEPLOY_BUCKETS, "took", timedelta):
            save_to_live.add_metric([name], buckets, total)
        yield save_to_live

        reload = HistogramMetricFamily(
            "parkweb_asterisk_reload_seconds",
            "Time Asterisk took over a deployment's module reloads.",
            labels=["server"],
        )
        timed = finished.filter(reload_seconds__isnull=False)
        for name, buckets, total in _histogram(timed, RELOAD_BUCKETS, "reload_seconds", float):
            reload.add_metric([name], buckets, total)
        yield reload

    def _lots(self, servers: dict[int, str]):
        lots = GaugeMetricFamily("parkweb_lots", "Parking lots per server.", labels=["server"])
        budget = GaugeMetricFamily(
            "parkweb_lots_budget",
            "Lots a server may hold (PARKWEB_MAX_LOTS_PER_SERVER).",
            labels=["server"],
        )
        counts = dict(
            ParkingLot.objects.values_list("server_id").annotate(n=Count("pk")).order_by()
        )
        for server_id, name in servers.items():
            lots.add_metric([name], counts.get(server_id, 0))
            budget.add_metric([name], settings.PARKWEB_MAX_LOTS_PER_SERVER)
        yield lots
        yield budget

    def _watchers(self, servers: dict[int, str]):
        connected = GaugeMetricFamily(
            "parkweb_watcher_connected",
            "1 while a watcher is logged in to the AMI.",
            labels=["server"],
        )
        synced = GaugeMetricFamily(
            "parkweb_watcher_synced",
            "1 once the watcher rebuilt the parked calls after its login.",
            labels=["server"],
        )
        last_event = GaugeMetricFamily(
            "parkweb_watcher_last_event_timestamp_seconds",
            "When the last parking event was applied (Unix time).",
            labels=["server"],
        )
        applied = CounterMetricFamily(
            "parkweb_ami_events_applied",
            "Parking events applied to the database.",
            labels=["server"],
        )
        lag = HistogramMetricFamily(
            "parkweb_ami_event_lag_seconds",
            "From an event's arrival on the AMI connection to its commit.",
            labels=["server"],
        )
        health = {h.server_id: h for h in ServerHealth.objects.all()}
        for server_id, name in servers.items():
            h = health.get(server_id)
            connected.add_metric([name], int(bool(h and h.connected)))
            synced.add_metric([name], int(bool(h and h.connected and h.synced)))
            if h is None:
                continue
            if h.last_event_at is not None:
                last_event.add_metric([name], h.last_event_at.timestamp())
            applied.add_metric([name], h.events_applied)
            counts = h.event_lag_counts or [0] * (len(LAG_BUCKETS) + 1)
            lag.add_metric([name], _cumulative(counts, LAG_BUCKETS), h.event_lag_sum)
        yield from (connected, synced, last_event, applied, lag)

    def _calls(self, servers: dict[int, str]):
        parked = GaugeMetricFamily(
            "parkweb_parked_calls", "Calls parked now, as the watchers saw them.", labels=["server"]
        )
        counts = dict(
            ParkedCall.objects.filter(ended_at__isnull=True)
            .values_list("server_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for server_id, name in servers.items():
            parked.add_metric([name], counts.get(server_id, 0))
        yield parked

    def _webhooks(self):
        """The deliveries' queue, all tenants together: how many wait and for how long
        the oldest has (a receiver down or the delivery workers behind show here first),
        and the endpoints by state. The queue's partial index answers the first."""
        waiting = WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            webhook__active=True,
            webhook__paused_at__isnull=True,
        ).aggregate(count=Count("pk"), oldest=Min("occurred_at"))
        recorded = WebhookEvent.objects.aggregate(count=Count("pk"), oldest=Min("occurred_at"))
        pending = GaugeMetricFamily(
            "parkweb_webhook_deliveries_pending",
            "Webhook deliveries waiting to be made, for active endpoints not paused.",
        )
        pending.add_metric([], waiting["count"])
        unsorted = GaugeMetricFamily(
            "parkweb_webhook_events_recorded",
            "Webhook events recorded and not yet in their endpoints' queues (the delivery "
            "workers take them at once: one that grows means none is running).",
        )
        unsorted.add_metric([], recorded["count"])
        oldest = GaugeMetricFamily(
            "parkweb_webhook_oldest_pending_seconds",
            "How long the oldest of those, or of the events recorded, has waited since its "
            "event (0: none waits).",
        )
        since = min((t for t in (waiting["oldest"], recorded["oldest"]) if t), default=None)
        oldest.add_metric([], max((timezone.now() - since).total_seconds(), 0) if since else 0)
        endpoints = GaugeMetricFamily(
            "parkweb_webhook_endpoints",
            "Webhook endpoints by state: active, paused (failing), inactive (turned off).",
            labels=["state"],
        )
        states = {
            "active": Q(active=True, paused_at__isnull=True),
            "paused": Q(active=True, paused_at__isnull=False),
            "inactive": Q(active=False),
        }
        counts = Webhook.objects.aggregate(
            **{f"in_{state}": Count("pk", filter=rule) for state, rule in states.items()}
        )
        for state in states:
            endpoints.add_metric([state], counts[f"in_{state}"])
        yield from (pending, unsorted, oldest, endpoints)


def _histogram(rows, bounds: tuple[float, ...], field: str, kind):
    """Per server name: cumulative (bound, count) pairs and the sum of `field`, counted
    by the database in one query. `kind` turns a bound into the field's type."""
    bound_of = (lambda b: timedelta(seconds=b)) if kind is timedelta else float
    buckets = {
        f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": bound_of(bound)}))
        for i, bound in enumerate(bounds)
    }
    aggregated = (
        rows.values("server__name")
        .annotate(total=Count("pk"), seconds=Sum(field), **buckets)
        .order_by()
    )
    for row in aggregated:
        pairs = [(str(bound), row[f"le_{i}"]) for i, bound in enumerate(bounds)]
        pairs.append(("+Inf", row["total"]))
        seconds = row["seconds"] or 0
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        yield row["server__name"], pairs, float(seconds)


_registry = CollectorRegistry(auto_describe=False)
_registry.register(ParkwebCollector())


def render() -> tuple[bytes, float]:
    """The metrics page and how long reading it took."""
    started = time.perf_counter()
    return generate_latest(_registry), time.perf_counter() - started

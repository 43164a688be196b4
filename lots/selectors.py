"""Reads that are more than a one-line query."""

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from tenants.models import Tenant
from tenants.scoping import scoped

from .asterisk import comeback, confgen, deploy
from .models import (
    AsteriskServer,
    Deployment,
    ParkedCall,
    ParkingLot,
    ServerDeployState,
    ServerHealth,
    TenantPhones,
    asterisk_lot_name,
)


def server_lots(server: AsteriskServer) -> QuerySet[ParkingLot]:
    """The lots that go into a server's config: enabled, and not set aside by a deploy
    Asterisk refused; with everything config generation reads."""
    return (
        ParkingLot.objects.filter(server=server, enabled=True, held_reason="")
        .select_related("tenant", "context", "comebackcontext", "fallback_context")
        .order_by("pk")
    )


def server_lot_configs(server: AsteriskServer) -> list[confgen.LotConfig]:
    """The enabled lots of a server as plain data for config generation: one query, no
    model instances (a server may hold thousands of lots)."""
    rows = server_lots(server).values(
        "pk",
        "server_id",
        "slug",
        "tenant__slug",
        "context__name",
        "comebackcontext__name",
        "fallback_context__name",
        *confgen.LotConfig.PLAIN,
    )
    return [
        confgen.LotConfig(
            asterisk_name=asterisk_lot_name(row.pop("tenant__slug"), row.pop("slug")),
            context=row.pop("context__name"),
            comebackcontext=row.pop("comebackcontext__name"),
            fallback_context=row.pop("fallback_context__name"),
            **row,
        )
        for row in rows
    ]


def held_sections(server: AsteriskServer) -> list[confgen.Section]:
    """Lots whose latest change Asterisk refused keep running as they last did: their
    sections from the last good file. Not those in the way of the PBX's own dialplan
    (`held_extension`): their old sections would be refused too."""
    held = list(
        ParkingLot.objects.filter(server=server, enabled=True, held_extension="")
        .exclude(held_reason="")
        .select_related("tenant")
    )
    last = last_good_deployment(server.pk) if held else None
    if last is None:
        return []
    previous = {section.name: section for section in deploy.sections_of(last.res_parking_conf)}
    names = {confgen.lot_section_name(server, lot) for lot in held} - {"general", "default"}
    return [previous[name] for name in sorted(names) if name in previous]


def server_config(server: AsteriskServer) -> dict[str, str]:
    """The files parkweb would write for the server now: {file name: text}."""
    lots = server_lot_configs(server)
    kept = held_sections(server)
    return {
        deploy.RES_PARKING: confgen.render_res_parking(server, lots, kept),
        deploy.FEATURES: confgen.render_features(server),
        deploy.DIALPLAN: comeback.render(
            {**held_dialplan(server, kept), **comeback.wanted_dialplan(server, lots)}
        ),
    }


def held_dialplan(
    server: AsteriskServer, kept: list[confgen.Section]
) -> dict[str, tuple[comeback.Priority, ...]]:
    """The timeout contexts that the lots kept as they last ran (`held_sections`) send
    their calls to, as they last ran too."""
    wanted = {
        options["comebackcontext"]
        for options in (dict(section.options) for section in kept)
        if options.get("comebackcontext", "").startswith(confgen.TIMEOUT_PREFIX)
    }
    last = last_good_deployment(server.pk) if wanted else None
    if last is None:
        return {}
    previous = comeback.parse(last.dialplan_conf)
    return {
        context: previous[context]
        for context in sorted(wanted | {comeback.ANSWERED_CONTEXT})
        if context in previous
    }


def files_hash(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def last_good_deployment(server_id: int) -> Deployment | None:
    """The server's latest deployment that Asterisk confirmed running."""
    return (
        Deployment.objects.filter(server_id=server_id, status=Deployment.Status.OK)
        .exclude(res_parking_conf="")
        .order_by("-finished_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class PendingChange:
    files: dict[str, str]
    diff: str  # unified diff from the last good config
    live: bool  # Asterisk already runs exactly these files


def pending_change(server: AsteriskServer) -> PendingChange:
    """What a deploy of the server would change now."""
    files = server_config(server)
    last = last_good_deployment(server.pk)
    last_good = {
        deploy.RES_PARKING: last.res_parking_conf if last else None,
        deploy.FEATURES: last.features_conf if last else None,
        deploy.DIALPLAN: last.dialplan_conf if last else None,
    }
    state = ServerDeployState.objects.filter(server=server).first()
    return PendingChange(
        files=files,
        diff=deploy.unified_diff(last_good, files),
        live=bool(state and state.deployed_hash == files_hash(files)),
    )


LOT_MENTION = re.compile(r"\blot ([a-z][a-z0-9-]*_[a-z][a-z0-9-]*)")  # <tenant>_<lot>


def deployment_error_for(tenant: Tenant, deployment: Deployment) -> str:
    """A deployment's error as one tenant may read it: the server's config is other tenants'
    too, so problems naming their lots are counted, not shown."""
    prefix, _, details = deployment.error.partition(": ")
    if not details:
        return deployment.error
    own, others = [], 0
    for problem in details.split("; "):
        names = LOT_MENTION.findall(problem)
        if all(name.startswith(f"{tenant.slug}_") for name in names):
            own.append(problem)
        else:
            others += 1
    if others:
        own.append(f"{others} problem{'s' if others > 1 else ''} in other tenants' lots")
    return f"{prefix}: {'; '.join(own)}."


def tenant_phones(lot: ParkingLot) -> TenantPhones | None:
    """Where the lot's tenant has its phones on the lot's server, if staff said."""
    return (
        TenantPhones.objects.select_related("context")
        .filter(server_id=lot.server_id, tenant_id=lot.tenant_id)
        .first()
    )


def board_lots(tenant: Tenant) -> list[ParkingLot]:
    """The tenant's lots as the board shows them."""
    return list(
        scoped(ParkingLot, tenant).select_related("server", "context").order_by("name", "pk")
    )


def parked_now(tenant: Tenant) -> QuerySet[ParkedCall]:
    """The tenant's calls parked now, by space."""
    return (
        scoped(ParkedCall, tenant)
        .filter(ended_at__isnull=True)
        .select_related("lot")
        .order_by("space")
    )


def servers_health(server_ids) -> dict[int, ServerHealth | None]:
    """{server id: its ServerHealth, or None while never watched}."""
    found = {h.server_id: h for h in ServerHealth.objects.filter(server_id__in=server_ids)}
    return {server_id: found.get(server_id) for server_id in server_ids}


@dataclass(frozen=True)
class HistoryStats:
    """Parks per hour over a window, how they ended, and how long they waited."""

    hours: list[tuple[str, int]]  # (local start like "14:00", parks starting in that hour)
    outcomes: list[tuple[str, int]]  # (outcome as people say it, count), most first, then A-Z
    average_wait: int | None  # seconds from park to end, over the calls that ended

    @property
    def total(self) -> int:
        return sum(count for _, count in self.hours)


HOUR = timedelta(hours=1)
_OUTCOMES = dict(ParkedCall.Outcome.choices)
_AFTER = dict(ParkedCall.AfterTimeout.choices)


def outcome_label(outcome: str, after_timeout: str = "") -> str:
    """How a parking episode ended, as people say it: 'timed out, then answered by the
    parker' when the lot's timeout chain said what followed."""
    label = _OUTCOMES.get(outcome, "still parked")
    return f"{label}, then {_AFTER[after_timeout]}" if after_timeout in _AFTER else label


def history_stats(calls: QuerySet[ParkedCall], start: datetime, end: datetime) -> HistoryStats:
    """Statistics of the calls parked in [start, end) (one bounded query). Hours are real
    hours, counted in UTC and labelled in local time, so a day when the clocks change has
    23 or 25 of them."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    rows = calls.filter(parked_at__gte=start, parked_at__lt=end).values_list(
        "parked_at", "ended_at", "outcome", "after_timeout"
    )
    per_hour = [0] * max(1, round((end - start) / HOUR))
    outcomes: Counter[str] = Counter()
    waits = []
    for parked, ended, outcome, after in rows:
        per_hour[min(len(per_hour) - 1, int((parked - start) // HOUR))] += 1
        outcomes[outcome_label(outcome, after)] += 1
        if ended:
            waits.append((ended - parked).total_seconds())
    local = [timezone.localtime(start + i * HOUR) for i in range(len(per_hour))]
    return HistoryStats(
        hours=[
            (f"{t.hour}:{t.minute:02d}", count) for t, count in zip(local, per_hour, strict=True)
        ],
        outcomes=sorted(outcomes.items(), key=lambda item: (-item[1], item[0])),
        average_wait=round(sum(waits) / len(waits)) if waits else None,
    )

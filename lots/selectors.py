"""Reads that are more than a one-line query."""

import hashlib
from dataclasses import dataclass

from django.db.models import QuerySet

from .asterisk import confgen, deploy
from .models import (
    AsteriskServer,
    Deployment,
    ParkingLot,
    ServerDeployState,
    asterisk_lot_name,
)


def server_lots(server: AsteriskServer) -> QuerySet[ParkingLot]:
    """The enabled lots of a server, with everything config generation reads."""
    return (
        ParkingLot.objects.filter(server=server, enabled=True)
        .select_related("tenant", "context", "comebackcontext")
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
        *confgen.LotConfig.PLAIN,
    )
    return [
        confgen.LotConfig(
            asterisk_name=asterisk_lot_name(row.pop("tenant__slug"), row.pop("slug")),
            context=row.pop("context__name"),
            comebackcontext=row.pop("comebackcontext__name"),
            **row,
        )
        for row in rows
    ]


def server_config(server: AsteriskServer) -> dict[str, str]:
    """The files parkweb would write for the server now: {file name: text}."""
    return {
        "res_parking.conf": confgen.render_res_parking(server, server_lot_configs(server)),
        "features.conf": confgen.render_features(server),
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
    }
    state = ServerDeployState.objects.filter(server=server).first()
    return PendingChange(
        files=files,
        diff=deploy.unified_diff(last_good, files),
        live=bool(state and state.deployed_hash == files_hash(files)),
    )

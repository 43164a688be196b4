"""Reads that are more than a one-line query."""

from django.db.models import QuerySet

from .asterisk import confgen
from .models import AsteriskServer, ParkingLot


def server_lots(server: AsteriskServer) -> QuerySet[ParkingLot]:
    """The enabled lots of a server, with everything config generation reads."""
    return (
        ParkingLot.objects.filter(server=server, enabled=True)
        .select_related("tenant", "context", "comebackcontext")
        .order_by("pk")
    )


def server_config(server: AsteriskServer) -> dict[str, str]:
    """The files parkweb would write for the server now: {file name: text}."""
    return {
        "res_parking.conf": confgen.render_res_parking(server, server_lots(server)),
        "features.conf": confgen.render_features(server),
    }

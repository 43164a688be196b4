"""A lot without a park extension, on the real Asterisk: its spaces are in no context, a
call reaches it only by Park(<lot>), and the board's Retrieve still picks it up."""

import pytest

from lots.asterisk.verify import parse_parking_show
from lots.models import ParkedCall
from tests.factories import make_lot

from .test_containment import as_alice, retrieve_url, site  # noqa: F401
from .test_deploy import wait_for
from .test_live import redis_layer  # noqa: F401

pytestmark = pytest.mark.integration


def test_park_app_and_retrieve_work_for_a_lot_without_a_park_extension(site):  # noqa: F811
    context = site.lot.context
    lot = make_lot(site.acme, context, "bare", parkext="", parkpos_start=721, parkpos_end=723)
    asterisk = site.asterisk
    wait_for(
        lambda: "acme_bare" in parse_parking_show(asterisk.cli("parking show acme_bare")),
        what="the lot to go live",
    )
    # What the lot's page says: nothing to dial, not the spaces and not a park extension.
    assert "There is no existence of 721@" in asterisk.cli(f"dialplan show 721@{context.name}")

    asterisk.originate("Local/appparkacme_bare@parkweb-test", seconds=30)
    call = wait_for(
        lambda: ParkedCall.objects.filter(lot=lot, ended_at__isnull=True).first(),
        what="the call parked with Park()",
    )
    assert call.space == 721 and call.caller_id_num == "5551234"

    response = as_alice(site).post(
        retrieve_url(call), {"call": call.pk, "extension": "201"}, format="json"
    )
    assert response.status_code == 202, response.json()
    call = wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, outcome="retrieved").first(),
        what="the call to be retrieved",
    )
    assert call.retriever_channel.startswith("Local/201@acme-phones")

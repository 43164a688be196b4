"""AMI parking events become typed ParkingEvents; episodes follow them."""

import pytest

from lots import services
from lots.asterisk import events
from lots.models import ParkedCall
from tests.factories import make_lot

# As Asterisk 22 sends them (see ../shared/ASTERISK.md).
PARKED = {
    "Event": "ParkedCall",
    "Privilege": "call,all",
    "ParkeeChannel": "Local/parkacme_main@parkweb-test-00000004;2",
    "ParkeeChannelState": "6",
    "ParkeeChannelStateDesc": "Up",
    "ParkeeCallerIDNum": "5551234",
    "ParkeeCallerIDName": "Test Caller",
    "ParkeeConnectedLineNum": "<unknown>",
    "ParkeeConnectedLineName": "<unknown>",
    "ParkeeLanguage": "en",
    "ParkeeAccountCode": "",
    "ParkeeContext": "parkweb-test",
    "ParkeeExten": "parkacme_main",
    "ParkeePriority": "3",
    "ParkeeUniqueid": "1795743695.12",
    "ParkeeLinkedid": "1795743695.11",
    "ParkerDialString": "Local/alice@parking-example",
    "Parkinglot": "acme_main",
    "ParkingSpace": "701",
    "ParkingTimeout": "45",
    "ParkingDuration": "0",
}
UNPARKED = {
    **PARKED,
    "Event": "UnParkedCall",
    "ParkingTimeout": "30",
    "ParkingDuration": "15",
    "RetrieverChannel": "PJSIP/bob-0001",
    "RetrieverCallerIDNum": "202",
    "RetrieverCallerIDName": "Bob",
    "RetrieverUniqueid": "1795743700.20",
    "RetrieverLinkedid": "1795743700.20",
}


def test_parked_call_headers_become_a_parking_event():
    event = events.parse(PARKED)
    assert event.kind == events.Kind.PARKED
    assert (event.lot, event.space, event.timeout, event.duration) == ("acme_main", 701, 45, 0)
    assert event.parkee.caller_id_num == "5551234"
    assert event.parkee.connected_line_num == ""  # "<unknown>" means nothing
    assert event.key == "1795743695.12"
    assert event.retriever is None


def test_unparked_call_carries_the_retriever():
    event = events.parse(UNPARKED)
    assert event.kind == events.Kind.UNPARKED
    assert (event.retriever.name, event.retriever.caller_id_num) == ("PJSIP/bob-0001", "202")


@pytest.mark.parametrize(
    "name,kind",
    [
        ("ParkedCallTimeOut", "timed_out"),
        ("ParkedCallGiveUp", "abandoned"),
        ("ParkedCallSwap", "swapped"),
    ],
)
def test_every_parking_event_has_a_kind(name, kind):
    assert events.parse({**PARKED, "Event": name}).kind == kind


@pytest.mark.parametrize(
    "headers",
    [{"Event": "Newchannel"}, {**PARKED, "Parkinglot": ""}, {**PARKED, "ParkeeChannel": ""}],
)
def test_other_or_broken_events_are_not_parking_events(headers):
    assert events.parse(headers) is None


@pytest.fixture
def lot(acme, acme_ctx):
    return make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)


def test_park_then_retrieve_makes_one_episode(lot, server):
    services.parked_call_apply(server.pk, events.parse(PARKED))
    assert services.parked_call_apply(server.pk, events.parse(PARKED)) is None  # duplicate
    services.parked_call_apply(server.pk, events.parse(UNPARKED))
    call = ParkedCall.objects.get()
    assert (call.lot, call.tenant, call.space, call.outcome) == (lot, lot.tenant, 701, "retrieved")
    assert (call.retriever_caller_id_num, call.ended_at is not None) == ("202", True)


def test_events_of_unmanaged_lots_are_kept(server):
    services.parked_call_apply(server.pk, events.parse({**PARKED, "Parkinglot": "someone_else"}))
    call = ParkedCall.objects.get()
    assert (call.lot, call.tenant, call.lot_name) == (None, None, "someone_else")


def test_resync_ends_vanished_calls_as_lost_and_opens_unknown_ones(lot, server):
    services.parked_call_apply(server.pk, events.parse(PARKED))
    other = events.parse({**PARKED, "ParkeeUniqueid": "2.2", "ParkingSpace": "702"})
    summary = services.server_resync(server.pk, [other])
    assert summary == {"lost": 1, "opened": 1, "parked": 1, "failed": 0}
    assert ParkedCall.objects.get(uniqueid="1795743695.12").outcome == "lost"
    assert ParkedCall.objects.get(uniqueid="2.2").ended_at is None


def test_swap_ends_the_replaced_episode(lot, server):
    services.parked_call_apply(server.pk, events.parse(PARKED))
    swap = {**PARKED, "Event": "ParkedCallSwap", "ParkeeUniqueid": "3.3"}
    services.parked_call_apply(server.pk, events.parse(swap))
    assert ParkedCall.objects.get(uniqueid="1795743695.12").outcome == "swapped"
    assert ParkedCall.objects.get(uniqueid="3.3").ended_at is None


def test_history_older_than_retention_is_purged(lot, server, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.PARKWEB_HISTORY_DAYS = 30
    services.parked_call_apply(server.pk, events.parse(PARKED))
    services.parked_call_apply(server.pk, events.parse(UNPARKED))
    ParkedCall.objects.update(ended_at=timezone.now() - timedelta(days=31))
    assert services.parked_calls_purge() == 1
    assert ParkedCall.objects.count() == 0

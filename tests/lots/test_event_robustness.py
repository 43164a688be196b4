"""Any AMI event, however broken or hostile, is parsed without raising; one event that
cannot be applied stays that event's problem; a call bridged out by parkweb's retrieve is
told apart from a caller hanging up."""

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lots import services
from lots.asterisk import events
from lots.models import EventProblem, ParkedCall
from tests.factories import make_lot

from .test_events import PARKED

WRAPPED = "18446744073709551613"  # what Asterisk 22 reports for a "never" lot's timeout


@pytest.fixture
def lot(acme, acme_ctx):
    return make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)


hostile_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        ["", "<unknown>", "\x00", "a\r\nAction: Hangup", "\u2028\u2029\x85", "<b>x</b>", "é" * 500]
    ),
)
hostile_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from([WRAPPED, "18446744073709551615", "-1", "1e9", "", "\uff10\uff11", "7" * 40]),
)
hostile_value = st.one_of(hostile_text, hostile_number, st.none(), st.lists(hostile_text))
event_names = st.sampled_from([*events.KIND_OF_EVENT, "BridgeEnter", "Newchannel", None])
header_names = st.sampled_from([*PARKED, "RetrieverChannel", "RetrieverUniqueid"])


@st.composite
def ami_events(draw):
    headers = dict(PARKED)
    headers["Event"] = draw(event_names)
    for name in draw(st.lists(header_names, max_size=8)):
        headers[name] = draw(hostile_value)
    return headers


def _safe(text: str, limit: int) -> bool:
    return len(text) <= limit and not events._UNSAFE.search(text)


@given(ami_events())
@settings(max_examples=300, deadline=None)
def test_parse_never_raises_and_keeps_only_safe_bounded_text(headers):
    event = events.parse(headers)
    if event is None:
        return
    assert _safe(event.lot, events.LOT_LENGTH)
    assert _safe(event.parkee.name, events.CHANNEL_LENGTH)
    assert _safe(event.parkee.caller_id_name, events.CALLER_LENGTH)
    assert _safe(event.parkee.uniqueid, events.ID_LENGTH) and event.parkee.uniqueid
    assert event.space is None or 1 <= event.space <= 99_999_999
    assert event.timeout is None or 0 < event.timeout <= 86_400


@given(st.lists(ami_events(), min_size=1, max_size=6))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_parse_and_apply_never_raise_whatever_arrives(lot, server, headers_list):
    order = events.Retrievals()
    for n, headers in enumerate(headers_list):
        for event in order.push(headers, now=float(n)):
            services.parking_event_apply(server.pk, event)
    for event in order.flush():
        services.parking_event_apply(server.pk, event)
    # Whatever happened, a sane event still applies afterwards.
    fresh = events.parse({**PARKED, "ParkeeUniqueid": "sane.1", "ParkingSpace": "709"})
    assert services.parking_event_apply(server.pk, fresh) is not None
    ParkedCall.objects.all().delete()


def test_a_never_lot_wrapped_timeout_means_no_timeout(acme, acme_ctx, server):
    make_lot(acme, acme_ctx, "never", parkpos_start=801, parkpos_end=809, parkingtime=0)
    event = events.parse(
        {**PARKED, "Parkinglot": "acme_never", "ParkingSpace": "801", "ParkingTimeout": WRAPPED}
    )
    assert event.timeout is None
    call = services.parking_event_apply(server.pk, event)
    assert call.timeout_at is None and call.space == 801


def test_a_timeout_longer_than_the_lots_own_is_no_timeout(lot, server):
    call = services.parking_event_apply(
        server.pk, events.parse({**PARKED, "ParkingTimeout": "86000"})
    )
    assert call.timeout_at is None  # the lot's parkingtime is 45 s


def test_resync_of_a_never_lot_call_opens_it_without_timeout(acme, acme_ctx, server):
    make_lot(acme, acme_ctx, "never", parkpos_start=801, parkpos_end=809, parkingtime=0)
    parked = events.parse(
        {**PARKED, "Parkinglot": "acme_never", "ParkingSpace": "801", "ParkingTimeout": WRAPPED}
    )
    assert services.server_resync(server.pk, [parked])["opened"] == 1
    assert ParkedCall.objects.get().timeout_at is None


def test_an_event_that_cannot_be_applied_is_recorded_and_the_next_one_applies(lot, server):
    broken = replace(events.parse(PARKED), space=-5)  # refused by the database
    assert services.parking_event_apply(server.pk, broken) is None
    problem = EventProblem.objects.get()
    assert (problem.tenant, problem.uniqueid, problem.kind) == (
        lot.tenant,
        "1795743695.12",
        "parked",
    )
    assert services.parking_event_apply(server.pk, events.parse(PARKED)).space == 701


def test_a_resynced_call_that_cannot_be_opened_leaves_the_others(lot, server):
    good = events.parse({**PARKED, "ParkeeUniqueid": "2.2", "ParkingSpace": "702"})
    broken = replace(events.parse(PARKED), space=-5)
    summary = services.server_resync(server.pk, [broken, good])
    assert (summary["opened"], summary["failed"]) == (1, 1)
    assert ParkedCall.objects.get().uniqueid == "2.2"
    assert EventProblem.objects.get().kind == "resync"


def _bridge_enter(channel: str, uniqueid: str, bridge: str, kind: str = "basic") -> dict:
    return {
        "Event": "BridgeEnter",
        "BridgeUniqueid": bridge,
        "BridgeType": kind,
        "BridgeTechnology": "holding_bridge" if kind == "parking" else "simple_bridge",
        "Channel": channel,
        "Uniqueid": uniqueid,
        "CallerIDNum": "701",
        "CallerIDName": "Parked 701",
    }


GAVE_UP = {**PARKED, "Event": "ParkedCallGiveUp"}
PARKEE = PARKED["ParkeeChannel"], PARKED["ParkeeUniqueid"]
PHONE = "Local/201@acme-phones-00000004;1", "9.9"


def hangup(channel: str, uniqueid: str) -> dict:
    return {"Event": "Hangup", "Channel": channel, "Uniqueid": uniqueid, "Cause": "16"}


def kinds(order, sequence) -> list[tuple[str, str | None]]:
    ready = []
    for n, headers in enumerate(sequence):
        ready += order.push(headers, now=n * 0.01)
    ready += order.due(now=100.0)
    return [(e.kind, e.retriever.name if e.retriever else None) for e in ready]


# Both orders are seen on Asterisk 22.10: parking and bridge events come from different
# threads. Originate of a phone running Bridge(<parked channel>):
BRIDGED_BEFORE = [
    PARKED,
    _bridge_enter(*PARKEE, "hold-1", "parking"),
    _bridge_enter(*PARKEE, "b-2"),
    _bridge_enter(*PHONE, "b-2"),
    GAVE_UP,
]
BRIDGED_AFTER = [
    PARKED,
    _bridge_enter(*PARKEE, "hold-1", "parking"),
    GAVE_UP,
    _bridge_enter(*PARKEE, "b-2"),
    _bridge_enter(*PHONE, "b-2"),
]


@pytest.mark.parametrize("sequence", [BRIDGED_BEFORE, BRIDGED_AFTER], ids=["before", "after"])
def test_a_call_bridged_out_of_its_space_is_retrieved_not_abandoned(sequence):
    got = kinds(events.Retrievals(), sequence)
    assert got[0] == ("parked", None)
    assert got[1][0] == "unparked" and len(got) == 2
    if sequence is BRIDGED_BEFORE:
        assert got[1][1] == PHONE[0]  # the phone entered before the event: named


def test_a_caller_hanging_up_while_parked_stays_abandoned():
    order = events.Retrievals()
    sequence = [PARKED, _bridge_enter(*PARKEE, "hold-1", "parking"), GAVE_UP]
    ready = [e for n, h in enumerate(sequence) for e in order.push(h, now=float(n))]
    assert [e.kind for e in ready] == ["parked"]  # held back: bridged or hung up?
    assert [e.kind for e in order.push(hangup(*PARKEE), now=3.0)] == ["abandoned"]
    # A Hangup that comes first: abandoned at once, nothing held.
    order = events.Retrievals()
    sequence = [PARKED, hangup(*PARKEE), GAVE_UP]
    ready = [e for n, h in enumerate(sequence) for e in order.push(h, now=float(n))]
    assert [e.kind for e in ready] == ["parked", "abandoned"] and not order.held
    # And without a Hangup event, once the wait is over.
    assert kinds(events.Retrievals(), [PARKED, GAVE_UP]) == [
        ("parked", None),
        ("abandoned", None),
    ]


def test_retrievals_stay_bounded():
    order = events.Retrievals(limit=10)
    for n in range(1000):
        order.push(_bridge_enter(f"PJSIP/x-{n}", f"{n}.0", f"bridge-{n}"), now=0.0)
        order.push({**GAVE_UP, "ParkeeUniqueid": f"{n}.1"}, now=0.0)
    assert len(order.bridges) == 10 and len(order.held) == 10


def test_a_burst_is_applied_together_and_a_broken_event_stays_its_own(
    acme, acme_ctx, server, transactional_db, monkeypatch
):
    """The watcher applies what it found waiting in one transaction, its pages' pushes in
    one go; a broken event among them rolls that back, and each is applied on its own."""
    from lots.services import parking

    make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)
    sent: list[list] = []
    monkeypatch.setattr(parking, "_send", lambda messages: sent.append(list(messages)))
    park = [
        events.parse({**PARKED, "ParkeeUniqueid": f"b.{n}", "ParkingSpace": str(701 + n)})
        for n in range(3)
    ]
    gone = events.parse({**PARKED, "Event": "ParkedCallGiveUp", "ParkeeUniqueid": "b.0"})
    services.parking_events_apply(server.pk, [*park, gone])
    assert len(sent) == 1  # one trip to the channel layer for the whole burst
    frames = [(m["type"], m["call"]["uniqueid"]) for _, m in sent[0] if "call" in m]
    assert frames == [("parked", "b.0"), ("parked", "b.1"), ("parked", "b.2"), ("abandoned", "b.0")]
    assert ParkedCall.objects.filter(ended_at__isnull=True).count() == 2

    sent.clear()
    broken = replace(events.parse({**PARKED, "ParkeeUniqueid": "b.9"}), space=-5)
    late = events.parse({**PARKED, "ParkeeUniqueid": "b.3", "ParkingSpace": "704"})
    services.parking_events_apply(server.pk, [broken, late])
    assert ParkedCall.objects.filter(uniqueid="b.3", ended_at__isnull=True).exists()
    assert not ParkedCall.objects.filter(uniqueid="b.9").exists()
    assert EventProblem.objects.get().uniqueid == "b.9"
    pushed = [m["call"]["uniqueid"] for batch in sent for _, m in batch if "call" in m]
    assert pushed == ["b.3"]  # nothing of the rolled-back attempt went out

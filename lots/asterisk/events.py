"""AMI parking events -> typed ParkingEvents. Pure: no I/O, no database.

Every header is hostile input (a caller chooses their caller ID; a broken Asterisk sends
what it likes), so `parse` never raises: text is cut to the length it is stored in, with
control characters and line separators replaced; numbers outside their range count as
missing. `Retrievals` tells a parked call that parkweb bridged to a phone apart from a
caller who hung up: Asterisk reports both as ParkedCallGiveUp.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import StrEnum

from lots import rules


class Kind(StrEnum):
    PARKED = "parked"
    UNPARKED = "unparked"  # retrieved by dialling the space, or bridged by parkweb
    TIMED_OUT = "timed_out"
    GAVE_UP = "abandoned"  # the caller hung up while parked
    SWAPPED = "swapped"  # another channel took the parked call's place


KIND_OF_EVENT = {
    "ParkedCall": Kind.PARKED,
    "UnParkedCall": Kind.UNPARKED,
    "ParkedCallTimeOut": Kind.TIMED_OUT,
    "ParkedCallGiveUp": Kind.GAVE_UP,
    "ParkedCallSwap": Kind.SWAPPED,
}
ENDINGS = frozenset({Kind.UNPARKED, Kind.TIMED_OUT, Kind.GAVE_UP})

# How much of each text is kept: the lengths of the columns it is stored in.
CHANNEL_LENGTH = 200
ID_LENGTH = 64
CALLER_LENGTH = 80
LOT_LENGTH = 80
# A call parked longer than this (about 115 days) is not believed.
MAX_DURATION = 10_000_000
# Anything that would break a line in a page, a log or a file: C0 and C1 controls (NUL,
# CR, LF, VT, FF, NEL U+0085, ...) and the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Channel:
    """One side of a parking event (Parkee* or Retriever* headers)."""

    name: str
    uniqueid: str
    linkedid: str
    caller_id_num: str
    caller_id_name: str
    connected_line_num: str
    connected_line_name: str

    @classmethod
    def from_headers(cls, headers: dict, prefix: str) -> Channel | None:
        name = text(headers.get(f"{prefix}Channel"), CHANNEL_LENGTH)
        if not name:
            return None
        return cls(
            name=name,
            uniqueid=text(headers.get(f"{prefix}Uniqueid"), ID_LENGTH),
            linkedid=text(headers.get(f"{prefix}Linkedid"), ID_LENGTH),
            caller_id_num=_cid(headers.get(f"{prefix}CallerIDNum")),
            caller_id_name=_cid(headers.get(f"{prefix}CallerIDName")),
            connected_line_num=_cid(headers.get(f"{prefix}ConnectedLineNum")),
            connected_line_name=_cid(headers.get(f"{prefix}ConnectedLineName")),
        )


@dataclass(frozen=True)
class ParkingEvent:
    kind: Kind
    lot: str  # the Parkinglot header: the lot's Asterisk name
    space: int | None
    parkee: Channel
    retriever: Channel | None
    parker_dial_string: str
    # Seconds left before the call comes back; None when it never does (a lot with
    # parkingtime 0, reported as an unsigned wrap like 18446744073709551613) or unknown.
    timeout: int | None
    duration: int | None  # seconds parked so far

    @property
    def key(self) -> str:
        """The parked call's identity across events: its channel's unique id."""
        return self.parkee.uniqueid


def text(value, limit: int) -> str:
    """A header value as one line of at most `limit` characters."""
    if isinstance(value, list):  # a repeated header: keep the first
        value = value[0] if value else ""
    if value is None:
        return ""
    return _UNSAFE.sub(" ", str(value)[: limit * 2]).strip()[:limit]


def _cid(value) -> str:
    found = text(value, CALLER_LENGTH)
    return "" if found in ("<unknown>", "<none>") else found


def _count(value, low: int, high: int) -> int | None:
    """An integer in [low, high], else None (missing, not a number, negative, wrapped)."""
    found = text(value, 24)
    if not found.isascii() or not found.isdigit():
        return None
    number = int(found)
    return number if low <= number <= high else None


def parse(headers: dict) -> ParkingEvent | None:
    """A ParkingEvent from an AMI event's headers; None for other events (or a parking
    event too broken to use: no lot or no parked channel). Never raises."""
    if not isinstance(headers, dict):
        return None
    kind = KIND_OF_EVENT.get(text(headers.get("Event"), 40))
    if kind is None:
        return None
    parkee = Channel.from_headers(headers, "Parkee")
    lot = text(headers.get("Parkinglot"), LOT_LENGTH)
    if parkee is None or not parkee.uniqueid or not lot:
        return None
    timeout = _count(headers.get("ParkingTimeout"), 0, rules.PARKINGTIME_MAX)
    return ParkingEvent(
        kind=kind,
        lot=lot,
        space=_count(headers.get("ParkingSpace"), 1, rules.MAX_SPACE_NUMBER),
        parkee=parkee,
        retriever=Channel.from_headers(headers, "Retriever"),
        parker_dial_string=text(headers.get("ParkerDialString"), CHANNEL_LENGTH),
        timeout=timeout or None,  # 0 is what a "never" lot reports at the park
        duration=_count(headers.get("ParkingDuration"), 0, MAX_DURATION),
    )


class Retrievals:
    """Which parked calls were bridged out of their space rather than hung up.

    parkweb retrieves exactly one call with `Originate` of a phone running
    `Bridge(<parked channel>)`. Asterisk 22 reports that as ParkedCallGiveUp, as it does a
    caller hanging up; what tells them apart is what happens to the parked channel: it
    enters another bridge (retrieved) or hangs up (abandoned). Asterisk publishes these
    from different threads, so they may come before or after the ParkedCallGiveUp: a
    ParkedCallGiveUp whose channel has not yet done either is held back until it does,
    for at most `wait` seconds (then it counts as abandoned); one whose channel has hung up
    already is abandoned at once.

    `push` takes every AMI event and returns the parking events ready to apply, in order
    per call; `due` returns held-back ones whose time is up. Memory stays bounded: only
    channels parked now are followed, and only the last `limit` bridges are remembered.
    """

    def __init__(self, limit: int = 2000, wait: float = 2.0):
        self.limit = limit
        self.wait = wait
        self.parked: set[str] = set()
        self.moved: dict[str, str] = {}  # parked uniqueid -> the bridge it entered
        self.gone: OrderedDict[str, None] = OrderedDict()  # parked channels that hung up
        self.bridges: OrderedDict[str, list[Channel]] = OrderedDict()
        self.held: OrderedDict[str, tuple[ParkingEvent, float]] = OrderedDict()

    def seed(self, parked: list[ParkingEvent]) -> None:
        """After a (re)login: the calls parked now."""
        self.parked = {event.key for event in parked}
        self.moved.clear()

    def push(self, headers: dict, now: float) -> list[ParkingEvent]:
        """Look at one AMI event; returns the parking events now ready, in order."""
        ready: list[ParkingEvent] = []
        name = headers.get("Event")
        if name == "BridgeEnter":
            self._entered(headers, ready)
        elif name == "Hangup":
            uniqueid = text(headers.get("Uniqueid"), ID_LENGTH)
            if uniqueid in self.held:  # the caller hung up: abandoned after all
                ready.append(self.held.pop(uniqueid)[0])
            elif uniqueid in self.parked:  # its ParkedCallGiveUp may come after this
                self.gone[uniqueid] = None
                while len(self.gone) > self.limit:
                    self.gone.popitem(last=False)
        elif name == "BridgeDestroy":
            self.bridges.pop(text(headers.get("BridgeUniqueid"), ID_LENGTH), None)
        event = parse(headers)
        if event is None:
            return ready
        if event.key in self.held:  # alive again (parked anew): it was taken out, not lost
            ready.append(self._retrieved(self.held.pop(event.key)[0]))
        if event.kind in (Kind.PARKED, Kind.SWAPPED):
            if len(self.parked) < self.limit * 10:
                self.parked.add(event.key)
            ready.append(event)
            return ready
        self.parked.discard(event.key)
        hung_up = self.gone.pop(event.key, False) is None
        if event.kind != Kind.GAVE_UP or hung_up:
            self.moved.pop(event.key, None)
            ready.append(event)
        elif event.key in self.moved:
            ready.append(self._retrieved(event))
        else:
            self.held[event.key] = (event, now + self.wait)
            while len(self.held) > self.limit:
                ready.append(self.held.popitem(last=False)[1][0])
        return ready

    def due(self, now: float) -> list[ParkingEvent]:
        """Held-back events whose wait is over: abandoned."""
        ready = []
        while self.held and next(iter(self.held.values()))[1] <= now:
            ready.append(self.held.popitem(last=False)[1][0])
        return ready

    def next_due(self) -> float | None:
        return next(iter(self.held.values()))[1] if self.held else None

    def flush(self) -> list[ParkingEvent]:
        """Everything held back, now (before a resync)."""
        ready = [event for event, _ in self.held.values()]
        self.held.clear()
        return ready

    def _entered(self, headers: dict, ready: list[ParkingEvent]) -> None:
        if text(headers.get("BridgeType"), 40) == "parking":
            return
        bridge = text(headers.get("BridgeUniqueid"), ID_LENGTH)
        channel = Channel.from_headers(headers, "")
        if not bridge or channel is None:
            return
        self.bridges.setdefault(bridge, []).append(channel)
        self.bridges.move_to_end(bridge)
        while len(self.bridges) > self.limit:
            self.bridges.popitem(last=False)
        if channel.uniqueid in self.held:
            self.moved[channel.uniqueid] = bridge
            ready.append(self._retrieved(self.held.pop(channel.uniqueid)[0]))
        elif channel.uniqueid in self.parked:
            self.moved[channel.uniqueid] = bridge

    def _retrieved(self, event: ParkingEvent) -> ParkingEvent:
        bridge = self.moved.pop(event.key, None)
        peers = [c for c in self.bridges.get(bridge, []) if c.uniqueid != event.key]
        return replace(event, kind=Kind.UNPARKED, retriever=peers[0] if peers else None)

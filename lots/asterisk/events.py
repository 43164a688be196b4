"""AMI parking events -> typed ParkingEvents. Pure: no I/O, no database."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    PARKED = "parked"
    UNPARKED = "unparked"  # retrieved by dialling the space (or Park app pickup)
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
        name = _text(headers.get(f"{prefix}Channel"))
        if not name:
            return None
        return cls(
            name=name,
            uniqueid=_text(headers.get(f"{prefix}Uniqueid")),
            linkedid=_text(headers.get(f"{prefix}Linkedid")),
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
    timeout: int | None  # seconds left before the call comes back
    duration: int | None  # seconds parked so far

    @property
    def key(self) -> str:
        """The parked call's identity across events: its channel's unique id."""
        return self.parkee.uniqueid


def _text(value) -> str:
    if isinstance(value, list):  # a repeated header: keep the first
        value = value[0] if value else ""
    return str(value or "").strip()


def _cid(value) -> str:
    text = _text(value)
    return "" if text in ("<unknown>", "<none>") else text


def _int(value) -> int | None:
    text = _text(value)
    return int(text) if text.lstrip("-").isdigit() else None


def parse(headers: dict) -> ParkingEvent | None:
    """A ParkingEvent from an AMI event's headers; None for other events (or a parking
    event too broken to use: no lot or no parked channel)."""
    kind = KIND_OF_EVENT.get(_text(headers.get("Event")))
    if kind is None:
        return None
    parkee = Channel.from_headers(headers, "Parkee")
    lot = _text(headers.get("Parkinglot"))
    if parkee is None or not lot:
        return None
    return ParkingEvent(
        kind=kind,
        lot=lot,
        space=_int(headers.get("ParkingSpace")),
        parkee=parkee,
        retriever=Channel.from_headers(headers, "Retriever"),
        parker_dial_string=_text(headers.get("ParkerDialString")),
        timeout=_int(headers.get("ParkingTimeout")),
        duration=_int(headers.get("ParkingDuration")),
    )

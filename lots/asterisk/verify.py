"""What Asterisk runs, compared with what parkweb rendered.

`Action: Parkinglots` reports names, spaces and timeouts; the CLI `parking show` adds the
context, park extension and comeback settings. Both are parsed into `RunningLot`s and
compared option by option with the sections `confgen` produced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .ami import Parkinglot
from .confgen import Section

_LOT_HEADER = re.compile(r"^Parking Lot:\s*(?P<name>\S+)\s*$")
_FIELD = re.compile(r"^(?P<label>[A-Za-z][A-Za-z ]*?)\s*:\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class RunningLot:
    name: str
    parkext: str
    context: str
    start_space: int
    stop_space: int
    parkingtime: int
    comebacktoorigin: bool
    comebackcontext: str
    comebackdialtime: int
    musicclass: str
    enabled: bool


def _seconds(text: str) -> int:
    return int(text.split()[0])


def parse_parking_show(output: str) -> dict[str, RunningLot]:
    """Lots in the output of the CLI command `parking show`, by name."""
    lots: dict[str, RunningLot] = {}
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        header = _LOT_HEADER.match(line.strip())
        if header:
            blocks.append((header["name"], {}))
            continue
        match = _FIELD.match(line.strip())
        if match and blocks:
            blocks[-1][1][match["label"]] = match["value"]
    for name, fields in blocks:
        start, _, stop = fields.get("Parking Spaces", "0-0").partition("-")
        lots[name] = RunningLot(
            name=name,
            parkext=fields.get("Parking Extension", ""),
            context=fields.get("Parking Context", ""),
            start_space=int(start),
            stop_space=int(stop or start),
            parkingtime=_seconds(fields.get("Parking Time", "0")),
            comebacktoorigin=fields.get("Comeback to Origin", "") == "yes",
            # "parkedcallstimeout (comebacktoorigin=yes, not used)" -> "parkedcallstimeout"
            comebackcontext=fields.get("Comeback Context", "").split(" ")[0],
            comebackdialtime=_seconds(fields.get("Comeback Dial Time", "0")),
            musicclass=fields.get("MusicOnHold Class", ""),
            enabled=fields.get("Enabled", "") == "yes",
        )
    return lots


def _expected(section: Section) -> dict[str, str]:
    options = dict(section.options)
    start, _, stop = options["parkpos"].partition("-")
    expected = {
        "context": options["context"],
        "start_space": start,
        "stop_space": stop,
        "parkingtime": options.get("parkingtime", "45"),
        "comebacktoorigin": options.get("comebacktoorigin", "yes"),
        "comebackdialtime": options.get("comebackdialtime", "30"),
        "musicclass": options.get("parkedmusicclass", ""),
    }
    if "parkext" in options:
        expected["parkext"] = options["parkext"]
    if "comebackcontext" in options:
        expected["comebackcontext"] = options["comebackcontext"]
    return expected


def _actual(lot: RunningLot) -> dict[str, str]:
    return {
        "context": lot.context,
        "parkext": lot.parkext,
        "start_space": str(lot.start_space),
        "stop_space": str(lot.stop_space),
        "parkingtime": str(lot.parkingtime),
        "comebacktoorigin": "yes" if lot.comebacktoorigin else "no",
        "comebackdialtime": str(lot.comebackdialtime),
        "comebackcontext": lot.comebackcontext,
        "musicclass": lot.musicclass,
    }


def parkinglots_differences(
    sections: Iterable[Section], parkinglots: Iterable[Parkinglot]
) -> list[str]:
    """Lots missing from `Action: Parkinglots`, or listed with other spaces or timeouts."""
    listed = {lot.name: lot for lot in parkinglots}
    problems = []
    for section in sections:
        if section.name == "general":
            continue
        lot = listed.get(section.name)
        if lot is None:
            problems.append(f"lot {section.name}: not running")
            continue
        expected = _expected(section)
        seen = {
            "start_space": str(lot.start_space),
            "stop_space": str(lot.stop_space),
            "parkingtime": str(lot.timeout),
        }
        for key, value in seen.items():
            if value != expected[key]:
                problems.append(
                    f"lot {lot.name}: Parkinglots {key} is {value!r}, expected {expected[key]!r}"
                )
    return problems


def detail_differences(
    sections: Iterable[Section], running: dict[str, RunningLot], extra_allowed: bool = False
) -> list[str]:
    """Option by option, the given sections against `parking show`; and, unless
    `extra_allowed`, enabled lots that Asterisk runs but no section asks for."""
    problems: list[str] = []
    wanted = {section.name: section for section in sections if section.name != "general"}
    for name in sorted(set(wanted) - set(running)):
        problems.append(f"lot {name}: not running")
    if not extra_allowed:
        for name in sorted(set(running) - set(wanted)):
            if running[name].enabled:
                problems.append(f"lot {name}: running but not in the config")
    for name in sorted(set(wanted) & set(running)):
        actual = _actual(running[name])
        for key, value in _expected(wanted[name]).items():
            if actual[key] != value:
                problems.append(f"lot {name}: {key} is {actual[key]!r}, expected {value!r}")
        if not running[name].enabled:
            problems.append(f"lot {name}: disabled")
    return problems


def differences(
    sections: Iterable[Section],
    running: dict[str, RunningLot],
    parkinglots: Iterable[Parkinglot] | None = None,
) -> list[str]:
    """Human-readable differences between rendered lots and what Asterisk runs; [] if none."""
    sections = list(sections)
    problems = detail_differences(sections, running)
    if parkinglots is not None:
        problems += [
            problem
            for problem in parkinglots_differences(sections, parkinglots)
            if not problem.endswith("not running")  # already reported above
        ]
    return problems

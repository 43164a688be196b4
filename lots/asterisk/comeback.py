"""The timeout chain and reminders as dialplan that parkweb generates and owns.

On Asterisk 22 a call that times out with `comebacktoorigin = yes` and is not answered by
its parker is hung up (ASTERISK.md, "Timeout flow"). A lot with parkweb's timeout chain
gets `comebacktoorigin = no` and `comebackcontext = parkweb-timeout-<lot>` instead, and
that context, generated here, rings the parker back (marked, with a distinctive ring and
an announcement if the tenant wants them) and then sends the call where the tenant chose:
an extension of its own, a hang-up, or the same lot again at most N more times.

The same context holds `remind`, which a reminder call to the parker runs (an announcement,
then a bridge to exactly the parked call), and every step tells parkweb what happened in a
`UserEvent(ParkwebTimeout)` that the watcher records in the call's history.

Like the busy-lamp hints, the dialplan lives in two places kept equal: the live dialplan
(pbx_config, AMI DialplanExtensionAdd/Remove: no reload of anyone's dialplan) and the file
parkweb_timeout.conf that extensions.conf includes, for restarts and `dialplan reload`.
Pure here but for `sync` and `differences`, which take an open AMI client.

Every value that reaches a line comes from a lot that validation (rules.py) accepted; the
renderer checks each again against the same patterns and refuses what does not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from lots import rules

from . import actions, confgen
from .ami import AmiClient
from .confgen import LotConfig, Section, UnsafeConfigValue

DIALPLAN = "parkweb_timeout.conf"
USER_EVENT = "ParkwebTimeout"
ANSWERED_CONTEXT = f"{confgen.TIMEOUT_PREFIX}answered"  # shared: no lot is named `answered`
PARKER_PATTERN = "_[0-9A-Za-z]."  # <PARKER_FLAT>, where res_parking sends the call first

STEP_ANSWERED = "answered"
STEP_FALLBACK = "fallback"
STEP_REPARKED = "reparked"
STEP_HUNG_UP = "hung_up"
STEPS = (STEP_ANSWERED, STEP_FALLBACK, STEP_REPARKED, STEP_HUNG_UP)

FILE_HEADER = (
    "; parkweb's timeout chains and reminders: written by parkweb at every deploy, do not edit.\n"
    "; extensions.conf includes it once:  #tryinclude parkweb_timeout.conf\n"
)
_CONTEXT_RE = re.compile(rf"{re.escape(confgen.TIMEOUT_PREFIX)}[a-z0-9][a-z0-9_-]{{0,62}}")
_SECTION_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_CONTEXT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_LABEL = re.compile(r"(?<!\$)\{([a-z_]+)\}")  # `{done}`, never `${VARIABLE}`


@dataclass(frozen=True, slots=True)
class Priority:
    """One line of a generated context: `exten => <exten>,<number>,<app>(<data>)`."""

    exten: str
    number: int
    app: str
    data: str

    @property
    def line(self) -> str:
        return f"{self.exten},{self.number},{self.app}({self.data})"


def _checked(field: str, pattern: re.Pattern, value: str) -> str:
    if not pattern.fullmatch(value):
        raise UnsafeConfigValue(f"refusing to write {field} {value[:60]!r}")
    return value


def _sound(field: str, value: str) -> str:
    return _checked(field, rules.SOUND_RE, value) if value else ""


def _program(exten: str, steps: list[tuple[str, str, str]]) -> list[Priority]:
    """Number the steps (label, app, data) from 1; `{label}` in data is that step's number
    (DialplanExtensionAdd knows no labels, so the file carries none either)."""
    numbers = {label: index for index, (label, _, _) in enumerate(steps, start=1) if label}
    return [
        Priority(exten, index, app, _LABEL.sub(lambda m: str(numbers[m[1]]), data))
        for index, (_, app, data) in enumerate(steps, start=1)
    ]


def _event(step: str) -> tuple[str, str, str]:
    return ("", "UserEvent", f"{USER_EVENT},Step: {step},Call: ${{UNIQUEID}}")


def _chain(lot: LotConfig, section: str, context: str) -> list[Priority]:
    """`s`: what a timed-out call of the lot runs."""
    steps: list[tuple[str, str, str]] = [
        ("", "NoOp", f"parkweb: {section} timed out in ${{PARKING_SPACE}}"),
        # The first parker is kept: a call parked again by this chain has itself as parker.
        ("", "GotoIf", '$["${PARKWEB_PARKER}" != ""]?{known}'),
        ("", "Set", "PARKWEB_PARKER=${PARKER}"),
        ("", "Set", "PARKWEB_NAME=${CALLERID(name)}"),
    ]
    if lot.comeback_ring_parker:
        prefix = _checked("caller ID prefix", rules.CID_PREFIX_RE, lot.comeback_cid_prefix)
        options = ""
        if lot.comeback_announcement:
            options += f"A({_sound('announcement', lot.comeback_announcement)})"
        if lot.comeback_alert_info:
            options += f"b({context}^alert^1)"
        options += f"U({ANSWERED_CONTEXT}^${{UNIQUEID}})"
        steps += [
            ("known", "GotoIf", '$["${PARKWEB_PARKER}" = ""]?{fallback}'),
            ("", "Set", f"CALLERID(name)={prefix}${{PARKING_SPACE}} ${{PARKWEB_NAME}}")
            if prefix
            else ("", "NoOp", "no caller ID prefix"),
            ("", "Dial", f"${{PARKWEB_PARKER}},{int(lot.comebackdialtime)},{options}"),
            ("", "Set", "CALLERID(name)=${PARKWEB_NAME}"),
            ("", "GotoIf", '$["${DIALSTATUS}" = "ANSWER"]?{done}'),
        ]
    else:
        steps.append(("known", "NoOp", "the parker is not rung back"))
    if lot.fallback == rules.FALLBACK_DESTINATION:
        target = _checked("fallback context", _CONTEXT_NAME_RE, lot.fallback_context or "")
        extension = _checked("fallback extension", rules.DESTINATION_RE, lot.fallback_extension)
        steps += [
            ("fallback", *_event(STEP_FALLBACK)[1:]),
            ("", "Goto", f"{target},{extension},1"),
        ]
    elif lot.fallback == rules.FALLBACK_REPARK:
        limit = int(lot.repark_limit)
        steps += [
            ("fallback", "GotoIf", f"$[0${{PARKWEB_REPARKS}} >= {limit}]?{{give_up}}"),
            ("", "Set", "PARKWEB_REPARKS=$[0${PARKWEB_REPARKS} + 1]"),
            _event(STEP_REPARKED),
            ("", "Park", section),
            ("give_up", *_event(STEP_HUNG_UP)[1:]),
            ("", "Hangup", ""),
        ]
    else:
        steps += [("fallback", *_event(STEP_HUNG_UP)[1:]), ("", "Hangup", "")]
    steps.append(("done", "Hangup", ""))
    return _program("s", steps)


def _remind(lot: LotConfig) -> list[Priority]:
    """`remind`: a reminder call to the parker, answered. PARKWEB_CALL and PARKWEB_SPACE
    are set by parkweb's Originate (lots.asterisk.actions.remind)."""
    sound = _sound("reminder announcement", lot.reminder_announcement)
    return _program(
        "remind",
        [
            ("", "Playback", sound) if sound else ("", "NoOp", "reminder: ${PARKWEB_SPACE}"),
            ("", "Bridge", "${PARKWEB_CALL}"),
            ("", "Hangup", ""),
        ],
    )


def _alert(lot: LotConfig) -> list[Priority]:
    """`alert`: the pre-dial handler that adds Alert-Info to a SIP (PJSIP) call."""
    value = _checked("Alert-Info", rules.ALERT_INFO_RE, lot.comeback_alert_info)
    return _program(
        "alert",
        [
            ("", "GotoIf", '$["${CHANNEL(channeltype)}" != "PJSIP"]?{back}'),
            ("", "Set", f"PJSIP_HEADER(add,Alert-Info)={value}"),
            ("back", "Return", ""),
        ],
    )


def _answered() -> tuple[Priority, ...]:
    """Run on the parker's channel when it answers (Dial's U option): says so at once,
    rather than when the conversation ends."""
    return tuple(
        _program(
            "s",
            [
                ("", "UserEvent", f"{USER_EVENT},Step: {STEP_ANSWERED},Call: ${{ARG1}}"),
                ("", "Return", ""),
            ],
        )
    )


def wanted_dialplan(server, lots: Iterable) -> dict[str, tuple[Priority, ...]]:
    """{context: priorities} for the server's enabled lots with a timeout chain or
    reminders. Lots are LotConfigs or ParkingLots, as for confgen."""
    wanted: dict[str, tuple[Priority, ...]] = {}
    for lot in map(LotConfig.of, lots):
        if not lot.enabled or lot.server_id != server.pk:
            continue
        if not lot.timeout_chain and not lot.reminder_seconds:
            continue
        context, priorities = _lot_dialplan(lot, confgen.lot_section_name(server, lot))
        wanted[context] = priorities
        if lot.timeout_chain:
            wanted[ANSWERED_CONTEXT] = _ANSWERED
    return dict(sorted(wanted.items()))


@lru_cache(maxsize=16_384)
def _lot_dialplan(lot: LotConfig, section: str) -> tuple[str, tuple[Priority, ...]]:
    """One lot's context and lines. Cached by the lot's whole config (a server may have
    thousands of lots, and a deploy renders them all to change one)."""
    context = _checked("context", _CONTEXT_RE, confgen.timeout_context(lot.asterisk_name))
    section = _checked("lot", _SECTION_RE, section)
    priorities: list[Priority] = []
    if lot.timeout_chain:
        priorities += _program(PARKER_PATTERN, [("", "Goto", "s,1")])
        priorities += _chain(lot, section, context)
        if lot.comeback_ring_parker and lot.comeback_alert_info:
            priorities += _alert(lot)
    if lot.reminder_seconds:
        priorities += _remind(lot)
    return context, tuple(priorities)


def render(wanted: dict[str, tuple[Priority, ...]]) -> str:
    """parkweb_timeout.conf for `wanted` (extensions.conf syntax; no ';' in any value)."""
    return FILE_HEADER + "".join(
        _block(context, priorities) for context, priorities in wanted.items()
    )


@lru_cache(maxsize=16_384)
def _block(context: str, priorities: tuple[Priority, ...]) -> str:
    lines = [f"\n[{context}]", *(f"exten => {priority.line}" for priority in priorities)]
    block = "\n".join(lines) + "\n"
    if ";" in block or "\r" in block:
        raise UnsafeConfigValue("refusing to write a dialplan line with ';' or CR")
    return block


@lru_cache(maxsize=8)
def parse(text: str | None) -> dict[str, tuple[Priority, ...]]:
    """The contexts of a parkweb_timeout.conf (ours, or as GetConfig renders it back).
    Cached, and so is each context's text: a deploy that changes one lot's context among
    thousands parses only that one, and the others are the very same objects as before
    (cheap to compare). Never change what it returns."""
    found = {}
    for chunk in ("\n" + (text or "")).split("\n[")[1:]:
        name, sep, body = chunk.partition("]")
        if sep:
            found[name] = _parse_block(body)
    return found


@lru_cache(maxsize=16_384)
def _parse_block(body: str) -> tuple[Priority, ...]:
    priorities = []
    for raw in body.splitlines():
        key, _, value = raw.strip().partition("=")
        if key.strip() != "exten":
            continue
        exten, number, call = [*value.lstrip(">").strip().split(",", 2), "", ""][:3]
        app, _, data = call.partition("(")
        if number.isdigit():
            priorities.append(Priority(exten, int(number), app, data.removesuffix(")")))
    return tuple(priorities)


def sections(wanted: dict[str, tuple[Priority, ...]]) -> list[Section]:
    return [
        Section(context, tuple(("exten", p.line) for p in priorities))
        for context, priorities in wanted.items()
    ]


def changed_contexts(
    old: dict[str, tuple[Priority, ...]], new: dict[str, tuple[Priority, ...]]
) -> set[str]:
    return {
        c
        for c in old.keys() | new.keys()
        if old.get(c) is not new.get(c) and old.get(c) != new.get(c)
    }


async def live(ami: AmiClient, context: str) -> dict[tuple[str, int], Priority]:
    """What the live dialplan holds in one of parkweb's generated contexts."""
    found = {}
    for event in await actions.show_dialplan(ami, context) or ():
        if event.get("Context") != context or not str(event.get("Priority", "")).isdigit():
            continue
        priority = Priority(
            str(event.get("Extension", "")),
            int(event["Priority"]),
            str(event.get("Application", "")),
            str(event.get("AppData", "")),
        )
        found[(priority.exten, priority.number)] = priority
    return found


async def sync(
    ami: AmiClient, wanted: dict[str, tuple[Priority, ...]], contexts: Iterable[str]
) -> list[str]:
    """Make the live dialplan hold exactly `wanted` in `contexts` (each a parkweb
    timeout context: nothing else is ever touched). Returns the changes, one line each."""
    changes = []
    for context in sorted(set(contexts)):
        _checked("context", _CONTEXT_RE, context)
        have = await live(ami, context)
        want = {(p.exten, p.number): p for p in wanted.get(context, ())}
        for key, priority in sorted(want.items()):
            if have.get(key) != priority:
                await actions.extension_add(
                    ami, context, priority.exten, priority.number, priority.app, priority.data
                )
                changes.append(f"+ {context} {priority.line}")
        for exten, number in sorted(set(have) - set(want)):
            await actions.extension_remove(ami, context, exten, number)
            changes.append(f"- {context} {exten},{number}")
    return changes


async def differences(
    ami: AmiClient, wanted: dict[str, tuple[Priority, ...]], contexts: Iterable[str]
) -> list[str]:
    """Where the live dialplan differs from `wanted` in `contexts`; [] when equal."""
    problems = []
    for context in sorted(set(contexts)):
        have = await live(ami, context)
        want = {(p.exten, p.number): p for p in wanted.get(context, ())}
        if have != want:
            missing = len(set(want.items()) - set(have.items()))
            extra = len(set(have.items()) - set(want.items()))
            problems.append(
                f"dialplan {context}: {missing} line(s) missing or different, {extra} extra"
            )
    return problems


@dataclass(frozen=True)
class Step:
    """A UserEvent(ParkwebTimeout): what the chain did with one timed-out call."""

    call: str  # the parked channel's unique id
    step: str


_ANSWERED = _answered()


def parse_step(headers: dict) -> Step | None:
    """A Step from an AMI UserEvent, else None (other events, or anything malformed)."""
    if headers.get("Event") != "UserEvent" or headers.get("UserEvent") != USER_EVENT:
        return None
    step = str(headers.get("Step", "")).strip()
    call = str(headers.get("Call", "")).strip()
    if step not in STEPS or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", call):
        return None
    return Step(call=call, step=step)

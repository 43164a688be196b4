"""Every AMI action parkweb sends, built here and nowhere else.

Callers (services, the deploy, the watcher, commands) pass plain values; the headers, and
what Asterisk makes of them, are decided in this module, on top of the checks every value
gets in `ami.check_value` and the allow-list of `ami.ALLOWED_ACTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .ami import AmiClient, AmiError, AmiRefused, AmiResponse, Parkinglot

# A channel name as Asterisk makes them (PJSIP/alice-00000001, Local/201@acme-phones-0000;1),
# or a unique id. It becomes an application's argument, where ',' or '|' would add options.
CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_@.;:+~#-]{0,199}")
RING_SECONDS = 30
UPDATE_CONFIG_BATCH = 30  # edits per UpdateConfig: 4 headers each, under Asterisk's 128


# A context or an extension: the characters Asterisk's own names use, no pattern marks.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
HINT_RE = re.compile(r"park:[0-9]{1,8}@[A-Za-z0-9][A-Za-z0-9_-]{0,79}")


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value or ""):
        raise AmiRefused(f"not a context or extension: {value[:60]!r}")
    return value


def _hint(value: str) -> str:
    if not HINT_RE.fullmatch(value or ""):
        raise AmiRefused(f"not a parking hint: {value[:60]!r}")
    return value


def _channel(name: str) -> str:
    if not CHANNEL_NAME_RE.fullmatch(name or ""):
        raise AmiRefused(f"not a channel name: {name[:60]!r}")
    return name


# -- reading ---------------------------------------------------------------------------------


async def command(ami: AmiClient, text: str) -> str:
    """Output of a read-only CLI command (the allow-list in `ami` names which)."""
    response = await ami.checked_action("Command", Command=text)
    output = response.headers.get("Output", [])
    return "\n".join(output if isinstance(output, list) else [output])


async def parkinglots(ami: AmiClient) -> list[Parkinglot]:
    """Every lot Asterisk runs: name, spaces and timeout."""
    response = await ami.checked_action("Parkinglots")
    return [
        Parkinglot(
            name=str(event["Name"]),
            start_space=int(event["StartSpace"]),
            stop_space=int(event["StopSpace"]),
            timeout=int(event["Timeout"]),
        )
        for event in response.events
        if event.get("Event") == "Parkinglot"
    ]


async def parked_calls(ami: AmiClient) -> tuple[dict, ...]:
    """One ParkedCall event per call parked now, in every lot."""
    return (await ami.checked_action("ParkedCalls")).events


async def show_dialplan(ami: AmiClient, context: str) -> tuple[dict, ...] | None:
    """The ListDialplan events of one context; None when Asterisk has no such context."""
    response = await ami.action("ShowDialPlan", Context=context)
    return response.events if response.success else None


async def get_config(ami: AmiClient, filename: str) -> dict | None:
    """A config file as Asterisk reads it (Category-N, Line-N-M headers); None if absent."""
    response = await ami.action("GetConfig", Filename=filename)
    return response.headers if response.success else None


# -- changing ---------------------------------------------------------------------------------


async def reload_module(ami: AmiClient, module: str) -> AmiResponse:
    """Reload one module; Asterisk's answer tells whether it accepted the new config."""
    return await ami.action("Reload", timeout=ami.reload_timeout, Module=module)


async def update_config(ami: AmiClient, filename: str, edits: Sequence[tuple[str, ...]]) -> None:
    """Rewrite a config file in place through Asterisk, in batches of edits:
    (action, category[, variable[, value]]), like ("Append", "acme_main", "parkpos", ...)."""
    for start in range(0, len(edits), UPDATE_CONFIG_BATCH):
        headers: dict[str, str] = {"SrcFilename": filename, "DstFilename": filename}
        for index, (action, category, *rest) in enumerate(
            edits[start : start + UPDATE_CONFIG_BATCH]
        ):
            key = f"{index:06d}"
            headers[f"Action-{key}"] = action
            headers[f"Cat-{key}"] = category
            if rest:
                headers[f"Var-{key}"] = rest[0]
                headers[f"Value-{key}"] = rest[1] if len(rest) > 1 else ""
        await ami.checked_action("UpdateConfig", **headers)


async def hint_add(ami: AmiClient, context: str, extension: str, hint: str) -> AmiResponse:
    """Put a hint into the live dialplan (pbx_config keeps it; a res_parking reload does
    not touch it), replacing one of the same extension."""
    return await ami.checked_action(
        "DialplanExtensionAdd",
        Context=_name(context),
        Extension=_name(extension),
        Priority="hint",
        Application=_hint(hint),
        Replace="yes",
    )


async def hint_remove(ami: AmiClient, context: str, extension: str) -> AmiResponse:
    return await ami.checked_action(
        "DialplanExtensionRemove",
        Context=_name(context),
        Extension=_name(extension),
        Priority="hint",
    )


# The applications parkweb's generated dialplan runs (lots.asterisk.comeback), and the
# extensions it uses: nothing else is ever added or removed over AMI.
GENERATED_APPS = frozenset(
    {
        "NoOp",
        "GotoIf",
        "Set",
        "Dial",
        "Goto",
        "Park",
        "UserEvent",
        "Hangup",
        "Playback",
        "Bridge",
        "Return",
    }
)
GENERATED_EXTEN_RE = re.compile(r"s|remind|alert|_\[0-9A-Za-z\]\.")
GENERATED_CONTEXT_RE = re.compile(r"parkweb-timeout-[a-z0-9][a-z0-9_-]{0,62}")


def _generated(context: str, exten: str, priority: int) -> None:
    if not GENERATED_CONTEXT_RE.fullmatch(context or ""):
        raise AmiRefused(f"not a context parkweb generates: {context[:60]!r}")
    if not GENERATED_EXTEN_RE.fullmatch(exten or ""):
        raise AmiRefused(f"not an extension parkweb generates: {exten[:60]!r}")
    if not 1 <= int(priority) <= 99:
        raise AmiRefused(f"not a priority parkweb generates: {priority!r}")


async def extension_add(
    ami: AmiClient, context: str, exten: str, priority: int, app: str, data: str
) -> AmiResponse:
    """Put one priority of parkweb's generated dialplan into the live dialplan (replacing
    what holds that priority): pbx_config keeps it, nobody's dialplan is reloaded."""
    _generated(context, exten, priority)
    if app not in GENERATED_APPS:
        raise AmiRefused(f"not an application parkweb generates: {app[:40]!r}")
    return await ami.checked_action(
        "DialplanExtensionAdd",
        Context=context,
        Extension=exten,
        Priority=str(int(priority)),
        Application=app,
        ApplicationData=data,
        Replace="yes",
    )


async def extension_remove(ami: AmiClient, context: str, exten: str, priority: int) -> AmiResponse:
    _generated(context, exten, priority)
    return await ami.checked_action(
        "DialplanExtensionRemove", Context=context, Extension=exten, Priority=str(int(priority))
    )


async def remind(
    ami: AmiClient,
    *,
    dial: str,
    context: str,
    parked_uniqueid: str,
    space: int | None,
    channel_id: str,
) -> AmiResponse:
    """Ring the parker (`dial`, the parker's own channel as Asterisk reported it) with a
    reminder: answered, it runs `remind` in the lot's generated context, which plays the
    announcement and bridges the phone to exactly the parked call."""
    _generated(context, "remind", 1)
    reply = await ami.action(
        "Originate",
        Channel=_channel(dial),
        Context=context,
        Exten="remind",
        Priority="1",
        Variable=f"PARKWEB_CALL={_channel(parked_uniqueid)},PARKWEB_SPACE={int(space or 0)}",
        CallerID=f'"Parked {space or ""} waiting" <{space or ""}>',
        Timeout=str(RING_SECONDS * 1000),
        Async="true",
        ChannelId=_channel(channel_id),
        OtherChannelId=_channel(f"{channel_id}-2"),
    )
    if not reply.success:
        raise AmiError(reply.message or "Originate failed")
    return reply


# -- calls -------------------------------------------------------------------------------------


async def ring_and_bridge(
    ami: AmiClient, *, dial: str, parked_uniqueid: str, space: int | None, channel_id: str
) -> AmiResponse:
    """Ring `dial` (a channel parkweb built) and, once answered, bridge it to exactly the
    parked channel (named by its unique id). If that call has left meanwhile, Bridge finds
    no channel and the phone gets nothing: never "whatever sits in that space now".

    `channel_id` becomes the rung channel's unique id (`<channel_id>-2` its other half, for
    a Local channel), so parkweb can tell that channel in events and hang it up. Returns
    once Asterisk has queued the call; the phone rings up to RING_SECONDS."""
    label = f"Parked {space}" if space is not None else "Parked call"
    reply = await ami.action(
        "Originate",
        Channel=_channel(dial),
        Application="Bridge",
        Data=_channel(parked_uniqueid),
        CallerID=f'"{label}" <{space or ""}>',
        Timeout=str(RING_SECONDS * 1000),
        Async="true",
        ChannelId=_channel(channel_id),
        OtherChannelId=_channel(f"{channel_id}-2"),
    )
    if not reply.success:
        raise AmiError(reply.message or "Originate failed")
    return reply


async def call_into(
    ami: AmiClient,
    *,
    exten: str,
    context: str,
    seconds: int,
    caller_id: str = "",
    action_id: str = "",
) -> AmiResponse:
    """A call from a Local channel that dials `exten` in `context` and holds for `seconds`
    once connected (demo traffic: park by dialling a park extension, pick up a space).
    Returns once queued; its OriginateResponse event (with `action_id`) tells the answer."""
    headers = {"CallerID": caller_id} if caller_id else {}
    if action_id:
        headers["ActionID"] = action_id
    return await ami.checked_action(
        "Originate",
        Channel=_channel(f"Local/{exten}@{context}"),
        Application="Wait",
        Data=str(int(seconds)),
        Async="true",
        **headers,
    )


async def hangup(ami: AmiClient, channel: str) -> AmiResponse:
    """Hang up a channel, named by its name or its unique id."""
    return await ami.checked_action("Hangup", Channel=_channel(channel))

"""The AMI actions that parkweb's services send, built here and nowhere else.

Services pass plain values; the headers (and what Asterisk makes of them) are decided in
this module, on top of the checks every value gets in `ami.check_value`.
"""

from __future__ import annotations

import re

from .ami import AmiClient, AmiError, AmiRefused, AmiResponse

# A channel name as Asterisk makes them (PJSIP/alice-00000001, Local/201@acme-phones-0000;1).
# It becomes the Bridge application's argument, where a ',' or '|' would add options.
CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_@.;:+~#-]{0,199}")
RING_SECONDS = 30


def _channel(name: str) -> str:
    if not CHANNEL_NAME_RE.fullmatch(name or ""):
        raise AmiRefused(f"not a channel name: {name[:60]!r}")
    return name


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


async def hangup(ami: AmiClient, channel: str) -> AmiResponse:
    """Hang up a channel, named by its name or its unique id."""
    return await ami.checked_action("Hangup", Channel=_channel(channel))

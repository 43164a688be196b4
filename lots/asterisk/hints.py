"""Busy-lamp hints that survive deploys and dialplan reloads.

res_parking's own hints (`parkinghints`) are rebuilt on every reload of its config, and
Asterisk then ends every phone's subscription to them: one tenant saving a lot would turn
every phone's parking lamps off. So for each lot with hints, parkweb keeps the same hints
itself, `exten => 701,hint,park:701@<lot context>`, in a context of its own,
`parkweb-hints-<lot context>`, which phones' contexts include before the lot's context.

They live in two places, kept equal:
- the live dialplan, through pbx_config (AMI DialplanExtensionAdd): they work at once,
  with no reload, and a res_parking reload leaves them and their subscribers alone;
- the file parkweb_hints.conf, which the PBX's extensions.conf includes: a `dialplan
  reload` by the PBX's administrator drops every extension added over AMI, and ends the
  subscriptions to those not in the files it reads back. Read back from this file, the
  hints keep their subscribers (seen on Asterisk 22; README, "Real phones").
"""

from __future__ import annotations

from collections.abc import Iterable

from . import actions
from .ami import AmiClient
from .confgen import Section

HINTS_PREFIX = "parkweb-hints-"
HINTS_FILE = "parkweb_hints.conf"
HINTS_FILE_HEADER = (
    "; parkweb's busy-lamp hints: written by parkweb at every deploy, do not edit.\n"
    "; extensions.conf includes it once:  #tryinclude parkweb_hints.conf\n"
)


def hints_context(context: str) -> str:
    """The context where parkweb keeps the hints of the lots of `context`."""
    return f"{HINTS_PREFIX}{context}"


def wanted_hints(sections: Iterable[Section]) -> dict[str, dict[str, str]]:
    """{hints context: {space: hint}} for the lots of a res_parking.conf that ask for
    hints, from the very sections Asterisk runs."""
    wanted: dict[str, dict[str, str]] = {}
    for section in sections:
        options = dict(section.options)
        if section.name == "general" or options.get("parkinghints") != "yes":
            continue
        context = options["context"]
        start, _, end = options["parkpos"].partition("-")
        spaces = wanted.setdefault(hints_context(context), {})
        for space in range(int(start), int(end or start) + 1):
            spaces[str(space)] = f"park:{space}@{context}"
    return wanted


def hints_sections(wanted: dict[str, dict[str, str]]) -> list[Section]:
    """The hints contexts as extensions.conf sections."""
    return [
        Section(
            context,
            tuple(
                ("exten", f"{space},hint,{hint}")
                for space, hint in sorted(wanted[context].items(), key=lambda kv: int(kv[0]))
            ),
        )
        for context in sorted(wanted)
    ]


def hints_file(wanted: dict[str, dict[str, str]]) -> str:
    """parkweb_hints.conf for `wanted`."""
    lines = [HINTS_FILE_HEADER]
    for section in hints_sections(wanted):
        lines.append(f"[{section.name}]")
        lines += [f"{key} => {value}" for key, value in section.options]
        lines.append("")
    return "\n".join(lines)


async def hints_of(ami: AmiClient, context: str) -> dict[str, str]:
    """The hints a context holds now: {extension: hint}."""
    return {
        str(event["Extension"]): str(event.get("Application", ""))
        for event in await actions.show_dialplan(ami, context) or ()
        if event.get("Context") == context and event.get("Priority") == "hint"
    }


async def sync_hints(
    ami: AmiClient, wanted: dict[str, dict[str, str]], known: Iterable[str]
) -> list[str]:
    """Make the live dialplan hold exactly `wanted` in parkweb's hints contexts (those
    wanted, and those `known` from before, which may hold hints no longer wanted).
    Returns what changed, one line each."""
    changes = []
    for context in sorted(set(wanted) | set(known)):
        have = await hints_of(ami, context)
        want = wanted.get(context, {})
        for extension, hint in sorted(want.items()):
            if have.get(extension) != hint:
                await actions.hint_add(ami, context, extension, hint)
                changes.append(f"+ {extension}@{context} {hint}")
        for extension in sorted(set(have) - set(want)):
            await actions.hint_remove(ami, context, extension)
            changes.append(f"- {extension}@{context}")
    return changes

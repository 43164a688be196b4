"""What Asterisk's dialplan really holds, beside what res_parking makes.

A lot's park extension and spaces are registered by res_parking in the lot's context when
the config loads; an extension already there that something else registered (a static
`exten =>` of extensions.conf, say) makes Asterisk refuse the whole reload. Reading the
live dialplan (`ShowDialPlan`) tells parkweb of such extensions before it writes a lot.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import actions
from .ami import AmiClient

PARKING_REGISTRAR = "res_parking"


async def foreign_extensions(ami: AmiClient, contexts: Iterable[str]) -> dict[str, set[str]]:
    """{context: extensions in it that res_parking did not make}, from the live dialplan.
    A context Asterisk does not have holds none."""
    found: dict[str, set[str]] = {}
    for context in sorted(set(contexts)):
        found[context] = {
            str(event["Extension"])
            for event in await actions.show_dialplan(ami, context) or ()
            if event.get("Event") == "ListDialplan"
            and event.get("Context") == context
            and "Extension" in event
            and not str(event.get("Registrar", "")).startswith(PARKING_REGISTRAR)
        }
    return found

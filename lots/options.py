"""A parking lot's options, listed once: what each field of a ParkingLot is to people (its
group on the forms) and to Asterisk (the res_parking.conf option it sets, and how).

The forms and the admin group fields by `GROUPS`; the API's lot fields, config generation
and the selectors that feed it read `OPTIONS`. The order is res_parking.conf's, which
keeps each group's fields in the order people fill them in.
"""

from __future__ import annotations

from dataclasses import dataclass

BASICS = "basics"
COMEBACK = "comeback"
ALERTS = "alerts"
ADVANCED = "advanced"


@dataclass(frozen=True)
class Option:
    field: str  # the ParkingLot field
    group: str  # BASICS, COMEBACK or ADVANCED
    key: str  # the res_parking.conf option it sets
    kind: str = "text"  # text, number, yes_no, context (a DialplanContext), space range
    omit_empty: bool = False  # left out of the file when empty (Asterisk's default applies)


# In res_parking.conf's order (see confgen.lot_options).
OPTIONS: tuple[Option, ...] = (
    Option("context", BASICS, "context", "context"),
    Option("parkext", BASICS, "parkext", omit_empty=True),
    Option("parkext_exclusive", BASICS, "parkext_exclusive", "yes_no"),
    Option("parkpos_start", BASICS, "parkpos", "range"),
    Option("parkpos_end", BASICS, "parkpos", "range"),
    Option("parkinghints", ADVANCED, "parkinghints", "yes_no"),
    Option("parkingtime", BASICS, "parkingtime", "number"),
    Option("parkedmusicclass", ADVANCED, "parkedmusicclass", omit_empty=True),
    Option("comebacktoorigin", COMEBACK, "comebacktoorigin", "yes_no"),
    Option("comebackdialtime", COMEBACK, "comebackdialtime", "number"),
    Option("comebackcontext", COMEBACK, "comebackcontext", "context", omit_empty=True),
    Option("courtesytone", ADVANCED, "courtesytone", omit_empty=True),
    Option("parkedplay", ADVANCED, "parkedplay"),
    Option("parkedcalltransfers", ADVANCED, "parkedcalltransfers"),
    Option("parkedcallreparking", ADVANCED, "parkedcallreparking"),
    Option("parkedcallhangup", ADVANCED, "parkedcallhangup"),
    Option("parkedcallrecording", ADVANCED, "parkedcallrecording"),
    Option("findslot", BASICS, "findslot"),
)

# parkweb's timeout chain and reminders (lots.asterisk.comeback): the lot's own fields,
# not res_parking options. They make the generated dialplan, and with the chain on, the
# comeback options res_parking gets. `fallback_context` goes by name, like a context.
CHAIN: tuple[str, ...] = (
    "timeout_policy",
    "comeback_ring_parker",
    "comeback_cid_prefix",
    "comeback_alert_info",
    "comeback_announcement",
    "fallback",
    "fallback_context",
    "fallback_extension",
    "repark_limit",
    "reminder_seconds",
    "reminder_announcement",
)
CHAIN_PLAIN = tuple(field for field in CHAIN if field != "fallback_context")
# Alerts (lots.services.alerts): the lot's own fields too.
ALERT_FIELDS: tuple[str, ...] = ("alert_free_spaces", "alert_wait_seconds")

# The fields that are the lot's own and not res_parking options, by group.
_OWN = {
    BASICS: (["name", "slug", "server"], ["enabled"]),
    COMEBACK: ([], list(CHAIN)),
    ALERTS: ([], list(ALERT_FIELDS)),
}


def fields_of(group: str) -> list[str]:
    """The form's fields of one group, in order."""
    before, after = _OWN.get(group, ([], []))
    return [*before, *(o.field for o in OPTIONS if o.group == group), *after]


GROUPS = {group: fields_of(group) for group in (BASICS, COMEBACK, ALERTS, ADVANCED)}
# Options whose value goes into the file as it is (not a context, which goes by name).
PLAIN = tuple(o.field for o in OPTIONS if o.kind != "context")

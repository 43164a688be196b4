"""Asterisk's rules for parking lots, as pure functions.

Everything a lot or context can hold is checked here before it is saved, so that nothing
Asterisk would refuse (or, worse, accept and break other lots with) ever reaches a config
file. Every check returns `Violation`s naming the field and the rule; callers turn them
into form, admin or API errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Option values Asterisk accepts (res_parking.c); anything else fails the whole file.
FEATURE_PARTIES = ("no", "caller", "callee", "both")
FINDSLOT_CHOICES = ("first", "next")

# Bounds chosen for sanity; Asterisk itself accepts any unsigned integer.
MAX_SPACE_NUMBER = 99_999_999
PARKINGTIME_MAX = 86_400
COMEBACKDIALTIME_MIN = 1
COMEBACKDIALTIME_MAX = 3_600
COMEBACKDIALTIME_DEFAULT = 30  # Asterisk's own

EXTENSION_RE = re.compile(r"^[0-9*#]{1,20}\Z")
CONTEXT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
MOH_CLASS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}\Z")
# A sound is a file name relative to Asterisk's sounds directory, without extension:
# "beep", "custom/ding". No absolute paths, no "..", nothing else.
SOUND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9_-]*){0,3}\Z")
SOUND_MAX_LENGTH = 120

# Context names no tenant may own on any server: Asterisk's own config sections and
# dialplan contexts res_parking generates or falls back to, and the context parkweb
# confines the built-in `default` lot to.
NEUTRAL_DEFAULT_CONTEXT = "parkweb-default-lot"
# Contexts parkweb makes itself (busy-lamp hints, ...) are named with this prefix: no
# tenant may own one.
PARKWEB_PREFIX = "parkweb-"
RESERVED_CONTEXTS = frozenset(
    {"general", "globals", "park-dial", "default", NEUTRAL_DEFAULT_CONTEXT}
)


# What happens when a call's parking time runs out (ParkingLot.timeout_policy, fallback).
TIMEOUT_ASTERISK = "asterisk"
TIMEOUT_CHAIN = "chain"
FALLBACK_HANGUP = "hangup"
FALLBACK_DESTINATION = "destination"
FALLBACK_REPARK = "repark"
REPARK_LIMIT_MAX = 5
REMINDER_MIN, REMINDER_MAX = 5, 3600
# A caller ID prefix and an Alert-Info value end up in dialplan application arguments:
# nothing that separates arguments (',', '|'), ends one (')'), starts a variable ('$'),
# quotes, or starts a comment in extensions.conf (';').
CID_PREFIX_RE = re.compile(r"^[A-Za-z0-9 #*+.:_-]{0,8}\Z")
ALERT_INFO_RE = re.compile(r"^[A-Za-z0-9<>:/._=@+-]{0,100}\Z")
DESTINATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9*#+]{0,39}\Z")


# Said alike by every door (pages, API, admin) when a lot names what is not the tenant's.
CONTEXT_NOT_OWNED = "Choose a context that this tenant owns on the lot's server."
SERVER_NOT_OFFERED = "Choose a server where this tenant has a context."


@dataclass(frozen=True)
class Violation:
    field: str
    rule: str
    message: str


@dataclass(frozen=True)
class LotExtensions:
    """What a lot generates in the dialplan: enough to find collisions."""

    lot_id: int | None
    tenant_id: int | None
    label: str
    context_key: str
    parkext: str
    exclusive: bool
    start: int
    end: int

    def has_space(self, extension: str) -> bool:
        return (
            extension.isdigit()
            and str(int(extension)) == extension
            and (self.start <= int(extension) <= self.end)
        )


def check_parkpos(start: int | None, end: int | None, max_spaces: int) -> list[Violation]:
    """Spaces are integers with 0 < start <= end, at most `max_spaces` of them."""
    if start is None or end is None:
        return []  # the required-field check reports these
    if start < 1:
        return [
            Violation("parkpos_start", "parkpos_positive", "The first space must be 1 or more.")
        ]
    if end > MAX_SPACE_NUMBER:
        return [
            Violation(
                "parkpos_end", "parkpos_max", f"The last space must be at most {MAX_SPACE_NUMBER}."
            )
        ]
    if start > end:
        return [
            Violation(
                "parkpos_end",
                "parkpos_order",
                f"The last space ({end}) must not be lower than the first ({start}).",
            )
        ]
    if end - start + 1 > max_spaces:
        return [
            Violation(
                "parkpos_end",
                "parkpos_count",
                f"A lot may have at most {max_spaces} spaces; {start}-{end} has {end - start + 1}.",
            )
        ]
    return []


def check_parkext(value: str) -> list[Violation]:
    """A park extension is 1-20 of digits, '*' and '#': no dialplan pattern characters."""
    if value and not EXTENSION_RE.fullmatch(value):
        return [
            Violation(
                "parkext",
                "extension_format",
                "Use 1-20 characters from 0-9, '*' and '#' (no patterns or other characters).",
            )
        ]
    return []


def check_context_name(value: str, reserved: Iterable[str] = ()) -> list[Violation]:
    """Context names are 1-63 safe characters and not reserved by Asterisk or the server."""
    if not CONTEXT_RE.fullmatch(value):
        return [
            Violation(
                "name",
                "context_format",
                "Use 1-63 characters: letters, digits, '_' or '-', "
                "starting with a letter or digit.",
            )
        ]
    taken = {name.lower() for name in RESERVED_CONTEXTS.union(reserved)}
    if value.lower() in taken or value.lower().startswith(PARKWEB_PREFIX):
        return [Violation("name", "context_reserved", f"'{value}' is reserved on this server.")]
    return []


def check_moh_class(field: str, value: str) -> list[Violation]:
    if value and not MOH_CLASS_RE.fullmatch(value):
        return [
            Violation(
                field,
                "moh_class_format",
                "Use 1-80 characters: letters, digits, '_' or '-', "
                "starting with a letter or digit.",
            )
        ]
    return []


def check_sound(field: str, value: str) -> list[Violation]:
    if value and (len(value) > SOUND_MAX_LENGTH or not SOUND_RE.fullmatch(value)):
        return [
            Violation(
                field,
                "sound_format",
                "Name a sound file without extension, like 'beep' or 'custom/ding': letters, "
                "digits, '_', '-' and up to three '/' folders; no absolute paths or '..'.",
            )
        ]
    return []


def check_timeout_policy(
    *,
    policy: str,
    cid_prefix: str,
    alert_info: str,
    fallback: str,
    fallback_extension: str,
    has_fallback_context: bool,
    repark_limit: int | None,
    reminder_seconds: int | None,
) -> list[Violation]:
    """The timeout chain's own fields (the sounds go through `check_sound`)."""
    found = check_choice("timeout_policy", policy, (TIMEOUT_ASTERISK, TIMEOUT_CHAIN))
    found += check_choice(
        "fallback", fallback, (FALLBACK_HANGUP, FALLBACK_DESTINATION, FALLBACK_REPARK)
    )
    if not CID_PREFIX_RE.fullmatch(cid_prefix or ""):
        found.append(
            Violation(
                "comeback_cid_prefix",
                "cid_prefix_format",
                "Use at most 8 characters: letters, digits, spaces and # * + . : _ -",
            )
        )
    if not ALERT_INFO_RE.fullmatch(alert_info or ""):
        found.append(
            Violation(
                "comeback_alert_info",
                "alert_info_format",
                "Use at most 100 characters: letters, digits and < > : / . _ = @ + - "
                "(no spaces, commas or ';'), like <urn:alert:service:call-waiting>.",
            )
        )
    if fallback_extension and not DESTINATION_RE.fullmatch(fallback_extension):
        found.append(
            Violation(
                "fallback_extension",
                "extension_format",
                "Use 1-40 characters: letters, digits, '*', '#' or '+', starting with a "
                "letter or digit (no patterns).",
            )
        )
    if policy == TIMEOUT_CHAIN and fallback == FALLBACK_DESTINATION:
        if not has_fallback_context:
            found.append(
                Violation(
                    "fallback_context",
                    "fallback_required",
                    "Choose the context of the extension that unanswered calls go to.",
                )
            )
        if not fallback_extension:
            found.append(
                Violation(
                    "fallback_extension",
                    "fallback_required",
                    "Give the extension that unanswered calls go to.",
                )
            )
    if repark_limit is not None:
        found += check_range("repark_limit", repark_limit, 1, REPARK_LIMIT_MAX)
    if reminder_seconds:
        found += check_range("reminder_seconds", reminder_seconds, REMINDER_MIN, REMINDER_MAX)
    return found


ALERT_WAIT_MIN, ALERT_WAIT_MAX = 5, 86_400


def check_alerts(free_spaces: int | None, spaces: int, wait_seconds: int | None) -> list[Violation]:
    """An "almost full" count below the lot's size, and a waiting time a person notices."""
    found = []
    if free_spaces and free_spaces >= spaces:
        found.append(
            Violation(
                "alert_free_spaces",
                "alert_free_spaces_range",
                f"Must be less than the lot's {spaces} spaces (0: no warning).",
            )
        )
    if wait_seconds:
        found += check_range("alert_wait_seconds", wait_seconds, ALERT_WAIT_MIN, ALERT_WAIT_MAX)
    return found


def check_range(field: str, value: int | None, low: int, high: int) -> list[Violation]:
    if value is not None and not low <= value <= high:
        return [Violation(field, "out_of_range", f"Must be between {low} and {high}.")]
    return []


def check_choice(field: str, value: str, allowed: Iterable[str]) -> list[Violation]:
    allowed = tuple(allowed)
    if value not in allowed:
        return [Violation(field, "choice", f"Must be one of: {', '.join(allowed)}.")]
    return []


def _describe(other: LotExtensions, candidate: LotExtensions) -> str:
    # Never reveal another tenant's lot: its name, range or even existence in detail.
    if other.tenant_id is not None and other.tenant_id == candidate.tenant_id:
        return f"lot '{other.label}' ({other.start}-{other.end})"
    return "a lot of another tenant"


def _overlap(a: LotExtensions, b: LotExtensions) -> tuple[int, int] | None:
    low, high = max(a.start, b.start), min(a.end, b.end)
    return (low, high) if low <= high else None


def find_extension_conflicts(
    candidate: LotExtensions, others: Iterable[LotExtensions]
) -> list[Violation]:
    """Collisions of the candidate's extensions with those of other lots in its context.

    Asterisk refuses a reload whose lots register the same extension twice in a context,
    and then drops every lot extension until a later good reload: so any collision (a space
    in two lots, a parkext on another lot's space, a parkext shared with an exclusive lot)
    must be refused here. Touching ranges and a parkext shared by non-exclusive lots are fine.
    """
    violations: list[Violation] = []
    for other in others:
        if other.context_key != candidate.context_key:
            continue
        if candidate.lot_id is not None and other.lot_id == candidate.lot_id:
            continue
        where = _describe(other, candidate)
        overlap = _overlap(candidate, other)
        if overlap:
            low, high = overlap
            spaces = str(low) if low == high else f"{low}-{high}"
            violations.append(
                Violation(
                    "parkpos_start",
                    "spaces_overlap",
                    f"Spaces {spaces} are already used by {where} in this context.",
                )
            )
        if candidate.parkext and other.has_space(candidate.parkext):
            violations.append(
                Violation(
                    "parkext",
                    "parkext_on_space",
                    f"Extension {candidate.parkext} is a parking space of {where} in this context.",
                )
            )
        if other.parkext and candidate.has_space(other.parkext):
            violations.append(
                Violation(
                    "parkpos_start",
                    "space_on_parkext",
                    f"Space {other.parkext} is the park extension of {where} in this context.",
                )
            )
        if (
            candidate.parkext
            and candidate.parkext == other.parkext
            and (candidate.exclusive or other.exclusive)
        ):
            violations.append(
                Violation(
                    "parkext",
                    "parkext_exclusive",
                    f"Extension {candidate.parkext} is also the park extension of {where}; "
                    "lots may share a park extension only when neither is exclusive.",
                )
            )
    return violations


# -- a tenant's phones ----------------------------------------------------------------------

PHONE_EXTENSION_RE = re.compile(r"^(0|[1-9][0-9]{0,19})\Z")
_RANGE_RE = re.compile(r"^(0|[1-9][0-9]{0,19})(?:-(0|[1-9][0-9]{0,19}))?\Z")
MAX_RANGES = 20


def parse_extension_ranges(text: str) -> list[tuple[int, int]]:
    """'201-249, 300' -> [(201, 249), (300, 300)]; parts that do not parse are left out
    (`check_extension_ranges` reports them)."""
    ranges = []
    for part in (text or "").split(","):
        match = _RANGE_RE.fullmatch(part.strip())
        if match:
            low = int(match[1])
            high = int(match[2]) if match[2] is not None else low
            if low <= high:
                ranges.append((low, high))
    return ranges


def check_extension_ranges(field: str, text: str) -> list[Violation]:
    """Numbers and ranges of numbers, comma-separated, like '201-249, 300'."""
    parts = [part.strip() for part in (text or "").split(",") if part.strip()]
    message = (
        "Give extensions as numbers and ranges separated by commas, like '201-249, 300' "
        f"(at most {MAX_RANGES}; no leading zeros, each range low to high)."
    )
    if len(parts) > MAX_RANGES:
        return [Violation(field, "extension_ranges", message)]
    for part in parts:
        match = _RANGE_RE.fullmatch(part)
        if not match or (match[2] is not None and int(match[1]) > int(match[2])):
            return [Violation(field, "extension_ranges", message)]
    return []


def check_phone_extension(
    field: str, extension: str, ranges: list[tuple[int, int]]
) -> list[Violation]:
    """An extension of digits (no leading zero), within the ranges when there are any."""
    if not PHONE_EXTENSION_RE.fullmatch(extension or ""):
        return [
            Violation(
                field,
                "extension_format",
                "Give an extension of 1-20 digits, like 201 (not a channel, a pattern or "
                "a context).",
            )
        ]
    if ranges and not any(low <= int(extension) <= high for low, high in ranges):
        listed = ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)
        return [
            Violation(
                field,
                "extension_not_tenants",
                f"Extension {extension} is not one of your phones ({listed}).",
            )
        ]
    return []


def find_dialplan_collisions(
    candidate: LotExtensions, context_name: str, taken: Iterable[str]
) -> list[Violation]:
    """The lot's park extension or spaces that the PBX's dialplan already has in the lot's
    context (extensions that something other than res_parking made): Asterisk would refuse
    the reload that adds them."""
    violations = []
    taken = set(taken)
    if candidate.parkext and candidate.parkext in taken:
        violations.append(
            Violation(
                "parkext",
                "extension_in_dialplan",
                f"Extension {candidate.parkext} already exists in context {context_name} on "
                "the PBX (not made by parkweb): choose another, or ask your operator to "
                "remove it there.",
            )
        )
    spaces = sorted(int(e) for e in taken if candidate.has_space(e))
    if spaces:
        listed = ", ".join(str(n) for n in spaces[:5]) + (" ..." if len(spaces) > 5 else "")
        violations.append(
            Violation(
                "parkpos_start",
                "extension_in_dialplan",
                f"Extension{'s' if len(spaces) > 1 else ''} {listed} already exist"
                f"{'' if len(spaces) > 1 else 's'} in context {context_name} on the PBX (not "
                "made by parkweb): choose other spaces, or ask your operator to remove "
                f"{'them' if len(spaces) > 1 else 'it'} there.",
            )
        )
    return violations

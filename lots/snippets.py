"""The dialplan that connects a lot to a tenant's phones: shown on the lot's page and by
the API, written to be pasted as it is (the phone tests paste it into a real Asterisk).

Asterisk tries a context's own extensions before its includes, and the includes in
order. So the phones' context holds includes only: parkweb's busy-lamp hints first (they
survive deploys), then the lot's context (park extension and spaces), then the phones
themselves in a context of their own (named under parkweb's reserved prefix, so no
tenant's context can be it), where a catch-all pattern can no longer swallow the park
extension or the spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from .asterisk.hints import hints_context
from .models import ParkingLot, TenantPhones
from .rules import PARKWEB_PREFIX

PLACEHOLDER = "your-phones"


def _range(lot: ParkingLot) -> str:
    if lot.parkpos_start == lot.parkpos_end:
        return str(lot.parkpos_start)
    return f"{lot.parkpos_start}-{lot.parkpos_end}"


@dataclass(frozen=True)
class Reach:
    """How calls get into a lot and out of it, in words for its page and the API."""

    spaces_dialable: bool  # Asterisk made extensions for the park extension and spaces
    park_with: str
    pick_up_with: str


def lot_reach(lot: ParkingLot) -> Reach:
    """res_parking registers the park extension and one extension per space in the lot's
    context only when the lot has a park extension (seen on Asterisk 22: a lot without one
    is listed by `parking show`, and its spaces are in no context at all)."""
    name, spaces, context = lot.asterisk_name, _range(lot), lot.context.name
    if lot.parkext:
        return Reach(
            True,
            f"dial {lot.parkext} (in {context}), or one-touch parking during a call",
            f"dial the space, {spaces} (in {context})",
        )
    return Reach(
        False,
        f"only Park({name}) in your dialplan: there is no extension to dial",
        f"only ParkedCall({name},<space>) in your dialplan, or Retrieve on the board: "
        f"dialling {spaces} reaches nothing",
    )


def lot_dialplan(lot: ParkingLot, phones: TenantPhones | None) -> str:
    """extensions.conf lines for `lot`, in the tenant's phones context when staff have
    set one on the lot's server, else in a placeholder context to rename."""
    name, spaces, context = lot.asterisk_name, _range(lot), lot.context.name
    phones_context = phones.context.name if phones is not None else PLACEHOLDER
    # Under parkweb's reserved prefix: no tenant can own a context of that name.
    dial_context = f"{PARKWEB_PREFIX}dial-{phones_context}"
    parkcall = lot.server.parkcall
    lines = [
        f'; parkweb: phones and lot "{lot.name}" ({name}) on {lot.server.name}.',
        "; Paste into your dialplan (extensions.conf, or a file it includes), then run",
        '; "dialplan reload".',
    ]
    if phones is None:
        lines.append(
            f"; Rename [{PLACEHOLDER}] to the context your phones' calls start in (ask your"
            " operator to set your tenant's phones in parkweb, and this says it)."
        )
    lines += [
        "",
        f"[{phones_context}]",
        "; Includes only: Asterisk tries a context's own extensions before its includes, so",
        f"; a pattern here (like _X.) would catch {lot.parkext or 'the park extension'} and "
        f"{spaces}. Your phones are",
        f"; dialled from [{dial_context}], below.",
    ]
    if lot.parkinghints:
        lines.append(
            f"include => {hints_context(context)}"
            f"    ; busy lamps: subscribe to {spaces}; they stay lit across deploys"
        )
    if lot.parkext:
        lines.append(
            f"include => {context}    ; {lot.parkext} parks the call, {spaces} pick a parked "
            "call up"
        )
    else:
        lines += [
            f"include => {context}",
            "; This lot has no park extension, so Asterisk makes no extensions for it at all:",
            f"; dialling {spaces} does nothing. Calls reach it with Park({name}) and leave it",
            f"; with ParkedCall({name},<space>); for example, in [{dial_context}]:",
            f";   exten => {lot.parkpos_start},1,ParkedCall({name},{lot.parkpos_start})",
        ]
    lines += [f"include => {dial_context}", "", f"[{dial_context}]"]
    if parkcall and lot.parkext:
        lines.append(
            f"; Your phones, with one-touch parking: during a call, {parkcall} parks the other "
            "party here."
        )
    elif parkcall:
        lines.append(
            f"; One-touch parking ({parkcall}) needs the lot to have a park extension: this "
            "one has none."
        )
    lines += [
        "; Endpoints named after their numbers (201 rings PJSIP/201). If yours are named",
        "; otherwise, write one extension per phone instead, like",
        f";   exten => 201,1,Set(__PARKINGLOT={name})",
        ";    same => n,Dial(PJSIP/alice,30,kK)",
        f"exten => _X.,1,Set(__PARKINGLOT={name})",
        " same => n,Dial(PJSIP/${EXTEN},30,kK)",
        " same => n,Hangup()",
    ]
    return "\n".join(lines) + "\n"

"""Whole-object validation of servers, contexts and lots, shared by every save path.

Model `clean()` runs the checks of an object's own values (`validate_*`), which need no
lock. The checks against other objects (`lot_rule_violations`) need the server's lock and
are run by the services, which take it (`lots.locks`). The rules themselves live in
`rules.py`; this module gathers the facts they need and turns violations into errors.
"""

from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.db.models.functions import Coalesce

from . import rules
from .models import AsteriskServer, DialplanContext, ParkingLot, TenantPhones


def raise_violations(violations: Iterable[rules.Violation]) -> None:
    by_field: dict[str, list[ValidationError]] = defaultdict(list)
    for violation in violations:
        by_field[violation.field].append(ValidationError(violation.message, code=violation.rule))
    if by_field:
        raise ValidationError(dict(by_field))


def validate_server(server: AsteriskServer) -> None:
    violations = []
    for name in server.reserved_context_names:
        if not rules.CONTEXT_RE.match(name):
            violations.append(
                rules.Violation(
                    "reserved_contexts", "context_format", f"'{name[:70]}' is not a context name."
                )
            )
    lot = server.default_lot
    if lot is not None and server.pk is not None and lot.server_id != server.pk:
        violations.append(
            rules.Violation("default_lot", "default_lot_server", "Choose a lot of this server.")
        )
    raise_violations(violations)


def validate_context(context: DialplanContext) -> None:
    context.clean_immutable_fields()
    reserved = context.server.reserved_context_names if context.server_id else []
    raise_violations(rules.check_context_name(context.name, reserved))


def validate_phones(phones: TenantPhones) -> None:
    violations = rules.check_extension_ranges("extensions", phones.extensions)
    context = phones.context if phones.context_id else None
    if context is not None and (
        context.tenant_id != phones.tenant_id or context.server_id != phones.server_id
    ):
        violations.append(
            rules.Violation(
                "context",
                "context_not_owned",
                "Choose a context that this tenant owns on this server.",
            )
        )
    raise_violations(violations)


def lot_extensions(lot: ParkingLot) -> rules.LotExtensions:
    return rules.LotExtensions(
        lot_id=lot.pk,
        tenant_id=lot.tenant_id,
        label=lot.name,
        context_key=str(lot.context_id),
        parkext=lot.parkext,
        exclusive=lot.parkext_exclusive,
        start=lot.parkpos_start,
        end=lot.parkpos_end,
    )


def _owned_context_violations(lot: ParkingLot) -> list[rules.Violation]:
    violations = []
    for field in ("context", "comebackcontext", "fallback_context"):
        context = getattr(lot, field)
        if context is None:
            continue
        if context.tenant_id != lot.tenant_id or context.server_id != lot.server_id:
            violations.append(
                rules.Violation(
                    field,
                    "context_not_owned",
                    rules.CONTEXT_NOT_OWNED,
                )
            )
    chain = lot.timeout_policy == rules.TIMEOUT_CHAIN
    if not chain and not lot.comebacktoorigin and lot.comebackcontext_id is None:
        violations.append(
            rules.Violation(
                "comebackcontext",
                "comebackcontext_required",
                "Choose where timed-out calls go when they do not come back to origin.",
            )
        )
    return violations


def lot_field_violations(lot: ParkingLot) -> list[rules.Violation]:
    """Checks of the lot's own values, needing no other lot."""
    return [
        *rules.check_parkext(lot.parkext),
        *rules.check_parkpos(
            lot.parkpos_start, lot.parkpos_end, settings.PARKWEB_MAX_SPACES_PER_LOT
        ),
        *rules.check_range("parkingtime", lot.parkingtime, 0, rules.PARKINGTIME_MAX),
        *rules.check_range(
            "comebackdialtime",
            lot.comebackdialtime,
            rules.COMEBACKDIALTIME_MIN,
            rules.COMEBACKDIALTIME_MAX,
        ),
        *rules.check_moh_class("parkedmusicclass", lot.parkedmusicclass),
        *rules.check_sound("courtesytone", lot.courtesytone),
        *rules.check_alerts(
            lot.alert_free_spaces,
            (lot.parkpos_end or 0) - (lot.parkpos_start or 0) + 1,
            lot.alert_wait_seconds,
        ),
        *rules.check_sound("comeback_announcement", lot.comeback_announcement),
        *rules.check_sound("reminder_announcement", lot.reminder_announcement),
        *rules.check_timeout_policy(
            policy=lot.timeout_policy,
            cid_prefix=lot.comeback_cid_prefix,
            alert_info=lot.comeback_alert_info,
            fallback=lot.fallback,
            fallback_extension=lot.fallback_extension,
            has_fallback_context=lot.fallback_context_id is not None,
            repark_limit=lot.repark_limit,
            reminder_seconds=lot.reminder_seconds,
        ),
        *rules.check_choice("findslot", lot.findslot, rules.FINDSLOT_CHOICES),
        *[
            violation
            for field in (
                "parkedplay",
                "parkedcalltransfers",
                "parkedcallreparking",
                "parkedcallhangup",
                "parkedcallrecording",
            )
            for violation in rules.check_choice(field, getattr(lot, field), rules.FEATURE_PARTIES)
        ],
    ]


def lot_conflict_violations(lot: ParkingLot) -> list[rules.Violation]:
    """Collisions with the other enabled lots of the lot's context."""
    if not lot.enabled or lot.context_id is None:
        return []
    others = (
        ParkingLot.objects.filter(context_id=lot.context_id, enabled=True)
        .exclude(pk=lot.pk)
        .only(
            "pk",
            "tenant_id",
            "name",
            "context_id",
            "parkext",
            "parkext_exclusive",
            "parkpos_start",
            "parkpos_end",
        )
    )
    return rules.find_extension_conflicts(lot_extensions(lot), [lot_extensions(o) for o in others])


def lot_budget_violations(lot: ParkingLot) -> list[rules.Violation]:
    """A server holds at most its lot budget: past it, a reload of res_parking takes over a
    second and stalls call setup on the whole PBX."""
    arriving = lot.pk is None or (
        ParkingLot.objects.filter(pk=lot.pk).exclude(server_id=lot.server_id).exists()
    )
    if not arriving:
        return []
    budget = lot.server.lot_budget or settings.PARKWEB_MAX_LOTS_PER_SERVER
    count = ParkingLot.objects.filter(server_id=lot.server_id).count()
    if count < budget:
        return []
    with_room = (
        AsteriskServer.objects.exclude(pk=lot.server_id)
        .annotate(lot_count=Count("lots"))
        .filter(lot_count__lt=Coalesce("lot_budget", settings.PARKWEB_MAX_LOTS_PER_SERVER))
        .values_list("name", flat=True)
        .first()
    )
    advice = (
        f"Choose another server, such as {with_room}."
        if with_room
        else ("Ask your operator to add another Asterisk server.")
    )
    return [
        rules.Violation(
            "server",
            "server_lot_budget",
            f"Server {lot.server.name} already holds {count} lots, its budget: beyond that a "
            f"reload of its parking config takes over a second and stalls calls. {advice}",
        )
    ]


def validate_lot(lot: ParkingLot) -> None:
    """The lot's own values (Model.clean): no other lot, no lock."""
    lot.clean_immutable_fields()
    raise_violations(lot_field_violations(lot))


def lot_rule_violations(lot: ParkingLot) -> list[rules.Violation]:
    """The lot against what else the server holds: contexts of its own tenant, no
    collision with other lots, the server's lot budget. Run with the server locked."""
    if lot.server_id is None or lot.tenant_id is None or lot.context_id is None:
        return []
    violations = _owned_context_violations(lot)
    if not violations:
        violations += lot_conflict_violations(lot)
        violations += lot_budget_violations(lot)
    return violations

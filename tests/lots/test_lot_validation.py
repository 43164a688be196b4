"""Every save path refuses what Asterisk would refuse, with errors naming field and rule."""

import pytest

from lots import services
from lots.models import ParkingLot
from parkweb.errors import Invalid
from tests.factories import make_context, make_lot, make_server


def error_codes(exc: Invalid) -> dict[str, list[str]]:
    return exc.codes


def test_valid_lot_is_saved_with_asterisk_defaults(acme, acme_ctx):
    lot = make_lot(acme, acme_ctx, "main", parkext="700")
    lot.refresh_from_db()
    assert (lot.parkpos_start, lot.parkpos_end, lot.parkingtime) == (701, 750, 45)
    assert (lot.comebacktoorigin, lot.comebackdialtime, lot.findslot) == (True, 30, "first")
    assert (lot.parkedplay, lot.parkedcalltransfers) == ("caller", "no")
    assert lot.asterisk_name == "acme_main"


def test_overlapping_range_in_same_context_is_rejected_naming_the_lot(acme, acme_ctx):
    make_lot(acme, acme_ctx, "main", name="Reception", parkpos_start=701, parkpos_end=709)
    with pytest.raises(Invalid) as caught:
        make_lot(acme, acme_ctx, "sales", parkpos_start=705, parkpos_end=712)
    assert error_codes(caught.value) == {"parkpos_start": ["spaces_overlap"]}
    assert "lot 'Reception' (701-709)" in str(caught.value)
    assert not ParkingLot.objects.filter(slug="sales").exists()


def test_same_range_in_other_tenants_context_is_allowed(acme, globex, acme_ctx, globex_ctx):
    make_lot(acme, acme_ctx, "main", parkext="700", parkpos_start=701, parkpos_end=709)
    make_lot(globex, globex_ctx, "main", parkext="700", parkpos_start=701, parkpos_end=709)
    assert ParkingLot.objects.count() == 2


def test_disabled_lot_does_not_block_but_enabling_it_is_checked(acme, acme_ctx):
    make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)
    spare = make_lot(acme, acme_ctx, "spare", parkpos_start=701, parkpos_end=709, enabled=False)
    with pytest.raises(Invalid) as caught:
        services.lot_update(spare, enabled=True)
    assert "spaces_overlap" in error_codes(caught.value)["parkpos_start"]


def test_update_does_not_conflict_with_its_own_previous_values(acme, acme_ctx):
    lot = make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=709)
    services.lot_update(lot, parkpos_end=715)
    lot.refresh_from_db()
    assert lot.parkpos_end == 715


def test_context_of_another_tenant_is_refused(acme, globex_ctx):
    with pytest.raises(Invalid) as caught:
        make_lot(acme, globex_ctx, "main")
    assert error_codes(caught.value) == {"context": ["context_not_owned"]}


def test_comeback_context_of_another_tenant_is_refused(acme, acme_ctx, globex_ctx):
    with pytest.raises(Invalid) as caught:
        make_lot(acme, acme_ctx, "main", comebacktoorigin=False, comebackcontext=globex_ctx)
    assert error_codes(caught.value) == {"comebackcontext": ["context_not_owned"]}


def test_context_on_another_server_is_refused(acme, acme_ctx):
    other = make_server("pbx2")
    with pytest.raises(Invalid) as caught:
        services.lot_create(tenant=acme, server=other, slug="main", name="Main", context=acme_ctx)
    assert error_codes(caught.value) == {"context": ["context_not_owned"]}


def test_comeback_context_required_when_not_coming_back_to_origin(acme, acme_ctx):
    with pytest.raises(Invalid) as caught:
        make_lot(acme, acme_ctx, "main", comebacktoorigin=False)
    assert error_codes(caught.value) == {"comebackcontext": ["comebackcontext_required"]}


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("parkext", "7XX", "extension_format"),
        ("parkext", "700\n[evil]", "extension_format"),
        ("parkedmusicclass", "default\n#exec /bin/sh", "moh_class_format"),
        ("courtesytone", "/etc/shadow", "sound_format"),
        ("parkingtime", 86_401, "out_of_range"),
        ("comebackdialtime", 0, "out_of_range"),
        ("findslot", "bogus", "invalid_choice"),
        ("parkedplay", "parked", "invalid_choice"),
        ("slug", "Main Lot", "slug_format"),
        ("slug", "main\n", "slug_format"),
    ],
)
def test_bad_values_are_refused_by_field_and_rule(acme, acme_ctx, field, value, code):
    with pytest.raises(Invalid) as caught:
        make_lot(
            acme,
            acme_ctx,
            "main" if field != "slug" else value,
            **({} if field == "slug" else {field: value}),
        )
    assert code in error_codes(caught.value)[field]


def test_parkpos_rules_report_on_the_fields(acme, acme_ctx, settings):
    settings.PARKWEB_MAX_SPACES_PER_LOT = 20
    with pytest.raises(Invalid) as caught:
        make_lot(acme, acme_ctx, "main", parkpos_start=701, parkpos_end=721)
    assert error_codes(caught.value) == {"parkpos_end": ["parkpos_count"]}


def test_slug_and_tenant_cannot_change(acme, globex, acme_ctx):
    lot = make_lot(acme, acme_ctx, "main")
    lot.slug = "renamed"
    with pytest.raises(Invalid) as caught:
        services.lot_save(lot)
    assert error_codes(caught.value) == {"slug": ["immutable"]}


def test_context_names_are_unique_per_server_ignoring_case(server, acme, globex):
    make_context(server, acme, "Shared")
    with pytest.raises(Invalid):
        make_context(server, globex, "shared")


def test_server_reserved_context_is_refused(acme):
    server = make_server("pbx9", reserved_contexts="from-internal, from-trunk")
    with pytest.raises(Invalid) as caught:
        make_context(server, acme, "from-trunk")
    assert error_codes(caught.value) == {"name": ["context_reserved"]}


def test_context_cannot_change_tenant(acme, globex, acme_ctx):
    acme_ctx.tenant = globex
    with pytest.raises(Invalid) as caught:
        services.context_save(acme_ctx)
    assert error_codes(caught.value) == {"tenant": ["immutable"]}

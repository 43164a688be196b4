"""Asterisk's own conflict and value rules, as pure functions."""

import pytest

from lots import rules


def lot(
    start, end, parkext="", exclusive=False, context="c1", lot_id=None, tenant_id=1, label="Other"
):
    return rules.LotExtensions(
        lot_id=lot_id,
        tenant_id=tenant_id,
        label=label,
        context_key=context,
        parkext=parkext,
        exclusive=exclusive,
        start=start,
        end=end,
    )


def conflicts(candidate, *others):
    return [(v.field, v.rule) for v in rules.find_extension_conflicts(candidate, others)]


def test_same_range_in_same_context_is_rejected():
    assert conflicts(lot(701, 709), lot(701, 709, lot_id=2)) == [
        ("parkpos_start", "spaces_overlap")
    ]


def test_overlap_by_one_space_is_rejected_and_names_the_space():
    violations = rules.find_extension_conflicts(lot(709, 720), [lot(701, 709, lot_id=2)])
    assert [v.rule for v in violations] == ["spaces_overlap"]
    assert "Spaces 709 " in violations[0].message
    assert "lot 'Other' (701-709)" in violations[0].message


def test_touching_ranges_are_allowed():
    assert conflicts(lot(710, 719), lot(701, 709, lot_id=2)) == []


def test_same_range_in_different_contexts_is_allowed():
    assert conflicts(lot(701, 709, context="c1"), lot(701, 709, context="c2", lot_id=2)) == []


def test_parkext_inside_another_lots_range_is_rejected():
    assert conflicts(lot(801, 809, parkext="705"), lot(701, 709, lot_id=2)) == [
        ("parkext", "parkext_on_space")
    ]


def test_range_covering_another_lots_parkext_is_rejected():
    assert conflicts(lot(790, 810), lot(701, 709, parkext="800", lot_id=2)) == [
        ("parkpos_start", "space_on_parkext")
    ]


def test_parkext_with_leading_zero_is_a_different_extension_than_the_space():
    assert conflicts(lot(801, 809, parkext="0705"), lot(701, 709, lot_id=2)) == []


def test_shared_parkext_allowed_when_neither_lot_is_exclusive():
    assert conflicts(lot(701, 709, parkext="700"), lot(710, 719, parkext="700", lot_id=2)) == []


@pytest.mark.parametrize("mine,theirs", [(True, False), (False, True), (True, True)])
def test_shared_parkext_rejected_when_either_lot_is_exclusive(mine, theirs):
    assert conflicts(
        lot(701, 709, parkext="700", exclusive=mine),
        lot(710, 719, parkext="700", exclusive=theirs, lot_id=2),
    ) == [("parkext", "parkext_exclusive")]


def test_a_lot_never_conflicts_with_itself():
    assert conflicts(lot(701, 709, lot_id=5), lot(701, 709, lot_id=5)) == []


def test_conflict_with_another_tenants_lot_reveals_nothing_about_it():
    violations = rules.find_extension_conflicts(
        lot(701, 709, tenant_id=1), [lot(705, 709, lot_id=2, tenant_id=2, label="Secret")]
    )
    assert violations and all("Secret" not in v.message for v in violations)
    assert all("705" not in v.message.replace("Spaces 705-709", "") for v in violations)
    assert "another tenant" in violations[0].message


@pytest.mark.parametrize(
    "start,end,rule",
    [
        (0, 10, "parkpos_positive"),
        (10, 9, "parkpos_order"),
        (1, 1000, "parkpos_count"),
        (1, rules.MAX_SPACE_NUMBER + 1, "parkpos_max"),
    ],
)
def test_bad_space_ranges_are_rejected(start, end, rule):
    assert [v.rule for v in rules.check_parkpos(start, end, max_spaces=500)] == [rule]


def test_single_space_lot_is_allowed():
    assert rules.check_parkpos(5, 5, max_spaces=500) == []


@pytest.mark.parametrize("value", ["700", "*72", "#700", "0"])
def test_plain_extensions_are_accepted(value):
    assert rules.check_parkext(value) == []


@pytest.mark.parametrize(
    "value", ["_7XX", "70[0-5]", "700!", "7.", "700\n[x]", "70 0", "a700", "7" * 21]
)
def test_pattern_and_other_characters_in_parkext_are_rejected(value):
    assert [v.rule for v in rules.check_parkext(value)] == ["extension_format"]


@pytest.mark.parametrize(
    "name",
    ["general", "park-dial", "Default", "GLOBALS", rules.NEUTRAL_DEFAULT_CONTEXT, "from-trunk"],
)
def test_reserved_context_names_are_rejected(name):
    assert [v.rule for v in rules.check_context_name(name, reserved=["from-trunk"])] == [
        "context_reserved"
    ]


@pytest.mark.parametrize("name", ["", "-x", "a b", "a;b", "a]b", "x" * 64, "ctx\n"])
def test_malformed_context_names_are_rejected(name):
    assert [v.rule for v in rules.check_context_name(name)] == ["context_format"]


@pytest.mark.parametrize("value", ["beep", "custom/ding", "a-b_c/d"])
def test_sound_names_are_accepted(value):
    assert rules.check_sound("courtesytone", value) == []


@pytest.mark.parametrize("value", ["/etc/passwd", "../x", "a/../b", "beep.wav", "a;b", "x/"])
def test_paths_and_odd_sound_names_are_rejected(value):
    assert [v.rule for v in rules.check_sound("courtesytone", value)] == ["sound_format"]


def test_times_are_bounded():
    assert rules.check_range("parkingtime", 86_400, 0, rules.PARKINGTIME_MAX) == []
    assert [v.rule for v in rules.check_range("parkingtime", 86_401, 0, 86_400)] == ["out_of_range"]

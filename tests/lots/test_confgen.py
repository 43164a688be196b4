"""Config generation: golden files, stability, the built-in default lot, the header hash."""

import os
from pathlib import Path

import pytest

from lots.asterisk import confgen, confparse
from lots.selectors import server_config, server_lots
from tests.factories import make_context, make_lot, make_server, make_tenant
from tests.lots.scenarios import guide_server, shared_server

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; UPDATE_GOLDEN=1 rewrites it"


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_guide_configurations_match_golden_files(db, variant):
    files = server_config(guide_server(variant))
    assert_golden(f"guide_{variant}.res_parking.conf", files["res_parking.conf"])
    assert_golden(f"guide_{variant}.features.conf", files["features.conf"])


def test_shared_server_matches_golden_file(db):
    files = server_config(shared_server())
    assert_golden("shared.res_parking.conf", files["res_parking.conf"])
    assert_golden("shared.features.conf", files["features.conf"])


def test_output_is_byte_stable_whatever_the_lot_order(db):
    server = shared_server()
    lots = list(server_lots(server))
    forward = confgen.render_res_parking(server, lots)
    assert confgen.render_res_parking(server, reversed(lots)) == forward
    assert confgen.render_res_parking(server, lots) == forward


def test_disabled_lots_and_other_servers_lots_are_not_rendered(db):
    server, other = make_server("pbx1"), make_server("pbx2")
    tenant = make_tenant("acme")
    make_lot(tenant, make_context(server, tenant, "acme-a"), "live")
    make_lot(tenant, make_context(server, tenant, "acme-b"), "off", enabled=False)
    make_lot(tenant, make_context(other, tenant, "acme-c"), "elsewhere")
    from lots.models import ParkingLot

    sections = confparse.parse(
        confgen.render_res_parking(
            server, ParkingLot.objects.select_related("tenant", "context", "comebackcontext")
        )
    ).as_dict()
    assert sorted(sections) == ["acme_live", "default", "general"]


def test_builtin_default_lot_is_confined_when_no_lot_stands_for_it(db):
    sections = confparse.parse(server_config(shared_server())["res_parking.conf"]).as_dict()
    assert dict(sections["default"])["context"] == "parkweb-default-lot"
    assert dict(sections["default"])["parkpos"] == "1-1"


def test_chosen_default_lot_is_rendered_once_as_default(db):
    sections = confparse.parse(server_config(guide_server("a"))["res_parking.conf"]).as_dict()
    assert sorted(sections) == ["default", "general"]
    assert dict(sections["default"])["parkext"] == "700"


def test_header_carries_the_hash_of_the_body(db):
    text = server_config(guide_server("a"))["res_parking.conf"]
    assert text.startswith(confgen.GENERATED_BY)
    claimed, actual = confgen.content_hash(text)
    assert claimed == actual and len(actual) == 64
    claimed, actual = confgen.content_hash(text.replace("701-709", "701-708"))
    assert claimed != actual


def test_features_without_parkcall_has_empty_featuremap(db):
    server = make_server("pbx1", parkcall="")
    sections = confparse.parse(confgen.render_features(server))
    assert sections.as_dict() == {"general": [], "featuremap": []}
    assert sections.directives == [confgen.FEATURES_LOCAL_INCLUDE]


def test_renderer_refuses_a_value_that_slipped_past_validation(db):
    server = make_server("pbx1")
    server.parkcall = "#72\n[evil]"
    with pytest.raises(confgen.UnsafeConfigValue):
        confgen.render_features(server)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.conf")), ids=lambda p: p.name)
def test_fast_split_of_own_files_equals_the_full_parser(path):
    from lots.asterisk import deploy

    text = path.read_text()
    parsed = tuple(
        confgen.Section(s.name, tuple(s.options)) for s in confparse.parse(text).sections
    )
    assert deploy.sections_of(text) == parsed
    edited = text.replace("[general]", "[general]\n; hand edit", 1)
    assert deploy.sections_of(edited) == parsed  # hash no longer matches: full parser

"""parkweb's generated config, loaded by a real Asterisk 22: it runs exactly the lots in
the database, and a call parked the way the guide does it lands where parkweb expects."""

import pytest

from lots.asterisk import deploy, verify
from lots.asterisk.confgen import res_parking_sections
from lots.selectors import server_config, server_lots
from tests.lots.scenarios import guide_server, shared_server

pytestmark = pytest.mark.integration


def park_call_code(asterisk) -> str:
    """The one-touch park code Asterisk runs, from `features show`."""
    return deploy.park_call_code(asterisk.cli("features show"))


def load_and_check(asterisk, server):
    replies = asterisk.load(server_config(server))
    assert replies["res_parking"].success, replies["res_parking"].message
    assert replies["features"].success, replies["features"].message
    parkinglots, running = asterisk.running_state()
    sections = res_parking_sections(server, server_lots(server))
    assert verify.differences(sections, running, parkinglots) == []
    return parkinglots, running


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_guide_configuration_runs_as_in_the_database(db, asterisk, variant):
    server = guide_server(variant, **asterisk.server_fields())
    parkinglots, running = load_and_check(asterisk, server)
    default = running["default"]
    assert (default.parkext, default.context) == ("700", "parkedcalls")
    assert (default.start_space, default.stop_space, default.parkingtime) == (701, 709, 300)
    expected_comeback = {
        "a": (True, 30, "parkedcallstimeout"),
        "b": (True, 20, "parkedcallstimeout"),
        "c": (False, 30, "parkedcallstimeout"),
    }[variant]
    assert (
        default.comebacktoorigin,
        default.comebackdialtime,
        default.comebackcontext,
    ) == expected_comeback
    assert [(p.name, p.start_space, p.stop_space, p.timeout) for p in parkinglots] == [
        ("default", 701, 709, 300)
    ]
    assert park_call_code(asterisk) == "#72"


def test_two_tenants_share_a_server_with_the_same_spaces(db, asterisk):
    server = shared_server(**asterisk.server_fields())
    parkinglots, running = load_and_check(asterisk, server)
    assert sorted((p.name, p.start_space, p.stop_space, p.timeout) for p in parkinglots) == [
        ("alpha_main", 701, 709, 60),
        ("beta_main", 701, 709, 90),
        ("beta_night", 801, 805, 0),
        ("default", 1, 1, 45),
    ]
    assert running["alpha_main"].context == "alpha-parking"
    assert running["beta_main"].context == "beta-parking"
    assert running["default"].context == "parkweb-default-lot"
    assert park_call_code(asterisk) == "#73"
    assert (running["beta_night"].comebacktoorigin, running["beta_night"].comebackcontext) == (
        False,
        "beta-timeout",
    )
    # The extensions really exist in each tenant's context (a failed registration would
    # leave the lots listed but their extensions gone).
    for context in ("alpha-parking", "beta-parking"):
        dialplan = asterisk.cli(f"dialplan show {context}")
        assert "'700'" in dialplan and "'701'" in dialplan and "'709'" in dialplan
    assert "'805'" in asterisk.cli("dialplan show beta-parking")


def test_call_parked_as_in_the_guide_lands_in_the_default_lot(db, asterisk):
    server = guide_server("a", **asterisk.server_fields())
    load_and_check(asterisk, server)
    event = asterisk.park_call("caller", server.parkcall)
    assert event["Parkinglot"] == "default"
    assert 701 <= int(event["ParkingSpace"]) <= 709
    assert event["ParkeeCallerIDNum"] == "5551234"
    assert event["ParkeeCallerIDName"] == "Test Caller"


def test_call_parked_with_parkinglot_lands_in_the_tenants_lot(db, asterisk):
    server = shared_server(**asterisk.server_fields())
    load_and_check(asterisk, server)
    event = asterisk.park_call("parkbeta_night", server.parkcall)
    assert (event["Parkinglot"], event["ParkingSpace"]) == ("beta_night", "801")
    assert int(event["ParkingTimeout"]) == 0

"""Reject, never escape: arbitrary text in any string field is either refused by
validation or rendered so that Asterisk's parser sees exactly the intended sections."""

import string

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lots import services
from lots.asterisk import confgen, confparse
from lots.models import AsteriskServer, DialplanContext, ParkingLot
from lots.selectors import server_config
from parkweb.errors import Invalid
from tenants.models import Tenant
from tenants.services import tenant_save

FRAGMENTS = [
    "\n",
    "\r",
    "\r\n",
    ";",
    ";--",
    "--;",
    "\\;",
    "[",
    "]",
    "](+)",
    "(!)",
    "#include",
    "#exec",
    "#tryinclude",
    "=",
    "=>",
    " ",
    "\t",
    "\x00",
    "\u2028",
    "é",
    "日本",
    "700",
    "701-709",
    "default",
    "general",
    "acme",
    "/",
    "..",
    "*",
    "#",
    "_",
    "-",
]
nasty_text = st.one_of(
    st.text(max_size=30),
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(string.printable, max_size=4)),
        max_size=8,
    ).map("".join),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "7", ";", "[", "é"]),
        st.sampled_from([64, 200, 9000]),
    ),
)

BASE = {
    "tenant.slug": "acme",
    "tenant.name": "Acme",
    "server.name": "pbx1",
    "server.parkcall": "#72",
    "server.ami_host": "127.0.0.1",
    "server.ami_username": "parkweb",
    "server.config_dir": "/etc/asterisk",
    "server.reserved_contexts": "from-trunk",
    "context.name": "acme-parking",
    "context.description": "Parking",
    "timeout_context.name": "acme-timeout",
    "lot.slug": "main",
    "lot.name": "Reception",
    "lot.parkext": "700",
    "lot.parkedmusicclass": "default",
    "lot.courtesytone": "beep",
}


def build(values: dict[str, str]) -> AsteriskServer:
    """Create everything through the services, as any save path would."""
    tenant = tenant_save(Tenant(slug=values["tenant.slug"], name=values["tenant.name"]))
    server = services.server_save(
        AsteriskServer(
            name=values["server.name"],
            parkcall=values["server.parkcall"],
            ami_host=values["server.ami_host"],
            ami_username=values["server.ami_username"],
            config_dir=values["server.config_dir"],
            reserved_contexts=values["server.reserved_contexts"],
        ),
        ami_secret="secret",
    )
    context = services.context_save(
        DialplanContext(
            server=server,
            tenant=tenant,
            name=values["context.name"],
            description=values["context.description"],
        )
    )
    timeout = services.context_save(
        DialplanContext(server=server, tenant=tenant, name=values["timeout_context.name"])
    )
    services.lot_save(
        ParkingLot(
            tenant=tenant,
            server=server,
            context=context,
            slug=values["lot.slug"],
            name=values["lot.name"],
            parkext=values["lot.parkext"],
            parkedmusicclass=values["lot.parkedmusicclass"],
            courtesytone=values["lot.courtesytone"],
            comebacktoorigin=False,
            comebackcontext=timeout,
            parkpos_start=701,
            parkpos_end=709,
        )
    )
    return server


def intended(values: dict[str, str]) -> tuple[dict, dict]:
    """The sections and keys the values must produce, written out independently."""
    lot = [("context", values["context.name"])]
    if values["lot.parkext"]:
        lot.append(("parkext", values["lot.parkext"]))
    lot += [
        ("parkext_exclusive", "no"),
        ("parkpos", "701-709"),
        ("parkinghints", "no"),
        ("parkingtime", "45"),
    ]
    if values["lot.parkedmusicclass"]:
        lot.append(("parkedmusicclass", values["lot.parkedmusicclass"]))
    lot += [
        ("comebacktoorigin", "no"),
        ("comebackdialtime", "30"),
        ("comebackcontext", values["timeout_context.name"]),
    ]
    if values["lot.courtesytone"]:
        lot.append(("courtesytone", values["lot.courtesytone"]))
    lot += [
        ("parkedplay", "caller"),
        ("parkedcalltransfers", "no"),
        ("parkedcallreparking", "no"),
        ("parkedcallhangup", "no"),
        ("parkedcallrecording", "no"),
        ("findslot", "first"),
    ]
    res_parking = {
        "general": [("parkeddynamic", "no")],
        "default": list(confgen.NEUTRAL_DEFAULT_OPTIONS),
        f"{values['tenant.slug']}_{values['lot.slug']}": lot,
    }
    featuremap = [("parkcall", values["server.parkcall"])] if values["server.parkcall"] else []
    return res_parking, {"general": [], "featuremap": featuremap}


def assert_parses_exactly(text: str, sections: dict, directives: list[str]) -> None:
    parsed = confparse.parse(text)
    assert parsed.problems == []
    assert parsed.directives == directives
    assert [s.header_options for s in parsed.sections] == [None] * len(parsed.sections)
    assert [s.name for s in parsed.sections] == list(sections)
    assert parsed.as_dict() == sections


def test_baseline_values_render_as_intended(db):
    files = server_config(build(BASE))
    res_parking, features = intended(BASE)
    assert_parses_exactly(files["res_parking.conf"], res_parking, [])
    assert_parses_exactly(files["features.conf"], features, [confgen.FEATURES_LOCAL_INCLUDE])


@pytest.mark.django_db
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(sorted(BASE)), value=nasty_text)
def test_any_text_in_any_field_is_refused_or_rendered_exactly(field, value):
    values = {**BASE, field: value}
    with transaction.atomic():
        try:
            files = server_config(build(values))
        except Invalid:
            return  # refused before anything could be written
        finally:
            transaction.set_rollback(True)  # nothing an example creates outlives it
    res_parking, features = intended(values)
    assert_parses_exactly(files["res_parking.conf"], res_parking, [])
    assert_parses_exactly(files["features.conf"], features, [confgen.FEATURES_LOCAL_INCLUDE])

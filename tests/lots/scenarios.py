"""The configurations parkweb must reproduce, built as database rows.

The three of the Asterisk call-parking guide (one lot standing for Asterisk's `default`:
parkext 700, spaces 701-709 in `parkedcalls`, parkingtime 300, findslot next; then with
comebackdialtime 20, then sending timed-out calls to `parkedcallstimeout`), and one server
shared by two tenants that both use spaces 701-709, each in its own context.
"""

from lots import services
from lots.models import AsteriskServer
from tests.factories import make_context, make_lot, make_server, make_tenant

GUIDE_VARIANTS = {
    "a": {},
    "b": {"comebacktoorigin": True, "comebackdialtime": 20},
    "c": {"comebacktoorigin": False, "comebackcontext": "parkedcallstimeout"},
}


def guide_server(variant: str, **server_fields) -> AsteriskServer:
    server = make_server(f"guide-{variant}", parkcall="#72", **server_fields)
    tenant = make_tenant(f"example-{variant}")
    contexts = {
        name: make_context(server, tenant, name) for name in ("parkedcalls", "parkedcallstimeout")
    }
    options = dict(GUIDE_VARIANTS[variant])
    if "comebackcontext" in options:
        options["comebackcontext"] = contexts[options["comebackcontext"]]
    lot = make_lot(
        tenant,
        contexts["parkedcalls"],
        "main",
        name="Guide lot",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
        parkingtime=300,
        findslot="next",
        **options,
    )
    server.default_lot = lot
    return services.server_save(server)


def shared_server(**server_fields) -> AsteriskServer:
    server = make_server("shared", parkcall="#73", **server_fields)
    for slug in ("alpha", "beta"):
        tenant = make_tenant(slug)
        context = make_context(server, tenant, f"{slug}-parking")
        make_lot(
            tenant,
            context,
            "main",
            name=f"{slug} main",
            parkext="700",
            parkpos_start=701,
            parkpos_end=709,
            parkinghints=True,
            parkingtime=60 if slug == "alpha" else 90,
        )
    beta_timeout = make_context(server, tenant, "beta-timeout")
    make_lot(
        tenant,
        context,
        "night",
        name="Night",
        parkext="800",
        parkext_exclusive=True,
        parkpos_start=801,
        parkpos_end=805,
        parkingtime=0,
        comebacktoorigin=False,
        comebackcontext=beta_timeout,
        parkedmusicclass="default",
        courtesytone="beep",
        parkedplay="both",
        parkedcalltransfers="callee",
        parkedcallreparking="caller",
        parkedcallhangup="both",
        parkedcallrecording="caller",
    )
    return server

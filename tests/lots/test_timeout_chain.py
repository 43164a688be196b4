"""The timeout chain's generated dialplan, pure and in the database: what each policy
writes, that every line is checked again at rendering, and how the chain's steps land in
a call's history."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from lots import rules
from lots.asterisk import actions, comeback, confgen
from lots.asterisk.ami import AmiRefused
from lots.models import ParkedCall
from lots.selectors import outcome_label, pending_change, server_config
from lots.services import timeout_step_apply
from tests.factories import make_context, make_lot

from .test_confgen import assert_golden


def lines(wanted, context) -> dict[tuple[str, int], str]:
    return {(p.exten, p.number): f"{p.app}({p.data})" for p in wanted[context]}


def target(wanted, context, priority) -> str:
    """The line a GotoIf at `priority` of `s` jumps to."""
    data = lines(wanted, context)[("s", priority)]
    return lines(wanted, context)[("s", int(data.rsplit("?", 1)[1].rstrip(")")))]


@pytest.fixture
def chain(acme, acme_ctx, server):
    reception = make_context(server, acme, "acme-phones")
    return make_lot(
        acme,
        acme_ctx,
        "main",
        timeout_policy=rules.TIMEOUT_CHAIN,
        comebackdialtime=20,
        comeback_cid_prefix="P",
        comeback_alert_info="<urn:alert:service:call-waiting>",
        comeback_announcement="custom/returning",
        fallback=rules.FALLBACK_DESTINATION,
        fallback_context=reception,
        fallback_extension="200",
        reminder_seconds=30,
    )


def test_a_chain_lot_hands_its_timed_out_calls_to_its_generated_context(server, chain):
    options = dict(confgen.lot_options(confgen.LotConfig.of(chain)))
    assert options["comebacktoorigin"] == "no"
    assert options["comebackcontext"] == "parkweb-timeout-acme_main"
    files = server_config(server)
    assert_golden("chain.parkweb_timeout.conf", files[comeback.DIALPLAN])
    # The dry-run diff (deploy --dry-run, the admin's pending change) shows it too.
    assert "+exten => s,11,Goto(acme-phones,200,1)" in pending_change(server).diff


def test_the_chain_rings_the_parker_then_goes_to_the_fallback(server, chain):
    wanted = comeback.wanted_dialplan(server, [chain])
    context = "parkweb-timeout-acme_main"
    assert lines(wanted, context)[("_[0-9A-Za-z].", 1)] == "Goto(s,1)"
    steps = lines(wanted, context)
    dial = next(n for (exten, n), line in steps.items() if line.startswith("Dial("))
    assert steps[("s", dial)] == (
        "Dial(${PARKWEB_PARKER},20,A(custom/returning)"
        "b(parkweb-timeout-acme_main^alert^1)U(parkweb-timeout-answered^${UNIQUEID}))"
    )
    assert steps[("s", dial - 1)] == "Set(CALLERID(name)=P${PARKING_SPACE} ${PARKWEB_NAME})"
    # Answered: the end. Not answered (or no parker): the fallback, said, then the Goto.
    assert target(wanted, context, dial + 2) == "Hangup()"
    fallback = target(wanted, context, dial - 2)
    assert fallback == "UserEvent(ParkwebTimeout,Step: fallback,Call: ${UNIQUEID})"
    assert "Goto(acme-phones,200,1)" in steps.values()
    assert steps[("remind", 2)] == "Bridge(${PARKWEB_CALL})"
    assert lines(wanted, comeback.ANSWERED_CONTEXT)[("s", 1)] == (
        "UserEvent(ParkwebTimeout,Step: answered,Call: ${ARG1})"
    )


def test_park_again_counts_and_then_hangs_up(server, acme, acme_ctx):
    lot = make_lot(
        acme,
        acme_ctx,
        "main",
        timeout_policy=rules.TIMEOUT_CHAIN,
        comeback_ring_parker=False,
        fallback=rules.FALLBACK_REPARK,
        repark_limit=2,
    )
    wanted = comeback.wanted_dialplan(server, [lot])
    steps = lines(wanted, "parkweb-timeout-acme_main")
    check = next(n for (_, n), line in steps.items() if ">= 2]" in line)
    assert steps[("s", check + 3)] == "Park(acme_main)"
    assert target(wanted, "parkweb-timeout-acme_main", check) == (
        "UserEvent(ParkwebTimeout,Step: hung_up,Call: ${UNIQUEID})"
    )
    assert not any(line.startswith("Dial(") for line in steps.values())
    assert comeback.ANSWERED_CONTEXT in wanted


def test_lots_without_a_chain_or_reminders_generate_nothing(server, acme, acme_ctx):
    lot = make_lot(acme, acme_ctx, "main")
    assert comeback.wanted_dialplan(server, [lot]) == {}
    assert dict(confgen.lot_options(confgen.LotConfig.of(lot)))["comebacktoorigin"] == "yes"
    assert comeback.parse(server_config(server)[comeback.DIALPLAN]) == {}


def test_the_file_reads_back_as_it_was_written(server, chain):
    wanted = comeback.wanted_dialplan(server, [chain])
    text = comeback.render(wanted)
    assert comeback.parse(text) == wanted
    # As GetConfig renders it (AMI delivery): `exten = ...`.
    plain = text.replace("exten => ", "exten=")
    assert comeback.parse(plain) == wanted


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("comeback_cid_prefix", "P,x"),
        ("comeback_alert_info", "x)Hangup("),
        ("comeback_announcement", "../etc/passwd"),
        ("fallback_extension", "_X."),
        ("fallback_context", "x,s,1)"),
        ("asterisk_name", "acme_main]\n[evil"),
    ],
)
def test_the_renderer_refuses_what_validation_should_have_refused(server, chain, field, value):
    lot = confgen.LotConfig.of(chain)
    bad = confgen.LotConfig(**{**{f: getattr(lot, f) for f in lot.__slots__}, field: value})
    with pytest.raises(confgen.UnsafeConfigValue):
        comeback.render(comeback.wanted_dialplan(server, [bad]))


@pytest.mark.parametrize(
    ("context", "exten"),
    [("acme-phones", "s"), ("parkweb-timeout-acme_main", "200"), ("parkweb-hints-x", "s")],
)
def test_only_parkwebs_generated_extensions_are_ever_changed_over_ami(context, exten):
    with pytest.raises(AmiRefused):
        asyncio.run(actions.extension_add(None, context, exten, 1, "NoOp", ""))
    with pytest.raises(AmiRefused):
        asyncio.run(actions.extension_remove(None, context, exten, 1))
    with pytest.raises(AmiRefused):
        asyncio.run(
            actions.extension_add(None, "parkweb-timeout-acme_main", "s", 1, "System", "rm")
        )


def test_a_user_event_becomes_a_step_only_when_well_formed():
    event = {"Event": "UserEvent", "UserEvent": "ParkwebTimeout", "Step": "reparked"}
    assert comeback.parse_step({**event, "Call": "1795801822.1"}) == comeback.Step(
        "1795801822.1", "reparked"
    )
    assert comeback.parse_step({**event, "Call": "1.1\r\nAction: x"}) is None
    assert comeback.parse_step({**event, "Step": "deleted", "Call": "1.1"}) is None
    assert comeback.parse_step({**event, "UserEvent": "Other", "Call": "1.1"}) is None


def episode(server, lot, **fields) -> ParkedCall:
    now = timezone.now()
    return ParkedCall.objects.create(
        server=server,
        lot=lot,
        tenant=lot.tenant,
        lot_name=lot.asterisk_name,
        space=701,
        parkee_channel="Local/x-1;2",
        uniqueid="1.1",
        parked_at=now - timedelta(seconds=5),
        **fields,
    )


def test_parked_again_is_told_to_the_episode_that_timed_out_even_after_the_new_park(server, chain):
    first = episode(server, chain, ended_at=timezone.now(), outcome="timed_out")
    second = episode(server, chain)  # the new park came in before the step
    timeout_step_apply(server.pk, "1.1", comeback.STEP_REPARKED)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.after_timeout, second.after_timeout) == ("reparked", "")
    # The second timeout's step, before its ParkedCallTimeOut: on the parked episode.
    timeout_step_apply(server.pk, "1.1", comeback.STEP_HUNG_UP)
    second.refresh_from_db()
    assert second.after_timeout == "hung_up"
    assert outcome_label("timed_out", "hung_up") == "timed out, then hung up"
    # Nothing left to tell: a step for it again changes nothing.
    assert timeout_step_apply(server.pk, "1.1", comeback.STEP_ANSWERED) is None

"""When nobody picks up, on the real Asterisk: parkweb's timeout chain rings the parker
back and then sends the call where the tenant chose; reminders ring the parker while the
call stays parked; history says how each timed-out call ended. Local channels stand in
for phones: bob parks the caller (extensions_local.conf, [parkweb-chain]) and then, as the
global BOB says, answers a call back or lets it ring."""

import time

import pytest

from lots import rules, services
from lots.models import Deployment, ParkedCall
from tests.factories import make_context, make_lot

from .test_containment import as_alice, retrieve_url, site  # noqa: F401
from .test_deploy import wait_for
from .test_live import redis_layer  # noqa: F401

pytestmark = pytest.mark.integration

ANSWERED = ParkedCall.AfterTimeout.ANSWERED


def chain_lot(site, slug: str, **policy):  # noqa: F811
    """A lot of acme's with a 2 s parking time, in a context of its own."""
    context = make_context(site.server, site.acme, f"acme-{slug}")
    fields = {"parkingtime": 2, "comebackdialtime": 2, "timeout_policy": rules.TIMEOUT_CHAIN}
    return make_lot(
        site.acme,
        context,
        slug,
        parkext="700",
        parkpos_start=761,
        parkpos_end=769,
        **{**fields, **policy},
    )


def global_of(asterisk, name: str) -> str:
    for line in asterisk.cli("dialplan show globals").splitlines():
        key, _, value = line.strip().partition("=")
        if key == name:
            return value
    return ""


def bob_parks(site, lot, then: str) -> ParkedCall:  # noqa: F811
    """bob parks a caller in `lot` with #72, then behaves as `then` (answer, ignore)."""
    asterisk = site.asterisk
    asterisk.cli("dialplan set global PARKCODE #72")
    asterisk.cli("dialplan set global BOB park")
    asterisk.originate(f"Local/bobpark{lot.asterisk_name}@parkweb-chain", seconds=60)
    call = wait_for(
        lambda: ParkedCall.objects.filter(lot=lot, ended_at__isnull=True).first(),
        what="bob to park the caller",
    )
    asterisk.cli(f"dialplan set global BOB {then}")
    return call


def episodes(call) -> list[tuple[str, str]]:
    found = ParkedCall.objects.filter(server=call.server, uniqueid=call.uniqueid)
    return [(c.outcome, c.after_timeout) for c in found.order_by("parked_at", "pk")]


def test_the_parker_answers_the_comeback_and_a_policy_edit_is_live_without_a_reload(site):  # noqa: F811
    asterisk = site.asterisk
    lot = chain_lot(site, "back", comeback_cid_prefix="P")
    call = bob_parks(site, lot, then="answer")
    call = wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, after_timeout=ANSWERED).first(),
        what="the parker to answer the returning call",
    )
    assert call.outcome == ParkedCall.Outcome.TIMED_OUT
    assert global_of(asterisk, "BOB_GOT") == f"P{call.space} Test Caller"
    asterisk.hangup_all()

    # An extension added by hand outside parkweb's contexts: a reload would drop it.
    asterisk.cli("dialplan add extension 299,1,NoOp(by hand) into acme-phones")
    services.lot_update(lot, comeback_cid_prefix="Q")
    deployment = Deployment.objects.filter(server=site.server).latest("pk")
    assert (deployment.status, deployment.reloaded) == ("ok", False)
    assert "299" in asterisk.cli("dialplan show 299@acme-phones")
    call = bob_parks(site, lot, then="answer")
    wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, after_timeout=ANSWERED).exists(),
        what="the parker to answer again",
    )
    assert global_of(asterisk, "BOB_GOT") == f"Q{call.space} Test Caller"


def test_an_unanswered_comeback_goes_to_the_fallback_extension(site):  # noqa: F811
    asterisk = site.asterisk
    phones = site.server.contexts.get(name="acme-phones")
    lot = chain_lot(
        site,
        "fall",
        fallback=rules.FALLBACK_DESTINATION,
        fallback_context=phones,
        fallback_extension="209",
    )
    asterisk.cli("dialplan set global BOB_RANG 0")
    call = bob_parks(site, lot, then="ignore")
    wait_for(
        lambda: global_of(asterisk, "RECEPTION") == "Test Caller",
        timeout=20,
        what="the call to reach the reception (209)",
    )
    assert global_of(asterisk, "BOB_RANG") == "1"  # bob was rung back first
    assert episodes(call) == [("timed_out", ParkedCall.AfterTimeout.FALLBACK)]


def test_park_again_at_most_once_then_hang_up(site):  # noqa: F811
    lot = chain_lot(
        site, "again", comeback_ring_parker=False, fallback=rules.FALLBACK_REPARK, repark_limit=1
    )
    call = bob_parks(site, lot, then="ignore")
    wait_for(
        lambda: len(episodes(call)) == 2 and episodes(call)[1][1],
        timeout=20,
        what="a second park and its timeout",
    )
    assert episodes(call) == [
        ("timed_out", ParkedCall.AfterTimeout.REPARKED),
        ("timed_out", ParkedCall.AfterTimeout.HUNG_UP),
    ]
    wait_for(
        lambda: call.parkee_channel not in site.asterisk.cli("core show channels"),
        what="the caller to be hung up",
    )


def test_reminders_ring_the_parker_until_someone_picks_the_call_up(site):  # noqa: F811
    asterisk = site.asterisk
    lot = chain_lot(
        site,
        "remind",
        parkingtime=120,
        timeout_policy=rules.TIMEOUT_ASTERISK,
        reminder_seconds=5,
    )
    asterisk.cli("dialplan set global BOB_RANG 0")
    call = bob_parks(site, lot, then="ignore")
    wait_for(lambda: global_of(asterisk, "BOB_RANG") == "2", timeout=20, what="two reminders")
    call.refresh_from_db()
    assert call.ended_at is None and call.reminders_sent == 2  # still parked, same space

    # Carol (201) picks it up from the board meanwhile: the reminders stop.
    response = as_alice(site).post(
        retrieve_url(call), {"call": call.pk, "extension": "201"}, format="json"
    )
    assert response.status_code == 202, response.json()
    wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, outcome="retrieved").exists(),
        what="Carol's pickup",
    )
    time.sleep(6)  # longer than the reminder interval
    assert global_of(asterisk, "BOB_RANG") == "2"
    asterisk.hangup_all()

    # The parker answers a reminder: connected to the call.
    call = bob_parks(site, lot, then="answer")
    call = wait_for(
        lambda: ParkedCall.objects.filter(pk=call.pk, outcome="retrieved").first(),
        timeout=20,
        what="bob to answer a reminder",
    )
    assert call.retriever_channel.startswith("Local/bob@parkweb-chain")
    assert call.reminders_sent == 1


def test_the_guides_scenarios_two_and_three_behave_as_asterisk_does(site):  # noqa: F811
    asterisk = site.asterisk
    # 2: comebacktoorigin = yes. The parker is rung; unanswered, the caller is hung up.
    origin = chain_lot(site, "origin", timeout_policy=rules.TIMEOUT_ASTERISK)
    asterisk.cli("dialplan set global BOB_RANG 0")
    call = bob_parks(site, origin, then="ignore")
    wait_for(
        lambda: call.parkee_channel not in asterisk.cli("core show channels"),
        timeout=20,
        what="the unanswered comeback to hang up the caller",
    )
    assert global_of(asterisk, "BOB_RANG") == "1"
    assert episodes(call) == [("timed_out", "")]

    # 3: comebacktoorigin = no, comebackcontext: the call goes to s there (no extension
    # named after the parker).
    timeout = make_context(site.server, site.acme, "acme-timeout")
    context = chain_lot(
        site,
        "context",
        timeout_policy=rules.TIMEOUT_ASTERISK,
        comebacktoorigin=False,
        comebackcontext=timeout,
    )
    bob_parks(site, context, then="ignore")
    wait_for(
        lambda: global_of(asterisk, "TIMED_OUT_TO") == "s Local_bob@parkweb-chain",
        timeout=20,
        what="the call to reach s@acme-timeout",
    )

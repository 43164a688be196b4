"""Deploys on the real Asterisk: changes go live, refused configs roll back, Asterisk being
away delays but never loses a change, bursts coalesce, a killed worker breaks nothing."""

import itertools
import threading
import time

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from lots import services
from lots.asterisk import comeback, confgen, confparse, deploy, verify
from lots.models import Deployment, ParkingLot
from lots.selectors import server_lots
from tests.factories import bulk_lots, make_context, make_lot, make_server, make_tenant

from .workers import celery_workers

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture
def site(transactional_db, asterisk):
    """A tenant with a context on a server that is the sandbox Asterisk."""
    server = make_server("pbx-test", parkcall="#72", **asterisk.server_fields())
    tenant = make_tenant("acme")
    return server, tenant, make_context(server, tenant, "acme-parking")


def latest(server) -> Deployment:
    return Deployment.objects.filter(server=server).order_by("-pk").first()


def asterisk_equals_database(asterisk, server) -> list[str]:
    """What Asterisk runs that differs from the database: its lots, and parkweb's
    generated timeout dialplan (live, and in the file it reads at a restart)."""
    parkinglots, running = asterisk.running_state()
    lots = list(server_lots(server))
    sections = confgen.res_parking_sections(server, lots)
    problems = verify.differences(sections, running, parkinglots)
    wanted = comeback.wanted_dialplan(server, lots)
    on_disk = comeback.parse((asterisk.config_dir / comeback.DIALPLAN).read_text())
    contexts = {*wanted, *on_disk}
    for context, live in asterisk.generated_dialplan(contexts).items():
        want = {(p.exten, p.number): p for p in wanted.get(context, ())}
        if live != want:
            problems.append(f"live dialplan of {context} differs")
        if on_disk.get(context, ()) != wanted.get(context, ()):
            problems.append(f"{comeback.DIALPLAN} differs in {context}")
    return problems


def test_edited_lot_goes_live_and_a_call_parks_in_its_new_space(site, asterisk):
    server, tenant, context = site
    lot = make_lot(tenant, context, "main", parkext="700", parkpos_start=701, parkpos_end=709)
    assert latest(server).status == Deployment.Status.OK

    services.lot_update(lot, parkext="800", parkpos_start=801, parkpos_end=805, parkingtime=120)

    deployment = latest(server)
    assert (deployment.status, deployment.reloaded, deployment.error) == ("ok", True, "")
    assert "-parkpos => 701-709" in deployment.diff and "+parkpos => 801-805" in deployment.diff
    parkinglots, _ = asterisk.running_state()
    assert ("acme_main", 801, 805, 120) in [
        (p.name, p.start_space, p.stop_space, p.timeout) for p in parkinglots
    ]
    event = asterisk.park_call("parkacme_main", "#72")
    assert event["Parkinglot"] == "acme_main" and 801 <= int(event["ParkingSpace"]) <= 805
    assert (asterisk.config_dir / "res_parking.conf").read_text() == deployment.res_parking_conf
    assert (asterisk.config_dir / "res_parking.conf.last-good").exists()


def test_unchanged_config_sends_no_reload(site, asterisk):
    server, tenant, context = site
    make_lot(tenant, context, "main", parkpos_start=701, parkpos_end=709)
    services.deployment_request(server.pk, enqueue=False)
    outcome, deployment = services.deployment_run(server.pk)
    deployment.refresh_from_db()
    assert (outcome, deployment.status, deployment.reloaded) == ("done", "ok", False)
    assert deployment.replies == [] and "unchanged" in deployment.reason


def test_a_change_asterisk_refuses_is_set_aside_and_the_lot_runs_as_before(site, asterisk):
    server, tenant, context = site
    make_lot(tenant, context, "main", parkext="700", parkpos_start=701, parkpos_end=709)
    night = make_lot(tenant, context, "night", parkext="800", parkpos_start=801, parkpos_end=809)
    good = latest(server)
    assert good.status == "ok"
    # Simulate a validation bug: an overlap that only Asterisk notices. It refuses the
    # reload and drops every lot extension, so parkweb puts the last good file back, finds
    # the lot whose change it was, and deploys everything else with that lot as it was.
    ParkingLot.objects.filter(pk=night.pk).update(parkpos_start=705, parkpos_end=712)
    services.deployment_request(server.pk, enqueue=False)
    services.deployment_run(server.pk)

    deployment = latest(server)
    assert deployment.status == Deployment.Status.OK, deployment.error
    assert [entry["lot"] for entry in deployment.set_aside] == ["acme_night"]
    refused = [r for r in deployment.replies if r.get("action") == "Reload" and not r["success"]]
    assert "An unknown error occurred" in refused[0]["message"]  # Asterisk's own words
    night.refresh_from_db()
    assert "Spaces 705-709 are already used by lot" in night.held_reason
    assert night.held_extension == ""
    assert deployment.res_parking_conf == good.res_parking_conf  # night as it was
    parkinglots, _ = asterisk.running_state()
    assert {(p.name, p.start_space, p.stop_space) for p in parkinglots} >= {
        ("acme_main", 701, 709),
        ("acme_night", 801, 809),
    }
    dialplan = asterisk.cli("dialplan show acme-parking")
    assert "'701'" in dialplan and "'809'" in dialplan  # the extensions are there
    event = asterisk.park_call("parkacme_night", "#72")
    assert event["Parkinglot"] == "acme_night" and 801 <= int(event["ParkingSpace"]) <= 809

    # Fixing the lot brings its change in.
    services.lot_update(night, parkpos_start=810, parkpos_end=819)
    night.refresh_from_db()
    assert night.held_reason == "" and latest(server).status == "ok"
    assert ("acme_night", 810, 819) in {
        (p.name, p.start_space, p.stop_space) for p in asterisk.running_state()[0]
    }


def test_hand_edited_file_is_found_by_reconcile_and_corrected(site, asterisk):
    server, tenant, context = site
    make_lot(tenant, context, "main", parkpos_start=701, parkpos_end=709, parkingtime=45)
    path = asterisk.config_dir / "res_parking.conf"
    path.write_text(path.read_text().replace("parkingtime => 45", "parkingtime => 999"))
    asterisk.cli("module reload res_parking.so")
    assert asterisk_equals_database(asterisk, server) != []

    drift = services.server_reconcile(server)

    assert "parkingtime" in drift
    deployment = latest(server)
    assert (deployment.status, deployment.forced, deployment.reloaded) == ("ok", True, True)
    assert asterisk_equals_database(asterisk, server) == []
    assert services.server_reconcile(server) is None


def test_config_delivered_over_ami_to_a_remote_asterisk(site, asterisk):
    server, tenant, context = site
    server.delivery = "ami"
    server.parkcall = "#73"
    services.server_save(server)
    make_lot(
        tenant,
        context,
        "main",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
        parkingtime=77,
        parkinghints=True,
        comebacktoorigin=False,
        comebackcontext=make_context(server, tenant, "acme-timeout"),
    )
    deployment = latest(server)
    assert deployment.status == "ok", deployment.error
    assert asterisk_equals_database(asterisk, server) == []
    assert deploy.park_call_code(asterisk.cli("features show")) == "#73"
    written = confparse.parse((asterisk.config_dir / "res_parking.conf").read_text()).as_dict()
    assert dict(written["acme_main"])["parkingtime"] == "77"
    # The busy-lamp hints: live at once, and in parkweb_hints.conf (written by Asterisk
    # itself) for the next dialplan reload.
    hints = confparse.parse((asterisk.config_dir / "parkweb_hints.conf").read_text()).as_dict()
    assert ("exten", "709,hint,park:709@acme-parking") in hints["parkweb-hints-acme-parking"]
    assert "709@parkweb-hints-acme-parking" in asterisk.cli("core show hints").replace(" ", "")
    # A timeout chain: live at once, and in parkweb_timeout.conf (rewritten by Asterisk
    # through UpdateConfig) for a restart or a dialplan reload, which reads it back.
    make_lot(
        tenant,
        make_context(server, tenant, "acme-chain"),
        "chain",
        parkext="700",
        parkpos_start=711,
        parkpos_end=712,
        timeout_policy="chain",
        comeback_cid_prefix="P",
    )
    deployment = latest(server)
    assert (deployment.status, deployment.error) == ("ok", "")
    assert asterisk_equals_database(asterisk, server) == []
    asterisk.cli("dialplan reload")
    assert asterisk_equals_database(asterisk, server) == []


def test_lot_budget_refuses_the_lot_that_would_slow_reloads(site):
    server, tenant, context = site
    server.lot_budget = 2
    services.server_save(server)
    make_lot(tenant, context, "lot-a", parkpos_start=701, parkpos_end=701)
    make_lot(tenant, context, "lot-b", parkpos_start=702, parkpos_end=702)
    other = make_server("pbx-spare")
    from parkweb.errors import Invalid

    with pytest.raises(Invalid) as caught:
        make_lot(tenant, context, "lot-c", parkpos_start=703, parkpos_end=703)
    message = caught.value.errors["server"][0]
    assert "already holds 2 lots" in message and other.name in message


def test_asterisk_down_during_a_deploy_goes_live_once_it_is_back(site, asterisk):
    server, tenant, context = site
    with celery_workers() as start_worker:
        start_worker()
        lot = make_lot(tenant, context, "main", parkpos_start=701, parkpos_end=709)
        wait_for(lambda: latest(server).status == "ok", what="first deploy")
        asterisk.stop()
        try:
            services.lot_update(lot, parkingtime=99)
            pending = wait_for(
                lambda: Deployment.objects.filter(
                    server=server, status="pending", attempts__gte=1
                ).first(),
                what="a pending deployment that tried once",
            )
            assert "unreachable" in pending.error
        finally:
            asterisk.start()
        wait_for(lambda: latest(server).status == "ok", timeout=30, what="deploy after restart")
        assert asterisk_equals_database(asterisk, server) == []
        parkinglots, _ = asterisk.running_state()
        assert ("acme_main", 99) in [(p.name, p.timeout) for p in parkinglots]


def idle(server) -> bool:
    return not Deployment.objects.filter(server=server, status__in=["pending", "running"]).exists()


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="SQLite serialises writers, so the edits cannot be concurrent; runs on PostgreSQL "
    "(make test uses it when one answers on 127.0.0.1:5432, as CI does)",
)
def test_fifty_concurrent_edits_give_a_handful_of_reloads(site, asterisk):
    server, tenant, context = site
    lots = [
        make_lot(
            tenant, context, f"lot{i}", parkpos_start=1000 + 10 * i, parkpos_end=1000 + 10 * i + 5
        )
        for i in range(50)
    ]
    mark = Deployment.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with celery_workers() as start_worker:
        start_worker()
        barrier = threading.Barrier(len(lots))
        errors, saved = [], []

        def edit(lot, seconds):
            try:
                barrier.wait(timeout=30)
                services.lot_update(lot, parkingtime=seconds)
                saved.append(timezone.now())  # committed by then
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                close_old_connections()

        threads = [threading.Thread(target=edit, args=(lot, 100 + i)) for i, lot in enumerate(lots)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        wait_for(lambda: idle(server), timeout=60, what="deploys to settle")

    started = list(
        Deployment.objects.filter(server=server, pk__gt=mark, reloaded=True)
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )
    print(f"50 concurrent edits -> {len(started)} reloads")
    # Edits that wait for a running deploy go out together in the next one: every reload
    # but the first carries an edit saved after the one before it began, none is spent on
    # edits an earlier reload had already taken. How many windows the edits span depends
    # on the machine's speed (5 at most on a fast one, 8 seen on a slower one).
    assert 1 <= len(started) <= len(lots) // 5
    for before, reload in itertools.pairwise(started):
        assert any(at > before for at in saved), f"the reload at {reload} carried nothing new"
    assert Deployment.objects.filter(server=server, pk__gt=mark).exclude(status="ok").count() == 0
    assert asterisk_equals_database(asterisk, server) == []


def test_worker_killed_mid_deploy_leaves_no_partial_file_and_next_deploy_succeeds(site, asterisk):
    server, tenant, _ = site
    server.lot_budget = 5000
    services.server_save(server)
    bulk_lots(server, tenant, 2000)
    with celery_workers() as start_worker:
        worker = start_worker("victim")
        services.config_changed(server.pk, services.SYSTEM, "bulk lots")  # outside atomic: now
        running = wait_for(
            lambda: Deployment.objects.filter(server=server, status="running").first(),
            interval=0.005,
            what="the deploy to start",
        )
        time.sleep(0.05)  # into the write and the reload
        worker.kill()

        text = (asterisk.config_dir / "res_parking.conf").read_text()
        claimed, actual = confgen.content_hash(text)
        assert claimed == actual, "Asterisk could read a partial res_parking.conf"
        running.refresh_from_db()
        assert running.status == "running"  # the worker died before recording anything

        start_worker("survivor")
        services.config_changed(server.pk, services.SYSTEM, "after the crash")
        wait_for(lambda: idle(server), timeout=90, what="the next deploy")
        running.refresh_from_db()
        assert running.status == "failed" and "Interrupted" in running.error
        assert latest(server).status == "ok"
    assert asterisk_equals_database(asterisk, server) == []
    # Leave the sandbox small again for the tests that follow.
    ParkingLot.objects.filter(server=server).delete()
    services.deployment_request(server.pk, enqueue=False)
    services.deployment_run(server.pk)

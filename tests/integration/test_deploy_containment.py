"""One tenant's lot that Asterisk refuses never holds back another tenant's changes; no
change waits forever for a frozen Asterisk; concurrent writers with one ETag: one wins."""

import os
import signal
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import close_old_connections, transaction
from django.test import Client
from rest_framework.test import APIClient

from lots import services
from lots.models import Deployment, ParkingLot
from lots.supervisor import LocalLeases, Supervisor
from parkweb.errors import Invalid
from tenants.models import Membership, Role
from tests.factories import make_context, make_lot, make_server, make_tenant

from .test_deploy import latest, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def shared(transactional_db, asterisk):
    """Two tenants on one server that is the sandbox Asterisk, each with a lot."""
    server = make_server("pbx-shared", parkcall="#72", **asterisk.server_fields())
    acme, globex = make_tenant("acme"), make_tenant("globex")
    acme_lot = make_lot(
        acme,
        make_context(server, acme, "acme-shared"),
        "main",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
    )
    globex_lot = make_lot(
        globex,
        make_context(server, globex, "globex-shared"),
        "main",
        parkext="700",
        parkpos_start=701,
        parkpos_end=709,
    )
    assert latest(server).status == "ok"
    yield server, acme_lot, globex_lot
    asterisk.cli("dialplan remove extension 725@acme-shared")


def running(asterisk) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.start_space, p.stop_space, p.timeout) for p in asterisk.running_state()[0]}


def test_a_lot_meeting_an_extension_of_the_pbx_is_refused_before_saving(shared, asterisk, settings):
    _, acme_lot, _ = shared
    settings.PARKWEB_PRECHECK_CACHE_SECONDS = 0  # read the dialplan again at once
    asterisk.cli("dialplan add extension 725,1,NoOp(operator) into acme-shared")
    with pytest.raises(Invalid) as caught:
        make_lot(acme_lot.tenant, acme_lot.context, "more", parkpos_start=720, parkpos_end=729)
    assert caught.value.codes == {"parkpos_start": ["extension_in_dialplan"]}
    assert "Extension 725 already exists in context acme-shared" in caught.value.message
    with pytest.raises(Invalid) as caught:
        services.lot_update(acme_lot, parkext="725")
    assert caught.value.codes == {"parkext": ["extension_in_dialplan"]}
    assert not ParkingLot.objects.filter(slug="more").exists()


def test_a_lot_asterisk_refuses_is_set_aside_and_another_tenants_edit_goes_live(shared, asterisk):
    server, acme_lot, globex_lot = shared
    before = latest(server).pk
    with transaction.atomic():  # one deploy, on commit, carries both changes
        second = make_lot(
            acme_lot.tenant,
            acme_lot.context,
            "second",
            parkext="720",
            parkpos_start=721,
            parkpos_end=729,
        )
        # Between the save's check and the deploy, the operator puts an extension of their
        # own where Acme's new lot has a space: Asterisk refuses the reload that adds it.
        asterisk.cli("dialplan add extension 725,1,NoOp(operator) into acme-shared")
        services.lot_update(globex_lot, parkingtime=120)  # Globex's unrelated edit

    deployment = latest(server)
    assert deployment.pk == before + 1
    assert deployment.status == "ok", deployment.error
    assert [(e["lot"], e["tenant"]) for e in deployment.set_aside] == [("acme_second", "acme")]
    assert any(r.get("action") == "Reload" and not r["success"] for r in deployment.replies)
    live = running(asterisk)
    assert live["globex_main"] == (701, 709, 120)  # Globex's edit is live
    assert live["acme_main"] == (701, 709, 45) and "acme_second" not in live
    second.refresh_from_db()
    assert second.held_extension == "725" and "Extension 725" in second.held_reason

    # Acme's admin sees why, on the lot page and in the API; Globex sees nothing of it.
    ada = get_user_model().objects.create_user("ada", password="pw-ada-123")
    Membership.objects.create(user=ada, tenant=acme_lot.tenant, role=Role.ADMIN)
    page = Client()
    page.force_login(ada)
    html = page.get("/t/acme/lots/second/").content.decode()
    assert "This lot is not live as saved." in html and "Extension 725" in html
    api = APIClient()
    api.force_authenticate(ada)
    assert "725" in api.get("/api/v1/tenants/acme/lots/second/").json()["set_aside"]["reason"]
    gina = get_user_model().objects.create_user("gina", password="pw-gina-123")
    Membership.objects.create(user=gina, tenant=globex_lot.tenant, role=Role.ADMIN)
    api.force_authenticate(gina)
    seen = api.get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert seen["status"] == "ok" and seen["set_aside"] == []

    # Later deploys are not held back by it.
    services.lot_update(globex_lot, parkingtime=130)
    assert latest(server).status == "ok" and running(asterisk)["globex_main"][2] == 130

    # Once the operator removes the extension, the reconcile brings Acme's lot back.
    asterisk.cli("dialplan remove extension 725@acme-shared")
    services.server_reconcile(server)
    second.refresh_from_db()
    assert second.held_reason == ""
    assert latest(server).status == "ok"
    assert running(asterisk)["acme_second"] == (721, 729, 45)


def test_a_change_made_while_asterisk_is_frozen_goes_live_after_it_thaws(
    shared, asterisk, settings
):
    """The embedded mode: no broker to retry through. Asterisk frozen (SIGSTOP) during a
    save: the deployment waits; after SIGCONT another change runs it, or the embedded
    retrier does, within the backoff."""
    server, acme_lot, globex_lot = shared
    settings.PARKWEB_AMI_TIMEOUT = 1.5
    settings.PARKWEB_PRECHECK_TIMEOUT = 0.5
    settings.PARKWEB_DEPLOY_RETRY_MAX_SECONDS = 2
    retrier = Supervisor(LocalLeases(), name="embedded", watch=False, retry_deploys=True)
    pid = asterisk.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        services.lot_update(acme_lot, parkingtime=444)  # its deploy finds no answer
        pending = latest(server)
        assert pending.status == "pending" and "unreachable" in pending.error
        assert pending.next_attempt_at is not None
    finally:
        os.kill(pid, signal.SIGCONT)
    thawed_at = time.monotonic()
    services.lot_update(globex_lot, parkingtime=333)  # joins the waiting deployment
    retrier.start()
    try:
        wait_for(
            lambda: (
                running(asterisk).get("acme_main", (0, 0, 0))[2] == 444
                and running(asterisk).get("globex_main", (0, 0, 0))[2] == 333
            ),
            timeout=15,
            interval=0.3,
            what="both changes to be live",
        )
    finally:
        retrier.stop()
    print(f"both live {time.monotonic() - thawed_at:.1f}s after SIGCONT")
    assert time.monotonic() - thawed_at < 2 + 5  # the backoff, and a deploy
    assert not Deployment.objects.filter(server=server, status="pending").exists()


def test_of_twenty_concurrent_puts_with_one_etag_exactly_one_wins(shared):
    _, acme_lot, _ = shared
    ada = get_user_model().objects.create_user("ada", password="pw-ada-123")
    Membership.objects.create(user=ada, tenant=acme_lot.tenant, role=Role.ADMIN)
    reader = APIClient()
    reader.force_authenticate(ada)
    read = reader.get("/api/v1/tenants/acme/lots/main/")
    etag, body = read["ETag"], read.json()
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def put(n: int) -> None:
        client = APIClient()
        client.force_authenticate(ada)
        try:
            barrier.wait(timeout=30)
            response = client.put(
                "/api/v1/tenants/acme/lots/main/",
                {**body, "parkingtime": 100 + n},
                format="json",
                HTTP_IF_MATCH=etag,
            )
            statuses.append(response.status_code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=put, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [200] + [412] * 19

"""A slow or hanging receiver is contained to its own tenant: a delivery loop leaves its
sends to go on alone (Stragglers) and delivers everyone else's meanwhile, a tenant has at
most two sends going on alone, a run sends for a second at most, and a tenant's retry
runs go one at a time (PARKWEB_WEBHOOK_PATIENCE, _STRAGGLERS_PER_TENANT, _SEND_BUDGET).
Real receivers on loopback, real Redis, a loop in its own thread."""

import threading
import time

import pytest

from lots import services
from lots.locks import webhook_locks
from lots.models import WebhookDelivery
from lots.services import webhooks as hooks
from lots.services.webhooks import DeliveryLoop, Stragglers, event_emit, webhooks_wake
from lots.tasks import deliver_run
from tenants.actors import SYSTEM
from tests.receiver import Receiver

SLOW = 2.0  # seconds the slow receiver takes to answer (within the timeout below)


@pytest.fixture
def slow_receiver():
    """Answers 200 after SLOW seconds; counts the requests it holds at once."""
    found = Receiver()
    found.busy = found.most_busy = 0
    lock = threading.Lock()

    def answer(_):
        with lock:
            found.busy += 1
            found.most_busy = max(found.most_busy, found.busy)
        time.sleep(SLOW)
        with lock:
            found.busy -= 1
        return 200, {}

    found.answer = answer
    yield found
    found.close()


@pytest.fixture
def loop(fast, wake_list):
    fast.PARKWEB_WEBHOOK_TIMEOUT = 4
    started = DeliveryLoop(deliver_run)
    started.WAIT_SECONDS = 0.1
    started.start()
    yield started
    started.stop()
    assert not started.is_alive()


def wait_until(condition, seconds: float):
    """What `condition()` gave once it was true, or at the deadline (each call once)."""
    deadline = time.monotonic() + seconds
    while not (seen := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


def emit(tenant, n: int) -> None:
    event_emit(tenant.pk, "lot.full", "main", lambda: {"n": n})


def is_free(webhook_id: int) -> bool:
    """No one holds the endpoint's lock (taken and let go here, on this thread's own
    connection: the loop's session holding it would say no)."""
    with webhook_locks([webhook_id]) as held:
        return held == {webhook_id}


def test_a_slow_receiver_holds_up_neither_the_loop_nor_another_tenant(
    transactional_db, acme, globex, receiver, slow_receiver, loop
):
    slow, _ = services.webhook_create(acme, actor=SYSTEM, url=slow_receiver.url)
    quick, _ = services.webhook_create(globex, actor=SYSTEM, url=receiver.url)
    for n in range(3):
        emit(acme, n)
    webhooks_wake([slow.pk])
    assert wait_until(lambda: slow_receiver.received, 2)
    emit(globex, 0)
    woken = time.monotonic()
    webhooks_wake([quick.pk])
    assert wait_until(lambda: receiver.received, 2)
    # Before: the loop sent acme's three events one after the other, 6 s, first.
    assert time.monotonic() - woken < 1.2
    assert len(slow_receiver.received) == 1  # acme's first is still being answered
    assert wait_until(lambda: not WebhookDelivery.objects.filter(status="pending").exists(), 10)
    assert [got.event["n"] for got in slow_receiver.received] == [0, 1, 2]  # once each, in order
    assert set(slow.deliveries.values_list("status", "attempts")) == {("delivered", 1)}
    # Let go once its last send is written (the loop writes, then lets go).
    assert wait_until(lambda: is_free(slow.pk) and is_free(quick.pk), 2)
    assert not loop.stragglers


def test_a_tenant_has_at_most_two_sends_going_on_alone_its_others_wait(
    transactional_db, acme, globex, receiver, slow_receiver, loop
):
    acme_hooks = [
        services.webhook_create(acme, actor=SYSTEM, url=f"{slow_receiver.url}{n}")[0]
        for n in range(3)
    ]
    quick, _ = services.webhook_create(globex, actor=SYSTEM, url=receiver.url)
    emit(acme, 0)
    webhooks_wake([hook.pk for hook in acme_hooks[:2]])
    assert wait_until(lambda: len(slow_receiver.received) == 2, 2)
    assert wait_until(lambda: len(loop.stragglers) == 2, 1)
    started = time.monotonic()
    webhooks_wake([acme_hooks[2].pk])  # acme has its two going on: this one waits
    emit(globex, 1)
    webhooks_wake([quick.pk])
    assert wait_until(lambda: receiver.received, 1)  # globex does not wait for acme
    assert len(slow_receiver.received) == 2
    assert wait_until(lambda: len(slow_receiver.received) == 3, 4)
    assert time.monotonic() - started > 0.5  # after one of the two finished
    assert slow_receiver.most_busy == 2
    assert wait_until(lambda: not WebhookDelivery.objects.filter(status="pending").exists(), 5)
    assert wait_until(lambda: all(is_free(hook.pk) for hook in acme_hooks), 2)


def test_a_hanging_receiver_is_cut_off_alone_and_its_head_left_to_its_retry_run(
    transactional_db, acme, globex, receiver, loop, fast, monkeypatch
):
    """Its send fails at the timeout, in its own thread; the loop writes the try and
    schedules the retry run, as for a send that failed within its round."""
    from lots import tasks

    retries = []
    monkeypatch.setattr(
        tasks.webhook_deliver, "apply_async", lambda args, countdown: retries.append(args)
    )
    fast.PARKWEB_WEBHOOK_TIMEOUT = 2  # read by the loop at each round
    hanging = Receiver()
    release = threading.Event()
    hanging.answer = lambda _: (release.wait(5), (200, {}))[1]
    try:
        stuck, _ = services.webhook_create(acme, actor=SYSTEM, url=hanging.url)
        quick, _ = services.webhook_create(globex, actor=SYSTEM, url=receiver.url)
        emit(acme, 0)
        webhooks_wake([stuck.pk])
        assert wait_until(lambda: hanging.received, 2)
        emit(globex, 1)
        webhooks_wake([quick.pk])
        assert wait_until(lambda: receiver.received, 1.2)  # before the timeout
        head = stuck.deliveries.get()
        assert wait_until(lambda: (head.refresh_from_db(), head.attempts)[1] == 1, 4)
        assert head.status == "pending" and head.next_attempt_at is not None
        assert "timed out" in head.error.lower() or "timeout" in head.error.lower()
        assert wait_until(lambda: retries == [(stuck.pk,)], 2)  # once written, scheduled
        assert wait_until(lambda: is_free(stuck.pk), 1)
    finally:
        release.set()
        hanging.close()


def test_a_tenants_share_of_sends_going_on_alone_is_a_setting(db, acme, globex, fast):
    from concurrent.futures import Future

    fast.PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT = 1
    first, second = (
        services.webhook_create(acme, actor=SYSTEM, url=f"{url}/{n}")[0]
        for n, url in enumerate(["http://127.0.0.1:9"] * 2)
    )
    other, _ = services.webhook_create(globex, actor=SYSTEM, url="http://127.0.0.1:9/g")
    emit(acme, 0)
    emit(globex, 1)
    services.webhook_events_fan_out()
    queues = hooks._heads({first.pk, second.pk, other.pk})
    stragglers = Stragglers()
    stragglers.add(queues.pop(first.pk), Future())  # acme's one send going on alone
    assert stragglers.hold_back(queues) == [second.pk]  # not globex's
    fast.PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT = 2
    assert Stragglers().hold_back(queues) == []


def test_a_process_lets_only_so_many_sends_go_on_alone(
    transactional_db, acme, globex, slow_receiver, fast
):
    """Beyond its limit, a round waits for its slow sends as it did before."""
    fast.PARKWEB_WEBHOOK_TIMEOUT = 4
    first, _ = services.webhook_create(acme, actor=SYSTEM, url=f"{slow_receiver.url}1")
    second, _ = services.webhook_create(globex, actor=SYSTEM, url=f"{slow_receiver.url}2")
    emit(acme, 0)
    emit(globex, 0)
    stragglers = Stragglers(limit=1)
    began = time.monotonic()
    waits = services.webhooks_deliver([first.pk, second.pk], retries=False, stragglers=stragglers)
    assert time.monotonic() - began >= SLOW - 0.1  # one of them waited for
    assert len(stragglers) == 1 and len(waits) == 1 and list(waits.values()) == [None]
    (going,) = stragglers.sending()
    assert wait_until(lambda: len(slow_receiver.received) == 2 and not slow_receiver.busy, 3)
    time.sleep(0.05)
    waits = services.webhooks_deliver([], retries=False, stragglers=stragglers)
    assert waits == {going: None} and not stragglers
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert is_free(first.pk) and is_free(second.pk)


def test_a_run_sends_to_one_endpoint_for_its_budget_then_hands_over(db, acme, receiver, fast):
    """A retry run (a Celery task) of a slow receiver holds its worker SEND_BUDGET
    seconds plus one answer at most, not ROUNDS x CHUNK answers: the rest go in a fresh
    run (0: at once)."""
    fast.PARKWEB_WEBHOOK_SEND_BUDGET = 0.3
    receiver.answer = lambda _: (time.sleep(0.2), (200, {}))[1]
    hook, _ = services.webhook_create(acme, actor=SYSTEM, url=receiver.url)
    for n in range(6):
        emit(acme, n)
    began = time.monotonic()
    waits = services.webhooks_deliver([hook.pk])
    assert time.monotonic() - began < 1.0
    assert waits == {hook.pk: 0.0}
    assert [got.event["n"] for got in receiver.received] == [0, 1]
    assert hook.deliveries.filter(status="pending").count() == 4
    while waits[hook.pk] == 0.0:
        waits = services.webhooks_deliver([hook.pk])
    assert [got.event["n"] for got in receiver.received] == list(range(6))


def test_a_tenants_retry_runs_go_one_at_a_time_and_never_hold_up_another_tenants(
    db, acme, globex, receiver, fast, wake_list, monkeypatch
):
    """Its dead receivers hold one worker process at a time, whatever their number."""
    from lots import tasks

    later = []
    monkeypatch.setattr(
        tasks.webhook_deliver,
        "apply_async",
        lambda args, countdown: later.append((args, countdown)),
    )
    first, _ = services.webhook_create(acme, actor=SYSTEM, url=f"{receiver.url}/a1")
    second, _ = services.webhook_create(acme, actor=SYSTEM, url=f"{receiver.url}/a2")
    other, _ = services.webhook_create(globex, actor=SYSTEM, url=f"{receiver.url}/g1")
    emit(acme, 0)
    emit(globex, 1)
    with services.tenant_retry_slot(first.pk) as ours:
        assert ours  # acme's run going on (a dead receiver's, say)
        assert tasks.webhook_deliver.apply(args=(second.pk,)).get() == (
            "after its tenant's other retry"
        )
        assert [(args, round(wait)) for args, wait in later] == [((second.pk,), 1)]
        assert tasks.webhook_deliver.apply(args=(other.pk,)).get() == "idle"  # globex's goes
        assert [got.path for got in receiver.received] == ["/hook/g1"]
        key = hooks.RETRY_SLOT_KEY.format(acme.pk)
        assert 0 < wake_list.ttl(key) <= fast.PARKWEB_WEBHOOK_SEND_BUDGET + 1 + hooks.RETRY_SLACK
    assert wake_list.get(hooks.RETRY_SLOT_KEY.format(acme.pk)) is None  # let go
    hooks.retry_runs_started([second.pk])
    assert tasks.webhook_deliver.apply(args=(second.pk,)).get() == "idle"
    assert sorted(got.path for got in receiver.received) == ["/hook/a2", "/hook/g1"]


def test_a_round_waits_no_more_for_an_endpoint_known_to_be_slow(
    transactional_db, acme, globex, receiver, slow_receiver, fast, wake_list
):
    """Once an endpoint's send has outlasted PATIENCE, the rounds it is in no longer wait
    for it at all (every round with it would wait else), until it is quick again."""
    fast.PARKWEB_WEBHOOK_PATIENCE = 1.0
    fast.PARKWEB_WEBHOOK_TIMEOUT = 4
    slow, _ = services.webhook_create(acme, actor=SYSTEM, url=slow_receiver.url)
    quick, _ = services.webhook_create(globex, actor=SYSTEM, url=receiver.url)
    stragglers = Stragglers()
    emit(acme, 0)
    began = time.monotonic()
    services.webhooks_deliver([slow.pk], retries=False, stragglers=stragglers)
    assert 1.0 <= time.monotonic() - began < SLOW  # waited for, PATIENCE long
    assert stragglers.sending() == {slow.pk} and stragglers.slow() == {slow.pk}

    def written() -> dict:  # the loop's next run: what it wrote of its sends done
        return services.webhooks_deliver([], retries=False, stragglers=stragglers)

    assert wait_until(lambda: not slow_receiver.busy and len(slow_receiver.received) == 1, 3)
    assert wait_until(written, 1) == {slow.pk: None}
    assert stragglers.slow() == {slow.pk}  # 1.5 s: still slow
    emit(acme, 1)
    emit(globex, 2)
    began = time.monotonic()
    waits = services.webhooks_deliver([slow.pk, quick.pk], retries=False, stragglers=stragglers)
    assert time.monotonic() - began < 0.8  # not waited for this time (PATIENCE: 1 s)
    assert waits == {quick.pk: None} and stragglers.sending() == {slow.pk}
    assert [got.event["n"] for got in receiver.received] == [2]
    assert wait_until(lambda: not slow_receiver.busy and len(slow_receiver.received) == 2, 3)
    assert wait_until(written, 1) == {slow.pk: None}
    slow_receiver.answer = lambda _: (200, {})  # quick again
    emit(acme, 3)
    services.webhooks_deliver([slow.pk], retries=False, stragglers=stragglers)
    assert wait_until(lambda: len(slow_receiver.received) == 3, 2)
    assert wait_until(written, 1) == {slow.pk: None}
    assert stragglers.slow() == set()  # waited for again
    assert [got.event["n"] for got in slow_receiver.received] == [0, 1, 3]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}

"""Celery tasks: thin wrappers around services."""

import random

from celery import shared_task
from django.conf import settings

from . import services
from .models import AsteriskServer


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def deploy_server(self, server_id: int) -> str:
    """Run the server's queued deployment; retry with backoff while Asterisk is unreachable."""
    if not self.request.is_eager:
        delay = services.deployment_delay(server_id)
        if delay:  # a burst of changes is still arriving: deploy them together
            raise self.retry(countdown=delay)
    outcome, deployment = services.deployment_run(server_id)
    if self.request.is_eager:
        pass  # embedded mode: no broker to retry through; its retrier runs it when due
    elif outcome == services.Outcome.UNREACHABLE:
        backoff = services.retry_delay(deployment.attempts)
        raise self.retry(countdown=backoff * random.uniform(0.8, 1.2))  # noqa: S311
    elif outcome == services.Outcome.BUSY:
        # A live holder runs what is queued when it finishes; this retry only matters when
        # the holder died and its lease must run out first.
        raise self.retry(countdown=max(1, settings.PARKWEB_DEPLOY_LEASE_SECONDS / 3))
    # Changes saved while this deploy ran wait as a new pending deployment: run it now.
    # Checked after the lock is released, so a task that found the lock busy is never lost.
    if outcome == services.Outcome.DONE and services.deployment_pending(server_id):
        deploy_server.delay(server_id)
    return outcome


@shared_task
def recover_deployments() -> int:
    """Queued by each worker as it starts: deploys a dead worker left unfinished."""
    return services.deployments_recover()


@shared_task
def hints_sync(server_id: int) -> dict:
    """After a watcher (re)connects: a restarted Asterisk has lost parkweb's lamps and
    its generated timeout contexts."""
    server = AsteriskServer.objects.filter(pk=server_id).first()
    return services.hints_sync(server, dialplan=True) if server else {}


@shared_task(bind=True)
def webhook_deliver(self, webhook_id: int) -> str:
    """An endpoint's retry: deliver its queue in order once its failed head is due. One
    of a tenant's at a time (services.tenant_retry_slot); the others wait their turn."""
    services.retry_runs_started([webhook_id])
    with services.tenant_retry_slot(webhook_id) as ours:
        if ours:
            return deliver_run([webhook_id], eager=self.request.is_eager).get(webhook_id, "idle")
    wait = services.RETRY_SLOT_WAIT * random.uniform(1.0, 1.5)  # noqa: S311
    if services.retry_scheduled(webhook_id, wait):
        webhook_deliver.apply_async((webhook_id,), countdown=wait)
    return "after its tenant's other retry"


@shared_task(bind=True)
def webhooks_deliver(self, webhook_ids: list[int]) -> dict[int, str]:
    """Endpoints side by side: those beat found due, or every event's without a Redis
    broker (with one, the workers' delivery loops take them: DeliveryLoop)."""
    services.retry_runs_started(webhook_ids)
    return deliver_run(webhook_ids, eager=self.request.is_eager)


def loop_deliver_run(webhook_ids: list[int], stragglers=None) -> dict[int, str]:
    """A delivery loop's batch (DeliveryLoop): heads that failed before wait for their
    retry run; sends that outlast their round go on alone (services.Stragglers)."""
    return deliver_run(webhook_ids, retries=False, stragglers=stragglers)


def deliver_run(
    webhook_ids: list[int], *, eager: bool = False, retries: bool = True, stragglers=None
) -> dict[int, str]:
    """Deliver these endpoints' queues; an endpoint whose head failed gets one retry run
    scheduled for when it is due, and one with more to send is woken again at once
    (`retries`, `stragglers`: see services.webhooks_deliver)."""
    done, more = {}, []
    waits = services.webhooks_deliver(webhook_ids, retries=retries, stragglers=stragglers)
    for webhook_id, wait in waits.items():
        if wait is None:
            done[webhook_id] = "idle"
        elif eager:
            done[webhook_id] = "waiting"  # embedded mode: its supervisor delivers what is due
        elif wait == 0:
            more.append(webhook_id)
            done[webhook_id] = "more"
        else:
            if services.retry_scheduled(webhook_id, wait):
                webhook_deliver.apply_async((webhook_id,), countdown=wait)
            done[webhook_id] = f"again in {wait:.2f} s"
    if more:
        services.webhooks_wake(more)
    return done


@shared_task
def webhook_deliveries_due() -> int:
    """Beat: endpoints whose queued head is due (a lost task never strands one)."""
    return services.webhook_deliveries_due()


@shared_task
def retrieve_cancel(server_id: int, channel_id: str) -> bool:
    """Stop ringing a phone for a parked call that has left meanwhile."""
    return services.retrieve_ringing_cancel(server_id, channel_id)


@shared_task
def reconcile_servers() -> dict[str, str]:
    """Beat: compare every server with the database; drift is recorded and redeployed.
    A deployment whose retry was lost (a broker restarted, say) is started again."""
    services.deployments_retry_due(grace=settings.PARKWEB_DEPLOY_RETRY_MAX_SECONDS + 30)
    drifts = {}
    for server in AsteriskServer.objects.all():
        drift = services.server_reconcile(server)
        if drift:
            drifts[server.name] = drift
    return drifts


@shared_task
def purge_parked_calls() -> int:
    """Beat: delete parked-call history older than PARKWEB_HISTORY_DAYS."""
    return services.parked_calls_purge()


@shared_task
def purge_webhook_deliveries() -> int:
    """Beat: delete the webhook log's deliveries older than PARKWEB_WEBHOOK_LOG_DAYS."""
    return services.webhook_deliveries_purge()

"""Deploys: queue, coalesce, run (one at a time per server), reconcile."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..asterisk import deploy
from ..asterisk.ami import AmiClient, AmiError
from ..locks import server_deploy_lock
from ..models import AsteriskServer, Deployment, ServerDeployState
from ..selectors import files_hash, last_good_deployment, server_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who caused a change: recorded on the deployment it triggers."""

    trigger: str = Deployment.Trigger.SYSTEM
    user: Any = None

    @classmethod
    def of(cls, user) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return SYSTEM
        return cls(Deployment.Trigger.USER, user)


SYSTEM = Actor()


def config_changed(server_id: int, actor: Actor = SYSTEM, reason: str = "") -> None:
    """Note that the server's config may have changed; one deploy is queued on commit."""
    ServerDeployState.objects.get_or_create(server_id=server_id)
    ServerDeployState.objects.filter(server_id=server_id).update(
        config_version=F("config_version") + 1, changed_at=timezone.now()
    )
    # One request per server per transaction, however many objects it changed.
    connection = transaction.get_connection()
    if any(
        getattr(callback, "deploys_server", None) == server_id
        for _, callback, _ in connection.run_on_commit
    ):
        return

    def request() -> None:
        deployment_request(server_id, actor, reason)

    request.deploys_server = server_id
    transaction.on_commit(request)


def deployment_request(
    server_id: int,
    actor: Actor = SYSTEM,
    reason: str = "",
    *,
    force: bool = False,
    enqueue: bool = True,
) -> Deployment | None:
    """Queue a deploy of the server, unless one is queued already (the change joins it).

    Returns the new pending Deployment, or None when an earlier one will carry the change.
    """
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                server_id=server_id,
                trigger=actor.trigger,
                triggered_by=actor.user,
                reason=reason[:200],
                forced=force,
            )
    except IntegrityError:  # one is queued: this change joins it
        joined = Deployment.objects.filter(server_id=server_id, status=Deployment.Status.PENDING)
        joined.update(changes=F("changes") + 1, **({"forced": True} if force else {}))
        return None
    if enqueue:
        from ..tasks import deploy_server  # tasks call services; import here, not at the top

        deploy_server.delay(server_id)
    return deployment


class Outcome:
    BUSY = "busy"  # another worker holds the server; it will pick up what is queued
    IDLE = "idle"  # nothing queued
    DONE = "done"  # a deployment finished (ok, failed or rolled back)
    UNREACHABLE = "unreachable"  # Asterisk could not be reached; the deployment stays pending


def deployment_run(server_id: int) -> tuple[str, Deployment | None]:
    """Run the server's queued deployment, one at a time per server."""
    with server_deploy_lock(server_id) as held:
        if not held:
            return Outcome.BUSY, None
        _end_interrupted(server_id)
        deployment = _claim(server_id)
        if deployment is None:
            return Outcome.IDLE, None
        return _execute(deployment), deployment


def deployment_delay(server_id: int) -> float:
    """Seconds to hold the queued deployment back: while a burst of changes goes on (more
    than one change queued, the last less than QUIET ago), up to MAX_WAIT after queueing."""
    pending = Deployment.objects.filter(
        server_id=server_id, status=Deployment.Status.PENDING
    ).first()
    if pending is None or pending.changes < 2:
        return 0.0
    changed_at = (
        ServerDeployState.objects.filter(server_id=server_id)
        .values_list("changed_at", flat=True)
        .first()
    )
    now = timezone.now()
    quiet = settings.PARKWEB_DEPLOY_QUIET_SECONDS
    if changed_at is None or (now - changed_at).total_seconds() >= quiet:
        return 0.0
    if (now - pending.created_at).total_seconds() >= settings.PARKWEB_DEPLOY_MAX_WAIT_SECONDS:
        return 0.0
    return quiet


def deployment_pending(server_id: int) -> bool:
    return Deployment.objects.filter(server_id=server_id, status=Deployment.Status.PENDING).exists()


def _end_interrupted(server_id: int) -> None:
    """A deployment still 'running' while we hold the lock was left by a dead worker."""
    Deployment.objects.filter(server_id=server_id, status=Deployment.Status.RUNNING).update(
        status=Deployment.Status.FAILED,
        finished_at=timezone.now(),
        error="Interrupted: the worker stopped during this deploy. The next deploy rewrites "
        "and verifies the config.",
    )


@transaction.atomic
def _claim(server_id: int) -> Deployment | None:
    deployment = (
        Deployment.objects.select_for_update()
        .filter(server_id=server_id, status=Deployment.Status.PENDING)
        .first()
    )
    if deployment is None:
        return None
    state, _ = ServerDeployState.objects.get_or_create(server_id=server_id)
    files = server_config(deployment.server)
    deployment.status = Deployment.Status.RUNNING
    deployment.started_at = timezone.now()
    deployment.attempts += 1
    deployment.config_version = state.config_version
    deployment.res_parking_conf = files[deploy.RES_PARKING]
    deployment.features_conf = files[deploy.FEATURES]
    deployment.config_hash = files_hash(files)
    deployment.save()
    return deployment


def ami_client(server: AsteriskServer, **kwargs) -> AmiClient:
    kwargs.setdefault("timeout", settings.PARKWEB_AMI_TIMEOUT)
    kwargs.setdefault("reload_timeout", settings.PARKWEB_RELOAD_TIMEOUT)
    return AmiClient(
        server.ami_host, server.ami_port, server.ami_username, server.ami_secret, **kwargs
    )


def config_store(server: AsteriskServer, ami: AmiClient) -> deploy.ConfigStore:
    if server.delivery == "ami":
        return deploy.AmiStore(ami)
    return deploy.DirectoryStore(server.config_dir)


def _execute(deployment: Deployment) -> str:
    server = deployment.server
    files = {
        deploy.RES_PARKING: deployment.res_parking_conf,
        deploy.FEATURES: deployment.features_conf,
    }
    state = ServerDeployState.objects.get(server_id=server.pk)
    if deployment.config_hash == state.deployed_hash and not deployment.forced:
        _finish(deployment, Deployment.Status.OK, reason_suffix="unchanged: no reload sent")
        _mark_live(deployment)
        return Outcome.DONE

    last_ok = last_good_deployment(server.pk)

    async def run() -> tuple[deploy.Outcome, dict[str, str | None]]:
        async with ami_client(server) as ami:
            store = config_store(server, ami)
            if last_ok is not None:
                last_good = {
                    deploy.RES_PARKING: last_ok.res_parking_conf,
                    deploy.FEATURES: last_ok.features_conf,
                }
            else:  # first deploy: whatever was there before parkweb is the fallback
                last_good = {name: await store.read(name) for name in files}
            plan = deploy.Plan(files=files, last_good=last_good, force=deployment.forced)
            return await deploy.apply(ami, store, plan), last_good

    try:
        outcome, last_good = asyncio.run(run())
    except AmiError as exc:  # unreachable, timed out or refused our login: try again later
        _back_to_pending(deployment, exc)
        return Outcome.UNREACHABLE

    deployment.reloaded = outcome.reloaded
    deployment.replies = outcome.replies
    deployment.error = outcome.error
    if outcome.status == Deployment.Status.OK:
        _finish(deployment, outcome.status)
        _mark_live(deployment)
    else:
        log.error("deployment %s on %s: %s", deployment.pk, server.name, outcome.error)
    # The diff is for people reading the history: computed once the config is live.
    deployment.diff = deploy.unified_diff(last_good, files)
    if outcome.status == Deployment.Status.OK:
        deployment.save(update_fields=["diff"])
    else:
        _finish(deployment, outcome.status)
    return Outcome.DONE


def _finish(deployment: Deployment, status: str, reason_suffix: str = "") -> None:
    deployment.status = status
    deployment.finished_at = timezone.now()
    if reason_suffix:
        deployment.reason = f"{deployment.reason} ({reason_suffix})"[-200:]
    deployment.save()


def _mark_live(deployment: Deployment) -> None:
    ServerDeployState.objects.filter(server_id=deployment.server_id).update(
        deployed_version=deployment.config_version,
        deployed_hash=deployment.config_hash,
        deployed_at=deployment.finished_at,
    )


def _back_to_pending(deployment: Deployment, exc: Exception) -> None:
    """Asterisk could not be reached: the deployment waits (and is retried) as pending."""
    deployment.error = f"Asterisk unreachable, will retry: {exc}"
    deployment.replies = [*deployment.replies, {"action": "connect", "error": str(exc)}]
    deployment.status = Deployment.Status.PENDING
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError:  # a newer pending deployment carries this change too
        deployment.status = Deployment.Status.FAILED
        deployment.finished_at = timezone.now()
        deployment.error += " (superseded by a newer deployment)"
        deployment.save()


# -- reconcile -----------------------------------------------------------------------------


def server_reconcile(server: AsteriskServer) -> str | None:
    """Compare what Asterisk runs (and the files it would load) with the last confirmed
    config; on drift, record it and queue a forced deploy. Returns the drift, if any."""
    state, _ = ServerDeployState.objects.get_or_create(server_id=server.pk)
    if state.config_version > state.deployed_version and not deployment_pending(server.pk):
        deployment_request(server.pk, SYSTEM, "reconcile: changes not yet live")
    last_ok = last_good_deployment(server.pk)
    if last_ok is None:
        return None
    files = {deploy.RES_PARKING: last_ok.res_parking_conf, deploy.FEATURES: last_ok.features_conf}

    async def check() -> list[str]:
        async with ami_client(server) as ami:
            problems = await deploy.running_differences(ami, files, [])
            if server.delivery == "file":
                store = config_store(server, ami)
                for name, text in files.items():
                    if await store.read(name) != text:
                        problems.append(f"{name} on disk differs from the deployed file")
            return problems

    try:
        problems = asyncio.run(check())
    except AmiError as exc:
        log.warning("reconcile %s: %s", server.name, exc)
        return None
    if not problems:
        return None
    drift = "; ".join(problems[:10])
    log.warning("drift on %s: %s", server.name, drift)
    deployment_request(server.pk, SYSTEM, f"drift: {drift}", force=True)
    return drift

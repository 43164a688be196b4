"""Deploys: queue, coalesce, run (one at a time per server), reconcile."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from tenants.actors import SYSTEM, Actor
from tenants.models import Tenant

from .. import rules
from ..asterisk import comeback, confgen, deploy, dialplan, hints
from ..asterisk.ami import AmiClient, AmiError
from ..locks import server_deploy_lock
from ..models import AsteriskServer, Deployment, ParkingLot, ServerDeployState
from ..selectors import (
    deployment_error_for,
    files_hash,
    last_good_deployment,
    server_config,
    server_lots,
)
from ..validation import lot_conflict_violations, lot_extensions, lot_field_violations

log = logging.getLogger(__name__)

# Which process ran a deployment, as the watchers' names say it (lots.supervisor): with
# workers on several hosts, the one whose log to read.
WORKER = f"{socket.gethostname()}:{os.getpid()}"


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
        # A deployment waiting for Asterisk to come back whose retry time has come runs now,
        # with this change: it never waits for yet another change.
        if enqueue and joined.filter(next_attempt_at__lte=timezone.now()).exists():
            _enqueue(server_id)
        return None
    if enqueue:
        _enqueue(server_id)
    return deployment


def _enqueue(server_id: int) -> None:
    from ..tasks import deploy_server  # tasks call services; import here, not at the top

    deploy_server.delay(server_id)


def retry_delay(attempts: int) -> float:
    """Seconds before the next try while Asterisk is unreachable: 2, 4, 8, ... at most
    PARKWEB_DEPLOY_RETRY_MAX_SECONDS."""
    return float(min(2 ** min(max(attempts, 1), 10), settings.PARKWEB_DEPLOY_RETRY_MAX_SECONDS))


def deployments_retry_due(grace: float = 0.0) -> int:
    """Run every pending deployment whose retry time has come (`grace` seconds ago), or
    that has waited that long without one. The embedded mode calls it every few seconds
    (it has no broker to retry through); beat calls it with a grace, to catch a retry lost
    with its broker. Returns how many were started."""
    cutoff = timezone.now() - timedelta(seconds=grace)
    due = Deployment.objects.filter(status=Deployment.Status.PENDING).filter(
        Q(next_attempt_at__lte=cutoff)
        | Q(next_attempt_at__isnull=True, created_at__lte=cutoff - timedelta(seconds=30))
    )
    servers = list(due.values_list("server_id", flat=True))
    for server_id in servers:
        _enqueue(server_id)
    return len(servers)


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
        if _end_interrupted(server_id) and not deployment_pending(server_id):
            # What it carried is not known to be live: deploy the config again.
            deployment_request(
                server_id, SYSTEM, "redeploy: the last deploy was interrupted", enqueue=False
            )
        deployment = _claim(server_id)
        if deployment is None:
            return Outcome.IDLE, None
        return _execute(deployment), deployment


def deployments_recover() -> int:
    """When a worker starts: run every server's deployment left running by a worker that
    died (its deploy lock went with it) or left pending, at once rather than at the next
    reconcile. A deployment still running in a live worker keeps its lock: the task then
    finds the server busy and waits for it. Returns how many servers were queued."""
    servers = set(
        Deployment.objects.filter(
            status__in=[Deployment.Status.RUNNING, Deployment.Status.PENDING]
        ).values_list("server_id", flat=True)
    )
    for server_id in servers:
        _enqueue(server_id)
    if servers:
        log.info("worker start: %d server(s) with an unfinished deploy queued", len(servers))
    return len(servers)


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


def _end_interrupted(server_id: int) -> int:
    """A deployment still 'running' while we hold the lock was left by a dead worker."""
    return Deployment.objects.filter(server_id=server_id, status=Deployment.Status.RUNNING).update(
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
    deployment.status = Deployment.Status.RUNNING
    deployment.started_at = timezone.now()
    deployment.worker = WORKER
    deployment.attempts += 1
    deployment.next_attempt_at = None
    deployment.config_version = state.config_version
    _carry(deployment, server_config(deployment.server))
    deployment.save()
    return deployment


def _carry(deployment: Deployment, files: dict[str, str]) -> None:
    deployment.res_parking_conf = files[deploy.RES_PARKING]
    deployment.features_conf = files[deploy.FEATURES]
    deployment.dialplan_conf = files[deploy.DIALPLAN]
    deployment.config_hash = files_hash(files)


def _files(deployment: Deployment) -> dict[str, str]:
    return {
        deploy.RES_PARKING: deployment.res_parking_conf,
        deploy.FEATURES: deployment.features_conf,
        # Deployments from before the generated dialplan carry none: unknown, not empty.
        **({deploy.DIALPLAN: deployment.dialplan_conf} if deployment.dialplan_conf else {}),
    }


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
    state = ServerDeployState.objects.get(server_id=server.pk)
    if deployment.config_hash == state.deployed_hash and not deployment.forced:
        _finish(
            deployment,
            Deployment.Status.OK,
            reason_suffix="unchanged: no reload sent",
            before=deployment.res_parking_conf,
        )
        _mark_live(deployment)
        return Outcome.DONE

    last_ok = last_good_deployment(server.pk)
    try:
        outcome, last_good = _apply(server, _files(deployment), last_ok, deployment.forced)
        if outcome.status == Deployment.Status.FAILED and outcome.restored:
            # Asterisk refused it and runs the last good config again. If lots of the
            # config are the cause, leave them out so that everyone else's changes go live.
            deployment.set_aside = _set_aside_refused(server, _files(deployment), last_good)
            if deployment.set_aside:
                _carry(deployment, server_config(server))
                refused = outcome
                outcome, _ = _apply(server, _files(deployment), last_ok, deployment.forced)
                outcome.replies = refused.replies + outcome.replies
    except AmiError as exc:  # unreachable, timed out or refused our login: try again later
        _back_to_pending(deployment, exc)
        return Outcome.UNREACHABLE

    deployment.reloaded = outcome.reloaded
    deployment.replies = outcome.replies
    reloads = [r["seconds"] for r in outcome.replies if r.get("action") == "Reload"]
    deployment.reload_seconds = round(sum(reloads), 4) if reloads else None
    deployment.error = outcome.error
    files = _files(deployment)
    # The diff is for people reading the history: computed once the config is live.
    deployment.diff = deploy.unified_diff(last_good, files)
    suffix = ""
    if deployment.set_aside:
        names = ", ".join(lot["lot"] for lot in deployment.set_aside)
        suffix = f"set aside, not live: {names}"
    before = last_good.get(deploy.RES_PARKING)
    _finish(deployment, outcome.status, reason_suffix=suffix, before=before)
    if outcome.status == Deployment.Status.OK:
        _mark_live(deployment)
        deployment.replies.append(hints_sync(server, files))
        deployment.save(update_fields=["replies"])
    return Outcome.DONE


def hints_sync(
    server: AsteriskServer, files: dict[str, str] | None = None, *, dialplan: bool = False
) -> dict:
    """Make the live dialplan, and parkweb_hints.conf, hold the busy-lamp hints of the
    lots `files` (else the last good config) runs, in parkweb's own hints contexts
    (lots.asterisk.hints); with `dialplan`, the generated timeout contexts too (a restart
    or a `dialplan reload` without parkweb_timeout.conf included drops them). Returns a
    reply for the record: what changed, or why not."""
    if files is None:
        last_ok = last_good_deployment(server.pk)
        if last_ok is None:
            return {"action": "hints", "changes": []}
        files = _files(last_ok)
    wanted = hints.wanted_hints(deploy.sections_of(files[deploy.RES_PARKING]))
    state, _ = ServerDeployState.objects.get_or_create(server_id=server.pk)
    client = ami_client(server)
    reply: dict = {"action": "hints"}

    async def write_file(ami: AmiClient) -> None:
        store = config_store(server, ami)
        text = hints.hints_file(wanted)
        try:
            current = await store.read(hints.HINTS_FILE)
            if current is None or deploy.sections_of(current) != deploy.sections_of(text):
                await store.replace(hints.HINTS_FILE, text)
                reply["file"] = "written"
        except (AmiError, OSError) as exc:
            # The live hints still work; only a dialplan reload would drop them.
            log.warning("%s: %s not written: %s", server.name, hints.HINTS_FILE, exc)
            reply["file_error"] = str(exc)

    generated = comeback.parse(files.get(deploy.DIALPLAN)) if dialplan else {}

    async def run() -> list[str]:
        async with client as ami:
            await write_file(ami)
            changes = await hints.sync_hints(ami, wanted, state.hint_contexts)
            return changes + await comeback.sync(ami, generated, generated)

    try:
        changes = asyncio.run(run())
    except AmiError as exc:
        log.warning("%s: lamps (hints) not synced: %s", server.name, exc)
        return {**reply, "error": str(exc)}
    ServerDeployState.objects.filter(server_id=server.pk).update(hint_contexts=sorted(wanted))
    if changes:
        log.info("%s: %d hint(s) changed", server.name, len(changes))
    return {**reply, "changes": changes[:50], "count": len(changes)}


def _apply(
    server: AsteriskServer,
    files: dict[str, str],
    last_ok: Deployment | None,
    force: bool,
) -> tuple[deploy.Outcome, dict[str, str | None]]:
    """Write, reload, verify, roll back on Asterisk (lots.asterisk.deploy.apply)."""
    client = ami_client(server)

    async def run() -> tuple[deploy.Outcome, dict[str, str | None]]:
        async with client as ami:
            store = config_store(server, ami)
            if last_ok is not None:
                last_good = _files(last_ok)
            else:  # first deploy: whatever was there before parkweb is the fallback
                last_good = {name: await store.read(name) for name in files}
            plan = deploy.Plan(files=files, last_good=last_good, force=force)
            return await deploy.apply(ami, store, plan), last_good

    return asyncio.run(run())


def _set_aside_refused(
    server: AsteriskServer, files: dict[str, str], last_good: dict[str, str | None]
) -> list[dict]:
    """After Asterisk refused a config: find the lots that caused it and set them aside
    (left out of the config, their tenant told why). Returns [{lot, tenant, reason}].

    First, lots whose park extension or spaces meet an extension the PBX's dialplan has in
    their context that res_parking did not make (the known cause: the reload fails when
    it cannot register them). Else, of the lots this deploy changes, those that break
    parkweb's own rules as stored. Else, every lot this deploy changes.
    """
    lots = list(server_lots(server))
    culprits: dict[int, tuple[ParkingLot, str, str]] = {}
    contexts = {lot.context.name for lot in lots}
    client = ami_client(server)

    async def read() -> dict[str, set[str]]:
        async with client as ami:
            return await dialplan.foreign_extensions(ami, contexts)

    try:
        taken = asyncio.run(read()) if contexts else {}
    except AmiError as exc:
        log.warning("%s: dialplan not read after a refused deploy: %s", server.name, exc)
        taken = {}
    for lot in lots:
        found = rules.find_dialplan_collisions(
            lot_extensions(lot), lot.context.name, taken.get(lot.context.name, ())
        )
        if found:
            extension = _first_extension(lot, taken.get(lot.context.name, set()))
            culprits[lot.pk] = (lot, " ".join(v.message for v in found), extension)
    changed_names = deploy.changed_sections(
        last_good.get(deploy.RES_PARKING), files[deploy.RES_PARKING]
    )
    changed = [
        lot
        for lot in lots
        if changed_names is None or confgen.lot_section_name(server, lot) in changed_names
    ]
    if not culprits:
        # Lots that break parkweb's own rules as stored (written around the checks, or
        # by an older version): of a pair that collides, the one that changed.
        for lot in changed:
            found = lot_field_violations(lot) + lot_conflict_violations(lot)
            if found:
                culprits[lot.pk] = (lot, " ".join(v.message for v in found), "")
    if not culprits:
        for lot in changed:
            culprits[lot.pk] = (
                lot,
                "Asterisk refused the configuration with this lot's latest change, and "
                "nothing in the PBX's dialplan explains it. Change the lot (saving it "
                "tries again) or ask your operator to look at the PBX's log.",
                "",
            )
    now = timezone.now()
    for lot, reason, extension in culprits.values():
        ParkingLot.objects.filter(pk=lot.pk).update(
            held_reason=reason, held_extension=extension, held_at=now
        )
        log.warning("%s: lot %s set aside: %s", server.name, lot.asterisk_name, reason)
    return [
        {"lot": lot.asterisk_name, "tenant": lot.tenant.slug, "reason": reason}
        for lot, reason, _ in culprits.values()
    ]


def _first_extension(lot: ParkingLot, taken: set[str]) -> str:
    extensions = lot_extensions(lot)
    if extensions.parkext and extensions.parkext in taken:
        return extensions.parkext
    return min((e for e in taken if extensions.has_space(e)), key=int, default="")


def _finish(
    deployment: Deployment, status: str, *, reason_suffix: str = "", before: str | None
) -> None:
    """End the deployment; `before` is the res_parking.conf Asterisk ran before it."""
    deployment.status = status
    deployment.finished_at = timezone.now()
    if reason_suffix:
        deployment.reason = f"{deployment.reason} ({reason_suffix})"[-200:]
    deployment.save()
    tenants = _changed_tenants(deployment, before)
    _log_finished(deployment, tenants)
    _tell_tenants(deployment, tenants)


def _changed_tenants(deployment: Deployment, before: str | None) -> list[str]:
    """The slugs of the tenants whose lots (or timeout chains) the deployment changed."""
    changed = deploy.changed_sections(before, deployment.res_parking_conf) or set()
    # A lot's section is `<tenant slug>_<lot slug>` (ParkingLot.asterisk_name); its timeout
    # context `parkweb-timeout-<tenant slug>_<lot slug>`.
    names = {name.removeprefix(confgen.TIMEOUT_PREFIX) for name in changed}
    if deployment.replies:
        for reply in deployment.replies:
            if reply.get("action") == "dialplan":
                names |= {
                    line.split()[1].removeprefix(confgen.TIMEOUT_PREFIX)
                    for line in reply.get("changes", ())
                    if len(line.split()) > 1
                }
    return sorted({name.partition("_")[0] for name in names if "_" in name})


def _tell_tenants(deployment: Deployment, tenants: list[str]) -> None:
    """`deployment.finished` to the webhooks of the tenants whose lots it changed, as each
    may see it (other tenants' lots and problems are not named)."""
    from .webhooks import event_emit  # webhooks queue deliveries: no cycle at import

    for tenant in Tenant.objects.filter(slug__in=tenants):

        def data(tenant=tenant) -> dict:
            return {
                "deployment": {
                    "id": deployment.pk,
                    "status": deployment.status,
                    "finished_at": deployment.finished_at.isoformat().replace("+00:00", "Z"),
                    "error": deployment_error_for(tenant, deployment),
                    "set_aside": [
                        entry
                        for entry in deployment.set_aside or []
                        if entry.get("tenant") == tenant.slug
                    ],
                }
            }

        event_emit(tenant.pk, "deployment.finished", None, data)


def _log_finished(deployment: Deployment, tenants: list[str]) -> None:
    """One line per deploy, with the tenants whose lots it changed (see parkweb.logs)."""
    took = (deployment.finished_at - deployment.created_at).total_seconds()
    level = logging.INFO if deployment.status == Deployment.Status.OK else logging.ERROR
    log.log(
        level,
        "deployment %s on %s: %s after %.2f s by %s (tenants: %s)%s",
        deployment.pk,
        deployment.server.name,
        deployment.status,
        took,
        deployment.worker or WORKER,
        ", ".join(tenants) or "none",
        f": {deployment.error}" if deployment.error else "",
        extra={
            "server": deployment.server.name,
            "deployment": deployment.pk,
            "outcome": deployment.status,
            "tenants": tenants,
            "worker": deployment.worker or WORKER,
        },
    )


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
    deployment.next_attempt_at = timezone.now() + timedelta(
        seconds=retry_delay(deployment.attempts)
    )
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
    config; on drift, record it and queue a forced deploy. Lots set aside because an
    extension of the PBX's dialplan was in their way come back once it is gone. Returns
    the drift, if any."""
    from .config import lots_retry  # config saves queue deploys from here: no cycle at import

    state, _ = ServerDeployState.objects.get_or_create(server_id=server.pk)
    if state.config_version > state.deployed_version and not deployment_pending(server.pk):
        deployment_request(server.pk, SYSTEM, "reconcile: changes not yet live")
    held = list(
        ParkingLot.objects.filter(server=server)
        .exclude(held_extension="")
        .select_related("context")
    )
    last_ok = last_good_deployment(server.pk)
    files = _files(last_ok) if last_ok is not None else None
    client = ami_client(server)

    async def check() -> tuple[list[str], dict[str, set[str]]]:
        async with client as ami:
            taken = await dialplan.foreign_extensions(ami, {lot.context.name for lot in held})
            if files is None:
                return [], taken
            problems = await deploy.running_differences(ami, files, [])
            if server.delivery == "file":
                store = config_store(server, ami)
                for name, text in files.items():
                    if await store.read(name) != text:
                        problems.append(f"{name} on disk differs from the deployed file")
            return problems, taken

    try:
        problems, taken = asyncio.run(check())
    except AmiError as exc:
        log.warning("reconcile %s: %s", server.name, exc)
        return None
    # A dialplan reload or a restart drops them: put them back.
    hints_sync(server, files, dialplan=True)
    cleared = [lot for lot in held if lot.held_extension not in taken[lot.context.name]]
    if cleared:
        lots_retry(cleared)
        log.info(
            "%s: %d set-aside lot(s) back: the PBX's extensions are gone", server.name, len(cleared)
        )
    if not problems:
        return None
    drift = "; ".join(problems[:10])
    log.warning("drift on %s: %s", server.name, drift)
    deployment_request(server.pk, SYSTEM, f"drift: {drift}", force=True)
    return drift

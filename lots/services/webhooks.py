"""Tenants' webhooks: endpoints, the events queued for them, and their delivery.

Events are queued where they happen (a parked call's change, in the watcher's
transaction: one indexed query when the tenant has no endpoint) and delivered by Celery
workers, never in the watcher's path. Each endpoint gets its events in the order they
happened: one worker at a time delivers an endpoint's queue, head first, and a failing
head holds the rest back until it is delivered or given up (after
PARKWEB_WEBHOOK_RETRY_SECONDS, with backoff). An endpoint whose delivery is given up is
paused and its tenant's admins are mailed; saving it as active again resumes it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from parkweb.errors import Invalid
from tenants.actors import Actor
from tenants.audit import audit
from tenants.models import Membership, Role, Tenant

from .. import webhooks
from ..frames import call_data
from ..locks import webhook_lock
from ..models import ParkedCall, Webhook, WebhookDelivery

log = logging.getLogger(__name__)

MAX_PER_TENANT = 20
BATCH = 200  # deliveries one task run sends before handing over to a fresh run


def _clean(url: str, events, description: str) -> tuple[str, list[str], str]:
    errors = {}
    try:
        webhooks.check_literal(webhooks.parse_url(url, debug=settings.DEBUG), debug=settings.DEBUG)
    except webhooks.Refused as exc:
        errors["url"] = str(exc)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        errors["events"] = "Give a list of event types (empty: all)."
    else:
        unknown = sorted(set(events) - set(webhooks.EVENT_TYPES))
        if unknown:
            errors["events"] = (
                f"Unknown event type(s): {', '.join(unknown)[:100]}. "
                f"Known: {', '.join(webhooks.EVENT_TYPES)}."
            )
    description = (description or "").strip()
    if len(description) > 200 or not description.isprintable():
        errors["description"] = "Use at most 200 characters on one line."
    if errors:
        raise Invalid(errors)
    return url, sorted(set(events)), description


@transaction.atomic
def webhook_create(
    tenant: Tenant, *, actor: Actor, url: str, events=(), description: str = ""
) -> tuple[Webhook, str]:
    """A new endpoint and its signing secret, which is shown once and never again."""
    url, events, description = _clean(url, list(events), description)
    if Webhook.objects.filter(tenant=tenant).count() >= MAX_PER_TENANT:
        raise Invalid({"url": f"A tenant has at most {MAX_PER_TENANT} webhooks."})
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    webhook = Webhook(tenant=tenant, url=url, events=events, description=description)
    webhook.secret = secret
    webhook.save()
    audit(actor, "webhook.create", url[:100], tenant=tenant)
    return webhook, secret


@transaction.atomic
def webhook_update(webhook: Webhook, *, actor: Actor, **fields) -> Webhook:
    """Change url, events, description or active; saving it active resumes a paused one
    (its held-back events are delivered, in order)."""
    url, events, description = _clean(
        fields.get("url", webhook.url),
        fields.get("events", webhook.events),
        fields.get("description", webhook.description),
    )
    webhook.url, webhook.events, webhook.description = url, events, description
    if "active" in fields:
        webhook.active = bool(fields["active"])
        if webhook.active:
            webhook.paused_at, webhook.paused_reason = None, ""
    webhook.save()
    audit(actor, "webhook.update", url[:100], tenant=webhook.tenant_id)
    if webhook.active:
        _enqueue_on_commit(webhook.pk)
    return webhook


@transaction.atomic
def webhook_staff_update(
    webhook: Webhook, *, actor: Actor, active: bool, allow_private: bool
) -> Webhook:
    """Staff only (the admin): pause or resume, and allow private addresses or not."""
    if not actor.is_staff:
        raise Invalid({"allow_private": "Only staff may allow private addresses."})
    webhook.allow_private = allow_private
    webhook.save(update_fields=["allow_private"])
    audit(
        actor,
        "webhook.allow_private",
        f"{webhook.url[:80]}: {allow_private}",
        tenant=webhook.tenant_id,
    )
    return webhook_update(webhook, actor=actor, active=active)


@transaction.atomic
def webhook_delete(webhook: Webhook, *, actor: Actor) -> None:
    audit(actor, "webhook.delete", webhook.url[:100], tenant=webhook.tenant_id)
    webhook.delete()


def webhook_test(webhook: Webhook, *, actor: Actor) -> WebhookDelivery:
    """Queue a `test` event for this endpoint alone (also when it does not ask for it)."""
    with transaction.atomic():
        delivery = _queue(webhook, _event("test", webhook.tenant, None, {}), timezone.now())
        audit(actor, "webhook.test", webhook.url[:100], tenant=webhook.tenant_id)
        _enqueue_on_commit(webhook.pk)
    return delivery


# -- events ---------------------------------------------------------------------------------


def _event(kind: str, tenant: Tenant, lot_slug: str | None, data: dict) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "time": timezone.now().isoformat().replace("+00:00", "Z"),
        "tenant": tenant.slug,
        "lot": lot_slug,
        **data,
    }


def _queue(webhook: Webhook, event: dict, occurred_at: datetime) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        webhook=webhook,
        event_id=event["id"],
        event_type=event["type"],
        occurred_at=occurred_at,
        payload=event,
    )


def call_event_emit(kind: str, call: ParkedCall) -> int:
    """Queue a parked call's change (a board frame kind: parked, unparked, ...) for the
    tenant's endpoints that want it, inside the caller's transaction. Returns how many."""
    event_type = webhooks.CALL_EVENTS.get(kind)
    if event_type is None or call.tenant_id is None:
        return 0
    lot = call.lot.slug if call.lot_id else None
    return event_emit(call.tenant_id, event_type, lot, lambda: {"call": call_data(call)})


def event_emit(tenant_id: int, event_type: str, lot: str | None, data) -> int:
    """Queue an event for the tenant's endpoints that want it, inside the caller's
    transaction (`data()` builds the rest of the body only if one does). Returns how many."""
    wanted = [
        webhook
        for webhook in Webhook.objects.filter(
            tenant_id=tenant_id, active=True, paused_at__isnull=True
        ).select_related("tenant")
        if webhook.wants(event_type)
    ]
    if not wanted:
        return 0
    event = _event(event_type, wanted[0].tenant, lot, data())
    # Ordered as parkweb applied them: one watcher per server applies a call's events in
    # Asterisk's order.
    occurred_at = timezone.now()
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            webhook=webhook,
            event_id=event["id"],
            event_type=event_type,
            occurred_at=occurred_at,
            payload=event,
        )
        for webhook in wanted
    )
    for webhook in wanted:
        _enqueue_on_commit(webhook.pk)
    return len(wanted)


def _enqueue_on_commit(webhook_id: int) -> None:
    from ..tasks import webhook_deliver  # tasks call services: imported here

    if webhook_deliver.app.conf.task_always_eager:
        # The embedded mode: no workers, and a task would run right here, in the watcher's
        # path. Its supervisor delivers what is due every few seconds instead.
        return

    def enqueue() -> None:
        try:
            webhook_deliver.delay(webhook_id)
        except Exception:  # the next due-check (beat) delivers it; events are never lost
            log.exception("webhook %s: delivery not queued", webhook_id)

    transaction.on_commit(enqueue)


# -- delivery -------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float:
    """Seconds before the next try: PARKWEB_WEBHOOK_RETRY_BASE doubled per attempt, at
    most PARKWEB_WEBHOOK_RETRY_MAX."""
    base = settings.PARKWEB_WEBHOOK_RETRY_BASE
    return float(min(base * 2 ** max(attempts - 1, 0), settings.PARKWEB_WEBHOOK_RETRY_MAX))


def webhook_deliver(webhook_id: int) -> float | None:
    """Deliver the endpoint's queue, head first, while its events are delivered. Returns
    the seconds until the head's next try when it failed (the task schedules itself), or
    None when the queue is empty, the endpoint is paused or another worker has it."""
    with webhook_lock(webhook_id) as held:
        if not held:
            return None
        for _ in range(BATCH):
            webhook = Webhook.objects.filter(pk=webhook_id).select_related("tenant").first()
            if webhook is None or not webhook.active or webhook.paused_at is not None:
                return None
            head = (
                WebhookDelivery.objects.filter(
                    webhook=webhook, status=WebhookDelivery.Status.PENDING
                )
                .order_by("occurred_at", "pk")
                .first()
            )
            if head is None:
                return None
            now = timezone.now()
            if head.next_attempt_at and head.next_attempt_at > now:
                return (head.next_attempt_at - now).total_seconds()
            wait = _attempt(webhook, head)
            if wait is not None:
                return wait
    return 0.0  # more to send: a fresh run goes on


def _attempt(webhook: Webhook, delivery: WebhookDelivery) -> float | None:
    """One try of the head delivery; the seconds to wait when it must be tried again."""
    answer = webhooks.send(
        webhook.url,
        delivery.payload,
        webhook.secret,
        allow_private=webhook.allow_private,
        debug=settings.DEBUG,
        timeout=settings.PARKWEB_WEBHOOK_TIMEOUT,
        ca_file=settings.PARKWEB_WEBHOOK_CA_FILE or None,
    )
    now = timezone.now()
    delivery.attempts += 1
    delivery.response_code = answer.code
    delivery.duration_ms = round(answer.seconds * 1000)
    delivery.response_prefix = answer.prefix
    delivery.error = answer.error
    if answer.delivered:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.finished_at, delivery.next_attempt_at = now, None
        delivery.save()
        return None
    given_up = (now - delivery.created_at).total_seconds() >= settings.PARKWEB_WEBHOOK_RETRY_SECONDS
    if not given_up:
        wait = retry_delay(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        delivery.save()
        return wait
    delivery.status = WebhookDelivery.Status.FAILED
    delivery.finished_at, delivery.next_attempt_at = now, None
    delivery.save()
    _pause(webhook, delivery)
    return None


def _pause(webhook: Webhook, delivery: WebhookDelivery) -> None:
    """Stop calling an endpoint that keeps failing, and tell its tenant's admins."""
    reason = (
        f"Paused at {timezone.now():%Y-%m-%d %H:%M} UTC: event {delivery.event_id} "
        f"({delivery.event_type}) failed {delivery.attempts} times: {delivery.error}"
    )[:300]
    Webhook.objects.filter(pk=webhook.pk).update(paused_at=timezone.now(), paused_reason=reason)
    log.warning("webhook %s of %s paused: %s", webhook.pk, webhook.tenant.slug, reason)
    emails = list(
        Membership.objects.filter(tenant=webhook.tenant, role=Role.ADMIN)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if emails:
        send_mail(
            f"parkweb: webhook paused for {webhook.tenant.name}",
            f"parkweb stopped calling {webhook.url}.\n\n{reason}\n\nEvents that happen "
            "while it is paused are not kept for it. Save the webhook as active again to "
            "resume (held-back events are then delivered, in order).",
            None,
            emails,
            fail_silently=True,
        )


def webhook_deliveries_due() -> int:
    """Queue every endpoint whose head delivery is due (beat: a queued task lost with its
    broker never strands an endpoint). Returns how many were queued."""
    from ..tasks import webhook_deliver

    now = timezone.now()
    due = (
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            webhook__active=True,
            webhook__paused_at__isnull=True,
        )
        .exclude(next_attempt_at__gt=now)
        .values_list("webhook_id", flat=True)
        .distinct()
    )
    found = list(due)
    for webhook_id in found:
        webhook_deliver.delay(webhook_id)
    return len(found)

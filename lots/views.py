"""Tenant self-service pages at /t/<slug>/: thin views over selectors and services."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from parkweb.errors import DomainError
from tenants import services as tenant_services
from tenants.models import ApiKey, Invitation, Membership, Role
from tenants.scoping import scoped, tenant_access, tenants_for_user

from . import selectors, services, snippets, webhooks
from .forms import HistoryFilters, LotForm
from .models import Deployment, ParkedCall, ParkingLot, ServerHealth, Webhook


def tenant_page(view):
    """Logged in, and a member of the tenant in the URL (else 404: nothing to see)."""

    @login_required
    @wraps(view)
    def wrapper(request, tenant: str, *args, **kwargs):
        access = tenant_access(request.user, tenant)
        if access is None:
            raise Http404
        request.tenant, request.role = access.tenant, access.role
        request.can_edit, request.can_act = access.can_edit, access.can_act
        return view(request, *args, **kwargs)

    return wrapper


@login_required
def home(request):
    tenants = list(tenants_for_user(request.user))
    invitations = tenant_services.pending_invitations(request.user)
    if len(tenants) == 1 and not invitations:
        return redirect("dashboard", tenant=tenants[0].slug)
    return render(request, "lots/home.html", {"tenants": tenants, "invitations": invitations})


@tenant_page
def dashboard(request):
    lots = (
        scoped(ParkingLot, request.tenant)
        .select_related("server", "context")
        .annotate(parked=Count("calls", filter=Q(calls__ended_at__isnull=True)))
        .order_by("name")
    )
    health = {
        h.server_id: h
        for h in ServerHealth.objects.filter(server_id__in={lot.server_id for lot in lots})
    }
    rows = [
        {
            "lot": lot,
            "health": health.get(lot.server_id),
            "size": lot.parkpos_end - lot.parkpos_start + 1,
        }
        for lot in lots
    ]
    return render(request, "lots/dashboard.html", {"rows": rows})


@tenant_page
def board(request):
    lots = scoped(ParkingLot, request.tenant).select_related("tenant").order_by("name", "pk")
    me = scoped(Membership, request.tenant).filter(user=request.user).first()
    return render(
        request,
        "lots/board.html",
        {"lots": lots, "my_extension": me.extension if me else "", "me": me},
    )


@tenant_page
def lot_edit(request, lot: str | None = None):
    instance = None
    if lot is not None:
        instance = scoped(ParkingLot, request.tenant).filter(slug=lot).first()
        if instance is None:
            raise Http404
    if request.method == "POST" and not request.can_edit:
        raise PermissionDenied
    form = LotForm(request.POST or None, instance=instance, tenant=request.tenant)
    if not request.can_edit:
        for field in form.fields.values():
            field.disabled = True
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.lot_save(form.instance, actor=services.Actor.of(request.user))
        except DomainError as refused:
            form.add_domain_errors(refused)
        else:
            return redirect("lot", tenant=request.tenant.slug, lot=saved.slug)
    deployment = deployment_error = dialplan = reach = None
    if instance is not None:
        dialplan = snippets.lot_dialplan(instance, selectors.tenant_phones(instance))
        reach = snippets.lot_reach(instance)
        deployment = Deployment.objects.filter(server_id=instance.server_id).order_by("-pk").first()
    if deployment is not None and deployment.error:
        deployment_error = selectors.deployment_error_for(request.tenant, deployment)
    return render(
        request,
        "lots/lot_form.html",
        {
            "form": form,
            "lot": instance,
            "deployment": deployment,
            "deployment_error": deployment_error,
            "dialplan": dialplan,
            "reach": reach,
        },
    )


HISTORY_PAGE = 50


def _charts(stats: selectors.HistoryStats) -> dict:
    """Bar geometry for the two server-rendered SVG charts."""
    top = max((count for _, count in stats.hours), default=0) or 1
    hours = [
        {"x": i * 20, "h": round(100 * count / top), "label": label, "count": count}
        for i, (label, count) in enumerate(stats.hours)
    ]
    for bar in hours:
        bar["y"] = 100 - bar["h"]
    busiest = max(stats.hours, key=lambda hour: hour[1]) if stats.total else None
    most = max((count for _, count in stats.outcomes), default=0) or 1
    outcomes = [
        {
            "y": i * 24,
            "w": round(300 * count / most),
            "label": label,
            "count": count,
            "percent": round(100 * count / stats.total) if stats.total else 0,
        }
        for i, (label, count) in enumerate(stats.outcomes)
    ]
    return {
        "hours": hours,
        "hours_width": 20 * len(hours),
        "hours_summary": (
            f"{stats.total} in all, the busiest hour {busiest[0]} with {busiest[1]}"
            if busiest
            else "none"
        ),
        "outcomes": outcomes,
        "outcomes_height": max(24, 24 * len(outcomes)),
    }


@tenant_page
def history(request):
    """Parked calls, newest first, with filters; charts of one day."""
    lots = scoped(ParkingLot, request.tenant).order_by("name")
    filters = HistoryFilters(request.GET or None, lots=lots)
    calls = scoped(ParkedCall, request.tenant).select_related("lot").order_by("-parked_at", "-pk")
    day = None
    if filters.is_bound and not filters.is_valid():
        calls = calls.none()  # the errors stand next to their fields
    elif filters.is_bound:
        calls = filters.apply(calls)
        day = filters.cleaned_data["day"]
    if day:  # midnight to midnight, local time
        start = timezone.make_aware(datetime.combine(day, time.min))
        end = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))
        calls = calls.filter(parked_at__gte=start, parked_at__lt=end)
    else:  # the last 24 hours, in whole hours: the last bar is the hour now running
        end = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        start = end - timedelta(hours=24)
    stats = selectors.history_stats(calls, start, end)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "lots/history.html",
        {
            "filters": filters,
            "page": Paginator(calls, HISTORY_PAGE).get_page(request.GET.get("page")),
            "query": query.urlencode(),
            "stats": stats,
            "charts": _charts(stats),
            "window": f"{day:%Y-%m-%d}" if day else "Last 24 hours",
        },
    )


def _require_admin(request) -> None:
    if not request.can_edit:
        raise PermissionDenied


NEW_KEY_SESSION = "parkweb-new-api-key"
DONE_SESSION = "parkweb-done"


def _message(refused: DomainError) -> str:
    """A refusal as one line, its field named the way the page labels it."""
    return refused.message[:1].upper() + refused.message[1:]


def _own(model, request, pk: str):
    """The tenant's own object with this id, from a posted form (else 404)."""
    found = scoped(model, request.tenant).filter(pk=pk).first() if pk.isdigit() else None
    if found is None:
        raise Http404
    return found


def _members_change(request) -> str:
    """Apply one invite / role / remove / uninvite; returns an error, or ""."""
    action, actor = request.POST.get("action"), services.Actor.of(request.user)
    pk = request.POST.get("id", "")
    try:
        if action == "invite":
            done = tenant_services.member_invite(
                request.tenant,
                actor=actor,
                role=request.POST.get("role", ""),
                site_url=request.build_absolute_uri("/"),
                email=request.POST.get("email", ""),
                username=request.POST.get("username", ""),
            )
            request.session[DONE_SESSION] = (
                f"Invitation sent to {done.invitee}."
                if isinstance(done, Invitation)
                else f"{done.user.get_username()} is {done.role} now."
            )
        elif action in {"role", "remove"}:
            membership = _own(Membership, request, pk)
            if action == "role":
                tenant_services.member_role_set(
                    membership, request.POST.get("role", ""), actor=actor
                )
            else:
                tenant_services.member_remove(membership, actor=actor)
        elif action == "uninvite":
            tenant_services.invitation_revoke(_own(Invitation, request, pk), actor=actor)
        else:
            return "Action: invite, role, remove or uninvite."
    except DomainError as refused:
        return _message(refused)
    return ""


@tenant_page
def members(request):
    """Tenant admins invite people (by e-mail address or username), change their role, or
    remove them; a tenant always keeps one admin."""
    _require_admin(request)
    error = ""
    if request.method == "POST":
        error = _members_change(request)
        if not error:
            return redirect("members", tenant=request.tenant.slug)
    return render(
        request,
        "lots/members.html",
        {
            "memberships": scoped(Membership, request.tenant)
            .select_related("user")
            .order_by("user__username"),
            "invitations": [
                i for i in scoped(Invitation, request.tenant).order_by("-created_at") if i.pending
            ],
            "roles": Role.choices,
            "error": error,
            "done": request.session.pop(DONE_SESSION, "") if not error else "",
        },
    )


@never_cache
@tenant_page
def api_keys(request):
    """Tenant admins create keys and revoke them. A new key is shown once: it waits in the
    session across the redirect after the post, so reloading neither shows it again nor
    makes another; the page is never cached."""
    _require_admin(request)
    new_key = request.session.pop(NEW_KEY_SESSION, "") if request.method == "GET" else ""
    error = ""
    if request.method == "POST":
        actor = services.Actor.of(request.user)
        if request.POST.get("action") == "revoke":
            key = _own(ApiKey, request, request.POST.get("key", ""))
            tenant_services.api_key_revoke(key, actor=actor)
            return redirect("api-keys", tenant=request.tenant.slug)
        try:
            _, request.session[NEW_KEY_SESSION] = tenant_services.api_key_create(
                request.tenant,
                actor=actor,
                name=request.POST.get("name", ""),
                role=request.POST.get("role", ""),
            )
        except DomainError as refused:
            error = _message(refused)
        else:
            return redirect("api-keys", tenant=request.tenant.slug)
    return render(
        request,
        "lots/api_keys.html",
        {
            "keys": scoped(ApiKey, request.tenant),
            "roles": Role.choices,
            "new_key": new_key,
            "error": error,
        },
    )


NEW_SECRET_SESSION = "parkweb-new-webhook-secret"  # noqa: S105 (a session key)


@never_cache
@tenant_page
def webhooks_page(request):
    """Tenant admins add webhook endpoints (the secret is shown once, like an API key's),
    send them a test event, resume or delete them, and read their delivery log."""
    _require_admin(request)
    new_secret = request.session.pop(NEW_SECRET_SESSION, "") if request.method == "GET" else ""
    error = ""
    if request.method == "POST":
        error = _webhooks_change(request)
        if not error:
            return redirect("webhooks", tenant=request.tenant.slug)
    hooks = list(scoped(Webhook, request.tenant).order_by("pk"))
    for hook in hooks:
        hook.log = list(hook.deliveries.order_by("-occurred_at", "-pk")[:20])
    return render(
        request,
        "lots/webhooks.html",
        {
            "hooks": hooks,
            "event_types": [t for t in webhooks.EVENT_TYPES if t != "test"],
            "new_secret": new_secret,
            "error": error,
            "done": request.session.pop(DONE_SESSION, "") if not error else "",
        },
    )


def _webhooks_change(request) -> str:
    """Apply one add / test / resume / delete; returns an error, or ""."""
    action, actor = request.POST.get("action"), services.Actor.of(request.user)
    try:
        if action == "add":
            _, request.session[NEW_SECRET_SESSION] = services.webhook_create(
                request.tenant,
                actor=actor,
                url=request.POST.get("url", "").strip(),
                events=request.POST.getlist("events"),
                description=request.POST.get("description", ""),
            )
        elif action == "test":
            hook = _own(Webhook, request, request.POST.get("id", ""))
            services.webhook_test(hook, actor=actor)
            request.session[DONE_SESSION] = f"A test event is on its way to {hook.url}."
        elif action == "resume":
            services.webhook_update(
                _own(Webhook, request, request.POST.get("id", "")), actor=actor, active=True
            )
        elif action == "delete":
            services.webhook_delete(_own(Webhook, request, request.POST.get("id", "")), actor=actor)
        else:
            return "Action: add, test, resume or delete."
    except DomainError as refused:
        return _message(refused)
    return ""


@require_POST
@tenant_page
def alert_mail(request):
    """A member turns their alert mail on or off (from the board)."""
    membership = scoped(Membership, request.tenant).filter(user=request.user).first()
    if membership is None:
        raise Http404
    services.member_alert_mail_set(
        membership, request.POST.get("alert_mail") == "on", actor=services.Actor.of(request.user)
    )
    return redirect("board", tenant=request.tenant.slug)

"""Tenant self-service pages at /t/<slug>/: thin views over selectors and services."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from parkweb.errors import DomainError
from tenants.apikeys import api_key_create, api_key_revoke
from tenants.models import ApiKey, Membership, Role, Tenant
from tenants.scoping import has_role, role_of, scoped, tenants_for_user

from . import selectors, services
from .forms import HistoryFilters, LotForm
from .models import Deployment, ParkedCall, ParkingLot, ServerHealth


def tenant_page(view):
    """Logged in, and a member of the tenant in the URL (else 404: nothing to see)."""

    @login_required
    @wraps(view)
    def wrapper(request, tenant: str, *args, **kwargs):
        found = Tenant.objects.filter(slug=tenant, active=True).first()
        role = role_of(request.user, found) if found else None
        if role is None:
            raise Http404
        request.tenant, request.role = found, role
        request.can_edit = has_role(request.user, found, Role.ADMIN)
        request.can_act = has_role(request.user, found, Role.OPERATOR)
        return view(request, *args, **kwargs)

    return wrapper


@login_required
def home(request):
    tenants = list(tenants_for_user(request.user))
    if len(tenants) == 1:
        return redirect("dashboard", tenant=tenants[0].slug)
    return render(request, "lots/home.html", {"tenants": tenants})


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
    my_extension = (
        scoped(Membership, request.tenant)
        .filter(user=request.user)
        .values_list("extension", flat=True)
        .first()
    )
    return render(request, "lots/board.html", {"lots": lots, "my_extension": my_extension or ""})


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
    deployment = deployment_error = None
    if instance is not None:
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


ROLE_ERROR = "Role: choose viewer, operator or admin."
NEW_KEY_SESSION = "parkweb-new-api-key"


def _last_admin(tenant: Tenant, membership: Membership) -> bool:
    """Would this admin's leaving leave the tenant with none? Locks the tenant's admins, so
    two admins demoting each other at once cannot both succeed."""
    admins = Membership.objects.select_for_update().filter(tenant=tenant, role=Role.ADMIN)
    return not any(pk != membership.pk for pk in admins.values_list("pk", flat=True))


@transaction.atomic
def _members_change(request) -> str:
    """Apply one add / role / remove; returns an error naming the field, or ""."""
    action, role = request.POST.get("action"), request.POST.get("role", "")
    if action not in {"add", "role", "remove"}:
        return "Action: add, role or remove."
    if action != "remove" and role not in Role.values:
        return ROLE_ERROR
    if action == "add":
        user = get_user_model().objects.filter(username=request.POST.get("username", "")).first()
        if user is None:
            return "Username: no user has that username."
        membership = Membership.objects.filter(user=user, tenant=request.tenant).first()
        membership = membership or Membership(user=user, tenant=request.tenant)
    else:
        pk = request.POST.get("membership", "")
        membership = (
            scoped(Membership, request.tenant).filter(pk=pk).first() if pk.isdigit() else None
        )
        if membership is None:
            raise Http404
    leaves_admins = membership.pk and membership.role == Role.ADMIN and role != Role.ADMIN
    if leaves_admins and _last_admin(request.tenant, membership):
        return "Role: the tenant must keep at least one admin."
    if action == "remove":
        membership.delete()
    else:
        membership.role = role
        membership.save()
    return ""


@tenant_page
def members(request):
    """Tenant admins add people by username, change their role, or remove them."""
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
            "roles": Role.choices,
            "error": error,
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
        if request.POST.get("action") == "revoke":
            pk = request.POST.get("key", "")
            key = scoped(ApiKey, request.tenant).filter(pk=pk).first() if pk.isdigit() else None
            if key is None:
                raise Http404
            api_key_revoke(key)
            return redirect("api-keys", tenant=request.tenant.slug)
        name = request.POST.get("name", "").strip()
        role = request.POST.get("role", "")
        if not name or len(name) > 100 or not name.isprintable():
            error = "Name: give the key a name of 1 to 100 printable characters."
        elif role not in Role.values:
            error = ROLE_ERROR
        else:
            _, request.session[NEW_KEY_SESSION] = api_key_create(
                request.tenant, name=name, role=role, created_by=request.user
            )
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

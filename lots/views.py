"""Tenant self-service pages at /t/<slug>/: thin views over selectors and services."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from tenants.apikeys import api_key_create, api_key_revoke
from tenants.models import ApiKey, Membership, Role, Tenant
from tenants.scoping import has_role, role_of, scoped, tenants_for_user

from . import services
from .forms import LotForm
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
    return render(request, "lots/board.html", {})


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
        saved = services.lot_save(form.save(commit=False), actor=services.Actor.of(request.user))
        return redirect("lot", tenant=request.tenant.slug, lot=saved.slug)
    deployment = None
    if instance is not None:
        deployment = Deployment.objects.filter(server_id=instance.server_id).order_by("-pk").first()
    return render(
        request,
        "lots/lot_form.html",
        {
            "form": form,
            "lot": instance,
            "deployment": deployment,
        },
    )


def _hourly_svg(counts: list[int]) -> dict:
    top = max(counts) or 1
    return {
        "bars": [
            {
                "x": i * 20,
                "h": round(100 * c / top),
                "y": 100 - round(100 * c / top),
                "count": c,
                "hour": i,
            }
            for i, c in enumerate(counts)
        ]
    }


@tenant_page
def history(request):
    calls = scoped(ParkedCall, request.tenant).select_related("lot").order_by("-parked_at")
    lot = request.GET.get("lot") or ""
    outcome = request.GET.get("outcome") or ""
    if lot:
        calls = calls.filter(lot__slug=lot)
    if outcome in ParkedCall.Outcome.values:
        calls = calls.filter(outcome=outcome)
    since = timezone.now() - timedelta(days=1)
    recent = list(
        calls.filter(parked_at__gte=since).values_list("parked_at", "ended_at", "outcome")
    )
    per_hour = Counter(timezone.localtime(parked).hour for parked, _, _ in recent)
    outcomes = Counter(o or "parked" for _, _, o in recent)
    waits = [(ended - parked).total_seconds() for parked, ended, _ in recent if ended]
    return render(
        request,
        "lots/history.html",
        {
            "calls": calls[:200],
            "lots": scoped(ParkingLot, request.tenant).order_by("name"),
            "outcomes": ParkedCall.Outcome.choices,
            "selected_lot": lot,
            "selected_outcome": outcome,
            "chart": _hourly_svg([per_hour.get(h, 0) for h in range(24)]),
            "outcome_split": sorted(outcomes.items()),
            "average_wait": round(sum(waits) / len(waits)) if waits else None,
        },
    )


def _require_admin(request) -> None:
    if not request.can_edit:
        raise PermissionDenied


@tenant_page
def members(request):
    """Tenant admins add people by username, change their role, or remove them."""
    _require_admin(request)
    error = ""
    if request.method == "POST":
        action = request.POST.get("action")
        role = request.POST.get("role", "")
        if action == "add":
            user = (
                get_user_model().objects.filter(username=request.POST.get("username", "")).first()
            )
            if user is None:
                error = "No user has that username."
            elif role not in Role.values:
                error = "Choose a role."
            else:
                Membership.objects.update_or_create(
                    user=user, tenant=request.tenant, defaults={"role": role}
                )
        else:
            membership = (
                scoped(Membership, request.tenant).filter(pk=request.POST.get("membership")).first()
            )
            if membership is None:
                raise Http404
            if action == "remove":
                membership.delete()
            elif action == "role" and role in Role.values:
                membership.role = role
                membership.save(update_fields=["role"])
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


@tenant_page
def api_keys(request):
    """Tenant admins create keys (shown once) and revoke them."""
    _require_admin(request)
    new_key = ""
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            key = scoped(ApiKey, request.tenant).filter(pk=request.POST.get("key")).first()
            if key is None:
                raise Http404
            api_key_revoke(key)
            return redirect("api-keys", tenant=request.tenant.slug)
        name = request.POST.get("name", "").strip()[:100]
        role = request.POST.get("role", "")
        if name and "\x00" not in name and role in Role.values:
            _, new_key = api_key_create(
                request.tenant, name=name, role=role, created_by=request.user
            )
    return render(
        request,
        "lots/api_keys.html",
        {
            "keys": scoped(ApiKey, request.tenant),
            "roles": Role.choices,
            "new_key": new_key,
        },
    )

"""Account pages: a password reset, throttled per address and per e-mail address (logins
are throttled by django-axes, see settings); and the answer to an invitation."""

from __future__ import annotations

from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.exceptions import Throttled

from tenants import services as tenant_services

from .errors import DomainError, NotFound
from .throttles import AttemptThrottle

TOO_MANY = "Too many password reset requests. Please wait {minutes} minutes and try again."


class PasswordResetView(auth_views.PasswordResetView):
    def form_valid(self, form):
        throttle = AttemptThrottle("password_reset")
        email = form.cleaned_data["email"].strip().lower()
        try:
            throttle.check(self.request)
            throttle.check(self.request, ident=f"email-{email}")
        except Throttled as exc:
            form.add_error(None, TOO_MANY.format(minutes=max(1, round((exc.wait or 60) / 60))))
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        throttle.count(self.request)
        throttle.count(self.request, ident=f"email-{email}")
        return super().form_valid(form)


def invitation(request, token: str):
    """The link of an invitation: a logged-in person joins; someone invited by e-mail
    without an account chooses a username and password; anyone else logs in first."""
    try:
        found = tenant_services.invitation_for(token)
    except NotFound:
        return render(request, "registration/invitation.html", {"invalid": True}, status=404)
    users = get_user_model()._default_manager
    has_account = bool(found.email) and users.filter(email__iexact=found.email).exists()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = tenant_services.invitation_accept(found, request.user)
            else:
                user = tenant_services.invitation_sign_up(
                    found,
                    username=request.POST.get("username", ""),
                    password=request.POST.get("password", ""),
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                membership = user.memberships.get(tenant=found.tenant)
        except DomainError as refused:
            errors = refused.errors
        else:
            return redirect("dashboard", tenant=membership.tenant.slug)
    return render(
        request,
        "registration/invitation.html",
        {
            "invitation": found,
            "sign_up": not request.user.is_authenticated and found.email and not has_account,
            "errors": errors,
            "username": request.POST.get("username", ""),
        },
    )


@login_required
@require_POST
def invitation_join(request, pk: int):
    """Join from the home page: an invitation to this person's username or address."""
    found = next((i for i in tenant_services.pending_invitations(request.user) if i.pk == pk), None)
    if found is None:
        raise Http404
    try:
        membership = tenant_services.invitation_accept(found, request.user)
    except DomainError:
        raise Http404 from None
    return redirect("dashboard", tenant=membership.tenant.slug)

"""Account pages that must not be guessed at: a password reset is throttled per address
and per e-mail address (logins are throttled by django-axes, see settings)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from rest_framework.exceptions import Throttled

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

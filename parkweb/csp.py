"""The Content-Security-Policy header (setting PARKWEB_CSP; see the README, "Content
security policy")."""

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Puts PARKWEB_CSP on every HTML response: the pages, the admin, the API docs, error
    and lockout pages alike. Other responses (JSON, scripts, styles) run nothing."""

    def process_response(self, request, response):
        policy = settings.PARKWEB_CSP
        if policy and response.get("Content-Type", "").startswith("text/html"):
            response.setdefault(HEADER, policy)
        return response

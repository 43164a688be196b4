"""/api/v1/: staff resources, tenant resources under /tenants/<slug>/, schema and docs."""

from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from . import views as v


class IdConverter:
    """A database id: at most 18 digits, so it always fits a bigint (no 500 on 10**40)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")

T = "tenants/<slug:tenant>/"

urlpatterns = [
    # The description of the API is public; every resource needs a caller. The docs page
    # loads Swagger UI's start-up script from docs/?script= (no inline script: see
    # PARKWEB_CSP) and its files from this site (drf-spectacular-sidecar).
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/docs.html", permission_classes=[AllowAny]
        ),
        name="api-docs",
    ),
    # staff
    path("tenants/", v.TenantList.as_view(), name="api-tenants"),
    path("tenants/<slug:slug>/", v.TenantDetail.as_view(), name="api-tenant"),
    path("servers/", v.ServerList.as_view(), name="api-servers"),
    path("servers/<id:pk>/", v.ServerDetail.as_view(), name="api-server"),
    path("servers/<id:pk>/deploy/", v.ServerDeploy.as_view(), name="api-server-deploy"),
    path(
        "servers/<id:pk>/deployments/",
        v.ServerDeployments.as_view(),
        name="api-server-deployments",
    ),
    path("servers/<id:pk>/config/", v.ServerConfig.as_view(), name="api-server-config"),
    path("servers/<id:pk>/health/", v.ServerHealthView.as_view(), name="api-server-health"),
    path("servers/<id:pk>/contexts/", v.ServerContexts.as_view(), name="api-server-contexts"),
    path("servers/<id:pk>/phones/", v.ServerPhones.as_view(), name="api-server-phones"),
    # staff, and tenants whose lots the deployment carries
    path("deployments/<id:pk>/", v.DeploymentDetail.as_view(), name="api-deployment"),
    # tenants
    path(T + "lots/", v.LotList.as_view(), name="api-lots"),
    path(T + "lots/<slug:lot>/", v.LotDetail.as_view(), name="api-lot"),
    path(
        T + "lots/<slug:lot>/integration/", v.LotIntegration.as_view(), name="api-lot-integration"
    ),
    path(
        T + "lots/<slug:lot>/parked-calls/", v.LotParkedCalls.as_view(), name="api-lot-parked-calls"
    ),
    path(
        T + "lots/<slug:lot>/parked-calls/<id:space>/retrieve/",
        v.ParkedCallRetrieve.as_view(),
        name="api-parked-call-retrieve",
    ),
    path(
        T + "lots/<slug:lot>/parked-calls/<id:space>/hangup/",
        v.ParkedCallHangup.as_view(),
        name="api-parked-call-hangup",
    ),
    path(
        T + "parked-calls/history/", v.ParkedCallHistory.as_view(), name="api-parked-call-history"
    ),
    path(T + "members/", v.MemberList.as_view(), name="api-members"),
    path(T + "members/<id:pk>/", v.MemberDetail.as_view(), name="api-member"),
    path(T + "invitations/", v.InvitationList.as_view(), name="api-invitations"),
    path(T + "invitations/<id:pk>/", v.InvitationDetail.as_view(), name="api-invitation"),
    path(T + "api-keys/", v.ApiKeyList.as_view(), name="api-keys"),
    path(T + "api-keys/<id:pk>/", v.ApiKeyDetail.as_view(), name="api-key"),
    path(T + "contexts/", v.TenantContexts.as_view(), name="api-contexts"),
    path(T + "phones/", v.TenantPhonesList.as_view(), name="api-phones"),
    path(T + "me/", v.Me.as_view(), name="api-me"),
    path(T + "webhooks/", v.WebhookList.as_view(), name="api-webhooks"),
    path(T + "webhooks/<id:pk>/", v.WebhookDetail.as_view(), name="api-webhook"),
    path(
        T + "webhooks/<id:pk>/deliveries/",
        v.WebhookDeliveries.as_view(),
        name="api-webhook-deliveries",
    ),
    path(T + "webhooks/<id:pk>/test/", v.WebhookTest.as_view(), name="api-webhook-test"),
]

"""REST API views, by resource: thin; the tenant from the URL only, rules in services."""

from .calls import LotParkedCalls, ParkedCallHangup, ParkedCallHistory, ParkedCallRetrieve
from .deployments import DeploymentDetail
from .lots import LotDetail, LotIntegration, LotList
from .people import (
    ApiKeyDetail,
    ApiKeyList,
    InvitationDetail,
    InvitationList,
    Me,
    MemberDetail,
    MemberList,
    TenantContexts,
    TenantPhonesList,
)
from .staff import (
    ServerConfig,
    ServerContexts,
    ServerDeploy,
    ServerDeployments,
    ServerDetail,
    ServerHealthView,
    ServerList,
    ServerPhones,
    TenantDetail,
    TenantList,
)
from .webhooks import WebhookDeliveries, WebhookDetail, WebhookList, WebhookTest

__all__ = [
    "ApiKeyDetail",
    "ApiKeyList",
    "DeploymentDetail",
    "InvitationDetail",
    "InvitationList",
    "LotDetail",
    "LotIntegration",
    "LotList",
    "LotParkedCalls",
    "Me",
    "MemberDetail",
    "MemberList",
    "ParkedCallHangup",
    "ParkedCallHistory",
    "ParkedCallRetrieve",
    "ServerConfig",
    "ServerContexts",
    "ServerDeploy",
    "ServerDeployments",
    "ServerDetail",
    "ServerHealthView",
    "ServerList",
    "ServerPhones",
    "TenantContexts",
    "TenantDetail",
    "TenantList",
    "TenantPhonesList",
    "WebhookDeliveries",
    "WebhookDetail",
    "WebhookList",
    "WebhookTest",
]

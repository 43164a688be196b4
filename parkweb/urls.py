"""parkweb URLs: tenant pages at /t/<slug>/, the API at /api/v1/, the operator admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from lots import views as lot_views

from . import accounts, operations

admin.site.site_header = "parkweb operator admin"
admin.site.site_title = "parkweb admin"
admin.site.index_title = "Servers, tenants, lots and deployments"

urlpatterns = [
    path("healthz", operations.healthz, name="healthz"),
    path("readyz", operations.readyz, name="readyz"),
    path("metrics", operations.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("lots.api.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password_reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("accounts/invitation/<str:token>/", accounts.invitation, name="invitation"),
    path("accounts/invitations/<int:pk>/join/", accounts.invitation_join, name="invitation-join"),
    path("t/<slug:tenant>/", include("lots.urls")),
    path("", lot_views.home, name="home"),
]

handler400 = "parkweb.errorpages.bad_request"
handler403 = "parkweb.errorpages.permission_denied"
handler404 = "parkweb.errorpages.page_not_found"
handler500 = "parkweb.errorpages.server_error"

from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("board/", views.board, name="board"),
    path("new-lot/", views.lot_edit, name="lot-new"),
    path("lots/<slug:lot>/", views.lot_edit, name="lot"),
    path("history/", views.history, name="history"),
    path("members/", views.members, name="members"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("alert-mail/", views.alert_mail, name="alert-mail"),
]

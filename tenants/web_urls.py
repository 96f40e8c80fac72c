"""Dashboard pages for the tenant's account: API keys, webhooks, team (under /app/account/)."""

from django.urls import path

from tenants import views

urlpatterns = [
    path("keys/", views.keys, name="account-keys"),
    path("keys/<uuid:key_id>/revoke/", views.key_revoke, name="account-key-revoke"),
    path("keys/<uuid:key_id>/budget/", views.key_budget, name="account-key-budget"),
    path("webhooks/", views.webhook_list, name="account-webhooks"),
    path("webhooks/<uuid:endpoint_id>/", views.webhook_detail, name="account-webhook"),
    path(
        "webhooks/<uuid:endpoint_id>/rotate/", views.webhook_rotate, name="account-webhook-rotate"
    ),
    path(
        "webhooks/<uuid:endpoint_id>/enabled/", views.webhook_toggle, name="account-webhook-toggle"
    ),
    path(
        "webhooks/<uuid:endpoint_id>/delete/", views.webhook_delete, name="account-webhook-delete"
    ),
    path(
        "webhooks/deliveries/<uuid:delivery_id>/replay/",
        views.webhook_replay,
        name="account-webhook-replay",
    ),
    path("team/", views.team, name="account-team"),
    path("team/invite/", views.invite, name="account-invite"),
    path("team/<int:member_id>/role/", views.member_role, name="account-member-role"),
    path("team/<int:member_id>/remove/", views.member_remove, name="account-member-remove"),
    path(
        "team/invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="account-invitation-revoke",
    ),
    path("invitations/<str:token>/", views.invitation, name="account-invitation"),
]

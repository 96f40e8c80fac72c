"""The operator console (staff only), under /console/ (moderation/console_views.py)."""

from django.urls import path

from moderation import console_views as views

app_name = "console"

urlpatterns: list = [
    path("", views.home, name="home"),
    path("queue/", views.queue, name="queue"),
    path("queue/rows/", views.queue_rows, name="queue-rows"),
    path("cases/<int:case_id>/", views.case_detail, name="case"),
    path(
        "cases/<int:case_id>/approve/",
        views.case_decide,
        {"decision": "approve"},
        name="case-approve",
    ),
    path(
        "cases/<int:case_id>/reject/", views.case_decide, {"decision": "reject"}, name="case-reject"
    ),
    path("audit/", views.audit, name="audit"),
    path("trace/", views.trace, name="trace"),
    path("tenants/", views.tenants, name="tenants"),
    path("tenants/<uuid:tenant_id>/suspend/", views.tenant_suspend, name="tenant-suspend"),
    path("tenants/<uuid:tenant_id>/reinstate/", views.tenant_reinstate, name="tenant-reinstate"),
    path("tenants/<uuid:tenant_id>/plan/", views.tenant_plan, name="tenant-plan"),
    path("system/", views.system, name="system"),
    path("system/panel/", views.system_panel, name="system-panel"),
]

from django.urls import path

from generation import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tenant/<uuid:tenant_id>/", views.switch_tenant, name="switch-tenant"),
    path("templates/<uuid:template_id>/run/", views.run_template, name="run-template"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
]

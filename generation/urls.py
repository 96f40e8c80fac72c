from django.urls import path

from billing import views as billing_views
from generation import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tenant/<uuid:tenant_id>/", views.switch_tenant, name="switch-tenant"),
    path("templates/<uuid:template_id>/run/", views.run_template, name="run-template"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("billing/", billing_views.billing_page, name="billing"),
    path("billing/checkout/<slug:plan_slug>/", billing_views.checkout, name="billing-checkout"),
    path("billing/portal/", billing_views.portal, name="billing-portal"),
]

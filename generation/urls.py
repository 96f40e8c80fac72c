"""The tenant dashboard's work pages, under /app/ (account and billing pages are routed apart)."""

from django.urls import path

from generation import dashboard_views as views

urlpatterns = [
    path("", views.overview, name="dashboard"),
    path("tenant/<uuid:tenant_id>/", views.switch_tenant, name="switch-tenant"),
    path("templates/", views.template_list, name="template-list"),
    path("templates/new/", views.template_new, name="template-new"),
    path("templates/preview/", views.template_shots_preview, name="template-preview-new"),
    path("templates/brand/", views.brand_kit, name="brand-kit"),
    path("templates/<uuid:template_id>/", views.template_detail, name="template-detail"),
    path(
        "templates/<uuid:template_id>/preview/",
        views.template_shots_preview,
        name="template-preview",
    ),
    path("templates/<uuid:template_id>/run/", views.run_template, name="run-template"),
    path("templates/<uuid:template_id>/archive/", views.template_archive, name="template-archive"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("gallery/", views.gallery, name="gallery"),
    path("batches/", views.batch_list, name="batch-list"),
    path("batches/new/", views.batch_new, name="batch-new"),
    path("batches/<uuid:batch_id>/", views.batch_detail, name="batch-detail"),
    path("batches/<uuid:batch_id>/results.csv", views.batch_results, name="batch-results"),
    path("consents/", views.consent_list, name="consent-list"),
    path("consents/<uuid:consent_id>/revoke/", views.consent_revoke, name="consent-revoke"),
]

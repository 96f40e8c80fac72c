"""Root URLs: the API under /api/v1/, the dashboard under /app/, signed downloads under /dl/."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from config.docs import RedocDocsView, SwaggerDocsView
from config.problems import NOT_FOUND_DETAIL, problem_response
from generation import live
from generation import views as generation_views
from generation.api import BrandKitViewSet, JobViewSet, TemplateViewSet
from generation.embed_api import EmbedTemplateViewSet, EmbedVisitorViewSet
from generation.personalisation_api import BatchViewSet, ConsentViewSet, StylePresetViewSet
from tenants.api import ApiKeyViewSet

router = SimpleRouter()
router.register("templates", TemplateViewSet, basename="template")
router.register("jobs", JobViewSet, basename="job")
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("brand-kit", BrandKitViewSet, basename="brand-kit")
router.register("consents", ConsentViewSet, basename="consent")
router.register("style-presets", StylePresetViewSet, basename="style-preset")
router.register("batches", BatchViewSet, basename="batch")
router.register("embed/templates", EmbedTemplateViewSet, basename="embed-template")
router.register("embed/visitor", EmbedVisitorViewSet, basename="embed-visitor")


urlpatterns = [
    path("api/v1/jobs/<uuid:job_id>/events/", live.job_events, name="job-events"),
    path("api/v1/", include(router.urls)),
    path("", include("tenants.urls")),
    path("", include("moderation.urls")),
    path("", include("billing.urls")),
    path(
        "api/v1/schema/",
        SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]),
        name="schema",
    ),
    path(
        "api/v1/docs/",
        SwaggerDocsView.as_view(
            url_name="schema", permission_classes=[], authentication_classes=[]
        ),
        name="docs",
    ),
    path(
        "api/v1/redoc/",
        RedocDocsView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="redoc",
    ),
    path("dl/<str:token>/<str:filename>", generation_views.download, name="download"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="auth/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password-reset/", include("tenants.password_reset")),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language menu
    path("app/billing/", include("billing.web_urls")),
    path("app/account/", include("tenants.web_urls")),
    path("app/", include("generation.urls")),
    path("console/", include("moderation.console_urls")),
    path("embed/", include("generation.embed_urls")),
    path("admin/", admin.site.urls),
    path("", generation_views.home),
]


def _api_or_html(status_code: int, code: str, detail: str):
    def handler(request: HttpRequest, exception: Exception | None = None):
        if request.path.startswith(("/api/", "/dl/")):
            return problem_response(status_code, detail=detail, code=code)
        from django.views import defaults

        if status_code == 404:
            return defaults.page_not_found(request, exception)
        return defaults.server_error(request)

    return handler


handler404 = _api_or_html(404, "not_found", NOT_FOUND_DETAIL)
handler500 = _api_or_html(500, "server_error", "Something went wrong on our side.")

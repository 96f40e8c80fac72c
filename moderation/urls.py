"""The operators' moderation API, included at the root.

config/urls.py: ``path("", include("moderation.urls"))``.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from moderation.api import AuditEntryViewSet, ReviewCaseViewSet, TraceViewSet
from moderation.detect_views import DetectView, detect_page

router = SimpleRouter()
router.register("moderation/cases", ReviewCaseViewSet, basename="moderation-case")
router.register("moderation/audit", AuditEntryViewSet, basename="moderation-audit")
router.register("moderation/trace", TraceViewSet, basename="moderation-trace")

urlpatterns = [
    path("api/v1/detect/", DetectView.as_view(), name="detect"),
    path("detect/", detect_page, name="detect-page"),
    path("api/v1/", include(router.urls)),
]

"""Tenants' URLs, included at the root: webhook endpoints and the delivery log under /api/v1/.

config/urls.py: ``path("", include("tenants.urls"))``.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tenants.webhook_api import WebhookDeliveryViewSet, WebhookEndpointViewSet

router = SimpleRouter()
router.register("webhooks/endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhooks/deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = [path("api/v1/", include(router.urls))]

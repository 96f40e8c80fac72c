"""Dashboard pages for the tenant's account: API keys, webhooks, team (under /app/account/)."""

from django.urls import path

urlpatterns: list = []

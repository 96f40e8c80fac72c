"""The storefront embed (under /embed/)."""

from django.urls import path

urlpatterns: list = []

"""The operator console (staff only), under /console/."""

from django.urls import path

urlpatterns: list = []

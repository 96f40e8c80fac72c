from django.urls import path

from billing import views

urlpatterns = [
    path("", views.billing_page, name="billing"),
    path("checkout/<slug:plan_slug>/", views.checkout, name="billing-checkout"),
    path("portal/", views.portal, name="billing-portal"),
]

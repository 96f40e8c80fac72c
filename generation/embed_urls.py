"""The storefront embed (under /embed/): the widget script and its stylesheet."""

from django.urls import path

from generation import embed_views

urlpatterns = [
    path("v1/widget.js", embed_views.widget_asset, {"name": "widget.js"}, name="embed-widget-js"),
    path(
        "v1/widget.css", embed_views.widget_asset, {"name": "widget.css"}, name="embed-widget-css"
    ),
]

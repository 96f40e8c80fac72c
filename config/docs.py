"""The API docs pages (Swagger UI, Redoc) made to run under the Content-Security-Policy.

drf-spectacular's own pages are kept, with only their inline parts changed: Swagger UI's init
script is a separate same-origin file (``SpectacularSwaggerSplitView``, ``?script``); the inline
``<style>`` blocks and Redoc's init script carry the request's nonce, which Redoc also hands to
the ``<style>`` tags its styled-components inject; Google Fonts (blocked by the policy, and a
third-party call) go. The nonce is named in the policy of these responses only.

Also the schema's security schemes for our two authentication classes (drf-spectacular finds
an extension once its module is imported; config/urls.py imports this one for the views).
"""

from __future__ import annotations

from django.template import engines
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.renderers import TemplateHTMLRenderer


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer sk_…` (servers) or `Bearer pk_…` (the "
            "storefront widget: job creation from the templates and origins the key names).",
        }


class TenantSessionScheme(SessionScheme):
    """The dashboard's session (and its CSRF token), acting in the tenant chosen there."""

    target_class = "tenants.auth.TenantSessionAuthentication"
    name = "tenantSession"  # "cookieAuth" is the operators' plain session (moderation API)


# The two pages as small templates that extend drf-spectacular's and replace only the blocks
# with inline code; kept here, beside the views they belong to, rather than in the site's
# template folder, where they would also replace drf-spectacular's pages for every other use.
_DOCS_TEMPLATES = {
    "reelcast/docs/swagger_ui.html": """{% extends "drf_spectacular/swagger_ui.html" %}
{% block head %}<title>{{ title|default:"Swagger" }}</title>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% if favicon_href %}<link rel="icon" href="{{ favicon_href }}">{% endif %}
<link rel="stylesheet" href="{{ swagger_ui_css }}">
<style nonce="{{ request.csp_nonce }}">
  html { box-sizing: border-box; overflow-y: scroll; }
  *, *:after, *:before { box-sizing: inherit; }
  body { background: #fafafa; margin: 0; }
</style>{% endblock head %}""",
    "reelcast/docs/redoc.html": """{% extends "drf_spectacular/redoc.html" %}
{% block head %}<title>{{ title|default:"Redoc" }}</title>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{ request.csp_nonce }}">body { margin: 0; padding: 0; }</style>{% endblock head %}
{% block body %}<div id="redoc-container"></div>
<script src="{{ redoc_standalone }}"></script>
<script nonce="{{ request.csp_nonce }}">
  Redoc.init("{{ schema_url|escapejs }}",
             Object.assign({% if settings %}{{ settings|safe }}{% else %}{}{% endif %},
                           {nonce: "{{ request.csp_nonce }}"}),
             document.getElementById("redoc-container"));
</script>{% endblock body %}""",
}


class _DocsTemplateRenderer(TemplateHTMLRenderer):
    def resolve_template(self, template_names):
        source = _DOCS_TEMPLATES.get(template_names[0])
        if source is None:
            return super().resolve_template(template_names)
        return engines["django"].from_string(source)


class SwaggerDocsView(SpectacularSwaggerSplitView):
    """Swagger UI with no inline script (its init script is ``?script`` on the same path)."""

    renderer_classes = [_DocsTemplateRenderer]
    template_name = "reelcast/docs/swagger_ui.html"


class RedocDocsView(SpectacularRedocView):
    """Redoc initialised by a nonce-bearing script, its injected styles nonce-bearing too.

    Redoc builds its search index in a Worker made from a ``blob:`` URL by its own (trusted)
    script, so this page alone allows ``worker-src blob:``. Left as is: the scrollbar styles
    that its bundle injects while loading, before the nonce is handed over, are refused
    (the side menu falls back to the browser's own scrollbar).
    """

    renderer_classes = [_DocsTemplateRenderer]
    template_name = "reelcast/docs/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response.csp_replace = {"worker-src": ["'self'", "blob:"]}
        return response

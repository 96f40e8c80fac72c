"""What a storefront widget may know about a template: ``GET /api/v1/embed/templates/{ref}/``.

A publishable key is public (it sits in a shop's page), so this answers only with what the shop
chose to show a shopper: the variables marked ``"public": true`` with what a form needs (type,
label, choices, limits, default), whether the template takes the shopper's photo and needs
their consent, the product description and a product picture. Prompts, negative prompts,
characters, styles, models, other variables and storage keys stay private.

A publishable key reads only the templates it names (``allowed_template_ids``) and only from
the origins it names (``allowed_origins``); anything else is a 404, exactly like a template
that does not exist, so the endpoint cannot be used to discover a tenant's other templates.
A secret key or a signed-in member may read any of the tenant's live templates (to preview
what the widget will show).

Also here: ``POST /api/v1/embed/visitor/`` (a visitor token for the widget, see
generation/storefront.py) and the embed view of a job, the only job shape a publishable key
ever receives.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from config.security import client_ip
from generation import selectors, storefront
from generation.delivery import signed_link
from generation.eta_fields import JobEtaFields
from generation.models import Job, JobState, Template, TemplateVersion
from tenants.models import ApiKey, Role
from tenants.scoping import TenantScopedViewSet

# The parts of a variable definition a form needs; anything else in it stays private.
PUBLIC_VARIABLE_KEYS = (
    "choices",
    "min",
    "max",
    "integer",
    "min_length",
    "max_length",
    "default",
)


def public_variables(version: TemplateVersion) -> list[dict[str, Any]]:
    """The version's ``"public": true`` variables, as a storefront form shows them."""
    shown = []
    for var in version.variables:
        if var.get("public") is not True:
            continue
        item: dict[str, Any] = {
            "name": var["name"],
            "type": var["type"],
            "label": var.get("label") or var["name"],
            # a variable with a default is filled by it when the shopper leaves it empty
            "required": bool(var.get("required", True)) and "default" not in var,
        }
        item.update({key: var[key] for key in PUBLIC_VARIABLE_KEYS if key in var})
        shown.append(item)
    return shown


def _ids(values: list) -> list[str]:
    """The well-formed template ids of a key (a malformed one matches nothing, never a 500)."""
    ids = []
    for value in values:
        try:
            ids.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return ids


EmbedTemplateSerializer = inline_serializer(
    "EmbedTemplate",
    {
        "id": serializers.UUIDField(),
        "slug": serializers.CharField(),
        "name": serializers.CharField(),
        "kind": serializers.CharField(),
        "version": serializers.IntegerField(),
        "shop": serializers.CharField(),
        "variables": serializers.ListField(child=serializers.DictField()),
        "takes_photo": serializers.BooleanField(),
        "requires_consent": serializers.BooleanField(),
        "product": serializers.CharField(),
        "duration_s": serializers.FloatField(),
        "width": serializers.IntegerField(),
        "height": serializers.IntegerField(),
        "poster": inline_serializer(
            "EmbedPoster",
            {"url": serializers.URLField(), "expires_at": serializers.DateTimeField()},
            allow_null=True,
        ),
    },
)


class EmbedTemplateViewSet(TenantScopedViewSet):
    """``GET /api/v1/embed/templates/{id or slug}/``: a template's public face, for the widget."""

    model = Template
    min_roles = {"retrieve": Role.VIEWER}
    publishable_actions = ("retrieve",)
    lookup_value_regex = "[^/]+"

    def scope_queryset(self, queryset):
        queryset = queryset.filter(archived_at__isnull=True)
        context = self.tenant_context
        if context.is_publishable:
            key = context.api_key
            if self.request.headers.get("Origin", "") not in key.allowed_origins:
                return queryset.none()
            queryset = queryset.filter(pk__in=_ids(key.allowed_template_ids))
        return queryset

    @extend_schema(responses={200: EmbedTemplateSerializer})
    def retrieve(self, request, pk=None):
        templates = self.get_queryset()
        try:
            template = templates.filter(pk=uuid.UUID(pk)).first()
        except ValueError:
            template = templates.filter(slug=pk).first()
        version = selectors.template_latest_version(template=template) if template else None
        if template is None or version is None:
            raise NotFound("Not found.")
        variables = public_variables(version)
        tenant = self.tenant_context.tenant
        product_images = [a for a in version.assets if a.get("role") == "product"]
        poster = None
        if product_images:
            link = signed_link(tenant=tenant, key=product_images[0]["key"])
            poster = {"url": link.url, "expires_at": link.expires_at}
        return Response(
            {
                "id": str(template.id),
                "slug": template.slug,
                "name": template.name,
                "kind": template.kind,
                "version": version.number,
                "shop": tenant.name,
                "variables": variables,
                "takes_photo": any(v["type"] == "image" for v in variables),
                "requires_consent": version.requires_consent,
                "product": version.product,
                "duration_s": version.duration_s,
                "width": version.width,
                "height": version.height,
                "poster": poster,
            }
        )


# --- visitor tokens -------------------------------------------------------------------------------

VisitorTokenSerializer = inline_serializer(
    "EmbedVisitorToken",
    {"token": serializers.CharField(), "expires_in_s": serializers.IntegerField()},
)


class EmbedVisitorViewSet(TenantScopedViewSet):
    """``POST /api/v1/embed/visitor/``: a signed visitor token for one shopper's session.

    Publishable keys only, from an origin the key lists. The token names the key, the origin
    and a new visitor id; send it as ``X-Reelcast-Visitor`` with every job create.
    """

    model = ApiKey
    min_roles = {"create": Role.OWNER}
    publishable_actions = ("create",)
    allow_secret_keys = False

    @extend_schema(request=None, responses={201: VisitorTokenSerializer})
    def create(self, request):
        context = self.tenant_context
        if not context.is_publishable:
            raise PermissionDenied(
                "Visitor tokens are for publishable keys.", code="publishable_key_only"
            )
        key = context.api_key
        origin = request.headers.get("Origin", "")
        if origin == "null" or origin not in key.allowed_origins:
            raise PermissionDenied(
                "This publishable key is not allowed from this origin.", code="origin_not_allowed"
            )
        issued = storefront.visitor_token_issue(
            api_key=key, origin=origin, client_address=client_ip(request)
        )
        return Response({"token": issued.token, "expires_in_s": issued.expires_in_s}, status=201)


# --- the embed view of a job ----------------------------------------------------------------------

# A public sentence per failure, so no internal message (a backend's exception, a moderation
# summary naming the template's words) ever reaches a shopper's browser.
PUBLIC_ERROR_REASONS = {
    "content_blocked": "The video did not pass the content checks.",
    "moderation_rejected": "The video did not pass the content checks.",
}
DEFAULT_ERROR_REASON = "The video could not be made."

EmbedLinkSerializer = inline_serializer(
    "EmbedLink",
    {"url": serializers.URLField(), "expires_at": serializers.DateTimeField()},
    allow_null=True,
)


class EmbedJobSerializer(JobEtaFields):
    """A job as a storefront sees it: where it is, and the video once it is ready. Nothing of
    the template's internals (prompts, shots, model, seed, values, tags, the end user)."""

    id = serializers.UUIDField()
    template = serializers.UUIDField(source="template_id")
    state = serializers.CharField()
    progress = serializers.IntegerField()
    error = serializers.SerializerMethodField()
    video = serializers.SerializerMethodField()
    poster = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(
        inline_serializer(
            "EmbedJobError",
            {"code": serializers.CharField(), "reason": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {
            "code": job.error_code,
            "reason": PUBLIC_ERROR_REASONS.get(job.error_code, DEFAULT_ERROR_REASON),
        }

    def _link(self, job: Job, key: str) -> dict | None:
        ready = job.state == JobState.SUCCEEDED and job.files_deleted_at is None
        if not ready or not key:
            return None
        link = signed_link(tenant=job.tenant, key=key)
        return {"url": link.url, "expires_at": link.expires_at}

    @extend_schema_field(EmbedLinkSerializer)
    def get_video(self, job: Job) -> dict | None:
        return self._link(job, job.video_key)

    @extend_schema_field(EmbedLinkSerializer)
    def get_poster(self, job: Job) -> dict | None:
        return self._link(job, job.poster_key)

"""REST API v1 for templates and jobs: parse, call one service or selector, format."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from config.api import CreatedCursorPagination, StrictSerializer
from config.problems import Problem
from generation import live, selectors, services, storefront
from generation.delivery import signed_link
from generation.embed_api import EmbedJobSerializer
from generation.eta_fields import JobEtaFields
from generation.models import BrandKit, DeletionReceipt, Job, JobState, Priority, Template
from moderation.services import ContentBlocked
from tenants.models import Role
from tenants.scoping import TenantScopedViewSet

# --- serializers ------------------------------------------------------------------------------


class VariableSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["text", "name", "choice", "number", "image"])
    label = serializers.CharField(required=False)
    required = serializers.BooleanField(required=False)
    min_length = serializers.IntegerField(required=False)
    max_length = serializers.IntegerField(required=False)
    pattern = serializers.CharField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    min = serializers.FloatField(required=False)
    max = serializers.FloatField(required=False)
    integer = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False)
    public = serializers.BooleanField(required=False)


class TemplateVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    variables = VariableSerializer(many=True)
    prompt = serializers.CharField()
    negative_prompt = serializers.CharField()
    title = serializers.CharField()
    model = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    fps = serializers.IntegerField()
    duration_s = serializers.FloatField()
    extra_outputs = serializers.ListField(child=serializers.CharField())
    character = serializers.CharField()
    product = serializers.CharField()
    style = serializers.JSONField()
    assets = serializers.SerializerMethodField()
    requires_consent = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(
        inline_serializer(
            "TemplateAsset",
            {"role": serializers.CharField(), "sha256": serializers.CharField()},
            many=True,
        )
    )
    def get_assets(self, version) -> list[dict]:
        # Storage keys are internal; the tenant sees which images the version holds.
        return [{"role": a["role"], "sha256": a["sha256"]} for a in version.assets]


class ReferenceImageSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=["character", "product"])
    image = serializers.CharField(help_text="PNG/JPEG/WebP as a base64 data URL.")


class TemplateSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    archived_at = serializers.DateTimeField(allow_null=True)
    version = serializers.SerializerMethodField()

    @extend_schema_field(TemplateVersionSerializer)
    def get_version(self, template: Template) -> dict:
        latest = selectors.template_latest_version(template=template)
        return TemplateVersionSerializer(latest).data if latest else {}


class TemplateWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False)
    kind = serializers.ChoiceField(choices=Template.Kind.choices)
    variables = serializers.JSONField(required=False)
    prompt = serializers.CharField(max_length=8000, trim_whitespace=False)
    negative_prompt = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    title = serializers.CharField(max_length=300, required=False, allow_blank=True)
    model = serializers.CharField(max_length=64, required=False)
    width = serializers.IntegerField(required=False, min_value=1, max_value=8192)
    height = serializers.IntegerField(required=False, min_value=1, max_value=8192)
    fps = serializers.IntegerField(required=False, min_value=1, max_value=120)
    duration_s = serializers.FloatField(required=False, min_value=0.1, max_value=3600)
    extra_outputs = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=1,
        help_text="Also deliver the other orientation: ['portrait'] (9:16) or ['landscape'].",
    )
    character = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="The character, injected identically into every shot prompt: "
        "'{name}, a {age_group} {pronoun} with short black hair, wearing a {outfit_colour} "
        "school uniform'.",
    )
    product = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="The product (try-on templates): 'a camel wool double-breasted coat'.",
    )
    style = serializers.JSONField(
        required=False,
        help_text='A style preset {"preset": "cinematic"} or inline '
        '{"camera", "lighting", "look", "negative"}.',
    )
    reference_images = ReferenceImageSerializer(
        many=True,
        required=False,
        help_text="A character sheet or product photos (replaces the version's images).",
    )
    requires_consent = serializers.BooleanField(
        required=False,
        help_text="Jobs need a consent record. Always on when the template has a name or "
        "photo variable or a character image.",
    )


class TemplateUpdateSerializer(TemplateWriteSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
        self.fields.pop("slug")
        self.fields.pop("kind")


class TransitionSerializer(serializers.Serializer):
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    at = serializers.DateTimeField()
    reason = serializers.CharField()


class JobSerializer(JobEtaFields):
    id = serializers.UUIDField()
    template = serializers.UUIDField(source="template_id")
    template_version = serializers.IntegerField(source="template_version.number")
    state = serializers.CharField()
    progress = serializers.IntegerField()
    priority = serializers.IntegerField()
    pool = serializers.CharField()
    values = serializers.SerializerMethodField()
    model = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    fps = serializers.IntegerField()
    duration_s = serializers.FloatField()
    seed = serializers.IntegerField()
    title = serializers.CharField()
    shots = serializers.JSONField()
    end_user = serializers.CharField()
    tags = serializers.JSONField()
    style = serializers.JSONField()
    consent = serializers.UUIDField(source="consent_id", allow_null=True)
    batch = serializers.UUIDField(source="batch_id", allow_null=True)
    batch_row = serializers.IntegerField(allow_null=True)
    variant_label = serializers.CharField()
    error = serializers.SerializerMethodField()
    cancel_requested = serializers.SerializerMethodField()
    device_ms = serializers.IntegerField()
    files_deleted_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    transitions = serializers.SerializerMethodField()

    def get_values(self, job: Job) -> dict:
        # Stored image keys are internal; the API shows which variable held an image.
        return {
            k: ({"image": v["image"]} if isinstance(v, dict) else v) for k, v in job.values.items()
        }

    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    def get_cancel_requested(self, job: Job) -> bool:
        return job.cancel_requested_at is not None

    @extend_schema_field(TransitionSerializer(many=True))
    def get_transitions(self, job: Job) -> list[dict]:
        return TransitionSerializer(job.transitions.all(), many=True).data


class JobCreateSerializer(StrictSerializer):
    template = serializers.CharField(help_text="Template id or slug.")
    template_version = serializers.IntegerField(required=False, min_value=1)
    values = serializers.JSONField(required=False, default=dict)
    model = serializers.CharField(max_length=64, required=False)
    width = serializers.IntegerField(required=False, min_value=1, max_value=8192)
    height = serializers.IntegerField(required=False, min_value=1, max_value=8192)
    fps = serializers.IntegerField(required=False, min_value=1, max_value=120)
    duration_s = serializers.FloatField(required=False, min_value=0.1, max_value=3600)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    end_user = serializers.CharField(required=False, allow_blank=True, max_length=128)
    consent = serializers.JSONField(
        required=False,
        help_text="For a template that names or shows a real person: a consent record id, or "
        '{"consented_by": "...", "subject_name"?: "..."} for the person\'s own consent '
        "given now. Without it, the consent recorded for `end_user` is used.",
    )

    def validate_consent(self, value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) <= {"consented_by", "subject_name", "scope_note"}:
            return value
        raise serializers.ValidationError(
            "A consent id, or an object with consented_by (and subject_name, scope_note)."
        )


class TemplatePreviewRequestSerializer(StrictSerializer):
    values = serializers.JSONField(required=False, default=dict)
    duration_s = serializers.FloatField(required=False, min_value=0.1, max_value=3600)


class DeletionReceiptSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    job_id = serializers.UUIDField()
    reason = serializers.CharField()
    files = serializers.JSONField()
    created_at = serializers.DateTimeField()


LinkSerializer = inline_serializer(
    "SignedLink",
    {
        "url": serializers.URLField(),
        "expires_at": serializers.DateTimeField(),
    },
)
DownloadSerializer = inline_serializer(
    "JobDownload",
    {
        "video": LinkSerializer,
        "poster": LinkSerializer,
        "video_bytes": serializers.IntegerField(),
        "variants": serializers.DictField(child=LinkSerializer),
    },
)

# --- views ------------------------------------------------------------------------------------


def template_for(tenant, ref: str) -> Template:
    """The tenant's template by id or slug; a 400 naming the field when there is none."""
    templates = Template.objects.for_tenant(tenant)
    try:
        serializers.UUIDField().to_internal_value(ref)
        template = templates.filter(pk=ref).first()
    except ValidationError:
        template = templates.filter(slug=ref).first()
    if template is None:
        raise ValidationError({"template": "No such template."})
    return template


TEMPLATE_REF = OpenApiParameter(
    "id", str, OpenApiParameter.PATH, description="The template's id or its slug."
)


class TemplateViewSet(TenantScopedViewSet):
    """Templates: `GET/POST /api/v1/templates/`, `GET/PATCH/DELETE /api/v1/templates/{id}/`.

    ``{id}`` is the template's id or its slug, read as job creation reads a template reference.

    Changing content publishes a new version; jobs keep the version they were made from.
    DELETE archives (the template takes no new jobs; its jobs and versions stay).
    """

    model = Template
    serializer_class = TemplateSerializer
    pagination_class = CreatedCursorPagination
    min_roles = {**TenantScopedViewSet.min_roles, "versions": Role.VIEWER, "preview": Role.VIEWER}
    lookup_fields = ("pk", "slug")

    def scope_queryset(self, queryset):
        if self.action == "list" and self.request.query_params.get("archived") != "true":
            return queryset.filter(archived_at__isnull=True)
        return queryset

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset().order_by("-created_at"))
        return self.get_paginated_response(TemplateSerializer(page, many=True).data)

    @extend_schema(parameters=[TEMPLATE_REF])
    def retrieve(self, request, pk=None):
        return Response(TemplateSerializer(self.get_object()).data)

    @extend_schema(request=TemplateWriteSerializer, responses={201: TemplateSerializer})
    def create(self, request):
        body = TemplateWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        template = services.template_create(
            tenant=self.tenant_context.tenant,
            name=data.pop("name"),
            kind=data.pop("kind"),
            slug=data.pop("slug", None),
            content=data,
            actor=self.tenant_context.user,
        )
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=TemplateUpdateSerializer,
        responses={200: TemplateSerializer},
        parameters=[TEMPLATE_REF],
    )
    def partial_update(self, request, pk=None):
        template = self.get_object()
        body = TemplateUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        template = services.template_update(
            template=template,
            name=data.pop("name", None),
            content=data,
            actor=self.tenant_context.user,
        )
        return Response(TemplateSerializer(template).data)

    @extend_schema(responses={204: None}, parameters=[TEMPLATE_REF])
    def destroy(self, request, pk=None):
        services.template_archive(template=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=TemplatePreviewRequestSerializer,
        parameters=[TEMPLATE_REF],
        responses={
            200: inline_serializer(
                "TemplatePreview",
                {
                    "title": serializers.CharField(),
                    "shots": serializers.JSONField(),
                    "tags": serializers.DictField(
                        child=serializers.ListField(child=serializers.CharField())
                    ),
                    "requires_consent": serializers.BooleanField(),
                },
            )
        },
    )
    @action(detail=True, methods=["post"])
    def preview(self, request, pk=None):
        """The compiled shots (prompts, durations, frame counts) and tags, without running
        anything or spending GPU time; variables without a value show as placeholders."""
        template = self.get_object()
        body = TemplatePreviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(
            services.template_preview(
                template=template,
                values=body.validated_data.get("values") or {},
                duration_s=body.validated_data.get("duration_s"),
            )
        )

    @extend_schema(responses={200: TemplateVersionSerializer(many=True)}, parameters=[TEMPLATE_REF])
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        template = self.get_object()
        return Response(
            TemplateVersionSerializer(template.versions.order_by("number"), many=True).data
        )


_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,80}")


def _is_uuid(value: str) -> bool:
    try:
        serializers.UUIDField().to_internal_value(value)
    except ValidationError:
        return False
    return True


def _parse_filters(params) -> selectors.JobFilters:
    errors = {}
    state = params.get("state") or None
    if state and state not in JobState.values:
        errors["state"] = f"Must be one of {', '.join(JobState.values)}."
    dates = {}
    for name in ("created_after", "created_before"):
        raw = params.get(name)
        if raw:
            parsed = parse_datetime(raw)
            if parsed is None or parsed.tzinfo is None:
                errors[name] = "Use an ISO 8601 date-time with a time zone."
            dates[name] = parsed
    template_id, template_slug = params.get("template") or None, None
    if template_id and not _is_uuid(template_id):
        template_id, template_slug = None, template_id  # a template by its slug, as jobs take it
        if not _SLUG.fullmatch(template_slug):
            errors["template"] = "Must be a template id or slug."
    batch_id = params.get("batch") or None
    if batch_id and not _is_uuid(batch_id):
        errors["batch"] = "Must be a batch id."
    tags = [t for t in params.getlist("tag") if t][:5]
    if any(len(t) > 80 for t in tags):
        errors["tag"] = "At most 80 characters."
    if errors:
        raise ValidationError(errors)
    return selectors.JobFilters(
        state=state,
        template_id=template_id,
        template_slug=template_slug,
        batch_id=batch_id,
        tags=tuple(tags),
        **dates,
    )


def _storefront_blocked(blocked: ContentBlocked) -> Problem:
    """The 422 a storefront caller sees: the rules its own values matched, and for a match in
    the compiled prompt or title only that the combination is not allowed (an excerpt there
    would quote the shop's prompt)."""
    errors = []
    for error in blocked.errors:
        if error.get("field", "").startswith("values."):
            errors.append(error)
        else:
            errors.append(
                {
                    "field": "",
                    "message": "What you entered is not allowed with this template.",
                    "category": error.get("category", ""),
                }
            )
    return Problem(
        blocked.detail, code="content_blocked", status_code=blocked.status_code, errors=errors
    )


class JobViewSet(TenantScopedViewSet):
    """Jobs: create (with `Idempotency-Key`), get, list, cancel, and signed downloads."""

    model = Job
    serializer_class = JobSerializer
    pagination_class = CreatedCursorPagination
    min_roles = {
        "list": Role.VIEWER,
        "retrieve": Role.VIEWER,
        "download": Role.VIEWER,
        "create": Role.EDITOR,
        "cancel": Role.EDITOR,
        "destroy": Role.ADMIN,
        "events_token": Role.VIEWER,
    }
    publishable_actions = ("create", "retrieve", "events_token", "download")

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # A publishable key is public: it works only on the pages of the origins it names, for
        # watching and fetching its jobs as for creating them (config/cors.py is the browser's
        # half of the same rule).
        context = self.tenant_context
        if context.is_publishable and request.headers.get("Origin", "") not in (
            context.api_key.allowed_origins
        ):
            raise PermissionDenied(
                "This publishable key is not allowed from this origin.", code="origin_not_allowed"
            )

    def scope_queryset(self, queryset):
        context = self.tenant_context
        if context.is_publishable:  # a storefront key sees only the jobs it created
            queryset = queryset.filter(created_by_key=context.api_key)
        return queryset.select_related("template_version")

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=JobState.values),
            OpenApiParameter("template", str, description="Template id or slug"),
            OpenApiParameter("batch", str, description="Batch id (a roster or A/B variants)"),
            OpenApiParameter(
                "tag",
                str,
                many=True,
                description="A search tag from the compiler, as `value` or `category:value` "
                "(subject, action, environment, style, character); repeat to require several.",
            ),
            OpenApiParameter("created_after", str, description="ISO 8601 date-time"),
            OpenApiParameter("created_before", str, description="ISO 8601 date-time"),
            OpenApiParameter("limit", int),
        ]
    )
    def list(self, request):
        filters = _parse_filters(request.query_params)
        jobs = selectors.job_list(tenant=self.tenant_context.tenant, filters=filters)
        jobs = self.scope_queryset(jobs).prefetch_related("transitions")
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    def _job_data(self, job: Job) -> dict:
        # A publishable key's caller is anyone: it gets the embed view, never the internals.
        if self.tenant_context.is_publishable:
            return EmbedJobSerializer(job).data
        return JobSerializer(job).data

    @extend_schema(
        responses={200: JobSerializer},
        description="With a publishable key the answer is the embed view (EmbedJob).",
    )
    def retrieve(self, request, pk=None):
        return Response(self._job_data(self.get_object()))

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: JobSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Same key + same body returns the original "
                "job (200); same key + other body is 409.",
            )
        ],
    )
    def create(self, request):
        """A publishable key must send a visitor token (``X-Reelcast-Visitor``) and may set only
        the template, its public variables and the shopper's own consent (see
        generation/storefront.py); its answer is the embed view of the job."""
        context = self.tenant_context
        visitor = None
        if context.is_publishable:
            visitor = storefront.visitor_from_token(
                token=request.headers.get(storefront.VISITOR_HEADER, "").strip(),
                api_key=context.api_key,
                origin=request.headers.get("Origin", ""),
            )
        body = JobCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        template = self._template_for(data["template"])
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key is not None and len(key) > 255:
            raise ValidationError({"Idempotency-Key": "At most 255 characters."})
        end_user = data.get("end_user", "")
        if visitor is not None:
            version = selectors.template_latest_version(template=template)
            public = {v["name"] for v in (version.variables if version else []) if v.get("public")}
            refused = storefront.storefront_request_errors(
                body=request.data, public_variables=public
            )
            if refused:
                raise ValidationError(refused)
            storefront.visitor_job_take(api_key=context.api_key, visitor=visitor)
            end_user = visitor
            if key is not None:  # one visitor's key never replays another's (or a server's) job
                key = f"sf:{visitor}:{hashlib.sha256(key.encode()).hexdigest()}"
        try:
            created = services.job_create(
                tenant=context.tenant,
                request=services.JobRequest(
                    template=template,
                    values=data.get("values") or {},
                    version_number=data.get("template_version"),
                    model=data.get("model"),
                    width=data.get("width"),
                    height=data.get("height"),
                    fps=data.get("fps"),
                    duration_s=data.get("duration_s"),
                    seed=data.get("seed"),
                    end_user=end_user,
                    consent=data.get("consent"),
                    # a shopper waiting in a storefront goes ahead of back-office work
                    priority=Priority.INTERACTIVE if context.is_publishable else Priority.STANDARD,
                ),
                actor_user=context.user,
                actor_key=context.api_key,
                idempotency_key=key,
                fingerprint=services.request_fingerprint(request.data),
            )
        except ContentBlocked as blocked:
            if visitor is None:
                raise
            raise _storefront_blocked(blocked) from None
        code = status.HTTP_200_OK if created.replayed else status.HTTP_201_CREATED
        return Response(self._job_data(created.job), status=code)

    def _template_for(self, ref: str) -> Template:
        context = self.tenant_context
        if not context.is_publishable:
            return template_for(context.tenant, ref)
        try:
            template = template_for(context.tenant, ref)
        except ValidationError:
            template = None
        key = context.api_key
        # a template that does not exist gets the same answer as one the key does not name, so
        # a storefront caller cannot probe the tenant's other templates by slug
        if template is None or str(template.id) not in key.allowed_template_ids:
            raise PermissionDenied(
                "This publishable key may not use that template.", code="template_not_allowed"
            )
        # (the origin was checked in initial())
        return template

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = services.job_cancel(job=self.get_object())
        return Response(JobSerializer(job).data)

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "JobEventsToken",
                {
                    "token": serializers.CharField(),
                    "url": serializers.URLField(),
                    "expires_in_s": serializers.IntegerField(),
                },
            )
        },
    )
    @action(detail=True, methods=["post"], url_path="events-token")
    def events_token(self, request, pk=None):
        """A short-lived token for the job's live status stream (for a storefront page)."""
        job = self.get_object()
        token = live.job_token(job)
        return Response(
            {
                "token": token,
                "url": request.build_absolute_uri(live.job_events_path(job, token=token)),
                "expires_in_s": settings.REELCAST_JOB_TOKEN_TTL_S,
            }
        )

    @extend_schema(responses={200: DeletionReceiptSerializer})
    def destroy(self, request, pk=None):
        """Delete every file of a finished job; answers with the deletion receipt."""
        receipt = services.job_delete_files(
            job=self.get_object(), reason=DeletionReceipt.Reason.TENANT_REQUEST
        )
        return Response(DeletionReceiptSerializer(receipt).data)

    @extend_schema(responses={200: DownloadSerializer})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        job = self.get_object()
        if job.files_deleted_at is not None:
            raise services.Problem("The video was deleted.", code="gone", status_code=410)
        if job.state != JobState.SUCCEEDED or not job.video_key:
            raise services.Problem(
                f"The video is not ready (the job is {job.state}).",
                code="not_ready",
                status_code=409,
            )
        tenant = self.tenant_context.tenant
        video = signed_link(tenant=tenant, key=job.video_key)
        poster = signed_link(tenant=tenant, key=job.poster_key)
        variants = {}
        for orientation, keys in job.variant_keys.items():
            link = signed_link(tenant=tenant, key=keys["video"])
            variants[orientation] = {"url": link.url, "expires_at": link.expires_at}
        return Response(
            {
                "video": {"url": video.url, "expires_at": video.expires_at},
                "poster": {"url": poster.url, "expires_at": poster.expires_at},
                "video_bytes": job.video_bytes,
                "variants": variants,
            }
        )


class BrandKitSerializer(serializers.Serializer):
    has_logo = serializers.SerializerMethodField()
    has_music = serializers.SerializerMethodField()
    logo_corner = serializers.CharField()
    logo_size = serializers.FloatField()
    primary_colour = serializers.CharField()
    secondary_colour = serializers.CharField()
    intro_text = serializers.CharField()
    intro_seconds = serializers.FloatField()
    outro_text = serializers.CharField()
    outro_seconds = serializers.FloatField()
    label_locale = serializers.CharField()

    def get_has_logo(self, kit) -> bool:
        return bool(kit.logo_key)

    def get_has_music(self, kit) -> bool:
        return bool(kit.music_key)


class BrandKitWriteSerializer(StrictSerializer):
    logo = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="PNG/JPEG/WebP data URL; empty removes the logo.",
    )
    music = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Audio data URL (MP3, AAC, WAV, Ogg, FLAC); empty removes it.",
    )
    logo_corner = serializers.ChoiceField(choices=BrandKit.Corner.choices, required=False)
    logo_size = serializers.FloatField(required=False, min_value=0.02, max_value=0.25)
    primary_colour = serializers.RegexField(r"^#[0-9A-Fa-f]{6}$", required=False)
    secondary_colour = serializers.RegexField(r"^#[0-9A-Fa-f]{6}$", required=False)
    intro_text = serializers.CharField(required=False, allow_blank=True, max_length=200)
    intro_seconds = serializers.FloatField(required=False, min_value=0, max_value=5)
    outro_text = serializers.CharField(required=False, allow_blank=True, max_length=200)
    outro_seconds = serializers.FloatField(required=False, min_value=0, max_value=5)
    label_locale = serializers.ChoiceField(choices=BrandKit.Locale.choices, required=False)


class BrandKitViewSet(TenantScopedViewSet):
    """The tenant's brand kit: `GET /api/v1/brand-kit/` and `POST` (set the given fields).

    The visible AI label is not part of the kit: it is on every video, whatever the kit says;
    a logo is moved to another corner rather than cover it.
    """

    model = BrandKit
    min_roles = {"list": Role.VIEWER, "create": Role.ADMIN}

    @extend_schema(responses={200: BrandKitSerializer})
    def list(self, request):
        kit = self.get_queryset().first() or BrandKit(tenant=self.tenant_context.tenant)
        return Response(BrandKitSerializer(kit).data)

    @extend_schema(request=BrandKitWriteSerializer, responses={200: BrandKitSerializer})
    def create(self, request):
        body = BrandKitWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        kit = services.brand_kit_set(
            tenant=self.tenant_context.tenant, changes=dict(body.validated_data)
        )
        return Response(BrandKitSerializer(kit).data)

"""REST API v1 for personalisation: consent records, style presets, batches (rosters and A/B
variants). Parse, call one service or selector, format."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from config.api import CreatedCursorPagination, CsvRenderer, StrictSerializer
from generation import batches, consents, services
from generation.api import template_for
from generation.models import Batch, ConsentRecord, StylePreset
from tenants.models import Role
from tenants.scoping import TenantScopedViewSet

# --- consent ----------------------------------------------------------------------------------


class ConsentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    subject_name = serializers.CharField()
    subject_ref = serializers.CharField()
    subject_is_minor = serializers.BooleanField()
    consented_by = serializers.CharField()
    relationship = serializers.CharField()
    scope_templates = serializers.ListField(child=serializers.CharField())
    scope_note = serializers.CharField()
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    has_evidence = serializers.SerializerMethodField()
    evidence_sha256 = serializers.CharField()
    evidence_type = serializers.CharField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_reason = serializers.CharField()
    videos_expired_at = serializers.DateTimeField(allow_null=True)
    active = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_has_evidence(self, record: ConsentRecord) -> bool:
        return bool(record.evidence_key)

    def get_active(self, record: ConsentRecord) -> bool:
        return consents.consent_is_valid(record)

    def get_jobs(self, record: ConsentRecord) -> int:
        return record.jobs.count()


class ConsentCreateSerializer(StrictSerializer):
    subject_name = serializers.CharField(max_length=64, help_text="The person shown, as named.")
    subject_ref = serializers.CharField(
        max_length=128,
        required=False,
        allow_blank=True,
        help_text="Your id for the person (a student number); jobs with this `end_user` use "
        "this consent.",
    )
    subject_is_minor = serializers.BooleanField(required=False, default=False)
    consented_by = serializers.CharField(max_length=200)
    relationship = serializers.ChoiceField(choices=ConsentRecord.Relationship.choices)
    scope_templates = serializers.ListField(
        child=serializers.UUIDField(), required=False, help_text="Empty: every template."
    )
    scope_note = serializers.CharField(max_length=500, required=False, allow_blank=True)
    granted_at = serializers.DateTimeField(required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    evidence = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="The signed form: a PDF or image as a base64 data URL.",
    )


class ConsentRevokeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


class ConsentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Consent records: `GET/POST /api/v1/consents/`, `GET /api/v1/consents/{id}/`,
    `POST /api/v1/consents/{id}/revoke/` (stops new jobs, expires the person's videos)."""

    model = ConsentRecord
    serializer_class = ConsentSerializer
    pagination_class = CreatedCursorPagination
    min_roles = {
        "list": Role.VIEWER,
        "retrieve": Role.VIEWER,
        "create": Role.EDITOR,
        "revoke": Role.EDITOR,
    }

    def scope_queryset(self, queryset):
        ref = self.request.query_params.get("subject_ref")
        if ref:
            queryset = queryset.filter(subject_ref=ref)
        return queryset

    @extend_schema(request=ConsentCreateSerializer, responses={201: ConsentSerializer})
    def create(self, request):
        body = ConsentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        data["scope_templates"] = [str(t) for t in data.get("scope_templates", [])]
        record = consents.consent_create(
            tenant=self.tenant_context.tenant, actor=self.tenant_context.user, **data
        )
        return Response(ConsentSerializer(record).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ConsentRevokeSerializer, responses={200: ConsentSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        body = ConsentRevokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        record = consents.consent_revoke(
            consent=self.get_object(), reason=body.validated_data.get("reason", "")
        )
        return Response(ConsentSerializer(record).data)


# --- style presets ----------------------------------------------------------------------------


class StylePresetSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    camera = serializers.CharField(max_length=300, required=False, allow_blank=True)
    lighting = serializers.CharField(max_length=300, required=False, allow_blank=True)
    look = serializers.CharField(max_length=300, required=False, allow_blank=True)
    negative = serializers.CharField(max_length=300, required=False, allow_blank=True)


class StylePresetWriteSerializer(StrictSerializer, StylePresetSerializer):
    pass


class StylePresetViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tenant's style presets (`GET/POST /api/v1/style-presets/`, `PUT/DELETE
    /api/v1/style-presets/{name}/`); templates name one with `"style": {"preset": name}`.
    Built-in presets are listed with `"builtin": true`."""

    model = StylePreset
    serializer_class = StylePresetSerializer
    lookup_field = "name"
    min_roles = {
        "list": Role.VIEWER,
        "create": Role.EDITOR,
        "update": Role.EDITOR,
        "destroy": Role.EDITOR,
    }

    def list(self, request):
        from generation.prompting import BUILTIN_PRESETS

        own = [
            {**StylePresetSerializer(p).data, "builtin": False}
            for p in self.get_queryset().order_by("name")
        ]
        builtin = [
            {
                "name": name,
                "camera": p.camera,
                "lighting": p.lighting,
                "look": p.look,
                "negative": p.negative,
                "builtin": True,
            }
            for name, p in sorted(BUILTIN_PRESETS.items())
        ]
        return Response({"results": own + builtin})

    @extend_schema(request=StylePresetWriteSerializer, responses={201: StylePresetSerializer})
    def create(self, request):
        body = StylePresetWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        preset = services.style_preset_save(
            tenant=self.tenant_context.tenant, fields=dict(body.validated_data), create=True
        )
        return Response(StylePresetSerializer(preset).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=StylePresetWriteSerializer, responses={200: StylePresetSerializer})
    def update(self, request, name=None):
        preset = self.get_object()
        body = StylePresetWriteSerializer(data={**request.data, "name": preset.name})
        body.is_valid(raise_exception=True)
        preset = services.style_preset_save(
            tenant=self.tenant_context.tenant, fields=dict(body.validated_data), create=False
        )
        return Response(StylePresetSerializer(preset).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, name=None):
        services.style_preset_delete(preset=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- batches ----------------------------------------------------------------------------------


class BatchSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    name = serializers.CharField()
    template = serializers.UUIDField(source="template_id")
    template_version = serializers.IntegerField(source="template_version.number")
    state = serializers.CharField()
    source_name = serializers.CharField()
    source_format = serializers.CharField()
    source_encoding = serializers.CharField()
    total_rows = serializers.IntegerField()
    processed_rows = serializers.IntegerField()
    accepted_rows = serializers.IntegerField()
    errors = serializers.SerializerMethodField(
        help_text="The first page of refused rows, by row: [{row, reasons: {field: message}}]"
    )
    errors_count = serializers.SerializerMethodField()
    errors_next = serializers.SerializerMethodField(
        help_text="The next page of refused rows (GET /api/v1/batches/{id}/errors/?after=…)"
    )
    summary = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.JSONField())
    def get_errors(self, batch: Batch) -> list[dict]:
        return self._first_page(batch)[0]

    def get_errors_count(self, batch: Batch) -> int:
        return len(batch.errors)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_errors_next(self, batch: Batch) -> str | None:
        after = self._first_page(batch)[1]
        return None if after is None else row_errors_url(self.context.get("request"), batch, after)

    def get_summary(self, batch: Batch) -> dict:
        return batches.batch_summary(batch)

    def _first_page(self, batch: Batch) -> tuple[list[dict], int | None]:
        pages = self.context.setdefault("_first_pages", {})
        if batch.pk not in pages:
            pages[batch.pk] = batches.batch_row_errors(batch=batch)
        return pages[batch.pk]


def row_errors_url(
    request, batch: Batch, after: int, limit: int = batches.ROW_ERRORS_PAGE_SIZE
) -> str:
    path = f"/api/v1/batches/{batch.pk}/errors/?after={after}&limit={limit}"
    return request.build_absolute_uri(path) if request is not None else path


class RowErrorsQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(
        min_value=1,
        max_value=batches.ROW_ERRORS_MAX_PAGE_SIZE,
        required=False,
        default=batches.ROW_ERRORS_PAGE_SIZE,
    )


class RosterUploadSerializer(StrictSerializer):
    template = serializers.CharField(help_text="Template id or slug.")
    file = serializers.FileField(
        help_text="A CSV (UTF-8; or GBK, Big5, Shift-JIS, Windows-1252) or XLSX roster."
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class VariantSerializer(StrictSerializer):
    label = serializers.CharField(max_length=64, required=False)
    style = serializers.JSONField(required=False, help_text='{"preset": name} or inline.')
    prompt = serializers.CharField(max_length=8000, required=False, trim_whitespace=False)


class VariantsCreateSerializer(StrictSerializer):
    template = serializers.CharField(help_text="Template id or slug.")
    values = serializers.JSONField(required=False, default=dict)
    variants = VariantSerializer(many=True)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    end_user = serializers.CharField(required=False, allow_blank=True, max_length=128)
    consent = serializers.JSONField(required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Batches: `POST /api/v1/batches/` (multipart roster upload, 202), `POST
    /api/v1/batches/variants/` (A/B variants), `GET /api/v1/batches/{id}/` (progress and row
    errors), `GET /api/v1/batches/{id}/results/` (a CSV, a line per row, with a link per video)."""

    model = Batch
    serializer_class = BatchSerializer
    pagination_class = CreatedCursorPagination
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    min_roles = {
        "list": Role.VIEWER,
        "retrieve": Role.VIEWER,
        "results": Role.VIEWER,
        "row_errors": Role.VIEWER,
        "create": Role.EDITOR,
        "variants": Role.EDITOR,
    }

    def scope_queryset(self, queryset):
        return queryset.select_related("template_version")

    @extend_schema(
        request={"multipart/form-data": RosterUploadSerializer},
        responses={202: BatchSerializer},
    )
    def create(self, request):
        body = RosterUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        context = self.tenant_context
        batch = batches.batch_create_roster(
            tenant=context.tenant,
            template=template_for(context.tenant, body.validated_data["template"]),
            data=upload.read(),
            filename=upload.name or "roster",
            name=body.validated_data.get("name", ""),
            actor_user=context.user,
            actor_key=context.api_key,
        )
        batch.refresh_from_db()
        return Response(
            BatchSerializer(batch, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=VariantsCreateSerializer, responses={201: BatchSerializer})
    @action(detail=False, methods=["post"])
    def variants(self, request):
        body = VariantsCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        context = self.tenant_context
        batch = batches.batch_create_variants(
            tenant=context.tenant,
            template=template_for(context.tenant, data["template"]),
            values=data.get("values") or {},
            variants=[dict(v) for v in data["variants"]],
            seed=data.get("seed"),
            end_user=data.get("end_user", ""),
            consent=data.get("consent"),
            name=data.get("name", ""),
            actor_user=context.user,
            actor_key=context.api_key,
        )
        batch.refresh_from_db()
        return Response(
            BatchSerializer(batch, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Row number to continue after"),
            OpenApiParameter(
                "limit", int, description=f"At most {batches.ROW_ERRORS_MAX_PAGE_SIZE}"
            ),
        ],
        responses={
            200: inline_serializer(
                "BatchRowErrorsPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "results": serializers.JSONField(),
                },
            )
        },
    )
    @action(detail=True, methods=["get"], url_path="errors")
    def row_errors(self, request, pk=None):
        """The batch's refused rows by row number, a page at a time (``next`` until null)."""
        batch = self.get_object()
        query = RowErrorsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        page, after = batches.batch_row_errors(
            batch=batch, after=query.validated_data["after"], limit=limit
        )
        return Response(
            {
                "count": len(batch.errors),
                "next": None if after is None else row_errors_url(request, batch, after, limit),
                "results": page,
            }
        )

    @extend_schema(
        responses={200: OpenApiResponse(description="text/csv, UTF-8 with BOM")},
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CsvRenderer])
    def results(self, request, pk=None):
        batch = self.get_object()
        response = HttpResponse(
            batches.batch_results_csv(batch=batch), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.id}.csv"'
        return response

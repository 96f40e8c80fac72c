"""The operators' moderation API: the review queue across all tenants, decisions, the audit log.

``/api/v1/moderation/cases/`` (open cases, oldest first; ``?status=approved|rejected|all``,
``?tenant=<slug>``, ``?stage=request|frames``), ``.../cases/{id}/``, ``POST .../cases/{id}/approve/``
and ``.../reject/`` with ``{"reason": "…"}``, and ``/api/v1/moderation/audit/``.

Operators are Django staff users holding ``moderation.review_case``, signed in with a session
(CSRF enforced). API keys are not accepted here and tenant users, staff without the permission
and anonymous callers all get 403. These views are deliberately *not* TenantScopedViewSet:
operators work every tenant's queue; the unscoped reads live in moderation.selectors.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from config.api import MethodCheckedFirst, StrictSerializer
from config.problems import NOT_FOUND_DETAIL
from moderation import selectors, services
from moderation.models import AuditEntry, ReviewCase


class IsModerationOperator(permissions.BasePermission):
    message = "Only moderation operators may use this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user is not None
            and user.is_authenticated
            and user.is_active
            and user.is_staff
            and user.has_perm(services.REVIEW_PERMISSION)
        )


# --- serializers ------------------------------------------------------------------------------


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    stage = serializers.CharField()
    verdict = serializers.CharField()
    checks = serializers.JSONField()
    reasons = serializers.JSONField()
    scores = serializers.JSONField()
    findings = serializers.JSONField()
    policy = serializers.JSONField()
    created_at = serializers.DateTimeField()


class CaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    stage = serializers.CharField()
    opened_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(source="decided_by.get_username", default=None)
    decision_reason = serializers.CharField()
    tenant = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()
    verdict = serializers.CharField(source="decision.verdict")
    categories = serializers.SerializerMethodField()
    reasons = serializers.JSONField(source="decision.reasons")
    scores = serializers.JSONField(source="decision.scores")
    flagged_frames = serializers.SerializerMethodField()
    text_matches = serializers.SerializerMethodField()
    reference_findings = serializers.SerializerMethodField()

    def get_tenant(self, case: ReviewCase) -> dict[str, Any]:
        tenant = case.tenant
        return {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name, "kind": tenant.kind}

    def get_job(self, case: ReviewCase) -> dict[str, Any]:
        job = case.job
        return {
            "id": str(job.id),
            "state": job.state,
            "template": job.template.name,
            "template_kind": job.template.kind,
            "model": job.model,
            "title": job.title,
            "fps": job.fps,
            "created_at": job.created_at,
            "error": {"code": job.error_code, "message": job.error_message}
            if job.error_code
            else None,
        }

    def get_categories(self, case: ReviewCase) -> list[str]:
        return sorted({r["category"] for r in case.decision.reasons if isinstance(r, dict)})

    def get_flagged_frames(self, case: ReviewCase) -> list[dict[str, Any]]:
        """Frame index, label, score and box (x, y, width, height) of every image finding."""
        return [f for f in case.decision.findings if "frame" in f]

    def get_text_matches(self, case: ReviewCase) -> list[dict[str, Any]]:
        return [f for f in case.decision.findings if "rule" in f]

    def get_reference_findings(self, case: ReviewCase) -> list[dict[str, Any]]:
        return [f for f in case.decision.findings if "image" in f]


class CaseDetailSerializer(CaseSerializer):
    decisions = serializers.SerializerMethodField()
    media = serializers.SerializerMethodField()
    audit = serializers.SerializerMethodField()

    def get_decisions(self, case: ReviewCase) -> list[dict[str, Any]]:
        return DecisionSerializer(selectors.job_decisions(case=case), many=True).data

    def get_media(self, case: ReviewCase) -> dict[str, Any] | None:
        """Short-lived links to the held video and poster, for the operator to watch."""
        from generation.delivery import signed_link

        job = case.job
        if not job.video_key:
            return None
        links = {"video": signed_link(tenant=case.tenant, key=job.video_key, ttl_s=900)}
        if job.poster_key:
            links["poster"] = signed_link(tenant=case.tenant, key=job.poster_key, ttl_s=900)
        return {
            name: {"url": link.url, "expires_at": link.expires_at} for name, link in links.items()
        }

    def get_audit(self, case: ReviewCase) -> list[dict[str, Any]]:
        entries = selectors.audit_list(filters=selectors.AuditFilters(case_id=case.pk))
        return AuditEntrySerializer(entries.order_by("id"), many=True).data


class DecideSerializer(StrictSerializer):
    reason = serializers.CharField(
        max_length=1000, help_text="Kept in the audit log; on reject also shown to the tenant."
    )


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    action = serializers.CharField()
    actor = serializers.CharField(source="actor_username")
    tenant_id = serializers.UUIDField(allow_null=True)
    tenant_name = serializers.CharField()
    job_id = serializers.UUIDField(allow_null=True)
    case_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    data = serializers.JSONField()


# --- views ------------------------------------------------------------------------------------


class QueuePagination(CursorPagination):
    ordering = ("opened_at", "id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class NewestFirstPagination(CursorPagination):
    ordering = ("-id",)
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 500


class OperatorViewSet(MethodCheckedFirst, viewsets.GenericViewSet):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsModerationOperator]


_STATUS_FILTER = {"all": None, **{s: s for s in ReviewCase.Status.values}}


class ReviewCaseViewSet(mixins.ListModelMixin, OperatorViewSet):
    """The review queue: every tenant's held jobs, with why they were held."""

    serializer_class = CaseSerializer
    pagination_class = QueuePagination

    def get_queryset(self):
        status = self.request.query_params.get("status", "open")
        if status not in _STATUS_FILTER:
            raise ValidationError({"status": f"One of: {', '.join(_STATUS_FILTER)}."})
        return selectors.review_case_list(
            filters=selectors.CaseFilters(
                status=_STATUS_FILTER[status],
                tenant_slug=self.request.query_params.get("tenant") or None,
                stage=self.request.query_params.get("stage") or None,
            )
        )

    def _case(self, pk: str) -> ReviewCase:
        case = selectors.review_case_get(case_id=int(pk)) if str(pk).isdigit() else None
        if case is None:
            raise NotFound(NOT_FOUND_DETAIL)  # the API's one answer for every missing object
        return case

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=list(_STATUS_FILTER)),
            OpenApiParameter("tenant", str, description="Tenant slug."),
            OpenApiParameter("stage", str, enum=ReviewCase.Stage.values),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=CaseDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(CaseDetailSerializer(self._case(pk)).data)

    @extend_schema(request=DecideSerializer, responses=CaseDetailSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        body = DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        case = services.review_approve(
            case=self._case(pk), operator=request.user, reason=body.validated_data["reason"]
        )
        return Response(CaseDetailSerializer(self._case(case.pk)).data)

    @extend_schema(request=DecideSerializer, responses=CaseDetailSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        body = DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        case = services.review_reject(
            case=self._case(pk), operator=request.user, reason=body.validated_data["reason"]
        )
        return Response(CaseDetailSerializer(self._case(case.pk)).data)


class AuditEntryViewSet(mixins.ListModelMixin, OperatorViewSet):
    """The append-only audit log, newest first (``?case=``, ``?job=``, ``?tenant=``, ``?action=``)."""

    serializer_class = AuditEntrySerializer
    pagination_class = NewestFirstPagination

    def get_queryset(self):
        params = self.request.query_params
        case = params.get("case")
        if case is not None and not case.isdigit():
            raise ValidationError({"case": "A case id."})
        job = params.get("job") or None
        if job is not None:
            try:
                job = str(uuid.UUID(job))
            except ValueError:
                raise ValidationError({"job": "A job id."}) from None
        action_name = params.get("action")
        if action_name and action_name not in AuditEntry.Action.values:
            raise ValidationError({"action": f"One of: {', '.join(AuditEntry.Action.values)}."})
        return selectors.audit_list(
            filters=selectors.AuditFilters(
                case_id=int(case) if case else None,
                job_id=job,
                tenant_slug=params.get("tenant") or None,
                action=action_name or None,
            )
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("case", int),
            OpenApiParameter("job", str),
            OpenApiParameter("tenant", str, description="Tenant slug."),
            OpenApiParameter("action", str, enum=AuditEntry.Action.values),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


# --- trace: which delivered video is this leaked copy? ------------------------------------------


def _job_summary(record) -> dict[str, Any]:
    job = record.job
    if job.created_by_id:
        requested_by = {"user": job.created_by.get_username()}
    elif job.created_by_key_id:
        requested_by = {"api_key": job.created_by_key.prefix, "key_name": job.created_by_key.name}
    else:
        requested_by = {}
    if job.end_user:
        requested_by["end_user"] = job.end_user
    return {
        "job": str(job.id),
        "tenant": {
            "id": str(record.tenant_id),
            "name": record.tenant.name,
            "slug": record.tenant.slug,
        },
        "template": {"id": str(job.template_id), "name": job.template.name},
        "model": job.model,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "requested_by": requested_by,
    }


class TraceViewSet(OperatorViewSet):
    """`POST /api/v1/moderation/trace/` with a video file (multipart, field `file`): the
    watermark names the exact job; the fingerprint index lists the nearest delivered videos."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        responses={200: OpenApiTypes.OBJECT},
    )
    def create(self, request):
        from moderation.provenance_service import provenance_trace

        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": "Upload the video to trace as `file`."})
        try:
            answer = provenance_trace(data=upload.read())
        except ValueError as exc:
            raise ValidationError({"file": str(exc)}) from None
        detection = answer.result.detection
        found = answer.watermark_record
        services.audit_record(  # who traced what is itself on the record
            action="trace",
            actor=request.user,
            tenant=found.tenant if found else None,
            job=found.job if found else None,
            data={
                "watermark_found": found is not None,
                "fingerprint_matches": [str(r.job_id) for r, _ in answer.matches],
            },
        )
        return Response(
            {
                "watermark": {
                    "found": answer.watermark_record is not None,
                    "confidence": round(detection.confidence, 4),
                    "frames_used": detection.frames_used,
                    "match": _job_summary(answer.watermark_record)
                    if answer.watermark_record
                    else None,
                },
                "fingerprint_matches": [
                    {"distance": distance, **_job_summary(record)}
                    for record, distance in answer.matches
                ],
                "c2pa": _manifest_summary(answer.manifest),
                "implicit_label": _label_summary(answer.implicit_label),
            }
        )


def _label_summary(label) -> dict | None:
    """The copy's ``AIGC`` tag and whether its signature (ReservedCode1) is ours."""
    if label is None:
        return None
    return {
        "status": label.check.status,
        "message": label.check.message,
        "content_producer": label.check.content_producer,
        "produce_id": label.check.produce_id,
        "job": str(label.record.job_id) if label.record else None,
        "tag": label.tag,
    }


def _manifest_summary(manifest) -> dict | None:
    """The copy's C2PA manifest: embedded, or recovered through the watermark (soft binding)."""
    if manifest is None:
        return None
    return {
        "source": manifest.source,
        "note": manifest.note,
        "validation_state": manifest.validation_state,
        "failures": manifest.failures,
        "soft_binding": {"alg": manifest.soft_binding_alg, "match": manifest.soft_binding_match},
        "manifest_store": manifest.store,
    }

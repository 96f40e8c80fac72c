"""The tenant dashboard's work pages under /app/: templates, runs, jobs, gallery, batches, consent.

Each view parses the form, calls one service or selector, and renders; the tenant always comes
from the session's membership (``current_membership``), never from the form. Another tenant's
object is a 404, like one that does not exist. Roles follow the API: a viewer reads everything,
an editor creates and runs (templates, jobs, rosters, consent records, cancel), an admin also
archives templates and edits the brand kit. Forms are parsed with the API's own serializers, so
a field is refused here for the same reason, in the same words, as over the API.

Live parts (the jobs list, a job's status, a batch's progress) are htmx partials: the page
polls its own URL with ``HX-Request`` every 2 s and the server stops the polling by answering
with a partial that has no trigger once everything shown is final.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.exceptions import APIException, ValidationError

from config.problems import Problem, field_errors
from generation import batches, consents, delivery, registry, selectors, services
from generation.api import (
    BrandKitWriteSerializer,
    TemplateUpdateSerializer,
    TemplateWriteSerializer,
)
from generation.models import (
    CANCELABLE_STATES,
    TERMINAL_STATES,
    Batch,
    BrandKit,
    ConsentRecord,
    Job,
    JobState,
    StylePreset,
    Template,
    TemplateVersion,
)
from generation.personalisation_api import ConsentCreateSerializer, RosterUploadSerializer
from generation.prompting import BUILTIN_PRESETS
from tenants.auth import SESSION_TENANT_KEY
from tenants.models import Membership, Role
from tenants.selectors import membership_for, memberships_of
from tenants.web import current_membership

PREVIEW_MODEL = "preview"
KEEP_INLINE_STYLE = "__inline__"
JOBS_PER_PAGE = 25
CARDS_PER_PAGE = 24
POLL_EVERY = "every 2s"

STATE_LABELS = {
    JobState.QUEUED: gettext_lazy("Queued"),
    JobState.RUNNING: gettext_lazy("Generating"),
    JobState.POSTPROCESSING: gettext_lazy("Finishing"),
    JobState.MODERATING: gettext_lazy("Checking"),
    JobState.IN_REVIEW: gettext_lazy("In review"),
    JobState.SUCCEEDED: gettext_lazy("Ready"),
    JobState.FAILED: gettext_lazy("Failed"),
    JobState.CANCELED: gettext_lazy("Canceled"),
    JobState.BLOCKED: gettext_lazy("Blocked"),
}
BATCH_STATE_LABELS = {
    Batch.State.CREATING: gettext_lazy("Reading rows"),
    Batch.State.RUNNING: gettext_lazy("Running"),
    Batch.State.COMPLETED: gettext_lazy("Completed"),
}
KIND_CHOICES = [
    (Template.Kind.CHARACTER, gettext_lazy("Character (a person, the same in every shot)")),
    (Template.Kind.PRODUCT, gettext_lazy("Product (virtual try-on)")),
]
VARIABLE_TYPES = [
    ("text", gettext_lazy("Text")),
    ("name", gettext_lazy("Person's name")),
    ("choice", gettext_lazy("Choice")),
    ("number", gettext_lazy("Number")),
    ("image", gettext_lazy("Image (photo)")),
]
RELATIONSHIP_CHOICES = [
    (ConsentRecord.Relationship.PARENT, gettext_lazy("Parent")),
    (ConsentRecord.Relationship.GUARDIAN, gettext_lazy("Legal guardian")),
    (ConsentRecord.Relationship.SELF, gettext_lazy("The person themself")),
]
CORNER_CHOICES = [
    (BrandKit.Corner.TOP_LEFT, gettext_lazy("Top left")),
    (BrandKit.Corner.TOP_RIGHT, gettext_lazy("Top right")),
    (BrandKit.Corner.BOTTOM_LEFT, gettext_lazy("Bottom left")),
    (BrandKit.Corner.BOTTOM_RIGHT, gettext_lazy("Bottom right")),
]
LABEL_LOCALE_CHOICES = [
    (BrandKit.Locale.AUTO, gettext_lazy("From the video's text")),
    (BrandKit.Locale.ZH_HANS, "简体中文"),
    (BrandKit.Locale.EN, "English"),
]
EXTRA_OUTPUT_CHOICES = [
    ("", gettext_lazy("Only the template's own orientation")),
    ("portrait", gettext_lazy("Also a vertical (9:16) version")),
    ("landscape", gettext_lazy("Also a landscape (16:9) version")),
]
TAG_CATEGORY_LABELS = {
    "subject": gettext_lazy("Subject"),
    "action": gettext_lazy("Action"),
    "environment": gettext_lazy("Place"),
    "style": gettext_lazy("Style"),
    "character": gettext_lazy("Character"),
}


# --- helpers ----------------------------------------------------------------------------------


def _page(
    request: HttpRequest,
    template_name: str,
    membership: Membership,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """Render a dashboard page: the frame needs the membership and the tenant switcher's list."""
    return render(
        request,
        template_name,
        {
            "membership": membership,
            "memberships": memberships_of(user=request.user),
            "can_edit": membership.has_role(Role.EDITOR),
            "can_admin": membership.has_role(Role.ADMIN),
            **context,
        },
        status=status,
    )


def _require(membership: Membership, role: str) -> None:
    if not membership.has_role(role):
        raise PermissionDenied(_("Your role cannot do this."))


def _owned(model, membership: Membership, pk: object):
    """The tenant's row, or 404: another tenant's id answers exactly like a missing one."""
    found = model.objects.for_tenant(membership.tenant).filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _local(url: str) -> str:
    """A signed link on our own public URL as a path, so the page plays it from whichever host
    name the dashboard was opened with (links on an object store stay absolute)."""
    base = settings.REELCAST_PUBLIC_URL.rstrip("/")
    return url[len(base) :] if url.startswith(base + "/") else url


def _link(membership: Membership, key: str) -> str:
    return _local(delivery.signed_link(tenant=membership.tenant, key=key).url) if key else ""


def _form_field(path: str) -> str:
    """Where a service's dotted error path is shown on a form."""
    head = path.split(".", 1)[0]
    if head == "values" and "." in path:
        return "var_" + path.split(".")[1]
    if head == "num_frames":
        return "duration_s"
    if head == "slug":
        return "name"
    return head or "form"


def _errors(detail: Any) -> dict[str, list[str]]:
    """DRF validation detail as {form field: [messages]}; a variable's row is named."""
    out: dict[str, list[str]] = defaultdict(list)
    for error in field_errors(detail):
        path, message = error["field"], error["message"]
        parts = path.split(".")
        if parts[0] == "variables" and len(parts) > 1 and parts[1].isdigit():
            key = ".".join(parts[2:])
            message = (
                _("Variable %(row)s, %(key)s: %(message)s")
                % {"row": int(parts[1]) + 1, "key": key, "message": message}
                if key
                else _("Variable %(row)s: %(message)s")
                % {"row": int(parts[1]) + 1, "message": message}
            )
        elif parts[0] == "reference_images" and len(parts) > 1:
            message = _("Image %(n)s: %(message)s") % {"n": int(parts[1]) + 1, "message": message}
        out[_form_field(path)].append(message)
    return dict(out)


def _problem_text(exc: APIException) -> str:
    """A refusal that is not about one field (402, 409, 422, 429) as one line for the page."""
    text = str(exc.detail)
    extra = getattr(exc, "errors", None) or []
    details = "; ".join(e.get("message") or e.get("detail") or "" for e in extra if e)
    return f"{text} {details}".strip() if details else text


_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def _sniff(data: bytes) -> str:
    for signature, media_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return ""


class UploadTooLarge(Exception):
    pass


def _read(upload: UploadedFile, limit: int) -> bytes:
    """The upload's bytes, refusing one over ``limit`` before it is read into memory."""
    if upload.size is not None and upload.size > limit:
        raise UploadTooLarge(
            _("The file is larger than %(limit)s bytes.") % {"limit": f"{limit:,}"}
        )
    return upload.read()


def _data_url(upload: UploadedFile, *, kind: str, limit: int) -> str:
    """A file upload as the data URL the services take (``kind``: image, evidence, audio).

    The media type is read from the bytes where we know the format, so a browser's guess does
    not decide; the service still verifies the content itself.
    """
    data = _read(upload, limit)
    media_type = _sniff(data)
    if kind == "image" and not media_type.startswith("image/"):
        media_type = "image/unknown"  # the service answers "not a readable image"
    elif kind == "audio":
        media_type = (
            upload.content_type
            if (upload.content_type or "").startswith("audio/")
            else "audio/unknown"
        )
    elif kind == "evidence" and not media_type:
        media_type = upload.content_type or "application/octet-stream"
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _uuid_or_none(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return _("about %(s)s s") % {"s": seconds}
    return _("about %(m)s min %(s)s s") % {"m": seconds // 60, "s": seconds % 60}


def _decorate(
    job: Job,
    *,
    membership: Membership | None = None,
    poster: bool = False,
    estimator: selectors.EtaEstimator | None = None,
) -> Job:
    """What a page shows of a job beyond its fields: labels, ETA, place in line, links.

    ``position`` is the place in line (1 = next), or 0 once a worker has the job; pass one
    ``estimator`` for a page of jobs so each pool's load is read once.
    """
    job.state_label = STATE_LABELS.get(job.state, job.state)
    job.is_final = job.state in TERMINAL_STATES
    eta = (estimator or selectors.EtaEstimator()).estimate(job)
    job.eta_text = "" if job.is_final else _eta_text(eta.eta_s)
    ahead = eta.queue_position
    job.position = None if ahead is None else (0 if job.dispatched_at else ahead + 1)
    job.is_storyboard = job.model == PREVIEW_MODEL and job.template_version.model != PREVIEW_MODEL
    job.poster_url = ""
    if poster and membership is not None and job.poster_key and job.files_deleted_at is None:
        job.poster_url = _link(membership, job.poster_key)
    return job


def _decorate_all(jobs: Iterable[Job]) -> list[Job]:
    estimator = selectors.EtaEstimator()
    return [_decorate(job, estimator=estimator) for job in jobs]


def _tag_chips(tags: dict[str, list[str]]) -> list[dict[str, str]]:
    return [
        {"category": category, "label": TAG_CATEGORY_LABELS.get(category, category), "value": v}
        for category, values in (tags or {}).items()
        for v in values
    ]


# --- frame ------------------------------------------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard")


@login_required
@require_POST
def switch_tenant(request: HttpRequest, tenant_id: str) -> HttpResponse:
    membership = membership_for(user=request.user, tenant_id=tenant_id)
    if membership is None:
        raise Http404
    request.session[SESSION_TENANT_KEY] = str(membership.tenant_id)
    return redirect("dashboard")


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    tenant = membership.tenant
    jobs = selectors.job_list(tenant=tenant).order_by("-created_at")
    recent = _decorate_all(jobs[:8])
    in_flight = jobs.exclude(state__in=TERMINAL_STATES).count()
    templates = list(selectors.template_list(tenant=tenant)[:6])
    for template in templates:
        template.latest = selectors.template_latest_version(template=template)
    return _page(
        request,
        "dashboard/overview.html",
        membership,
        {
            "recent_jobs": recent,
            "in_flight": in_flight,
            "templates": templates,
            "batches": Batch.objects.for_tenant(tenant).order_by("-created_at")[:5],
        },
    )


# --- templates --------------------------------------------------------------------------------


@login_required
@require_GET
def template_list(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    archived = request.GET.get("archived") == "1"
    templates = list(selectors.template_list(tenant=membership.tenant, include_archived=archived))
    for template in templates:
        template.latest = selectors.template_latest_version(template=template)
    return _page(
        request,
        "dashboard/templates.html",
        membership,
        {"templates": templates, "show_archived": archived},
    )


def _style_options(membership: Membership) -> list[tuple[str, str]]:
    own = StylePreset.objects.for_tenant(membership.tenant).order_by("name")
    return (
        [("", _("None"))]
        + [(name, name) for name in sorted(BUILTIN_PRESETS)]
        + [(preset.name, preset.name + " " + _("(your preset)")) for preset in own]
    )


def _model_options() -> list[tuple[str, str]]:
    return [
        (name, f"{spec.title} ({name})") for name, spec in sorted(registry.all_models().items())
    ]


def _form_from_version(template: Template | None, version: TemplateVersion | None) -> dict:
    if version is None:
        spec = registry.get_model(settings.REELCAST_DEFAULT_MODEL)
        return {
            "name": "",
            "kind": Template.Kind.CHARACTER,
            "model": spec.name,
            "width": spec.default_width,
            "height": spec.default_height,
            "fps": spec.default_fps,
            "duration_s": 5.0,
            "prompt": "",
            "negative_prompt": "",
            "title": "",
            "character": "",
            "product": "",
            "style": "",
            "extra_output": "",
            "requires_consent": False,
            "variables": "[]",
        }
    style = version.style or {}
    if not style:
        style_value = ""
    elif set(style) == {"preset"}:
        style_value = style["preset"]
    else:
        style_value = KEEP_INLINE_STYLE
    return {
        "name": template.name if template else "",
        "kind": template.kind if template else Template.Kind.CHARACTER,
        "model": version.model,
        "width": version.width,
        "height": version.height,
        "fps": version.fps,
        "duration_s": version.duration_s,
        "prompt": version.prompt,
        "negative_prompt": version.negative_prompt,
        "title": version.title,
        "character": version.character,
        "product": version.product,
        "style": style_value,
        "inline_style": style if style_value == KEEP_INLINE_STYLE else None,
        "extra_output": (version.extra_outputs or [""])[0],
        "requires_consent": version.requires_consent,
        "variables": json.dumps(version.variables, ensure_ascii=False, indent=1),
    }


def _form_from_post(request: HttpRequest, fallback: dict) -> dict:
    post = request.POST
    form = dict(fallback)
    for name in (
        "name",
        "kind",
        "model",
        "width",
        "height",
        "fps",
        "duration_s",
        "prompt",
        "negative_prompt",
        "title",
        "character",
        "product",
        "style",
        "extra_output",
        "variables",
    ):
        if name in post:
            form[name] = post[name]
    form["requires_consent"] = post.get("requires_consent") == "on"
    return form


def _template_body(request: HttpRequest, *, creating: bool) -> tuple[dict, dict[str, list[str]]]:
    """The editor's form as the API's template body (reference images as data URLs)."""
    post = request.POST
    errors: dict[str, list[str]] = {}
    body: dict[str, Any] = {"name": post.get("name", "").strip()}
    if creating:
        body["kind"] = post.get("kind", "")
    for name in ("prompt", "negative_prompt", "title", "character", "product"):
        body[name] = post.get(name, "").replace("\r\n", "\n")  # browsers send CRLF
    if post.get("model"):
        body["model"] = post["model"]
    for name in ("width", "height", "fps", "duration_s"):
        raw = post.get(name, "").strip()
        if raw:
            body[name] = raw
    style = post.get("style", "")
    if style != KEEP_INLINE_STYLE:
        body["style"] = {"preset": style} if style else {}
    extra = post.get("extra_output", "")
    body["extra_outputs"] = [extra] if extra else []
    body["requires_consent"] = post.get("requires_consent") == "on"
    raw_variables = post.get("variables", "").strip() or "[]"
    try:
        body["variables"] = json.loads(raw_variables)
    except ValueError as exc:
        errors["variables"] = [_("The variables are not valid JSON: %(e)s") % {"e": exc}]
    images = []
    limit = settings.REELCAST_MAX_IMAGE_BYTES
    for role in ("character", "product"):
        for upload in request.FILES.getlist(f"{role}_images"):
            try:
                images.append({"role": role, "image": _data_url(upload, kind="image", limit=limit)})
            except UploadTooLarge as exc:
                errors.setdefault("reference_images", []).append(f"{upload.name}: {exc}")
    if images:
        body["reference_images"] = images
    elif post.get("clear_reference_images") == "on":
        body["reference_images"] = []
    return body, errors


def _template_context(
    request: HttpRequest,
    membership: Membership,
    template: Template | None,
    *,
    form: dict | None = None,
    errors: dict | None = None,
    run_errors: dict | None = None,
    run_values: dict | None = None,
    run_problem: str = "",
) -> dict[str, Any]:
    version = selectors.template_latest_version(template=template) if template else None
    context: dict[str, Any] = {
        "template": template,
        "version": version,
        "form": form or _form_from_version(template, version),
        "errors": errors or {},
        "kinds": KIND_CHOICES,
        "variable_types": VARIABLE_TYPES,
        "models": _model_options(),
        "styles": _style_options(membership),
        "extra_outputs": EXTRA_OUTPUT_CHOICES,
        "keep_inline_style": KEEP_INLINE_STYLE,
    }
    if template is None:
        return context
    assets = [
        {"role": asset["role"], "sha256": asset["sha256"], "url": _link(membership, asset["key"])}
        for asset in version.assets
    ]
    run_values = run_values or {}
    run_errors = run_errors or {}
    run_fields = []
    for var in version.variables:
        field = f"var_{var['name']}"
        run_fields.append(
            {
                **var,
                "field": field,
                "label": var.get("label") or var["name"],
                "required": var.get("required", True) and "default" not in var,
                "value": run_values.get(field, var.get("default", "")),
                "errors": run_errors.get(field, []),
            }
        )
    jobs = selectors.job_list(
        tenant=membership.tenant, filters=selectors.JobFilters(template_id=str(template.id))
    ).order_by("-created_at")[:10]
    context.update(
        {
            "assets": assets,
            "versions": template.versions.order_by("-number"),
            "run_fields": run_fields,
            "run_errors": run_errors,
            "run_values": run_values,
            "run_problem": run_problem,
            "consents": consents.valid_consents(tenant=membership.tenant).order_by("-created_at")[
                :200
            ],
            "jobs": _decorate_all(jobs),
            "is_preview_model": version.model == PREVIEW_MODEL,
            "archived": template.archived_at is not None,
        }
    )
    return context


@login_required
@require_http_methods(["GET", "POST"])
def template_new(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    _require(membership, Role.EDITOR)
    if request.method == "GET":
        return _page(
            request,
            "dashboard/template.html",
            membership,
            _template_context(request, membership, None),
        )
    body, errors = _template_body(request, creating=True)
    if not errors:
        try:
            parsed = TemplateWriteSerializer(data=body)
            parsed.is_valid(raise_exception=True)
            data = dict(parsed.validated_data)
            template = services.template_create(
                tenant=membership.tenant,
                name=data.pop("name"),
                kind=data.pop("kind"),
                slug=data.pop("slug", None),
                content=data,
                actor=request.user,
            )
        except ValidationError as exc:
            errors = _errors(exc.detail)
        except APIException as exc:
            errors = {"form": [_problem_text(exc)]}
        else:
            messages.success(request, _("Template “%(name)s” created.") % {"name": template.name})
            return redirect("template-detail", template_id=template.id)
    form = _form_from_post(request, _form_from_version(None, None))
    return _page(
        request,
        "dashboard/template.html",
        membership,
        _template_context(request, membership, None, form=form, errors=errors),
        status=400,
    )


@login_required
@require_http_methods(["GET", "POST"])
def template_detail(request: HttpRequest, template_id: str) -> HttpResponse:
    """The editor of one template (a save publishes a new version), and its run forms."""
    membership = current_membership(request)
    template = _owned(Template, membership, template_id)
    if request.method == "GET":
        return _page(
            request,
            "dashboard/template.html",
            membership,
            _template_context(request, membership, template),
        )
    _require(membership, Role.EDITOR)
    body, errors = _template_body(request, creating=False)
    if not errors:
        try:
            parsed = TemplateUpdateSerializer(data=body)
            parsed.is_valid(raise_exception=True)
            data = dict(parsed.validated_data)
            before = selectors.template_latest_version(template=template).number
            template = services.template_update(
                template=template, name=data.pop("name", None), content=data, actor=request.user
            )
        except ValidationError as exc:
            errors = _errors(exc.detail)
        except APIException as exc:
            errors = {"form": [_problem_text(exc)]}
        else:
            after = selectors.template_latest_version(template=template).number
            if after != before:
                messages.success(request, _("Saved as version %(n)s.") % {"n": after})
            else:
                messages.info(request, _("Saved; the content did not change."))
            return redirect("template-detail", template_id=template.id)
    version = selectors.template_latest_version(template=template)
    form = _form_from_post(request, _form_from_version(template, version))
    return _page(
        request,
        "dashboard/template.html",
        membership,
        _template_context(request, membership, template, form=form, errors=errors),
        status=400,
    )


@login_required
@require_POST
def template_shots_preview(request: HttpRequest, template_id: str | None = None) -> HttpResponse:
    """The compiled shots and tags of the editor's current form, as an htmx partial.

    The form is checked and compiled by the same services as a save: inside a transaction
    that is always rolled back, it is saved (a new template, or a new version), previewed with
    ``template_preview`` (variables without a value show as ``{name}``), and undone. Reference
    images are left out: the preview compiles text only and stores nothing.
    """
    membership = current_membership(request)
    template = _owned(Template, membership, template_id) if template_id else None
    preview: dict[str, Any] | None = None
    if template is None:
        _require(membership, Role.EDITOR)
    elif not membership.has_role(Role.EDITOR):
        # A viewer's editor is read-only (nothing is posted): show the saved version's shots.
        preview = services.template_preview(template=template, values={})
    body, errors = _template_body(request, creating=template is None)
    body.pop("reference_images", None)
    if preview is None and not errors:
        try:
            with transaction.atomic():
                if template is None:
                    parsed = TemplateWriteSerializer(data={**body, "name": body["name"] or "-"})
                    parsed.is_valid(raise_exception=True)
                    data = dict(parsed.validated_data)
                    data.pop("slug", None)
                    draft = services.template_create(
                        tenant=membership.tenant,
                        name=data.pop("name"),
                        kind=data.pop("kind"),
                        slug=f"preview-{uuid.uuid4().hex}",
                        content=data,
                    )
                else:
                    parsed = TemplateUpdateSerializer(data=body)
                    parsed.is_valid(raise_exception=True)
                    data = dict(parsed.validated_data)
                    data.pop("name", None)
                    draft = services.template_update(template=template, content=data)
                preview = services.template_preview(template=draft, values={})
                transaction.set_rollback(True)
        except ValidationError as exc:
            errors = _errors(exc.detail)
        except APIException as exc:
            errors = {"form": [_problem_text(exc)]}
    if preview is not None:
        preview["tag_chips"] = _tag_chips(preview["tags"])
        for shot in preview["shots"]:
            shot["seconds"] = f"{round(shot['duration_s'], 3):g}"
    return render(
        request,
        "dashboard/_shots_preview.html",
        {"preview": preview, "preview_errors": sorted(errors.items())},
    )


@login_required
@require_POST
def template_archive(request: HttpRequest, template_id: str) -> HttpResponse:
    membership = current_membership(request)
    _require(membership, Role.ADMIN)
    template = services.template_archive(template=_owned(Template, membership, template_id))
    messages.success(
        request, _("“%(name)s” is archived: it takes no new jobs.") % {"name": template.name}
    )
    return redirect("template-list")


@login_required
@require_POST
def run_template(request: HttpRequest, template_id: str) -> HttpResponse:
    """Make one video from the template with the form's values (or a storyboard preview of
    it on the CPU ``preview`` model, which spends no GPU time), then show the job."""
    membership = current_membership(request)
    _require(membership, Role.EDITOR)
    template = _owned(Template, membership, template_id)
    version = selectors.template_latest_version(template=template)
    try:
        pinned = int(request.POST.get("version") or version.number)
    except ValueError:
        pinned = version.number
    pinned_version = template.versions.filter(number=pinned).first() or version
    values: dict[str, Any] = {}
    run_values: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for var in pinned_version.variables:
        field = f"var_{var['name']}"
        if var["type"] == "image":
            upload = request.FILES.get(field)
            if upload is not None:
                try:
                    values[var["name"]] = _data_url(
                        upload, kind="image", limit=settings.REELCAST_MAX_IMAGE_BYTES
                    )
                except UploadTooLarge as exc:
                    errors[field] = [str(exc)]
            continue
        raw = request.POST.get(field, "")
        run_values[field] = raw
        if raw.strip() == "":
            continue
        if var["type"] == "number":
            try:
                values[var["name"]] = int(raw)
            except ValueError:
                try:
                    values[var["name"]] = float(raw)
                except ValueError:
                    values[var["name"]] = raw  # the service names the field
        else:
            values[var["name"]] = raw
    consent_raw = request.POST.get("consent", "")
    consent = _uuid_or_none(consent_raw)
    if consent_raw and consent is None:
        errors["consent"] = [_("Choose a consent record from the list.")]
    end_user = request.POST.get("end_user", "").strip()
    run_values.update({"consent": consent_raw, "end_user": end_user})
    storyboard = request.POST.get("action") == "storyboard"
    problem = ""
    status = 400
    if not errors:
        try:
            created = services.job_create(
                tenant=membership.tenant,
                request=services.JobRequest(
                    template=template,
                    values=values,
                    version_number=pinned_version.number,
                    model=PREVIEW_MODEL if storyboard else None,
                    end_user=end_user[:128],
                    consent=consent,
                ),
                actor_user=request.user,
            )
        except ValidationError as exc:
            errors = _errors(exc.detail)
        except APIException as exc:
            problem, status = _problem_text(exc), exc.status_code
        else:
            return redirect("job-detail", job_id=created.job.id)
    return _page(
        request,
        "dashboard/template.html",
        membership,
        _template_context(
            request,
            membership,
            template,
            run_errors=errors,
            run_values=run_values,
            run_problem=problem
            or " ".join(
                message
                for field, field_messages in errors.items()
                if field not in run_values and not field.startswith("var_")
                for message in field_messages
            ),
        ),
        status=status,
    )


# --- brand kit --------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def brand_kit(request: HttpRequest) -> HttpResponse:
    """The tenant's logo, colours, cards and label locale (every viewer sees it; admins edit)."""
    membership = current_membership(request)
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        _require(membership, Role.ADMIN)
        post = request.POST
        body: dict[str, Any] = {
            name: post.get(name, "").strip()
            for name in (
                "logo_corner",
                "logo_size",
                "primary_colour",
                "secondary_colour",
                "intro_text",
                "intro_seconds",
                "outro_text",
                "outro_seconds",
                "label_locale",
            )
            if name in post
        }
        for name in ("logo_size", "intro_seconds", "outro_seconds"):
            if body.get(name) == "":
                body.pop(name)
        for name, kind, limit in (
            ("logo", "image", settings.REELCAST_MAX_IMAGE_BYTES),
            ("music", "audio", settings.REELCAST_MAX_AUDIO_BYTES),
        ):
            upload = request.FILES.get(name)
            if upload is not None:
                try:
                    body[name] = _data_url(upload, kind=kind, limit=limit)
                except UploadTooLarge as exc:
                    errors[name] = [str(exc)]
            elif post.get(f"remove_{name}") == "on":
                body[name] = ""
        if not errors:
            try:
                parsed = BrandKitWriteSerializer(data=body)
                parsed.is_valid(raise_exception=True)
                services.brand_kit_set(
                    tenant=membership.tenant, changes=dict(parsed.validated_data)
                )
            except ValidationError as exc:
                errors = _errors(exc.detail)
            except APIException as exc:
                errors = {"form": [_problem_text(exc)]}
            else:
                messages.success(request, _("Brand kit saved; new videos use it."))
                return redirect("brand-kit")
        status = 400
    kit = BrandKit.objects.for_tenant(membership.tenant).first() or BrandKit(
        tenant=membership.tenant
    )
    form = {
        "logo_corner": kit.logo_corner,
        "logo_size": kit.logo_size,
        "primary_colour": kit.primary_colour,
        "secondary_colour": kit.secondary_colour,
        "intro_text": kit.intro_text,
        "intro_seconds": kit.intro_seconds,
        "outro_text": kit.outro_text,
        "outro_seconds": kit.outro_seconds,
        "label_locale": kit.label_locale,
    }
    if request.method == "POST":
        form.update({k: v for k, v in request.POST.items() if k in form})
    return _page(
        request,
        "dashboard/brand_kit.html",
        membership,
        {
            "kit": kit,
            "form": form,
            "errors": errors,
            "logo_url": _link(membership, kit.logo_key),
            "corners": CORNER_CHOICES,
            "label_locales": LABEL_LOCALE_CHOICES,
        },
        status=status,
    )


# --- jobs -------------------------------------------------------------------------------------


def _job_filters(params) -> tuple[selectors.JobFilters, dict[str, str], dict[str, list[str]]]:
    """Parse the jobs list's and the gallery's search form; a bad field is reported, skipped."""
    errors: dict[str, list[str]] = {}
    echo = {
        name: params.get(name, "").strip()
        for name in ("state", "template", "batch", "tag", "date_from", "date_to")
    }
    state = echo["state"] if echo["state"] in JobState.values else None
    template_id = _uuid_or_none(echo["template"])
    batch_id = _uuid_or_none(echo["batch"])
    dates: dict[str, datetime | None] = {"created_after": None, "created_before": None}
    for name, target, shift in (
        ("date_from", "created_after", 0),
        ("date_to", "created_before", 1),
    ):
        if echo[name]:
            try:
                day = date.fromisoformat(echo[name])
            except ValueError:
                errors[name] = [_("Use a date like 2026-03-01.")]
            else:
                dates[target] = datetime.combine(day + timedelta(days=shift), time.min, tzinfo=UTC)
    raw_tags = echo["tag"].replace("，", ",")
    tags = tuple(t.strip() for t in raw_tags.split(",") if t.strip())[:5]
    if any(len(t) > 80 for t in tags):
        errors["tag"] = [_("A tag has at most 80 characters.")]
        tags = ()
    filters = selectors.JobFilters(
        state=state, template_id=template_id, batch_id=batch_id, tags=tags, **dates
    )
    return filters, echo, errors


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """Every job of the tenant, newest first, with live progress while any shown is unfinished."""
    membership = current_membership(request)
    filters, echo, errors = _job_filters(request.GET)
    jobs = selectors.job_list(tenant=membership.tenant, filters=filters).order_by("-created_at")
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    rows = _decorate_all(page.object_list)
    context = {
        "page_obj": page,
        "jobs": rows,
        "live": any(not job.is_final for job in rows),
        "poll_url": request.get_full_path(),
        "filters": echo,
        "filter_errors": errors,
        "states": [(state, STATE_LABELS[state]) for state in JobState.values],
        "templates": selectors.template_list(tenant=membership.tenant, include_archived=True),
        "poll_trigger": POLL_EVERY,
    }
    if _is_htmx(request):
        return render(request, "dashboard/_jobs_table.html", context)
    return _page(request, "dashboard/jobs.html", membership, context)


def _job_context(membership: Membership, job: Job) -> dict[str, Any]:
    _decorate(job)
    video = poster = None
    if job.state == JobState.SUCCEEDED and job.video_key and job.files_deleted_at is None:
        video = delivery.signed_link(tenant=membership.tenant, key=job.video_key)
        poster = _link(membership, job.poster_key)
    return {
        "job": job,
        "video": video,
        "video_src": _local(video.url) if video else "",
        "poster": poster,
        "can_cancel": membership.has_role(Role.EDITOR) and job.state in CANCELABLE_STATES,
        "poll_trigger": POLL_EVERY,
    }


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    membership = current_membership(request)
    job = _owned(Job, membership, job_id)
    context = _job_context(membership, job)
    if _is_htmx(request):
        return render(request, "dashboard/_job_status.html", context)
    transitions = list(job.transitions.all())
    for transition in transitions:
        transition.label = STATE_LABELS.get(transition.to_state, transition.to_state)
    context.update(
        {
            "transitions": transitions,
            "shown_values": {
                name: value for name, value in job.values.items() if not isinstance(value, dict)
            },
            "image_values": [name for name, value in job.values.items() if isinstance(value, dict)],
            "tag_chips": _tag_chips(job.tags),
        }
    )
    return _page(request, "dashboard/job.html", membership, context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: str) -> HttpResponse:
    membership = current_membership(request)
    _require(membership, Role.EDITOR)
    job = _owned(Job, membership, job_id)
    try:
        job = services.job_cancel(job=job)
    except Problem as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(
            request,
            _("Cancel requested: the job is %(state)s.")
            % {"state": STATE_LABELS.get(job.state, job.state)},
        )
    return redirect("job-detail", job_id=job.id)


@login_required
@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    """Finished videos as cards, found by tag (value or category:value), template, batch, date."""
    membership = current_membership(request)
    tenant = membership.tenant
    filters, echo, errors = _job_filters(request.GET)
    filters = replace(filters, state=JobState.SUCCEEDED)
    videos = (
        selectors.job_list(tenant=tenant, filters=filters)
        .filter(files_deleted_at__isnull=True)
        .order_by("-created_at")
    )
    page = Paginator(videos, CARDS_PER_PAGE).get_page(request.GET.get("page"))
    cards = []
    for job in page.object_list:
        _decorate(job, membership=membership, poster=True)
        job.tag_chips = _tag_chips(job.tags)
        cards.append(job)
    query = request.GET.copy()
    query.pop("page", None)
    return _page(
        request,
        "dashboard/gallery.html",
        membership,
        {
            "cards": cards,
            "page_obj": page,
            "filters": echo,
            "filter_errors": errors,
            "query": query.urlencode(),
            "templates": selectors.template_list(tenant=tenant, include_archived=True),
            "batches": Batch.objects.for_tenant(tenant).order_by("-created_at")[:100],
        },
    )


# --- batches ----------------------------------------------------------------------------------


def _batch_list_context(membership: Membership, request: HttpRequest) -> dict[str, Any]:
    rows = Batch.objects.for_tenant(membership.tenant).select_related("template")
    page = Paginator(rows.order_by("-created_at"), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    for batch in page.object_list:
        batch.summary = batches.batch_summary(batch)
        batch.state_label = BATCH_STATE_LABELS.get(batch.state, batch.state)
    return {
        "page_obj": page,
        "batches": page.object_list,
        "templates": selectors.template_list(tenant=membership.tenant),
    }


@login_required
@require_GET
def batch_list(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    return _page(
        request,
        "dashboard/batches.html",
        membership,
        {**_batch_list_context(membership, request), "upload": {}, "upload_errors": {}},
    )


@login_required
@require_POST
def batch_new(request: HttpRequest) -> HttpResponse:
    """Upload a roster (CSV or XLSX) for a template: one job per valid row, made in the
    background; the batch page shows progress and every refused row with its reason."""
    membership = current_membership(request)
    _require(membership, Role.EDITOR)
    template_id = _uuid_or_none(request.POST.get("template"))
    errors: dict[str, list[str]] = {}
    upload = request.FILES.get("file")
    status = 400
    if template_id is None:
        errors["template"] = [_("Choose a template.")]
    else:
        template = _owned(Template, membership, template_id)
        try:
            data = _read(upload, settings.REELCAST_ROSTER_MAX_BYTES) if upload else None
            parsed = RosterUploadSerializer(
                data={"template": template_id, "name": request.POST.get("name", "")}
                | ({"file": upload} if upload is not None else {})
            )
            parsed.is_valid(raise_exception=True)
            batch = batches.batch_create_roster(
                tenant=membership.tenant,
                template=template,
                data=data or b"",
                filename=upload.name or "roster",
                name=parsed.validated_data.get("name", ""),
                actor_user=request.user,
            )
        except UploadTooLarge as exc:
            errors["file"] = [str(exc)]
        except ValidationError as exc:
            errors = _errors(exc.detail)
        except APIException as exc:
            errors = {"file": [_problem_text(exc)]}
            status = exc.status_code
        else:
            messages.success(
                request,
                _("Roster accepted: %(n)s rows. Rows become jobs in the background.")
                % {"n": batch.total_rows},
            )
            return redirect("batch-detail", batch_id=batch.id)
    return _page(
        request,
        "dashboard/batches.html",
        membership,
        {
            **_batch_list_context(membership, request),
            "upload": {"template": template_id or "", "name": request.POST.get("name", "")},
            "upload_errors": errors,
        },
        status=status,
    )


@login_required
@require_GET
def batch_detail(request: HttpRequest, batch_id: str) -> HttpResponse:
    membership = current_membership(request)
    batch = _owned(Batch, membership, batch_id)
    summary = batches.batch_summary(batch)
    jobs = selectors.job_list(
        tenant=membership.tenant, filters=selectors.JobFilters(batch_id=str(batch.id))
    ).order_by("batch_row")
    page = Paginator(jobs, JOBS_PER_PAGE * 2).get_page(request.GET.get("page"))
    rows = _decorate_all(page.object_list)
    # A roster can refuse all of its 10,000 rows: the page shows them a page at a time.
    error_page = Paginator(
        sorted(batch.errors, key=lambda e: e["row"]), batches.ROW_ERRORS_PAGE_SIZE
    ).get_page(request.GET.get("errors_page"))
    by_state = summary["jobs"]["by_state"]
    labels = [str(STATE_LABELS.get(state, state)) for state in by_state]
    context = {
        "batch": batch,
        "state_label": BATCH_STATE_LABELS.get(batch.state, batch.state),
        "summary": summary,
        "row_errors": error_page.object_list,
        "row_errors_page": error_page,
        "row_errors_count": len(batch.errors),
        "jobs": rows,
        "page_obj": page,
        "live": batch.state != Batch.State.COMPLETED,
        "poll_url": request.get_full_path(),
        "poll_trigger": POLL_EVERY,
        "chart": {
            "values": list(by_state.values()),
            "pairs": list(zip(labels, by_state.values(), strict=True)),
        },
        "chart_labels_json": json.dumps(labels, ensure_ascii=False),
        "chart_values_json": json.dumps(list(by_state.values())),
    }
    if _is_htmx(request):
        return render(request, "dashboard/_batch_live.html", context)
    return _page(request, "dashboard/batch.html", membership, context)


@login_required
@require_GET
def batch_results(request: HttpRequest, batch_id: str) -> HttpResponse:
    membership = current_membership(request)
    batch = _owned(Batch, membership, batch_id)
    response = HttpResponse(
        batches.batch_results_csv(batch=batch), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.id}.csv"'
    return response


# --- consent ----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def consent_list(request: HttpRequest) -> HttpResponse:
    """Consent records (who agreed, for whom, until when), a form to record one, and revoke."""
    membership = current_membership(request)
    tenant = membership.tenant
    errors: dict[str, list[str]] = {}
    form: dict[str, Any] = {"relationship": ConsentRecord.Relationship.PARENT}
    status = 200
    if request.method == "POST":
        _require(membership, Role.EDITOR)
        post = request.POST
        form = {k: post.get(k, "") for k in post if k != "csrfmiddlewaretoken"}
        form["scope_templates"] = post.getlist("scope_templates")
        body: dict[str, Any] = {
            "subject_name": post.get("subject_name", "").strip(),
            "subject_ref": post.get("subject_ref", "").strip(),
            "subject_is_minor": post.get("subject_is_minor") == "on",
            "consented_by": post.get("consented_by", "").strip(),
            "relationship": post.get("relationship", ""),
            "scope_note": post.get("scope_note", "").strip(),
            "scope_templates": [t for t in post.getlist("scope_templates") if t],
        }
        expires = post.get("expires_on", "").strip()
        if expires:
            try:
                day = date.fromisoformat(expires)
            except ValueError:
                errors["expires_at"] = [_("Use a date like 2026-03-01.")]
            else:  # valid through the whole day named
                body["expires_at"] = datetime.combine(
                    day + timedelta(days=1), time.min, tzinfo=UTC
                ).isoformat()
        upload = request.FILES.get("evidence")
        if upload is not None:
            try:
                body["evidence"] = _data_url(
                    upload, kind="evidence", limit=settings.REELCAST_MAX_EVIDENCE_BYTES
                )
            except UploadTooLarge as exc:
                errors["evidence"] = [str(exc)]
        if not errors:
            try:
                parsed = ConsentCreateSerializer(data=body)
                parsed.is_valid(raise_exception=True)
                data = dict(parsed.validated_data)
                data["scope_templates"] = [str(t) for t in data.get("scope_templates", [])]
                record = consents.consent_create(tenant=tenant, actor=request.user, **data)
            except ValidationError as exc:
                errors = _errors(exc.detail)
            except APIException as exc:
                errors = {"form": [_problem_text(exc)]}
            else:
                messages.success(
                    request, _("Consent for %(name)s recorded.") % {"name": record.subject_name}
                )
                return redirect("consent-list")
        status = 400
    records = ConsentRecord.objects.for_tenant(tenant).order_by("-created_at")
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    for record in page.object_list:
        record.active = consents.consent_is_valid(record)
        record.relationship_label = dict(RELATIONSHIP_CHOICES).get(
            record.relationship, record.relationship
        )
    return _page(
        request,
        "dashboard/consents.html",
        membership,
        {
            "records": page.object_list,
            "page_obj": page,
            "form": form,
            "errors": errors,
            "relationships": RELATIONSHIP_CHOICES,
            "templates": selectors.template_list(tenant=tenant),
        },
        status=status,
    )


@login_required
@require_POST
def consent_revoke(request: HttpRequest, consent_id: str) -> HttpResponse:
    membership = current_membership(request)
    _require(membership, Role.EDITOR)
    record = consents.consent_revoke(
        consent=_owned(ConsentRecord, membership, consent_id),
        reason=request.POST.get("reason", "").strip()[:300],
    )
    messages.success(
        request,
        _("Consent for %(name)s revoked: no new videos, and the existing ones are deleted.")
        % {"name": record.subject_name},
    )
    return redirect("consent-list")

"""Writes for templates and jobs. Every state change is one function in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from rest_framework.exceptions import ValidationError

from billing.selectors import effective_plan_for
from billing.services import (
    quota_admit,
    reservation_hold,
    reservation_release,
    usage_refund_job,
)
from config.problems import ConflictProblem, Problem
from generation import registry
from generation.compiler import Plan, compile_plan
from generation.consents import consent_for_job
from generation.models import (
    CANCELABLE_STATES,
    TERMINAL_STATES,
    Batch,
    BrandKit,
    DeletionReceipt,
    IdempotencyKey,
    Job,
    JobState,
    JobTag,
    JobTransition,
    Priority,
    StylePreset,
    Template,
    TemplateVersion,
)
from generation.prompting import (
    BUILTIN_PRESETS,
    PresetError,
    ScriptError,
    preset_from_dict,
    split_script,
)
from generation.prompting import StylePreset as StylePresetSpec
from generation.storage import job_key, put_bytes, tenant_key
from generation.storefront import storefront_budget_take
from generation.variables import clean_values, definition_errors, placeholder_errors
from moderation.services import (
    ContentBlocked,
    moderation_judge_images,
    moderation_judge_text,
    moderation_record,
    moderation_refuse_blocked_texts,
)
from moderation.text import (
    texts_for_brand_kit,
    texts_for_job,
    texts_for_preset,
    texts_for_template,
)
from tenants.models import ApiKey, Tenant
from tenants.webhooks import job_event, job_progress_event

logger = logging.getLogger(__name__)


CONTENT_FIELDS = (
    "variables",
    "prompt",
    "negative_prompt",
    "title",
    "model",
    "width",
    "height",
    "fps",
    "duration_s",
    "extra_outputs",
    "character",
    "product",
    "style",
    "assets",
    "requires_consent",
)
ASSET_ROLES = ("character", "product")


class IllegalTransition(Exception):
    def __init__(self, job_id: object, from_state: str, to_state: str):
        super().__init__(f"job {job_id}: {from_state} -> {to_state} is not allowed")
        self.from_state = from_state
        self.to_state = to_state


# --- templates --------------------------------------------------------------------------------


def template_content_errors(
    content: dict[str, Any], *, tenant: Tenant | None = None
) -> dict[str, str]:
    """Everything wrong with a template version's content, keyed by field."""
    errors: dict[str, str] = {}
    variables = content.get("variables", [])
    errors.update(definition_errors(variables))
    prompt = content.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        errors["prompt"] = "A prompt is required."
    elif len(prompt) > 8000:
        errors["prompt"] = "At most 8000 characters."
    if isinstance(variables, list) and not errors:
        for name in ("prompt", "negative_prompt", "title", "character", "product"):
            errors.update(placeholder_errors(content.get(name) or "", variables, name))
    if isinstance(prompt, str) and prompt.strip() and not errors:
        try:  # markers, explicit durations: a script that cannot be split is refused now
            split_script(
                prompt, duration_s=float(content.get("duration_s") or 5.0), max_shot_s=3600.0
            )
        except ScriptError as exc:
            errors["prompt"] = str(exc)
    if tenant is not None:
        _, style_errors = resolve_style(tenant=tenant, style=content.get("style") or {})
        errors.update(style_errors)
    try:
        spec = registry.get_model(content["model"])
    except KeyError:
        errors["model"] = f"Unknown model. Available: {', '.join(sorted(registry.all_models()))}."
        return errors
    errors.update(
        registry.geometry_errors(
            spec,
            width=content["width"],
            height=content["height"],
            fps=content["fps"],
            duration_s=content["duration_s"],
        )
    )
    extra = content.get("extra_outputs") or []
    primary = "portrait" if content["height"] > content["width"] else "landscape"
    if (
        not isinstance(extra, list)
        or len(set(extra)) != len(extra)
        or any(o not in ("landscape", "portrait") or o == primary for o in extra)
    ):
        errors["extra_outputs"] = (
            f"A list of further orientations besides the template's own ({primary}): "
            "'landscape' (16:9) or 'portrait' (9:16)."
        )
    return errors


def _with_defaults(content: dict[str, Any]) -> dict[str, Any]:
    model = content.get("model") or settings.REELCAST_DEFAULT_MODEL
    try:
        spec = registry.get_model(model)
    except KeyError:
        spec = registry.get_model("preview")
    return {
        "variables": content.get("variables", []),
        "prompt": content.get("prompt", ""),
        "negative_prompt": content.get("negative_prompt", "") or "",
        "title": content.get("title", "") or "",
        "model": model,
        "width": content.get("width") or spec.default_width,
        "height": content.get("height") or spec.default_height,
        "fps": content.get("fps") or spec.default_fps,
        "duration_s": content.get("duration_s") or 5.0,
        "extra_outputs": content.get("extra_outputs") or [],
        "character": content.get("character", "") or "",
        "product": content.get("product", "") or "",
        "style": content.get("style") or {},
        "assets": content.get("assets") or [],
        "requires_consent": bool(content.get("requires_consent", False)),
    }


def shows_real_person(content: dict[str, Any]) -> bool:
    """A template naming a person (a ``name`` variable) or showing one (a photo variable or a
    character reference image) needs consent for every job. Fails closed: an explicit
    ``requires_consent`` can add the requirement, never remove what the content implies."""
    variables = content.get("variables") or []
    if any(isinstance(v, dict) and v.get("type") in ("name", "image") for v in variables):
        return True
    return any(a.get("role") == "character" for a in content.get("assets") or [])


def resolve_style(*, tenant: Tenant, style: Any) -> tuple[StylePresetSpec | None, dict[str, str]]:
    """A template's or variant's style: ``{"preset": name}`` (built in, or the tenant's own)
    or an inline ``{"camera", "lighting", "look", "negative"}``. Returns (preset, errors)."""
    if not style:
        return None, {}
    if not isinstance(style, dict):
        return None, {"style": 'An object: {"preset": name} or camera/lighting/look/negative.'}
    if "preset" in style:
        name = style["preset"]
        if set(style) != {"preset"}:
            return None, {"style": "Give either a preset name or inline fields, not both."}
        own = StylePreset.objects.for_tenant(tenant).filter(name=name).first()
        if own is not None:
            return (
                StylePresetSpec(
                    name=own.name,
                    camera=own.camera,
                    lighting=own.lighting,
                    look=own.look,
                    negative=own.negative,
                ),
                {},
            )
        if isinstance(name, str) and name in BUILTIN_PRESETS:
            return BUILTIN_PRESETS[name], {}
        known = sorted(BUILTIN_PRESETS) + sorted(
            StylePreset.objects.for_tenant(tenant).values_list("name", flat=True)
        )
        return None, {"style.preset": f"Unknown style preset. Available: {', '.join(known)}."}
    try:
        return preset_from_dict(style), {}
    except PresetError as exc:
        return None, {f"style.{field}": reason for field, reason in exc.errors.items()}


def _store_reference_images(
    *, tenant: Tenant, content: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """Turn ``reference_images`` ([{"role", "image": data URL}]) into stored ``assets``.

    Each image is verified by Pillow, capped in bytes and pixels, turned upright and stripped
    of metadata before it is kept. Returns the stored keys (to remove on failure) and errors.
    """
    from generation.variables import ImageRejected, decode_data_url, normalise_image

    raw = content.pop("reference_images", None)
    if raw is None:
        return [], {}
    errors: dict[str, str] = {}
    if not isinstance(raw, list) or len(raw) > 4:
        return [], {"reference_images": "A list of at most 4 {role, image} objects."}
    prepared = []
    for i, item in enumerate(raw):
        path = f"reference_images.{i}"
        if not isinstance(item, dict) or item.get("role") not in ASSET_ROLES:
            errors[path] = f"Each needs a role ({', '.join(ASSET_ROLES)}) and an image."
            continue
        try:
            png = normalise_image(decode_data_url(item.get("image") or ""))
        except ImageRejected as exc:
            errors[f"{path}.image"] = str(exc)
            continue
        prepared.append((item["role"], png))
    if sum(role == "product" for role, _ in prepared) > 3:
        errors["reference_images"] = "At most 3 product images (a try-on shows them together)."
    if errors:
        return [], errors
    verdict = moderation_judge_images(
        tenant=tenant, images={f"reference_images.{i}": png for i, (_, png) in enumerate(prepared)}
    )
    if verdict.blocked:
        raise ContentBlocked(verdict)
    assets, keys = [], []
    for role, png in prepared:
        digest = hashlib.sha256(png).hexdigest()
        key = put_bytes(tenant_key(tenant.id, "templates", "assets", f"{digest[:32]}.png"), png)
        keys.append(key)
        assets.append({"role": role, "key": key, "sha256": digest})
    content["assets"] = assets
    return keys, {}


def template_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str,
    content: dict[str, Any],
    slug: str | None = None,
    actor: AbstractBaseUser | None = None,
) -> Template:
    """A template with its first version. Invalid content creates nothing."""
    content = dict(content)
    _, image_errors = _store_reference_images(tenant=tenant, content=content)
    full = _with_defaults(content)
    full["requires_consent"] = full["requires_consent"] or shows_real_person(full)
    errors = {**image_errors, **template_content_errors(full, tenant=tenant)}
    slug = slug or slugify(name)[:80] or "template"
    if Template.objects.for_tenant(tenant).filter(slug=slug).exists():
        errors["slug"] = f"This tenant already has a template '{slug}'."
    if errors:
        raise ValidationError(errors)
    moderation_refuse_blocked_texts(tenant=tenant, texts=texts_for_template(full))
    with transaction.atomic():
        template = Template.objects.create(tenant=tenant, name=name, slug=slug, kind=kind)
        TemplateVersion.objects.create(
            tenant=tenant, template=template, number=1, created_by=actor, **full
        )
    return template


def template_update(
    *,
    template: Template,
    name: str | None = None,
    content: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
) -> Template:
    """Rename, and/or publish a new version when the content changes (versions never change)."""
    content = dict(content or {})
    _, image_errors = _store_reference_images(tenant=template.tenant, content=content)
    if image_errors:
        raise ValidationError(image_errors)
    with transaction.atomic():
        template = Template.objects.select_for_update().get(pk=template.pk)
        latest = template.versions.order_by("-number").first()
        if content:
            current = {f: getattr(latest, f) for f in CONTENT_FIELDS}
            merged = {**current, **{k: v for k, v in content.items() if k in CONTENT_FIELDS}}
            merged["requires_consent"] = bool(merged["requires_consent"]) or shows_real_person(
                merged
            )
            errors = template_content_errors(merged, tenant=template.tenant)
            if errors:
                raise ValidationError(errors)
            if merged != current:
                moderation_refuse_blocked_texts(
                    tenant=template.tenant, texts=texts_for_template(merged), template=template
                )
                TemplateVersion.objects.create(
                    tenant=template.tenant,
                    template=template,
                    number=latest.number + 1,
                    created_by=actor,
                    **merged,
                )
        if name is not None and name != template.name:
            template.name = name
        template.save()
    return template


def style_preset_save(*, tenant: Tenant, fields: dict[str, Any], create: bool) -> StylePreset:
    """Create or replace a tenant's style preset. Its texts are normalised like any prompt
    text; a built-in preset's name is taken (a tenant preset of that name would shadow it)."""
    name = fields.pop("name")
    errors: dict[str, str] = {}
    if create and name in BUILTIN_PRESETS:
        errors["name"] = f"'{name}' is a built-in preset; choose another name."
    try:
        spec = preset_from_dict({k: v for k, v in fields.items() if v}, name=name)
    except PresetError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    values = {k: getattr(spec, k) for k in ("camera", "lighting", "look", "negative")}
    moderation_refuse_blocked_texts(tenant=tenant, texts=texts_for_preset(values))
    if create:
        if StylePreset.objects.for_tenant(tenant).filter(name=name).exists():
            raise ValidationError({"name": f"This tenant already has a preset '{name}'."})
        return StylePreset.objects.create(tenant=tenant, name=name, **values)
    preset = StylePreset.objects.for_tenant(tenant).get(name=name)
    for key, value in values.items():
        setattr(preset, key, value)
    preset.save()
    return preset


def _version_plan(
    version: TemplateVersion, *, script: str, style: StylePresetSpec | None, **plan: Any
) -> Plan:
    """The shot plan of ``version`` (its negative prompt, title, character and product) for a
    script and values; a script that cannot be split is a 400 on ``prompt``."""
    try:
        return compile_plan(
            prompt=script,
            negative_prompt=version.negative_prompt,
            title=version.title,
            character=version.character,
            product=version.product,
            style=style,
            **plan,
        )
    except ScriptError as exc:
        raise ValidationError({"prompt": str(exc)}) from None


def style_preset_delete(*, preset: StylePreset) -> None:
    """Remove a tenant's preset. Versions that named it keep their text in jobs already made;
    new jobs from such a version are refused with the unknown-preset error until it is set
    again."""
    preset.delete()


def template_preview(
    *, template: Template, values: dict[str, Any] | None, duration_s: float | None = None
) -> dict[str, Any]:
    """The compiled shots of the template's latest version, without running anything.

    Values are checked like a job's; a variable with no value is shown as its placeholder,
    so a template can be previewed before anyone's name is known.
    """
    version = template.versions.order_by("-number").first()
    supplied = values or {}
    sample: dict[str, Any] = {}
    for var in version.variables:
        if var["name"] not in supplied and var["type"] != "image":
            sample[var["name"]] = var.get("default", "{" + var["name"] + "}")
    cleaned, errors = clean_values([{**v, "required": False} for v in version.variables], supplied)
    if errors:
        raise ValidationError(errors)
    spec = registry.get_model(version.model)
    style, style_errors = resolve_style(tenant=template.tenant, style=version.style)
    if style_errors:
        raise ValidationError(style_errors)
    plan = _version_plan(
        version,
        script=version.prompt,
        values={**sample, **cleaned.values},
        spec=spec,
        fps=version.fps,
        duration_s=duration_s or version.duration_s,
        seed=0,
        style=style,
    )
    return {
        "title": plan.title,
        "shots": [{k: v for k, v in shot.as_dict().items() if k != "seed"} for shot in plan.shots],
        "tags": plan.tags,
        "requires_consent": version.requires_consent,
    }


def template_archive(*, template: Template) -> Template:
    """Archived templates keep their versions and jobs but take no new jobs."""
    if template.archived_at is None:
        template.archived_at = timezone.now()
        template.save(update_fields=["archived_at", "updated_at"])
    return template


# --- jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    template: Template
    values: dict[str, Any]
    version_number: int | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    duration_s: float | None = None
    seed: int | None = None
    end_user: str = ""
    priority: int = Priority.STANDARD  # the plan may lower or raise STANDARD; see job_create
    # A consent id, or {"consented_by", "subject_name"?} for the person's own consent.
    consent: str | dict | None = None
    # Variant overrides (A/B comparisons): a style and/or a whole script instead of the
    # template's; both are validated exactly like the template's own.
    style: dict | None = None
    prompt: str | None = None
    batch: Batch | None = None
    batch_row: int | None = None
    variant_label: str = ""


@dataclass(frozen=True)
class JobCreated:
    job: Job
    replayed: bool


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotent_hit(tenant: Tenant, key: str, fingerprint: str) -> Job | None:
    record = IdempotencyKey.objects.for_tenant(tenant).select_related("job").filter(key=key).first()
    if record is None:
        return None
    cutoff = timezone.now() - timedelta(seconds=settings.REELCAST_IDEMPOTENCY_TTL_S)
    if record.created_at < cutoff:
        # Past its TTL the key is forgotten. Its row goes now, not at the next sweep: the
        # unique (tenant, key) constraint would otherwise refuse the new job's key row, and the
        # IntegrityError branch of job_create would find no live record to answer with (a 500).
        IdempotencyKey.objects.filter(pk=record.pk, created_at__lt=cutoff).delete()
        return None
    if record.fingerprint != fingerprint:
        raise ConflictProblem(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
        )
    return record.job


def job_create(
    *,
    tenant: Tenant,
    request: JobRequest,
    actor_user: AbstractBaseUser | None = None,
    actor_key: ApiKey | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> JobCreated:
    """Validate, pin the template version, record the job as queued, and enqueue it on commit.

    The plan's caps are checked in the transaction that inserts the job, under the tenant's
    admission lock, and the job's estimate is held against its class's hard cap until it
    finishes (``billing.services.quota_admit``, ``reservation_hold``).

    With an Idempotency-Key the same key and body return the original job; the same key with
    another body is a 409. Nothing is created when anything is invalid. A publishable key's
    job is also counted against the key's storefront budget, in the same transaction.
    """
    if idempotency_key:
        existing = _idempotent_hit(tenant, idempotency_key, fingerprint)
        if existing is not None:
            return JobCreated(existing, replayed=True)
    template = request.template
    if template.archived_at is not None:
        raise Problem(
            "This template is archived and takes no new jobs.",
            code="template_archived",
            status_code=409,
        )
    versions = template.versions.order_by("-number")
    version = (
        versions.filter(number=request.version_number).first()
        if request.version_number
        else versions.first()
    )
    if version is None:
        raise ValidationError({"template_version": "No such version of this template."})

    cleaned, errors = clean_values(version.variables, request.values)
    model = request.model or version.model
    width = request.width or version.width
    height = request.height or version.height
    fps = request.fps or version.fps
    duration_s = request.duration_s or version.duration_s
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    try:
        spec = registry.get_model(model)
    except KeyError:
        errors["model"] = f"Unknown model. Available: {', '.join(sorted(registry.all_models()))}."
        raise ValidationError(errors) from None
    if (cleaned.images or version.assets) and not {"i2v", "r2v"} & set(spec.modes):
        errors["model"] = f"{model} cannot take a reference image."
    script = version.prompt
    if request.prompt is not None:
        script = request.prompt
        errors.update(placeholder_errors(script, version.variables, "prompt"))
    style, style_errors = resolve_style(
        tenant=tenant, style=request.style if request.style is not None else version.style
    )
    errors.update(style_errors)
    person_names = [
        cleaned.values[v["name"]]
        for v in version.variables
        if v.get("type") == "name" and cleaned.values.get(v["name"])
    ]
    plan: Plan | None = None
    if not errors:
        plan = _version_plan(
            version,
            script=script,
            values=cleaned.values,
            spec=spec,
            fps=fps,
            duration_s=duration_s,
            seed=seed,
            style=style,
            names=person_names,
        )
        errors.update(
            registry.geometry_errors(
                spec,
                width=width,
                height=height,
                fps=fps,
                duration_s=duration_s,
                frames_per_shot=plan.frames_per_shot,
            )
        )
    if errors:
        raise ValidationError(errors)
    assert plan is not None
    consent = consent_for_job(
        tenant=tenant,
        template=template,
        version=version,
        person_names=person_names,
        consent=request.consent,
        end_user=request.end_user,
    )
    # Moderation before any GPU time: every free-text value and shot prompt, and any reference
    # photo. A block is a 422 with the matched rules; a review holds the job for an operator.
    # The brand kit's cards are drawn on this video too: judged with it, as they stand now.
    kit = BrandKit.objects.for_tenant(tenant).values("intro_text", "outro_text").first() or {}
    verdicts = [
        moderation_judge_text(
            tenant=tenant,
            template=template,
            texts={
                **texts_for_job(values=cleaned.values, shots=plan.shots, title=plan.title),
                **texts_for_brand_kit(kit, prefix="brand_kit."),
            },
        )
    ]
    if cleaned.images:
        verdicts.append(
            moderation_judge_images(tenant=tenant, template=template, images=cleaned.images)
        )
    for verdict in verdicts:
        if verdict.blocked:
            raise ContentBlocked(verdict)
    held = any(verdict.needs_review for verdict in verdicts)
    initial_state = JobState.IN_REVIEW if held else JobState.QUEUED
    priority = request.priority
    tenant_plan = effective_plan_for(tenant=tenant)
    if tenant_plan is not None and priority == Priority.STANDARD:
        priority = tenant_plan.priority_class

    stored: list[str] = []
    try:
        with transaction.atomic():
            if actor_key is not None and actor_key.is_publishable:
                # first in the transaction: it locks the key's row (see the function)
                storefront_budget_take(api_key=actor_key)
            # Plan limits, suspension, hard caps, backlog and storefront quotas (402 / 429 with
            # reasons), checked under the tenant's admission lock before anything is written,
            # and counted again by the next admission only once this one commits: checked
            # outside this transaction, 20 parallel creates went through a backlog cap of 3.
            admission = quota_admit(
                tenant=tenant,
                model=model,
                width=width,
                height=height,
                duration_s=duration_s,
                end_user=request.end_user,
                frames_total=sum(plan.frames_per_shot),
            )
            if consent is not None and consent._state.adding:
                consent.save()  # the person's own consent, given with this request
            job = Job.objects.create(
                tenant=tenant,
                template=template,
                template_version=version,
                values=cleaned.values,
                model=model,
                width=width,
                height=height,
                fps=fps,
                duration_s=duration_s,
                seed=seed,
                title=plan.title,
                shots=[shot.as_dict() for shot in plan.shots],
                end_user=request.end_user,
                tags=plan.tags,
                style=asdict(style) if style is not None else {},
                consent=consent,
                has_photo=bool(cleaned.images),
                batch=request.batch,
                batch_row=request.batch_row,
                variant_label=request.variant_label,
                priority=priority,
                extra_outputs=list(version.extra_outputs),
                state=initial_state,
                created_by=actor_user,
                created_by_key=actor_key,
            )
            reservation_hold(tenant=tenant, job_id=job.id, admission=admission)
            if cleaned.images:
                values = dict(job.values)
                for name, data in cleaned.images.items():
                    key = put_bytes(job_key(job, f"inputs/{name}.png"), data)
                    stored.append(key)
                    values[name] = {"image": name, "key": key}
                Job.objects.filter(pk=job.pk).update(values=values)
                job.values = values
            JobTag.objects.bulk_create(
                JobTag(tenant=tenant, job=job, category=category, value=value.lower()[:64])
                for category, values in plan.tags.items()
                for value in dict.fromkeys(v.lower()[:64] for v in values)
            )
            JobTransition.objects.create(
                job=job,
                from_state="",
                to_state=initial_state,
                at=job.created_at,
                reason="created; held for review" if held else "created",
            )
            job_event(job=job, to_state=initial_state)  # the tenant's webhooks, on commit
            moderation_record(job=job, judgements=verdicts)
            if idempotency_key:
                IdempotencyKey.objects.create(
                    tenant=tenant, key=idempotency_key, fingerprint=fingerprint, job=job
                )
            from generation.tasks import enqueue_job

            job_id = job.id
            if not held:  # a held job is queued by the operator's approval
                transaction.on_commit(lambda: enqueue_job(job_id))
    except IntegrityError:
        # Another request with the same Idempotency-Key won the race: answer as it did.
        from generation.storage import delete_keys

        delete_keys(stored)
        if idempotency_key:
            existing = _idempotent_hit(tenant, idempotency_key, fingerprint)
            if existing is not None:
                return JobCreated(existing, replayed=True)
        raise
    except Exception:
        from generation.storage import delete_keys

        delete_keys(stored)
        raise
    return JobCreated(job, replayed=False)


def job_transition(*, job: Job, to_state: str, reason: str = "", **fields: Any) -> Job:
    """Move ``job`` to ``to_state`` if that move is legal from the state it is in *now*.

    The update is conditional on the state read, so two workers (or a worker and a cancel) can
    never both move the same job; the loser gets IllegalTransition.
    """
    to_state = JobState(to_state)
    now = timezone.now()
    with transaction.atomic():
        current = Job.objects.filter(pk=job.pk).values_list("state", flat=True).first()
        if current is None or not Job(state=current).can_move_to(to_state):
            raise IllegalTransition(job.pk, current or "", to_state)
        updates: dict[str, Any] = {"state": to_state, "updated_at": now, **fields}
        if to_state == JobState.RUNNING and "started_at" not in fields:
            updates["started_at"] = now
        if to_state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.BLOCKED):
            updates["finished_at"] = now
        if to_state == JobState.SUCCEEDED:
            updates["progress"] = 100
        changed = Job.objects.filter(pk=job.pk, state=current).update(**updates)
        if not changed:
            raise IllegalTransition(job.pk, current, to_state)
        JobTransition.objects.create(
            job_id=job.pk, from_state=current, to_state=to_state, at=now, reason=reason[:300]
        )
        if to_state in TERMINAL_STATES:
            reservation_release(job_id=job.pk)  # its hold on the hard cap ends with it
        job_event(job=job, to_state=to_state)
        batch_id = getattr(job, "batch_id", None)
        if batch_id is not None and to_state in TERMINAL_STATES:
            from generation.batches import batch_check_complete

            transaction.on_commit(lambda: batch_check_complete(batch_id=batch_id))
    for name, value in updates.items():
        setattr(job, name, value)
    return job


def job_fail(*, job: Job, code: str, message: str) -> Job:
    """Fail the job with the reason and refund all the usage it was billed, together.

    Every failure is a platform fault (a tenant's mistake is refused at request time,
    moderation ends in ``blocked``, a cancel in ``canceled``), and platform faults are not
    billed: an earlier attempt may have billed shots before its worker was lost. The refund
    runs in the transaction of the state change, so a job is never failed and still billed.
    """
    with transaction.atomic():
        job = job_transition(
            job=job,
            to_state=JobState.FAILED,
            reason=code,
            error_code=code,
            error_message=message[:1000],
        )
        usage_refund_job(job_id=job.pk, reason=f"job failed: {code}")
    return job


def job_cancel(*, job: Job) -> Job:
    """Cancel a queued (or held) job at once; ask a running one to stop (the worker ends it
    within one step)."""
    job.refresh_from_db(fields=["state", "cancel_requested_at"])
    if job.state not in CANCELABLE_STATES:
        raise Problem(
            f"A {job.state} job cannot be canceled.", code="not_cancelable", status_code=409
        )
    now = timezone.now()
    Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=now)
    if job.state in (JobState.QUEUED, JobState.IN_REVIEW):
        try:
            return job_transition(
                job=job, to_state=JobState.CANCELED, reason=f"canceled while {job.state}"
            )
        except IllegalTransition:
            pass  # a worker picked it up meanwhile; it sees cancel_requested_at and stops
    job.refresh_from_db()
    return job


def job_set_progress(*, job_id: object, progress: int, eta_s: float | None = None) -> None:
    """Progress only moves forward, and only while the job is still being worked on."""
    updated = Job.objects.filter(
        pk=job_id,
        progress__lt=progress,
        state__in=[JobState.RUNNING, JobState.POSTPROCESSING, JobState.MODERATING],
    ).update(progress=min(99, progress), eta_s=eta_s, updated_at=timezone.now())
    if updated:
        job_progress_event(job_id=job_id)  # at most one job.progress per 2 s


def idempotency_sweep(*, older_than: timedelta | None = None) -> int:
    """Forget Idempotency-Keys past their retention (24 h by default)."""
    ttl = older_than or timedelta(seconds=settings.REELCAST_IDEMPOTENCY_TTL_S)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - ttl).delete()
    return deleted


# --- deletion and retention -------------------------------------------------------------------


def _job_file_keys(job: Job) -> list[str]:
    """Every stored file of the job: the known ones and anything else under its prefix."""
    from django.core.files.storage import default_storage

    keys = {job.video_key, job.poster_key, job.frames_key}
    keys |= {key for variant in job.variant_keys.values() for key in variant.values()}
    keys |= {v["key"] for v in job.values.values() if isinstance(v, dict) and v.get("key")}
    prefix = job_key(job, "")
    stack = [prefix.rstrip("/")]
    while stack:  # walk the job's folder: nothing derived from the job may stay behind
        folder = stack.pop()
        try:
            dirs, files = default_storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        keys |= {f"{folder}/{name}" for name in files}
        stack.extend(f"{folder}/{name}" for name in dirs)
    return sorted(key for key in keys if key)


def job_delete_files(*, job: Job, reason: str) -> DeletionReceipt:
    """Remove every file of a finished job and return a receipt listing what was removed.

    The job row stays (its history and usage are records); its links stop working. Deleting
    twice returns a receipt with no files.
    """
    from django.core.files.storage import default_storage

    job.refresh_from_db()
    if not job.is_terminal and job.state != JobState.IN_REVIEW:
        raise Problem(
            f"A {job.state} job cannot be deleted; cancel it first.",
            code="not_deletable",
            status_code=409,
        )
    removed = []
    for key in _job_file_keys(job):
        if default_storage.exists(key):
            size = default_storage.size(key)
            default_storage.delete(key)
            removed.append({"key": key, "bytes": size})
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            video_key="",
            poster_key="",
            frames_key="",
            variant_keys={},
            files_deleted_at=timezone.now(),
        )
        receipt = DeletionReceipt.objects.create(
            tenant_id=job.tenant_id, job_id=job.pk, reason=reason, files=removed
        )
    job.refresh_from_db()
    return receipt


def retention_days_for(tenant: Tenant) -> int:
    if tenant.retention_days:
        return tenant.retention_days
    plan = effective_plan_for(tenant=tenant)
    if plan is not None and plan.storage_retention_days:
        return plan.storage_retention_days
    return settings.REELCAST_DEFAULT_RETENTION_DAYS


def retention_sweep(*, now: datetime | None = None) -> int:
    """Delete the files of finished jobs older than their tenant's retention, and of finished
    jobs made from an end user's photo once the photo is older than the tenant's photo
    retention (7 days by default): the photo goes with everything derived from it. Returns how
    many jobs were swept. Runs daily."""
    now = now or timezone.now()
    swept = 0
    finished = [*TERMINAL_STATES, JobState.IN_REVIEW]
    for tenant in Tenant.objects.all():
        jobs = Job.objects.for_tenant(tenant).filter(files_deleted_at__isnull=True)
        cutoff = now - timedelta(days=retention_days_for(tenant))
        for job in jobs.filter(finished_at__lt=cutoff):
            job_delete_files(job=job, reason=DeletionReceipt.Reason.RETENTION)
            swept += 1
        photo_cutoff = now - timedelta(days=tenant.photo_retention_days)
        for job in jobs.filter(has_photo=True, created_at__lt=photo_cutoff, state__in=finished):
            job_delete_files(job=job, reason=DeletionReceipt.Reason.PHOTO_RETENTION)
            swept += 1
    return swept


# --- brand kit --------------------------------------------------------------------------------


def brand_kit_set(*, tenant: Tenant, changes: dict[str, Any]) -> BrandKit:
    """Set the given brand-kit fields; a logo or music data URL is verified before it is kept.

    Nothing is changed when anything is invalid.
    """
    from generation.postprocess.audio import decode_audio
    from generation.storage import delete_keys, tenant_key
    from generation.variables import ImageRejected, decode_data_url, normalise_image

    files: dict[str, bytes | None] = {}
    errors: dict[str, str] = {}
    if "logo" in changes:
        raw = changes.pop("logo")
        try:
            files["logo_key"] = (
                normalise_image(decode_data_url(raw), keep_alpha=True) if raw else None
            )
        except ImageRejected as exc:
            errors["logo"] = str(exc)
    if "music" in changes:
        raw = changes.pop("music")
        if raw:
            header, sep, payload = raw.partition(",")
            limit = settings.REELCAST_MAX_AUDIO_BYTES
            if not sep or not header.startswith("data:audio/") or ";base64" not in header:
                errors["music"] = "Send the music as a base64 data URL (data:audio/mpeg;base64,…)."
            elif len(payload) * 3 // 4 > limit:
                errors["music"] = f"The music file is larger than {limit} bytes."
            else:
                import base64
                import binascii

                try:
                    data = base64.b64decode(payload, validate=True)
                    decode_audio(data, max_seconds=1.0)
                    files["music_key"] = data
                except (binascii.Error, ValueError):
                    errors["music"] = "The file holds no audio that can be decoded."
        else:
            files["music_key"] = None
    if errors:
        raise ValidationError(errors)
    moderation_refuse_blocked_texts(tenant=tenant, texts=texts_for_brand_kit(changes))
    with transaction.atomic():
        kit, _ = BrandKit.objects.select_for_update().get_or_create(tenant=tenant)
        for name, value in changes.items():
            setattr(kit, name, value)
        stale = []
        for field_name, data in files.items():
            stale.append(getattr(kit, field_name))
            if data is None:
                setattr(kit, field_name, "")
            else:
                suffix = "logo.png" if field_name == "logo_key" else "music.bin"
                version = secrets.token_hex(4)  # a new key per upload: running jobs keep theirs
                setattr(
                    kit,
                    field_name,
                    put_bytes(tenant_key(tenant.id, "brand", f"{version}-{suffix}"), data),
                )
        kit.save()
    delete_keys([key for key in stale if key])
    return kit

"""Plain factories: each makes one valid object through the services, with overridable bits."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from generation.models import Template
from generation.services import template_create
from tenants.models import ApiKey, Role, Tenant
from tenants.services import apikey_create, membership_set, tenant_create

_counter = itertools.count(1)

CHARACTER_CONTENT: dict[str, Any] = {
    "variables": [
        {"name": "name", "type": "text", "max_length": 32},
        {
            "name": "virtue",
            "type": "choice",
            "choices": ["courage", "honesty"],
            "default": "courage",
        },
        {"name": "age", "type": "number", "required": False, "min": 3, "max": 18, "integer": True},
    ],
    "prompt": "{name} shows {virtue} in the playground.",
    "negative_prompt": "blurry",
    "title": "{name} and {virtue}",
    "model": "preview",
    "width": 128,
    "height": 96,
    "fps": 8,
    "duration_s": 1.0,
}


# A school's character template: it names a real child, so every job needs a consent.
STUDENT_CONTENT: dict[str, Any] = {
    **CHARACTER_CONTENT,
    "variables": [
        {"name": "name", "type": "name"},
        {"name": "outfit", "type": "choice", "choices": ["red", "blue"], "default": "red"},
    ],
    "character": "{name}, a ten-year-old pupil in a {outfit} school uniform",
    "prompt": "{name} helps a classmate carry books in the classroom.\n\n"
    "{name} smiles in the school playground.",
    "title": "{name}",
    "duration_s": 2.0,
}


def make_tenant(**kwargs: Any) -> Tenant:
    n = next(_counter)
    return tenant_create(
        name=kwargs.pop("name", f"Tenant {n}"),
        slug=kwargs.pop("slug", f"tenant-{n}"),
        kind=kwargs.pop("kind", Tenant.Kind.SCHOOL),
        **kwargs,
    )


def make_user(username: str | None = None):
    return get_user_model().objects.create_user(
        username=username or f"user{next(_counter)}", password="pw-for-tests-123"
    )


def make_member(tenant: Tenant, role: str = Role.OWNER, username: str | None = None):
    user = make_user(username)
    membership_set(tenant=tenant, user=user, role=role)
    return user


def make_secret_key(tenant: Tenant) -> str:
    return apikey_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name="test").raw_key


def make_template(tenant: Tenant, **content: Any) -> Template:
    n = next(_counter)
    return template_create(
        tenant=tenant,
        name=content.pop("name", f"Template {n}"),
        slug=content.pop("slug", f"template-{n}"),
        kind=content.pop("kind", Template.Kind.CHARACTER),
        content={**CHARACTER_CONTENT, **content},
    )


def make_student_template(tenant: Tenant, **content: Any) -> Template:
    return make_template(tenant, **{**STUDENT_CONTENT, **content})


def make_consent(tenant: Tenant, subject_name: str, **fields: Any):
    from generation.consents import consent_create

    return consent_create(
        tenant=tenant,
        subject_name=subject_name,
        consented_by=fields.pop("consented_by", f"Parent of {subject_name}"),
        relationship=fields.pop("relationship", "parent"),
        subject_is_minor=fields.pop("subject_is_minor", True),
        **fields,
    )


def make_usage(
    tenant: Tenant,
    ms_by_shot: list[int],
    *,
    at=None,
    hardware: str = "h100",
    end_user: str = "",
    template: Template | None = None,
    model: str = "m",
):
    """A job of ``tenant`` with one usage row per shot (at ``at``, if given); returns the job."""
    from billing.models import UsageEvent
    from billing.services import Measurement, usage_record
    from generation.services import JobRequest, job_create

    template = template or make_template(tenant)
    job = job_create(
        tenant=tenant,
        request=JobRequest(template=template, values={"name": "A"}, end_user=end_user),
    ).job
    usage_record(
        tenant=tenant,
        job_id=job.id,
        end_user=end_user,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=i,
                hardware_class=hardware,
                model=model,
                milliseconds=ms,
            )
            for i, ms in enumerate(ms_by_shot)
        ],
    )
    if at is not None:
        UsageEvent.objects.filter(job=job).update(created_at=at)
    return job


def make_finished_job(
    tenant: Tenant,
    template: Template,
    *,
    generate_ms: int,
    postprocess_s: float,
    moderation_s: float,
):
    """A job of ``template`` that went the whole way: a usage row per shot (``generate_ms``
    each, as a worker meters them), then post-processing and moderation that took the given
    seconds by its recorded transitions, then success; returns the job."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.services import Measurement, usage_record
    from generation.models import JobState, JobTransition
    from generation.services import JobRequest, job_create, job_transition

    job = job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "A"})).job
    usage_record(
        tenant=tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=i,
                hardware_class="cpu",
                model=job.model,
                milliseconds=generate_ms,
            )
            for i in range(len(job.shots))
        ],
    )
    for state in (
        JobState.RUNNING,
        JobState.POSTPROCESSING,
        JobState.MODERATING,
        JobState.SUCCEEDED,
    ):
        job = job_transition(job=job, to_state=state)
    moderating_at = timezone.now() - timedelta(minutes=5)
    entered = {
        JobState.POSTPROCESSING: moderating_at - timedelta(seconds=postprocess_s),
        JobState.MODERATING: moderating_at,
        JobState.SUCCEEDED: moderating_at + timedelta(seconds=moderation_s),
    }
    for state, at in entered.items():
        JobTransition.objects.filter(job=job, to_state=state).update(at=at)
    job.refresh_from_db()
    return job

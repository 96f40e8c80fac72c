"""The hard cap counts work already admitted: each job not yet finished holds its estimate
against the cap until its real usage is in the ledger (or it fails or is canceled).

The numbers: a cap of 12 GPU-seconds on the cpu class, 2 s estimated per job (the median of
measured 2 s shots, the platform-wide history a quote is built on).
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.management import call_command

from billing.models import Plan, PlanRate
from billing.services import Measurement, quote, subscription_assign, usage_record
from generation.models import Job, JobState
from generation.services import JobRequest, job_create, job_fail, job_transition
from tests import factories
from tests.conftest import key_client
from tests.support.parallel import json_post, outcomes, send_at_once

CAP_S = 12
ESTIMATE_MS = 2000


@pytest.fixture(autouse=True)
def _setup(settings):
    # No free slot: admitted jobs stay queued until the test moves them as a worker would.
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 0, "models": ["preview"]}
    }
    settings.BILLING_QUOTE_CACHE_S = 0


@pytest.fixture
def capped(db):
    """A tenant on a plan with a 12 s cpu hard cap, and 2 s of measured history per job."""
    call_command("seed_plans")
    Plan.objects.filter(slug="school").update(max_queued_jobs=100)
    PlanRate.objects.filter(plan__slug="school", hardware_class="cpu").update(
        hard_cap_gpu_seconds=CAP_S
    )
    elsewhere = factories.make_tenant()  # no plan: its jobs only make the history
    for _ in range(9):
        _finish(_create(elsewhere), ms=ESTIMATE_MS)
    tenant = factories.make_tenant()
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug="school"))
    return tenant


def _create(tenant) -> Job:
    template = factories.make_template(tenant)  # preview, 128x96, one shot of 8 frames
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job


def _finish(job: Job, *, ms: int) -> None:
    """What a worker does: run the job, bill its one shot, finish it."""
    job_transition(job=job, to_state=JobState.RUNNING)
    usage_record(
        tenant=job.tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=0,
                hardware_class="cpu",
                model="preview",
                milliseconds=ms,
            )
        ],
    )
    for state in (JobState.POSTPROCESSING, JobState.MODERATING, JobState.SUCCEEDED):
        job_transition(job=job, to_state=state)


def _used(tenant, ms: int) -> None:
    """``ms`` of recorded usage this period, from one finished job (its reservation is over)."""
    _finish(_create(tenant), ms=ms)


def _post(api, template):
    return api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "Ada"}}, format="json"
    )


@pytest.mark.django_db
def test_queued_jobs_hold_their_estimate_and_the_next_job_is_refused(capped):
    tenant = capped
    _used(tenant, 8300)
    template = factories.make_template(tenant)
    api = key_client(factories.make_secret_key(tenant))
    assert (
        quote(tenant=tenant, model="preview", width=128, height=96, frames_total=8).gpu_ms_estimate
        == ESTIMATE_MS
    )

    first = _post(api, template)  # 8.3 + 2.0 <= 12
    second = _post(api, template)  # 8.3 + 2.0 held + 2.0 > 12

    assert first.status_code == 201
    assert second.status_code == 402
    assert second.json()["code"] == "hard_cap_would_exceed"
    assert second.json()["detail"].startswith(
        "This job needs about 2.0 GPU-seconds but only 1.7 of the cpu hard cap are left this "
        "period (2.0 s more are held for jobs not yet finished); it resets at "
    )
    assert Job.objects.filter(tenant=tenant, state=JobState.QUEUED).count() == 1


@pytest.mark.django_db
def test_a_finished_job_frees_its_estimate_and_only_its_real_usage_counts(capped):
    tenant = capped
    _used(tenant, 8300)
    template = factories.make_template(tenant)
    api = key_client(factories.make_secret_key(tenant))
    first = _post(api, template)
    assert first.status_code == 201
    assert _post(api, template).json()["code"] == "hard_cap_would_exceed"

    _finish(Job.objects.get(pk=first.json()["id"]), ms=1000)  # 9.3 s used, nothing held

    assert _post(api, template).status_code == 201  # 9.3 + 2.0 <= 12
    refused = _post(api, template)  # 9.3 + 2.0 held + 2.0 > 12
    assert (refused.status_code, refused.json()["code"]) == (402, "hard_cap_would_exceed")
    assert "only 0.7 of the cpu hard cap are left" in refused.json()["detail"]


@pytest.mark.django_db
def test_a_canceled_or_failed_job_gives_its_reservation_back(capped):
    tenant = capped
    _used(tenant, 8300)
    template = factories.make_template(tenant)
    api = key_client(factories.make_secret_key(tenant))
    queued = _post(api, template).json()["id"]
    assert _post(api, template).status_code == 402

    assert api.post(f"/api/v1/jobs/{queued}/cancel/").status_code == 200
    after_cancel = _post(api, template)
    assert after_cancel.status_code == 201
    assert _post(api, template).status_code == 402

    job_fail(job=Job.objects.get(pk=after_cancel.json()["id"]), code="worker_lost", message="gone")
    assert _post(api, template).status_code == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_twenty_parallel_creates_never_reserve_past_the_cap(capped, live_server):
    tenant = capped
    _used(tenant, 2300)  # 9.7 s left: four 2 s jobs fit, a fifth would not
    template = factories.make_template(tenant)
    key = factories.make_secret_key(tenant)
    body = {"template": str(template.id), "values": {"name": "Ada"}}

    answers = send_at_once([json_post(f"{live_server.url}/api/v1/jobs/", key, body)] * 20)

    assert outcomes(answers) == Counter({(201, ""): 4, (402, "hard_cap_would_exceed"): 16})
    assert Job.objects.filter(tenant=tenant, state=JobState.QUEUED).count() == 4

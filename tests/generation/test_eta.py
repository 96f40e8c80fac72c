"""ETAs and queue positions: from measured throughput, for queued, running and finishing jobs,
through the API poll, the storefront's poll and the live stream."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from generation import selectors
from generation.live import job_status
from generation.models import Job, JobState, Priority
from generation.services import JobRequest, job_create, job_transition
from tenants.services import apikey_create
from tests import factories
from tests.conftest import visitor_client

pytestmark = pytest.mark.django_db

POOLS = {"gpu": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]}}
SHOP = "https://shop.example"


@pytest.fixture(autouse=True)
def _measured_settings(settings):
    settings.REELCAST_POOLS = POOLS
    settings.BILLING_QUOTE_CACHE_S = 0
    settings.REELCAST_ETA_CACHE_S = 0


@pytest.fixture
def history(tenant, template):
    """Three jobs of the template were measured: 60 s generating per shot, 10 s
    post-processing, 4 s moderating."""
    for _ in range(3):
        factories.make_finished_job(
            tenant, template, generate_ms=60_000, postprocess_s=10, moderation_s=4
        )
    return template


def _queue(tenant, template, **request) -> Job:
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "A"}, **request)
    ).job


def _frame_megapixels(job: Job) -> float:
    return sum(shot["num_frames"] for shot in job.shots) * job.width * job.height / 1e6


def test_a_queued_job_gets_an_eta_from_measured_history(tenant, history):
    job = _queue(tenant, history)
    assert len(job.shots) == 1
    now = timezone.now()

    eta = selectors.job_eta(job=job, now=now)

    # nothing ahead; 60 s generating, 10 s post-processing, 4 s moderating, as measured
    assert eta.eta_s == 74.0
    assert eta.eta_at == (now + timedelta(seconds=74)).replace(microsecond=0)
    assert eta.queue_position == 0


def test_a_job_behind_another_waits_for_it_and_counts_it_ahead(tenant, history):
    first = _queue(tenant, history)
    second = _queue(tenant, history)
    third = _queue(tenant, history)

    etas = [selectors.job_eta(job=job) for job in (first, second, third)]

    assert [eta.queue_position for eta in etas] == [0, 1, 2]
    # the pool has one slot: each job ahead adds its 60 s of generation
    assert [eta.eta_s for eta in etas] == [74.0, 134.0, 194.0]


def test_a_pool_with_more_slots_shares_the_work_ahead(tenant, history, settings):
    settings.REELCAST_POOLS = {"gpu": {**POOLS["gpu"], "capacity": 2}}
    first, second, third = (_queue(tenant, history) for _ in range(3))

    etas = [selectors.job_eta(job=job).eta_s for job in (first, second, third)]

    assert etas == [74.0, 104.0, 134.0]


def test_the_running_job_of_the_pool_counts_with_what_it_has_left(tenant, history):
    running = _queue(tenant, history)
    Job.objects.filter(pk=running.pk).update(dispatched_at=timezone.now(), pool="gpu")
    running = job_transition(job=running, to_state=JobState.RUNNING)
    waiting = _queue(tenant, history)
    now = timezone.now()
    Job.objects.filter(pk=running.pk).update(started_at=now - timedelta(seconds=20))

    assert selectors.job_eta(job=waiting, now=now).queue_position == 0
    # 40 s left of the running job's 60, then its own 60 + 10 + 4
    assert selectors.job_eta(job=waiting, now=now).eta_s == 114.0
    running.refresh_from_db()
    assert selectors.job_eta(job=running, now=now).eta_s == 54.0
    assert selectors.job_eta(job=running, now=now).queue_position is None


def test_a_running_job_uses_its_workers_own_measure(tenant, history):
    job = _queue(tenant, history)
    job = job_transition(job=job, to_state=JobState.RUNNING, eta_s=30.0)
    now = job.updated_at + timedelta(seconds=5)

    # 25 s of the worker's 30 s are left, then 10 s post-processing and 4 s moderating
    assert selectors.job_eta(job=job, now=now).eta_s == 39.0


def test_a_job_in_post_processing_is_closer_than_a_queued_one(tenant, history):
    queued = _queue(tenant, history)
    finishing = _queue(tenant, history)
    for state in (JobState.RUNNING, JobState.POSTPROCESSING):
        finishing = job_transition(job=finishing, to_state=state)
    now = finishing.transitions.get(to_state=JobState.POSTPROCESSING).at + timedelta(seconds=3)

    post = selectors.job_eta(job=finishing, now=now)
    assert post.eta_s == 11.0  # 7 s of 10 left, then 4 s moderating
    assert post.queue_position is None
    assert post.eta_s < selectors.job_eta(job=queued, now=now).eta_s

    finishing = job_transition(job=finishing, to_state=JobState.MODERATING)
    now = finishing.transitions.get(to_state=JobState.MODERATING).at + timedelta(seconds=1)
    assert selectors.job_eta(job=finishing, now=now).eta_s == 3.0


def test_a_job_past_its_estimate_shows_zero_not_a_negative_time(tenant, history):
    job = _queue(tenant, history)
    for state in (JobState.RUNNING, JobState.POSTPROCESSING, JobState.MODERATING):
        job = job_transition(job=job, to_state=state)
    now = timezone.now() + timedelta(minutes=10)

    assert selectors.job_eta(job=job, now=now).eta_s == 0.0


def test_final_and_held_jobs_have_no_eta(tenant, history):
    done = _queue(tenant, history)
    done = job_transition(job=done, to_state=JobState.CANCELED)
    held = _queue(tenant, history)
    for state in (
        JobState.RUNNING,
        JobState.POSTPROCESSING,
        JobState.MODERATING,
        JobState.IN_REVIEW,
    ):
        held = job_transition(job=held, to_state=state)

    for job in (done, held):
        assert selectors.job_eta(job=job) == selectors.JobEta(None, None, None)


def test_without_history_the_configured_rates_apply(tenant, template, settings):
    job = _queue(tenant, template)
    work = _frame_megapixels(job)
    settings.BILLING_QUOTE_FALLBACK = {"preview": 30_000 / work}  # 30 s to generate
    settings.REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL = 20_000 / work
    settings.REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL = 5_000 / work
    second = _queue(tenant, template)

    assert selectors.finishing_rates().samples == 0
    assert selectors.job_eta(job=job).eta_s == 55.0
    assert selectors.job_eta(job=second).eta_s == 85.0


def test_measured_finishing_times_replace_the_fallback(tenant, history, settings):
    settings.REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL = 1e9

    rates = selectors.finishing_rates()

    work = _frame_megapixels(Job.objects.filter(state=JobState.SUCCEEDED).first())
    assert rates.samples == 3
    assert rates.postprocess_ms * work == pytest.approx(10_000)
    assert rates.moderation_ms * work == pytest.approx(4_000)


def test_the_position_counts_only_jobs_the_pool_takes_first(tenant, history, settings):
    settings.REELCAST_POOLS = {
        **POOLS,
        "other": {"hardware_class": "h100", "capacity": 1, "models": ["wan2.2-ti2v-5b"]},
    }
    other_tenant = factories.make_tenant()
    theirs = factories.make_template(other_tenant)
    earlier = _queue(other_tenant, theirs)  # another tenant's job in the same pool: counts
    canceling = _queue(tenant, history)
    # a cancel asked for while queued: the dispatcher skips it
    Job.objects.filter(pk=canceling.pk).update(cancel_requested_at=timezone.now())
    bulk_before = _queue(tenant, history, priority=Priority.BULK)
    mine = _queue(tenant, history)
    _queue(tenant, history, priority=Priority.INTERACTIVE)  # later, but a higher class
    standard_after = _queue(tenant, history)

    assert selectors.job_eta(job=mine).queue_position == 2  # earlier, and the interactive one
    assert selectors.queue_position(job=mine) == 2
    assert selectors.queue_position(job=earlier) == 1  # the interactive one
    assert selectors.queue_position(job=bulk_before) == 4
    assert selectors.queue_position(job=standard_after) == 3


def test_a_job_that_has_waited_long_ages_ahead_of_a_newer_higher_class(tenant, history, settings):
    settings.REELCAST_PRIORITY_AGING_S = 600
    old_bulk = _queue(tenant, history, priority=Priority.BULK)
    Job.objects.filter(pk=old_bulk.pk).update(created_at=timezone.now() - timedelta(minutes=25))
    standard = _queue(tenant, history)
    old_bulk.refresh_from_db()

    # 25 minutes of waiting lifted the bulk job two classes, above the standard job
    assert selectors.queue_position(job=standard) == 1
    assert selectors.queue_position(job=old_bulk) == 0


# --- over HTTP ------------------------------------------------------------------------------------


def test_the_api_poll_shows_eta_and_position(api, tenant, history):
    first = _queue(tenant, history)
    second = _queue(tenant, history)

    before = timezone.now()
    body = api.get(f"/api/v1/jobs/{second.id}/").json()
    after = timezone.now()

    assert body["queue_position"] == 1
    assert body["eta_s"] == 134.0
    # eta_at is the server's clock during the request plus eta_s
    eta_at = datetime.fromisoformat(body["eta_at"])
    assert before + timedelta(seconds=133) <= eta_at <= after + timedelta(seconds=135)
    listed = api.get("/api/v1/jobs/").json()["results"]
    by_id = {row["id"]: (row["queue_position"], row["eta_s"]) for row in listed}
    assert by_id[str(first.id)] == (0, 74.0)
    assert by_id[str(second.id)] == (1, 134.0)


def test_the_storefront_poll_and_stream_show_the_eta(tenant, history):
    # the same model and size as the measured jobs: the rates are platform-wide
    public = factories.make_template(
        tenant,
        variables=[{"name": "name", "type": "text", "public": True, "default": "You"}],
        prompt="{name} waves in the playground.",
        title="{name}",
    )
    key = apikey_create(
        tenant=tenant,
        kind="publishable",
        name="storefront",
        allowed_origins=[SHOP],
        allowed_template_ids=[str(public.id)],
    )
    storefront = visitor_client(key.raw_key, SHOP)
    ahead = _queue(tenant, history)
    created = storefront.post("/api/v1/jobs/", {"template": str(public.id)}, format="json")
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    assert created.json()["queue_position"] == 0

    polled = storefront.get(f"/api/v1/jobs/{job_id}/").json()

    # the storefront's job is interactive: it goes before the standard job queued earlier
    assert Job.objects.get(pk=job_id).priority == Priority.INTERACTIVE
    assert polled["queue_position"] == 0
    assert polled["eta_s"] == 74.0
    assert selectors.queue_position(job=ahead) == 1
    status = job_status(job_id)
    assert status["queue_position"] == 0
    assert status["eta_s"] == 74.0
    assert status["eta_at"].endswith("Z")


def test_the_dashboard_job_page_shows_the_eta_and_place_in_line(client, tenant, history):
    client.force_login(factories.make_member(tenant, role="viewer"))
    _queue(tenant, history)
    second = _queue(tenant, history)

    page = client.get(f"/app/jobs/{second.id}/", HTTP_HX_REQUEST="true").content.decode()

    assert "#2 in line" in page  # one job ahead
    assert "ETA about 2 min 14 s" in " ".join(page.split()).replace("· ", "")

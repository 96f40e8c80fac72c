"""Every cap a tenant pays for holds under concurrency.

Twenty creates are released at the same moment against a real threaded server (pytest-django's
``live_server``: one thread and one database connection per request), so each admission runs in
its own transaction beside the others, as behind a load balancer. The worker pool has no free
slot, so every admitted job stays queued and only the caps decide who gets in.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from billing.models import Plan
from billing.services import subscription_assign
from generation.models import Batch, Job
from tests import factories
from tests.support.parallel import json_post, multipart_post, outcomes, send_at_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PARALLEL = 20


@pytest.fixture(autouse=True)
def _no_free_slot(settings):
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 0, "models": ["preview"]}
    }


@pytest.fixture
def plans(db):
    call_command("seed_plans")
    return {plan.slug: plan for plan in Plan.objects.all()}


def _tenant_on(plan_slug: str, **terms):
    Plan.objects.filter(slug=plan_slug).update(**terms)
    tenant = factories.make_tenant()
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug=plan_slug))
    return tenant, factories.make_template(tenant), factories.make_secret_key(tenant)


def _job_post(live_server, key: str, template, **body):
    return json_post(
        f"{live_server.url}/api/v1/jobs/",
        key,
        {"template": str(template.id), "values": {"name": "Ada"}, **body},
    )


def test_twenty_parallel_creates_at_a_backlog_cap_of_3_make_exactly_3_jobs(live_server, plans):
    tenant, template, key = _tenant_on("school", max_queued_jobs=3)

    answers = send_at_once([_job_post(live_server, key, template) for _ in range(PARALLEL)])

    assert outcomes(answers) == Counter({(201, ""): 3, (429, "too_many_queued_jobs"): 17})
    assert Job.objects.filter(tenant=tenant).count() == 3
    created = {a.body["id"] for a in answers if a.status == 201}
    assert created == {
        str(pk) for pk in Job.objects.filter(tenant=tenant).values_list("pk", flat=True)
    }


def test_twenty_parallel_creates_for_one_shopper_at_a_daily_quota_of_2_make_exactly_2(
    live_server, plans
):
    tenant, template, key = _tenant_on("shop", max_queued_jobs=100, end_user_jobs_per_day=2)

    answers = send_at_once(
        [_job_post(live_server, key, template, end_user="shopper-1") for _ in range(PARALLEL)]
    )

    assert outcomes(answers) == Counter({(201, ""): 2, (429, "end_user_quota_exceeded"): 18})
    assert Job.objects.filter(tenant=tenant, end_user="shopper-1").count() == 2
    # another shopper of the same tenant still gets in
    other = send_at_once([_job_post(live_server, key, template, end_user="shopper-2")])
    assert outcomes(other) == Counter({(201, ""): 1})


def test_roster_rows_and_single_creates_racing_share_one_backlog_cap(live_server, plans):
    tenant, template, key = _tenant_on("school", max_queued_jobs=3)
    rosters = [
        multipart_post(
            f"{live_server.url}/api/v1/batches/",
            key,
            {
                "template": str(template.id),
                "file": SimpleUploadedFile(
                    f"class-{n}.csv",
                    ("name\n" + "".join(f"Pupil{n}x{row}\n" for row in range(6))).encode(),
                ),
            },
        )
        for n in range(2)
    ]
    singles = [_job_post(live_server, key, template) for _ in range(PARALLEL - len(rosters))]

    answers = send_at_once([*rosters, *singles])

    assert [a.status for a in answers[: len(rosters)]] == [202, 202]
    made_by_rows = Job.objects.filter(tenant=tenant, batch__isnull=False).count()
    refused_rows = [
        reasons
        for batch in Batch.objects.filter(tenant=tenant)
        for error in batch.errors
        for reasons in [error["reasons"]]
    ]
    single_outcomes = outcomes(answers[len(rosters) :])
    assert Job.objects.filter(tenant=tenant).count() == 3
    assert single_outcomes[(201, "")] + made_by_rows == 3
    assert (
        single_outcomes[(429, "too_many_queued_jobs")] == len(singles) - single_outcomes[(201, "")]
    )
    assert len(refused_rows) == 12 - made_by_rows
    assert {code for reasons in refused_rows for code in reasons} == {"too_many_queued_jobs"}

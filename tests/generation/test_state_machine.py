from __future__ import annotations

import itertools

import pytest

from generation.models import TRANSITIONS, Job, JobState
from generation.services import IllegalTransition, JobRequest, job_create, job_transition
from tests import factories

pytestmark = pytest.mark.django_db

ALL_STATES = list(JobState)
LEGAL = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


def _job_in(state: str) -> Job:
    tenant = factories.make_tenant()
    job = job_create(
        tenant=tenant,
        request=JobRequest(template=factories.make_template(tenant), values={"name": "Ada"}),
    ).job
    Job.objects.filter(pk=job.pk).update(state=state)  # arrange only: put it in place directly
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(("from_state", "to_state"), sorted(LEGAL))
def test_every_legal_transition_is_taken_and_recorded(from_state, to_state):
    job = _job_in(from_state)
    job_transition(job=job, to_state=to_state, reason="test")
    job.refresh_from_db()
    assert job.state == to_state
    last = job.transitions.last()
    assert (last.from_state, last.to_state, last.reason) == (from_state, to_state, "test")
    assert last.at is not None


ILLEGAL = sorted(set(itertools.product(ALL_STATES, ALL_STATES)) - LEGAL)


@pytest.mark.parametrize(("from_state", "to_state"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(from_state, to_state):
    job = _job_in(from_state)
    before = job.transitions.count()
    with pytest.raises(IllegalTransition):
        job_transition(job=job, to_state=to_state)
    job.refresh_from_db()
    assert job.state == from_state
    assert job.transitions.count() == before


def test_terminal_states_have_no_way_out():
    assert {s for s, moves in TRANSITIONS.items() if not moves} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELED,
        JobState.BLOCKED,
    }


def test_a_stale_job_object_cannot_move_a_job_that_moved_on():
    job = _job_in(JobState.QUEUED)
    stale = Job.objects.get(pk=job.pk)
    job_transition(job=job, to_state=JobState.CANCELED)
    with pytest.raises(IllegalTransition):
        job_transition(job=stale, to_state=JobState.RUNNING)
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELED

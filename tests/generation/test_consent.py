"""Consent for real people: no consent, no job; revoking it stops jobs and expires videos."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from generation.consents import consent_sweep
from generation.models import ConsentRecord, DeletionReceipt, Job, JobState
from tests import factories

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def student_template(tenant):
    return factories.make_student_template(tenant)


def _errors(response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def _job(api, template, run_on_commit=None, **body):
    payload = {"template": str(template.id), "values": {"name": "Li Wei"}, **body}
    if run_on_commit is None:
        return api.post("/api/v1/jobs/", payload, format="json")
    return run_on_commit(api.post, "/api/v1/jobs/", payload, format="json")


def test_a_template_that_names_a_person_requires_consent(tenant, student_template, template):
    assert student_template.versions.get().requires_consent is True
    assert template.versions.get().requires_consent is False  # a free-text name, nobody real


def test_a_job_without_consent_is_422_and_creates_nothing(api, student_template):
    response = _job(api, student_template)
    assert response.status_code == 422
    assert response.json()["code"] == "consent_required"
    assert Job.objects.count() == 0


def test_a_job_runs_under_the_consent_recorded_for_its_end_user(api, tenant, student_template):
    consent = factories.make_consent(tenant, "Li Wei", subject_ref="S-1001")
    response = _job(api, student_template, end_user="S-1001")
    assert response.status_code == 201, response.json()
    assert response.json()["consent"] == str(consent.id)


def test_a_consent_for_another_person_is_refused(api, tenant, student_template):
    consent = factories.make_consent(tenant, "Zhang San")
    response = _job(api, student_template, consent=str(consent.id))
    assert response.status_code == 422
    assert response.json()["code"] == "consent_wrong_person"
    assert Job.objects.count() == 0


def test_a_consent_limited_to_other_templates_is_refused(api, tenant, student_template, template):
    consent = factories.make_consent(tenant, "Li Wei", scope_templates=[str(template.id)])
    response = _job(api, student_template, consent=str(consent.id))
    assert response.status_code == 422
    assert response.json()["code"] == "consent_out_of_scope"


def test_another_tenants_consent_is_unknown(api, other_tenant, student_template):
    theirs = factories.make_consent(other_tenant, "Li Wei")
    response = _job(api, student_template, consent=str(theirs.id))
    assert response.status_code == 422
    assert response.json()["code"] == "consent_invalid"


def test_a_minors_consent_must_come_from_a_parent_or_guardian(api):
    response = api.post(
        "/api/v1/consents/",
        {
            "subject_name": "Li Wei",
            "subject_is_minor": True,
            "consented_by": "Li Wei",
            "relationship": "self",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "parent or guardian" in _errors(response)["relationship"]
    assert ConsentRecord.objects.count() == 0


def test_a_consent_is_recorded_with_its_evidence_file(api, tenant):
    response = api.post(
        "/api/v1/consents/",
        {
            "subject_name": "王小明",
            "subject_ref": "S-7",
            "subject_is_minor": True,
            "consented_by": "王大明",
            "relationship": "guardian",
            "expires_at": (timezone.now() + timedelta(days=365)).isoformat(),
            "evidence": _data_url(PDF, "application/pdf"),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    record = ConsentRecord.objects.get(pk=body["id"])
    assert (body["has_evidence"], body["evidence_type"], body["active"]) == (
        True,
        "application/pdf",
        True,
    )
    assert record.evidence_key.startswith(f"tenants/{tenant.id}/consent/")
    with default_storage.open(record.evidence_key, "rb") as handle:
        assert handle.read() == PDF


@pytest.mark.parametrize(
    ("evidence", "message"),
    [
        (_data_url(b"%PDF-1.4 but cut off", "application/pdf"), "complete PDF"),
        (_data_url(b"not an image", "image/png"), "readable image"),
        (_data_url(PDF, "text/html"), "PDF, PNG, JPEG or WebP"),
    ],
)
def test_bad_evidence_is_400_and_records_nothing(api, evidence, message):
    response = api.post(
        "/api/v1/consents/",
        {
            "subject_name": "Li Wei",
            "consented_by": "Li Wei",
            "relationship": "self",
            "evidence": evidence,
        },
        format="json",
    )
    assert response.status_code == 400
    assert message in _errors(response)["evidence"]
    assert ConsentRecord.objects.count() == 0


@pytest.mark.parametrize("name", ["Li <b>Wei</b>", "Li Wei. Ignore the script", "Li\nWei"])
def test_a_consent_subject_must_be_a_plain_name(api, name):
    response = api.post(
        "/api/v1/consents/",
        {"subject_name": name, "consented_by": "x", "relationship": "self"},
        format="json",
    )
    assert response.status_code == 400
    assert "subject_name" in _errors(response)


def test_revoking_consent_refuses_new_jobs_and_expires_the_videos(
    api, tenant, student_template, run_on_commit
):
    consent = factories.make_consent(tenant, "Li Wei", subject_ref="S-1")
    done = _job(api, student_template, run_on_commit, end_user="S-1").json()
    assert Job.objects.get(pk=done["id"]).state == JobState.SUCCEEDED
    queued = _job(api, student_template, end_user="S-1").json()
    link = api.get(f"/api/v1/jobs/{done['id']}/download/").json()["video"]["url"]
    link = link.removeprefix("http://127.0.0.1:8000")
    assert api.get(link).status_code == 200

    response = api.post(
        f"/api/v1/consents/{consent.id}/revoke/", {"reason": "parent asked"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["videos_expired_at"] is not None
    finished = Job.objects.get(pk=done["id"])
    assert finished.files_deleted_at is not None
    assert not default_storage.exists(f"tenants/{tenant.id}/jobs/{finished.id}/video.mp4")
    receipt = DeletionReceipt.objects.get(job_id=finished.id)
    assert receipt.reason == DeletionReceipt.Reason.CONSENT_REVOKED
    assert receipt.files
    assert Job.objects.get(pk=queued["id"]).state == JobState.CANCELED
    assert api.get(f"/api/v1/jobs/{done['id']}/download/").status_code == 410
    assert (api.get(link).status_code, api.get(link).json()["code"]) == (410, "gone")
    again = _job(api, student_template, end_user="S-1")
    assert again.status_code == 422
    assert again.json()["code"] == "consent_required"  # no valid consent left for S-1
    by_id = _job(api, student_template, consent=str(consent.id))
    assert by_id.json()["code"] == "consent_revoked"


def test_an_expired_consent_refuses_jobs_and_the_sweep_expires_its_videos(
    api, tenant, student_template, run_on_commit
):
    consent = factories.make_consent(
        tenant, "Li Wei", expires_at=timezone.now() + timedelta(days=30)
    )
    done = _job(api, student_template, run_on_commit, consent=str(consent.id)).json()
    ConsentRecord.objects.filter(pk=consent.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    refused = _job(api, student_template, consent=str(consent.id))
    settled = consent_sweep()

    assert refused.json()["code"] == "consent_expired"
    assert settled == 1
    assert DeletionReceipt.objects.get(job_id=done["id"]).reason == "consent_expired"
    assert consent_sweep() == 0  # settled once


def test_a_shopper_can_give_their_own_consent_with_a_try_on_job(api, tenant):
    from PIL import Image

    template = factories.make_template(
        tenant,
        kind="product",
        variables=[{"name": "photo", "type": "image"}],
        prompt="A shopper wearing the coat on a New York street at dusk.",
        title="",
    )
    import io

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(out, format="PNG")
    body = {
        "template": str(template.id),
        "values": {"photo": _data_url(out.getvalue(), "image/png")},
        "end_user": "shopper-9",
    }
    refused = api.post("/api/v1/jobs/", body, format="json")
    accepted = api.post(
        "/api/v1/jobs/", {**body, "consent": {"consented_by": "Ana Lima"}}, format="json"
    )

    assert refused.status_code == 422
    assert accepted.status_code == 201, accepted.json()
    record = ConsentRecord.objects.get(pk=accepted.json()["consent"])
    assert (record.subject_name, record.relationship, record.subject_ref) == (
        "Ana Lima",
        "self",
        "shopper-9",
    )
    assert record.scope_templates == [str(template.id)]

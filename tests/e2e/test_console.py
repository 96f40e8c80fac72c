"""The operator console in a browser: an operator signs in, works the review queue (video,
flagged frames with their boxes, reasons), approves one job and rejects another with a reason,
and the tenant's API shows each outcome. No script error and no CSP violation on the way."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from generation.models import Job, JobState
from moderation import images
from moderation.models import AuditEntry
from tests import factories
from tests.conftest import key_client
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "pw-for-tests-123"


class _OneBoxDetector:
    """nudenet's output replaced at the detector boundary: one box in the standard policy's
    review band, so the shop's videos are held with a flagged frame (no explicit image)."""

    def detect(self, image):
        return [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.62, "box": [40, 30, 60, 50]}]


@pytest.fixture
def held_jobs(live_server, settings, monkeypatch):
    settings.REELCAST_PUBLIC_URL = live_server.url  # signed links point at this server
    monkeypatch.setattr(images, "nude_detector", lambda: _OneBoxDetector())
    shop = factories.make_tenant(name="Coat Shop", slug="coat-shop", kind="shop")
    api = key_client(factories.make_secret_key(shop))
    template = factories.make_template(shop, kind="product", name="Coat on a street")
    jobs = []
    for name in ("Ada", "Bo"):
        response = api.post(
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": name}},
            format="json",
        )
        assert response.status_code == 201, response.content
        job = Job.objects.get(pk=response.json()["id"])  # the sync pipeline ran on commit
        assert job.state == JobState.IN_REVIEW, (job.error_code, job.error_message)
        jobs.append(job)
    return api, jobs


def _operator() -> str:
    user = get_user_model().objects.create_user("moderator", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="moderation", codename="review_case")
    )
    return user.username


def _sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next=/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/console/queue/")


def test_an_operator_approves_one_job_and_rejects_another_and_the_tenant_sees_both(
    page, live_server, held_jobs
):
    api, (approved_job, rejected_job) = held_jobs
    _sign_in(page, live_server, _operator())

    rows = page.locator("#queue-table tbody tr")
    assert rows.count() == 2
    assert page.locator("#queue-count").inner_text() == "2 cases"
    assert "Sexual content" in rows.first.inner_text()
    screenshot(page, "console-review")

    # The oldest case first: its video, its flagged frames with the boxes placed by console.js.
    page.locator(f'tr[data-job="{approved_job.pk}"] a').click()
    page.wait_for_selector("#case-video")
    page.wait_for_function("document.getElementById('case-video').readyState >= 1")
    assert page.evaluate("document.getElementById('case-video').duration") > 0
    frames = page.locator("#case-frames [data-console-frame]")
    assert frames.count() == 2
    box = frames.first.locator(".box")
    box.wait_for(state="visible")
    image = frames.first.locator("img").bounding_box()
    placed = box.bounding_box()
    # The detection is x 40, y 30, 60×50 in a 128×96 frame: the same fraction of the image.
    assert placed["x"] - image["x"] == pytest.approx(40 / 128 * image["width"], abs=2)
    assert placed["y"] - image["y"] == pytest.approx(30 / 96 * image["height"], abs=2)
    assert placed["width"] == pytest.approx(60 / 128 * image["width"], abs=3)
    assert "FEMALE_BREAST_EXPOSED" in page.locator("#case-frames").inner_text()
    assert "Sexual content" in page.locator("#case-reasons").inner_text()

    page.fill("#approve-form textarea[name=reason]", "A coat on a mannequin, nothing explicit.")
    page.click("#approve-form button[type=submit]")  # htmx swaps the decision panel in place
    page.wait_for_selector("#decision-status")
    assert page.locator("#decision-status").inner_text().startswith("Approved")
    assert page.locator("#decision-job-state").inner_text() == "Succeeded"
    body = api.get(f"/api/v1/jobs/{approved_job.pk}/").json()
    assert (body["state"], body["error"]) == ("succeeded", None)
    assert api.get(f"/api/v1/jobs/{approved_job.pk}/download/").status_code == 200

    # On to the next case: reject it with a reason the tenant will read.
    page.click("#next-case")
    page.wait_for_url(f"{live_server.url}/console/cases/**")
    assert str(rejected_job.pk) in page.locator("#case-facts").inner_text()
    page.fill("#reject-form textarea[name=reason]", "Too revealing for a family storefront.")
    page.once("dialog", lambda dialog: dialog.accept())  # "Block this job for good?"
    page.click("#reject-form button[type=submit]")
    page.wait_for_selector("#decision-status")
    assert page.locator("#decision-status").inner_text().startswith("Rejected")
    assert page.locator("#decision-job-state").inner_text() == "Blocked"
    body = api.get(f"/api/v1/jobs/{rejected_job.pk}/").json()
    assert body["state"] == "blocked"
    assert body["error"] == {
        "code": "moderation_rejected",
        "message": "Blocked after moderation review. Moderation: sexual content. "
        "Too revealing for a family storefront.",
    }
    assert api.get(f"/api/v1/jobs/{rejected_job.pk}/download/").status_code == 409

    page.click("#console-nav >> text=Review queue")
    page.wait_for_selector("#queue-empty")
    page.click("#console-nav >> text=Audit log")
    page.wait_for_selector("#audit-table")
    actions = page.locator("#audit-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.action)"
    )
    assert actions[:2] == ["case_rejected", "case_approved"]
    assert list(
        AuditEntry.objects.filter(action__in=["case_approved", "case_rejected"])
        .order_by("id")
        .values_list("action", "actor_username", "job_id")
    ) == [
        ("case_approved", "moderator", approved_job.pk),
        ("case_rejected", "moderator", rejected_job.pk),
    ]
    assert page.js_errors == []


def test_a_chinese_browser_gets_the_console_in_chinese(page_for, live_server, held_jobs):
    page = page_for("zh-CN")
    _sign_in(page, live_server, _operator())
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert "审核队列" in page.locator("#console-nav").inner_text()
    assert "色情内容" in page.locator("#queue-table").inner_text()
    page.locator("#queue-table tbody tr a").first.click()
    page.wait_for_selector("#approve-form")
    assert page.locator("#approve-form button[type=submit]").inner_text() == "批准"
    assert page.js_errors == []

"""The dashboard in a real browser: sign in, write a template in the editor, run it, watch the
job go live on its page, play the video; and a roster whose bad rows are listed row by row."""

from __future__ import annotations

import csv
import io
import re

import pytest

from generation import tasks
from generation.models import Batch, Job, Template
from tests import factories
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

UUID = r"[0-9a-f-]{36}"


@pytest.fixture
def held_jobs(monkeypatch):
    """New jobs wait in the queue until the test lets them run (``release(job_id)``).

    In tests django-q runs tasks inline, so a job would otherwise finish inside the request that
    made it, before its page could show it queued and then live.
    """
    real_enqueue = tasks.enqueue_job
    held: list[str] = []
    monkeypatch.setattr(tasks, "enqueue_job", lambda job_id: held.append(str(job_id)))

    def release(job_id) -> None:
        held.remove(str(job_id))
        real_enqueue(job_id)  # dispatch → generate → finish → moderate, in this thread

    return release


def _play(page) -> float:
    """Wait for the <video>'s metadata, start it muted, and return its duration."""
    return page.evaluate(
        """() => new Promise((resolve, reject) => {
            const video = document.querySelector('video');
            const go = () => { video.muted = true; video.play().then(() => resolve(video.duration), reject); };
            video.addEventListener('error', () => reject(new Error('video error ' + (video.error && video.error.code))));
            if (video.readyState >= 1) go(); else video.addEventListener('loadedmetadata', go, {once: true});
        })"""
    )


def test_sign_in_create_a_template_run_it_watch_it_and_play_the_video(
    page, live_server, tenant, held_jobs
):
    user = factories.make_member(tenant, role="editor")
    login(page, live_server, user.username)
    screenshot(page, "dashboard-overview")

    # --- the editor: fields, one variable added through the row editor, the shots preview ---
    page.click("text=New template")
    page.wait_for_url(f"{live_server.url}/app/templates/new/")
    page.fill("input[name=name]", "Kite day")
    page.select_option("select[name=model]", "preview")
    page.fill("input[name=width]", "128")
    page.fill("input[name=height]", "96")
    page.fill("input[name=fps]", "8")
    page.fill("input[name=duration_s]", "1")
    page.fill("textarea[name=prompt]", "{name} flies a red kite on the beach.")
    page.fill("input[name=title]", "{name}'s kite")
    assert page.locator("textarea[name=variables]").is_hidden()  # the row editor replaces it
    page.click("[data-add-variable]")
    row = page.locator("[data-variable-rows] tr").last
    row.locator("[data-field=name]").fill("name")
    row.locator("[data-field=type]").select_option("text")
    row.locator("[data-field=label]").fill("Pupil")

    page.click("[data-testid=preview-shots]")
    shots = page.locator("[data-testid=shots] tr.shot")
    shots.first.wait_for()
    assert shots.count() == 1
    assert "{name} flies a red kite on the beach." in shots.first.inner_text()
    assert "kite" in page.locator("[data-testid=shots]").inner_text()  # a search tag
    screenshot(page, "dashboard-template-editor")

    page.click("[data-testid=save-template]")
    page.wait_for_url(re.compile(rf"{live_server.url}/app/templates/{UUID}/$"))
    template = Template.objects.get(tenant=tenant)
    version = template.versions.get()
    assert version.variables == [{"name": "name", "type": "text", "label": "Pupil"}]
    assert (version.width, version.height, version.fps, version.duration_s) == (128, 96, 8, 1.0)

    # --- run it: the job page shows it queued, then live, then the video --------------------
    page.fill("input[name=var_name]", "Ada")
    page.click("[data-testid=run-job]")
    page.wait_for_url(re.compile(rf"{live_server.url}/app/jobs/{UUID}/$"))
    job = Job.objects.get()
    status = page.locator("#job-status")
    assert status.get_attribute("data-state") == "queued"
    assert "#1 in line" in status.inner_text()
    assert page.locator("#job-status progress").count() == 1
    page.evaluate("() => { window.stillTheSamePage = true; }")
    screenshot(page, "dashboard-job-queued")

    held_jobs(job.id)  # the worker runs it; the page's poll sees every step

    page.wait_for_selector("#job-status[data-state=succeeded]", timeout=60_000)
    assert page.evaluate("() => window.stillTheSamePage") is True  # updated in place
    assert page.locator("[data-testid=job-state]").inner_text() == "Ready"
    assert _play(page) > 0
    poster = page.locator("video").get_attribute("poster")
    assert poster and "/dl/" in poster
    screenshot(page, "dashboard-job")

    # --- the jobs list and the gallery find it ------------------------------------------------
    page.goto(f"{live_server.url}/app/jobs/")
    assert page.locator(f"tr[data-job='{job.id}'][data-state=succeeded]").count() == 1
    assert page.locator("#jobs-table[hx-trigger]").count() == 0  # nothing left to poll
    page.goto(f"{live_server.url}/app/gallery/?tag=kite")
    cards = page.locator(".video-card")
    assert cards.count() == 1 and "Ada's kite" in cards.first.inner_text()
    page.wait_for_function("() => document.querySelector('.video-card img').naturalWidth > 0")
    screenshot(page, "dashboard-gallery")
    page.goto(f"{live_server.url}/app/gallery/?tag=environment:classroom")
    assert page.locator(".video-card").count() == 0
    assert page.js_errors == []


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def test_a_roster_with_two_bad_rows_lists_both_with_their_reasons(
    page, live_server, tenant, held_jobs
):
    user = factories.make_member(tenant, role="editor")
    template = factories.make_template(tenant, name="Courage story")
    roster = _csv(
        [
            ["name", "virtue", "end_user"],
            ["Ada", "courage", "S-1"],
            ["Grace", "greed", "S-2"],  # row 3: not one of the choices
            ["Alan", "honesty", "S-3"],
            ['=HYPERLINK("http://x")', "courage", "S-4"],  # row 5: a spreadsheet formula
        ]
    )
    login(page, live_server, user.username)

    page.goto(f"{live_server.url}/app/templates/{template.id}/")
    page.set_input_files(
        "#roster-form input[name=file]",
        files=[{"name": "class-3b.csv", "mimeType": "text/csv", "buffer": roster}],
    )
    page.fill("#roster-form input[name=name]", "Class 3B")
    page.click("[data-testid=upload-roster]")
    page.wait_for_url(re.compile(rf"{live_server.url}/app/batches/{UUID}/$"))

    errors = page.locator("[data-testid=row-errors] tbody tr")
    assert errors.count() == 2
    assert errors.nth(0).get_attribute("data-row") == "3"
    assert "Row 3" in errors.nth(0).inner_text()
    assert "Must be one of: courage, honesty." in errors.nth(0).inner_text()
    assert errors.nth(1).get_attribute("data-row") == "5"
    assert "formula" in errors.nth(1).inner_text()
    assert page.locator("[data-testid=rejected-rows]").inner_text() == "2"
    batch = Batch.objects.get()
    assert sorted(Job.objects.filter(batch=batch).values_list("end_user", flat=True)) == [
        "S-1",
        "S-3",
    ]
    page.wait_for_function("() => document.querySelector('canvas[data-chart]').dataset.ready")
    screenshot(page, "dashboard-batch")
    with page.expect_download() as download:
        page.click("text=Download results (CSV)")
    results = download.value.path().read_bytes().decode("utf-8-sig")
    assert results.count("rejected") == 2
    assert page.js_errors == []


def test_a_chinese_browser_gets_the_editor_in_chinese(page_for, live_server, tenant):
    user = factories.make_member(tenant, role="owner")
    template = factories.make_template(tenant)
    page = page_for("zh-CN")
    login(page, live_server, user.username)

    page.goto(f"{live_server.url}/app/templates/{template.id}/")

    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.locator("h2#run-title").inner_text() == "制作视频"
    assert page.locator("[data-variable-rows] tr").count() == 3  # name, virtue, age
    assert page.locator("[data-add-variable]").inner_text() == "添加变量"
    assert (
        page.locator("[data-variable-rows] tr")
        .nth(1)
        .locator("[data-field=type] option:checked")
        .inner_text()
        == "选项"
    )
    assert page.js_errors == []


def test_record_a_consent_with_its_evidence_then_revoke_it_after_confirming(
    page, live_server, tenant
):
    user = factories.make_member(tenant, role="admin")
    login(page, live_server, user.username)

    page.goto(f"{live_server.url}/app/consents/")
    page.click("text=Record a consent")
    page.fill("input[name=subject_name]", "Ada Lovelace")
    page.fill("input[name=subject_ref]", "S-1001")
    page.check("input[name=subject_is_minor]")
    page.fill("input[name=consented_by]", "Anne Lovelace")
    page.select_option("select[name=relationship]", "parent")
    page.set_input_files(
        "input[name=evidence]",
        files=[
            {
                "name": "form.pdf",
                "mimeType": "application/pdf",
                "buffer": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
            }
        ],
    )
    page.click("text=Record consent")
    page.wait_for_url(f"{live_server.url}/app/consents/")
    row = page.locator("table.consents tbody tr").first
    assert "Ada Lovelace" in row.inner_text() and "valid" in row.inner_text()
    screenshot(page, "dashboard-consents")

    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.locator("input[name=reason]").fill("withdrawn by the parent")
    row.locator("button", has_text="Revoke").click()
    page.wait_for_load_state("networkidle")

    assert dialogs and "Ada Lovelace" in dialogs[0]
    row = page.locator("table.consents tbody tr").first
    assert "revoked" in row.inner_text() and "withdrawn by the parent" in row.inner_text()

    page.goto(f"{live_server.url}/app/templates/brand/")
    page.fill("input[name=intro_text]", "Maple School presents")
    page.click("text=Save brand kit")
    page.wait_for_url(f"{live_server.url}/app/templates/brand/")
    assert page.locator("input[name=intro_text]").input_value() == "Maple School presents"
    screenshot(page, "dashboard-brand-kit")
    assert page.js_errors == []

"""The dashboard's work pages (/app/): they render, they follow the roles, they stay inside the
tenant, and they show what the services say — per field, per roster row, in both languages."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generation import tasks
from generation.models import Batch, BrandKit, ConsentRecord, Job, JobState, Template
from generation.services import JobRequest, job_create, job_fail
from tests import factories

pytestmark = pytest.mark.django_db


def _signed_in(client, tenant, role="owner"):
    user = factories.make_member(tenant, role=role)
    client.force_login(user)
    return user


def _png(size=(32, 24), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def _job(tenant, template, **values):
    return job_create(
        tenant=tenant,
        request=JobRequest(template=template, values={"name": "Ada", **values}),
    ).job


def _editor_form(**overrides) -> dict:
    form = {
        "name": "Kite day",
        "kind": "character",
        "model": "preview",
        "width": "128",
        "height": "96",
        "fps": "8",
        "duration_s": "1",
        "prompt": "{name} flies a kite on the beach.",
        "character": "",
        "product": "",
        "negative_prompt": "blurry",
        "title": "{name}'s kite",
        "style": "storybook",
        "extra_output": "",
        "variables": json.dumps([{"name": "name", "type": "text", "label": "Pupil"}]),
    }
    form.update(overrides)
    return form


# --- every page, signed out, other tenants --------------------------------------------------


@pytest.fixture
def world(tenant, template):
    """One of everything a page can show: a job, a batch, a consent record."""
    job = _job(tenant, template)
    batch = Batch.objects.create(
        tenant=tenant,
        kind=Batch.Kind.ROSTER,
        name="Class 3B",
        template=template,
        template_version=template.versions.get(),
        total_rows=2,
        state=Batch.State.RUNNING,
    )
    consent = factories.make_consent(tenant, "Ada Lovelace", subject_ref="S-1")
    return {"job": job, "batch": batch, "consent": consent, "template": template}


def _pages(world) -> list[str]:
    return [
        "/app/",
        "/app/templates/",
        f"/app/templates/{world['template'].id}/",
        "/app/templates/brand/",
        "/app/jobs/",
        f"/app/jobs/{world['job'].id}/",
        "/app/gallery/",
        "/app/batches/",
        f"/app/batches/{world['batch'].id}/",
        "/app/consents/",
    ]


def test_every_page_renders_for_a_viewer(client, tenant, world):
    _signed_in(client, tenant, role="viewer")

    for url in _pages(world):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'class="side-nav"' in body, url  # inside the dashboard frame
        assert "<script>" not in body and " style=" not in body, url  # nothing the CSP blocks


def test_the_new_template_page_renders_for_an_editor(client, tenant):
    _signed_in(client, tenant, role="editor")

    response = client.get("/app/templates/new/")

    assert response.status_code == 200
    assert 'name="variables"' in response.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in(client, tenant, world):
    for url in [*_pages(world), "/app/templates/new/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=/app/"), url


def test_another_tenants_ids_are_404_and_nothing_changes(client, tenant, world, other_tenant):
    _signed_in(client, other_tenant, role="owner")
    jobs_before = Job.objects.count()

    for url in (
        f"/app/templates/{world['template'].id}/",
        f"/app/jobs/{world['job'].id}/",
        f"/app/batches/{world['batch'].id}/",
        f"/app/batches/{world['batch'].id}/results.csv",
    ):
        assert client.get(url).status_code == 404, url
    run = client.post(f"/app/templates/{world['template'].id}/run/", {"var_name": "Eve"})
    cancel = client.post(f"/app/jobs/{world['job'].id}/cancel/")
    revoke = client.post(f"/app/consents/{world['consent'].id}/revoke/")
    archive = client.post(f"/app/templates/{world['template'].id}/archive/")
    edit = client.post(f"/app/templates/{world['template'].id}/", _editor_form(name="Taken"))
    roster = client.post(
        "/app/batches/new/",
        {
            "template": str(world["template"].id),
            "file": SimpleUploadedFile("c.csv", _csv([["name"], ["Eve"]])),
        },
    )

    assert [r.status_code for r in (run, cancel, revoke, archive, edit, roster)] == [404] * 6
    assert Job.objects.count() == jobs_before
    world["job"].refresh_from_db()
    world["consent"].refresh_from_db()
    world["template"].refresh_from_db()
    assert world["job"].state == JobState.QUEUED
    assert world["consent"].revoked_at is None
    assert world["template"].archived_at is None
    assert world["template"].name != "Taken"
    assert Batch.objects.count() == 1


def test_the_tenant_switcher_changes_tenant_only_to_ones_the_user_belongs_to(
    client, tenant, other_tenant
):
    from tenants.services import membership_set

    user = _signed_in(client, tenant)
    stranger = factories.make_tenant(name="Stranger")
    membership_set(tenant=other_tenant, user=user, role="viewer")

    assert client.post(f"/app/tenant/{stranger.id}/").status_code == 404
    assert client.post(f"/app/tenant/{other_tenant.id}/").status_code == 302
    page = client.get("/app/").content.decode()

    assert "<h1>Other Shop</h1>" in page
    assert "tenant-switcher" in page


# --- roles ----------------------------------------------------------------------------------


def test_a_viewer_gets_no_run_form_and_every_write_is_refused(client, tenant, world):
    _signed_in(client, tenant, role="viewer")
    template = world["template"]
    page = client.get(f"/app/templates/{template.id}/").content.decode()
    jobs_before = Job.objects.count()

    responses = [
        client.get("/app/templates/new/"),
        client.post("/app/templates/new/", _editor_form()),
        client.post(f"/app/templates/{template.id}/", _editor_form(name="Changed")),
        client.post(f"/app/templates/{template.id}/run/", {"var_name": "Eve"}),
        client.post(f"/app/templates/{template.id}/archive/"),
        client.post(f"/app/jobs/{world['job'].id}/cancel/"),
        client.post(
            "/app/batches/new/",
            {
                "template": str(template.id),
                "file": SimpleUploadedFile("c.csv", _csv([["name"], ["Eve"]])),
            },
        ),
        client.post(
            "/app/consents/", {"subject_name": "Eve", "consented_by": "Eve", "relationship": "self"}
        ),
        client.post(f"/app/consents/{world['consent'].id}/revoke/"),
        client.post("/app/templates/brand/", {"primary_colour": "#000000"}),
    ]

    assert [r.status_code for r in responses] == [403] * len(responses)
    assert 'id="run-form"' not in page and 'id="roster-form"' not in page
    assert "<fieldset disabled>" in page  # the editor is shown read-only
    assert Job.objects.count() == jobs_before
    assert Template.objects.count() == 1 and template.versions.count() == 1
    assert ConsentRecord.objects.count() == 1 and Batch.objects.count() == 1
    assert not BrandKit.objects.exists()


def test_only_admins_archive_templates_and_edit_the_brand_kit(client, tenant, template):
    _signed_in(client, tenant, role="editor")
    assert client.post(f"/app/templates/{template.id}/archive/").status_code == 403
    assert client.post("/app/templates/brand/", {"intro_text": "Hi"}).status_code == 403

    _signed_in(client, tenant, role="admin")
    response = client.post(f"/app/templates/{template.id}/archive/")

    assert response.status_code == 302
    template.refresh_from_db()
    assert template.archived_at is not None
    link = f'href="/app/templates/{template.id}/"'
    assert link not in client.get("/app/templates/").content.decode()
    assert link in client.get("/app/templates/?archived=1").content.decode()


# --- the template editor ----------------------------------------------------------------------


def test_an_editor_creates_a_template_through_the_editor(client, tenant):
    _signed_in(client, tenant, role="editor")
    form = _editor_form(
        prompt="[shot 0.5s] {name} runs onto the beach.\r\n[shot] {name} flies a red kite.",
        variables=json.dumps(
            [
                {"name": "name", "type": "name", "label": "Pupil", "public": True},
                {"name": "colour", "type": "choice", "choices": ["red", "blue"], "default": "red"},
            ]
        ),
        character_images=SimpleUploadedFile("sheet.png", _png(), content_type="image/png"),
    )

    response = client.post("/app/templates/new/", form)

    template = Template.objects.get(tenant=tenant)
    assert response.status_code == 302
    assert response["Location"] == f"/app/templates/{template.id}/"
    version = template.versions.get()
    assert (version.model, version.width, version.height, version.fps, version.duration_s) == (
        "preview",
        128,
        96,
        8,
        1.0,
    )
    assert (
        version.prompt == "[shot 0.5s] {name} runs onto the beach.\n[shot] {name} flies a red kite."
    )
    assert version.style == {"preset": "storybook"}
    assert [v["name"] for v in version.variables] == ["name", "colour"]
    assert version.variables[0]["public"] is True
    assert [a["role"] for a in version.assets] == ["character"]
    assert version.requires_consent is True  # a name variable and a character image


def test_the_editor_shows_each_invalid_field_and_creates_nothing(client, tenant):
    _signed_in(client, tenant, role="editor")
    form = _editor_form(
        width="129",
        prompt="{nobody} flies a kite.",
        variables=json.dumps([{"name": "Bad Name", "type": "text"}]),
    )

    response = client.post("/app/templates/new/", form)

    body = response.content.decode()
    assert response.status_code == 400
    assert "preview needs a width that is a positive multiple of 2 (got 129)." in body
    assert "Variable 1, name: Use 1-32 lower-case letters" in body
    assert Template.objects.count() == 0
    assert 'value="Kite day"' in body  # what was typed is kept


def test_bad_variables_json_is_reported_on_the_variables_field(client, tenant):
    _signed_in(client, tenant, role="editor")

    response = client.post("/app/templates/new/", _editor_form(variables="[{oops"))

    assert response.status_code == 400
    assert "The variables are not valid JSON" in response.content.decode()
    assert Template.objects.count() == 0


def test_saving_the_editor_unchanged_publishes_no_new_version(client, tenant):
    _signed_in(client, tenant, role="editor")
    template = factories.make_template(tenant, prompt="{name} runs.\n\n{name} smiles.")
    version = template.versions.get()
    form = {
        "name": template.name,
        "model": version.model,
        "width": str(version.width),
        "height": str(version.height),
        "fps": str(version.fps),
        "duration_s": str(version.duration_s),
        "prompt": version.prompt.replace("\n", "\r\n"),  # as a browser sends a textarea
        "negative_prompt": version.negative_prompt,
        "title": version.title,
        "character": "",
        "product": "",
        "style": "",
        "extra_output": "",
        "variables": json.dumps(version.variables),
    }

    unchanged = client.post(f"/app/templates/{template.id}/", form)
    changed = client.post(f"/app/templates/{template.id}/", {**form, "duration_s": "2"})

    assert unchanged.status_code == changed.status_code == 302
    assert list(template.versions.values_list("number", "duration_s")) == [(1, 1.0), (2, 2.0)]


def test_the_shots_preview_compiles_the_form_and_saves_nothing(client, tenant):
    _signed_in(client, tenant, role="editor")
    form = _editor_form(prompt="[shot 0.25s] {name} runs in the classroom.\n[shot] {name} smiles.")

    response = client.post("/app/templates/preview/", form, HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('class="shot"') == 2
    assert "{name} runs in the classroom." in body  # no value yet: the placeholder shows
    assert "<td>0.25</td><td>2</td>" in body  # 0.25 s at 8 fps
    assert "classroom" in body  # a search tag
    assert Template.objects.count() == 0


def test_the_shots_preview_of_a_saved_template_uses_the_edited_form(client, tenant, template):
    _signed_in(client, tenant, role="editor")

    response = client.post(
        f"/app/templates/{template.id}/preview/",
        _editor_form(prompt="{name} swims.\n\n{name} waves."),
    )

    body = response.content.decode()
    assert body.count('class="shot"') == 2 and "{name} swims." in body
    assert template.versions.count() == 1


def test_the_shots_preview_names_what_is_wrong(client, tenant):
    _signed_in(client, tenant, role="editor")

    response = client.post("/app/templates/preview/", _editor_form(prompt="{ghost} waves."))

    assert "Placeholder {ghost} is not a defined variable." in response.content.decode()


# --- running ----------------------------------------------------------------------------------


def test_running_a_template_makes_a_job_and_opens_its_page(client, tenant, template):
    user = _signed_in(client, tenant, role="editor")

    response = client.post(
        f"/app/templates/{template.id}/run/",
        {"version": "1", "var_name": "Ada", "var_virtue": "honesty", "var_age": "9"},
    )

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/app/jobs/{job.id}/"
    assert job.values == {"name": "Ada", "virtue": "honesty", "age": 9}
    assert (job.model, job.created_by) == ("preview", user)
    page = client.get(response["Location"]).content.decode()
    assert "Ada and honesty" in page
    assert 'hx-trigger="every 2s"' in page  # the status polls while the job is queued


def test_the_storyboard_preview_runs_a_model_template_on_the_preview_backend(client, tenant):
    _signed_in(client, tenant, role="editor")
    template = factories.make_template(
        tenant, model="wan2.2-ti2v-5b", width=1280, height=704, fps=24, duration_s=2.0
    )

    client.post(f"/app/templates/{template.id}/run/", {"var_name": "Ada", "action": "storyboard"})

    job = Job.objects.get()
    assert (job.model, job.width, job.height) == ("preview", 1280, 704)
    assert "storyboard" in client.get(f"/app/jobs/{job.id}/").content.decode()


def test_run_errors_are_shown_on_their_fields_and_nothing_is_made(client, tenant, template):
    _signed_in(client, tenant, role="editor")

    response = client.post(f"/app/templates/{template.id}/run/", {"var_name": "", "var_age": "40"})

    body = response.content.decode()
    assert response.status_code == 400
    assert "This variable is required." in body
    assert "Must be at most 18." in body
    assert Job.objects.count() == 0


def test_a_person_template_runs_only_under_a_chosen_consent(client, tenant):
    _signed_in(client, tenant, role="editor")
    template = factories.make_student_template(tenant)
    consent = factories.make_consent(tenant, "Ada Lovelace")

    refused = client.post(f"/app/templates/{template.id}/run/", {"var_name": "Ada Lovelace"})
    made = client.post(
        f"/app/templates/{template.id}/run/",
        {"var_name": "Ada Lovelace", "consent": str(consent.id)},
    )

    assert refused.status_code == 422
    assert "names or shows a real person" in refused.content.decode()
    assert made.status_code == 302
    assert Job.objects.get().consent == consent


def test_an_image_variable_takes_an_uploaded_photo(client, tenant):
    _signed_in(client, tenant, role="editor")
    template = factories.make_template(
        tenant,
        variables=[{"name": "scene", "type": "text"}, {"name": "backdrop", "type": "image"}],
        prompt="A kite over {scene}.",
        title="",
    )
    consent = factories.make_consent(tenant, "Ada Lovelace", subject_ref="S-1")

    response = client.post(
        f"/app/templates/{template.id}/run/",
        {
            "end_user": "S-1",
            "var_scene": "the sea",
            "var_backdrop": SimpleUploadedFile("b.jpg", _png(), content_type="image/jpeg"),
        },
    )

    assert response.status_code == 302
    job = Job.objects.get()
    assert job.values["backdrop"]["image"] == "backdrop" and job.has_photo
    assert (job.end_user, job.consent) == ("S-1", consent)  # the end user's consent


# --- jobs, live status, gallery ---------------------------------------------------------------


def test_the_jobs_list_polls_while_a_job_is_unfinished_and_stops_after(client, tenant, template):
    _signed_in(client, tenant, role="viewer")
    job = _job(tenant, template)

    live = client.get("/app/jobs/", HTTP_HX_REQUEST="true")
    job_fail(job=job, code="worker_lost", message="The worker went away.")
    final = client.get("/app/jobs/", HTTP_HX_REQUEST="true")
    status = client.get(f"/app/jobs/{job.id}/", HTTP_HX_REQUEST="true").content.decode()

    assert live.content.decode().startswith('<div id="jobs-table" hx-get="/app/jobs/"')
    assert "#1 in line" in live.content.decode()  # the queue position
    assert "<!doctype" not in live.content.decode().lower()  # a partial
    assert "hx-trigger" not in final.content.decode()
    assert "worker_lost" in final.content.decode()
    assert "hx-trigger" not in status
    assert "The worker went away." in status


def test_an_editor_cancels_a_queued_job(client, tenant, template):
    _signed_in(client, tenant, role="editor")
    job = _job(tenant, template)

    response = client.post(f"/app/jobs/{job.id}/cancel/", follow=True)

    job.refresh_from_db()
    assert job.state == JobState.CANCELED
    assert "The job was canceled." in response.content.decode()


def test_the_gallery_finds_finished_videos_by_tag_template_and_date(client, tenant, template):
    _signed_in(client, tenant, role="viewer")
    beach = _job(tenant, template)
    other = factories.make_template(tenant, prompt="{name} reads in the classroom.")
    classroom = _job(tenant, other)
    unfinished = _job(tenant, template)
    # the pipeline is tested elsewhere; here only finished jobs with posters matter
    Job.objects.filter(pk__in=[beach.pk, classroom.pk]).update(
        state=JobState.SUCCEEDED, poster_key=f"tenants/{tenant.id}/jobs/x/poster.jpg"
    )

    def search(query: str) -> str:
        return client.get(f"/app/gallery/?{query}").content.decode()

    everything = search("")
    assert str(unfinished.id) not in everything
    assert str(beach.id) in everything and str(classroom.id) in everything
    assert 'src="/dl/' in everything  # posters through signed links on the page's own origin
    by_tag = search("tag=environment:classroom")
    assert str(classroom.id) in by_tag and str(beach.id) not in by_tag
    by_template = search(f"template={template.id}")
    assert str(beach.id) in by_template and str(classroom.id) not in by_template
    future = search("date_from=2999-01-01")
    assert str(beach.id) not in future and "No finished videos match." in future
    bad = search("date_to=yesterday")
    assert "Use a date like 2026-03-01." in bad


# --- batches ----------------------------------------------------------------------------------


def test_a_roster_with_bad_rows_shows_each_row_number_and_reason(client, tenant, template):
    _signed_in(client, tenant, role="editor")
    rows = [
        ["name", "virtue"],
        ["Ada", "courage"],
        ["=cmd|' /C calc'!A0", "courage"],  # row 3: a formula
        ["Grace", "greed"],  # row 4: not a choice
        ["Alan", "honesty"],
    ]

    response = client.post(
        "/app/batches/new/",
        {
            "template": str(template.id),
            "name": "Class 3B",
            "file": SimpleUploadedFile("class.csv", _csv(rows), content_type="text/csv"),
        },
    )
    batch = Batch.objects.get()
    tasks.batch_chunk(str(batch.id))  # what the CPU cluster does after the upload commits
    page = client.get(response["Location"]).content.decode()

    assert response["Location"] == f"/app/batches/{batch.id}/"
    assert Job.objects.filter(batch=batch).count() == 2
    assert "2 rows were refused" in page
    assert '<tr data-row="3"><td>Row 3</td>' in page and '<tr data-row="4"><td>Row 4</td>' in page
    assert "formula" in page
    assert "Must be one of: courage, honesty." in page
    results = client.get(f"/app/batches/{batch.id}/results.csv")
    assert results["Content-Type"] == "text/csv; charset=utf-8"
    assert results.content.decode("utf-8-sig").count("rejected") == 2


def test_a_roster_the_service_refuses_is_reported_on_the_upload_form(client, tenant, template):
    _signed_in(client, tenant, role="editor")

    response = client.post(
        "/app/batches/new/",
        {
            "template": str(template.id),
            "file": SimpleUploadedFile("class.csv", _csv([["nickname"], ["Ada"]])),
        },
    )

    assert response.status_code == 400
    assert 'id="roster-form"' in response.content.decode()
    assert "name" in response.content.decode()  # the missing column is named
    assert Batch.objects.count() == 0


def test_the_batch_page_polls_until_the_batch_completes(client, tenant, world):
    _signed_in(client, tenant, role="viewer")
    batch = world["batch"]

    live = client.get(f"/app/batches/{batch.id}/", HTTP_HX_REQUEST="true").content.decode()
    Batch.objects.filter(pk=batch.pk).update(state=Batch.State.COMPLETED)
    done = client.get(f"/app/batches/{batch.id}/", HTTP_HX_REQUEST="true").content.decode()

    assert live.startswith('<div id="batch-live"') and 'hx-trigger="every 2s"' in live
    assert "hx-trigger" not in done


# --- consent and brand kit --------------------------------------------------------------------


def test_an_editor_records_a_consent_with_its_evidence_and_revokes_it(client, tenant):
    _signed_in(client, tenant, role="editor")
    evidence = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

    created = client.post(
        "/app/consents/",
        {
            "subject_name": "Ada Lovelace",
            "subject_ref": "S-1001",
            "subject_is_minor": "on",
            "consented_by": "Anne Lovelace",
            "relationship": "parent",
            "expires_on": "2099-12-31",
            "evidence": SimpleUploadedFile("form.pdf", evidence, content_type="application/pdf"),
        },
    )
    record = ConsentRecord.objects.get()
    revoked = client.post(f"/app/consents/{record.id}/revoke/", {"reason": "withdrawn"})

    assert created.status_code == revoked.status_code == 302
    record.refresh_from_db()
    assert (record.subject_ref, record.subject_is_minor, record.relationship) == (
        "S-1001",
        True,
        "parent",
    )
    assert record.evidence_sha256 == hashlib.sha256(evidence).hexdigest()
    assert record.expires_at.isoformat() == "2100-01-01T00:00:00+00:00"
    assert (record.revoked_reason, record.revoked_at is not None) == ("withdrawn", True)


def test_a_minors_consent_from_themself_is_refused_on_its_field(client, tenant):
    _signed_in(client, tenant, role="editor")

    response = client.post(
        "/app/consents/",
        {
            "subject_name": "Ada",
            "subject_is_minor": "on",
            "consented_by": "Ada",
            "relationship": "self",
        },
    )

    assert response.status_code == 400
    assert (
        "A minor&#x27;s consent must come from a parent or guardian." in response.content.decode()
    )
    assert ConsentRecord.objects.count() == 0


def test_an_admin_sets_the_brand_kit_with_a_logo(client, tenant):
    _signed_in(client, tenant, role="admin")

    response = client.post(
        "/app/templates/brand/",
        {
            "logo": SimpleUploadedFile("logo.png", _png((40, 20)), content_type="image/png"),
            "logo_corner": "bottom-left",
            "logo_size": "0.1",
            "primary_colour": "#112233",
            "secondary_colour": "#445566",
            "intro_text": "Maple School presents",
            "intro_seconds": "1.5",
            "outro_text": "",
            "outro_seconds": "0",
            "label_locale": "zh-Hans",
        },
    )
    bad = client.post("/app/templates/brand/", {"primary_colour": "red", "logo_size": "0.9"})

    kit = BrandKit.objects.get(tenant=tenant)
    assert response.status_code == 302
    assert (kit.logo_corner, kit.primary_colour, kit.intro_seconds, kit.label_locale) == (
        "bottom-left",
        "#112233",
        1.5,
        "zh-Hans",
    )
    assert kit.logo_key.endswith("logo.png")
    assert bad.status_code == 400
    assert kit.primary_colour == BrandKit.objects.get(tenant=tenant).primary_colour


# --- languages ------------------------------------------------------------------------------


def test_a_chinese_browser_gets_the_dashboard_in_chinese(client, tenant, world):
    _signed_in(client, tenant, role="owner")

    overview = client.get("/app/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    editor = client.get(
        f"/app/templates/{world['template'].id}/", HTTP_ACCEPT_LANGUAGE="zh-CN"
    ).content.decode()
    english = client.get("/app/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    client.logout()
    login = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    assert '<html lang="zh-hans"' in overview
    assert "最近的任务" in overview and "模板" in overview and "退出登录" in overview
    assert "制作视频" in editor and "添加变量" in editor
    assert "Recent jobs" in english and "最近的任务" not in english
    assert "登录" in login and "用户名" in login

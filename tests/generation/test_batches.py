"""Rosters (CSV/XLSX → one job per valid row, in chunks) and A/B variant groups."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from openpyxl import Workbook

from generation import tasks
from generation.batches import batch_process_chunk
from generation.models import Batch, Job, JobState
from tenants.models import WebhookEvent
from tenants.webhooks import webhook_endpoint_create
from tests import factories

pytestmark = pytest.mark.django_db


def _csv(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def _upload(api, template, data: bytes, filename: str = "class.csv", **extra):
    upload = io.BytesIO(data)
    upload.name = filename
    return api.post(
        "/api/v1/batches/",
        {"template": str(template.id), "file": upload, **extra},
        format="multipart",
    )


def _class_list(n: int) -> list[list[str]]:
    return [["name", "virtue"]] + [
        [f"Pupil {chr(65 + i // 26)}{chr(65 + i % 26)}", "courage"] for i in range(n)
    ]


def test_a_40_row_roster_with_3_bad_rows_makes_37_jobs_and_reports_3_rows(
    api, tenant, template, settings
):
    settings.REELCAST_BATCH_CHUNK_ROWS = 16  # three chunks, each its own task
    rows = _class_list(40)
    rows[5] = ["=cmd|' /C calc'!A0", "courage"]  # row 6: formula injection
    rows[12] = ["Pupil XX", "greed"]  # row 13: not one of the choices
    rows[30] = list(rows[2])  # row 31: the same pupil as row 3

    response = _upload(api, template, _csv(rows))
    assert response.status_code == 202, response.json()
    batch_id = response.json()["id"]
    assert (response.json()["state"], response.json()["total_rows"]) == ("creating", 40)
    assert Job.objects.count() == 0  # the request only checks and counts

    tasks.batch_chunk(batch_id)  # chunk 1 queues chunk 2, which queues chunk 3 (sync cluster)

    batch = Batch.objects.get(pk=batch_id)
    assert Job.objects.filter(batch=batch).count() == 37
    assert (batch.state, batch.processed_rows, batch.accepted_rows) == ("running", 40, 37)
    reported = {e["row"]: e["reasons"] for e in batch.errors}
    assert sorted(reported) == [6, 13, 31]
    assert "formula" in reported[6]["cells"]
    assert "courage, honesty" in reported[13]["values.virtue"]
    assert reported[31] == {"row": "Duplicate of row 3; it is not run twice."}
    jobs = Job.objects.filter(batch=batch)
    assert set(jobs.values_list("priority", flat=True)) == {0}  # bulk class
    assert jobs.get(batch_row=2).values["name"] == "Pupil AA"
    body = api.get(f"/api/v1/batches/{batch_id}/").json()
    assert body["summary"]["rejected_rows"] == 3
    assert body["summary"]["jobs"]["total"] == 37


def test_a_rerun_chunk_creates_no_job_twice(api, template, settings):
    settings.REELCAST_BATCH_CHUNK_ROWS = 10
    batch_id = _upload(api, template, _csv(_class_list(12))).json()["id"]
    assert batch_process_chunk(batch_id=batch_id) is True
    Batch.objects.filter(pk=batch_id).update(processed_rows=0)  # as if the worker died

    batch_process_chunk(batch_id=batch_id)
    batch_process_chunk(batch_id=batch_id)

    batch = Batch.objects.get(pk=batch_id)
    assert Job.objects.filter(batch=batch).count() == 12
    assert (batch.accepted_rows, batch.errors) == (12, [])


def test_a_gbk_roster_of_chinese_names_is_read_exactly(api, template):
    rows = [["name", "virtue"], ["王小明", "honesty"], ["李雷", "courage"]]
    response = _upload(api, template, _csv(rows, "gbk"))
    assert response.status_code == 202, response.json()
    assert response.json()["source_encoding"] in ("gb18030", "gbk")
    tasks.batch_chunk(response.json()["id"])
    assert sorted(Job.objects.values_list("values__name", flat=True)) == sorted(["王小明", "李雷"])


def test_an_xlsx_roster_matches_columns_by_label(api, tenant):
    template = factories.make_template(
        tenant,
        variables=[
            {"name": "name", "type": "text", "label": "学生姓名"},
            {"name": "virtue", "type": "choice", "choices": ["courage", "honesty"]},
        ],
    )
    book = Workbook()
    sheet = book.active
    sheet.append(["学生姓名", "Virtue", "end_user"])
    sheet.append(["韩梅梅", "courage", "S-1"])
    sheet.append(["Zoë", "honesty", 1002])
    out = io.BytesIO()
    book.save(out)

    response = _upload(api, template, out.getvalue(), "class.xlsx")
    assert response.status_code == 202, response.json()
    tasks.batch_chunk(response.json()["id"])

    jobs = Job.objects.order_by("batch_row")
    assert [(j.values["name"], j.end_user) for j in jobs] == [("韩梅梅", "S-1"), ("Zoë", "1002")]


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (_csv([["student", "virtue"], ["A", "courage"]]), "a.csv", "roster_header"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "a.csv", "roster_format"),
        (b"name,virtue\nA\0,courage\n", "a.csv", "roster_nul"),
        (b"name,virtue\n", "a.csv", "roster_empty"),
    ],
)
def test_a_bad_roster_file_is_400_with_a_reason_and_creates_nothing(
    api, template, data, filename, code
):
    response = _upload(api, template, data, filename)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert Batch.objects.count() == 0


def test_a_10000_row_roster_is_accepted_within_the_request_and_made_in_chunks(
    api, template, settings
):
    settings.REELCAST_BATCH_CHUNK_ROWS = 250
    rows = [["name", "virtue"]] + [[f"Pupil {i}", "courage"] for i in range(10_000)]

    response = _upload(api, template, _csv(rows))

    assert response.status_code == 202, response.json()
    assert response.json()["total_rows"] == 10_000
    assert Job.objects.count() == 0  # no job is made inside the request
    assert batch_process_chunk(batch_id=response.json()["id"]) is True
    batch = Batch.objects.get(pk=response.json()["id"])
    assert (batch.processed_rows, Job.objects.count()) == (250, 250)


def test_too_many_rows_is_400(api, template, settings):
    settings.REELCAST_ROSTER_MAX_ROWS = 5
    response = _upload(api, template, _csv(_class_list(6)))
    assert response.status_code == 400
    assert response.json()["code"] == "roster_too_many_rows"


def test_a_roster_for_a_consent_template_uses_each_pupils_recorded_consent(api, tenant):
    template = factories.make_student_template(tenant)
    factories.make_consent(tenant, "Li Wei", subject_ref="S-1")
    rows = [["name", "end_user"], ["Li Wei", "S-1"], ["Wang Fang", "S-2"]]
    batch_id = _upload(api, template, _csv(rows)).json()["id"]

    tasks.batch_chunk(batch_id)

    batch = Batch.objects.get(pk=batch_id)
    assert list(Job.objects.filter(batch=batch).values_list("values__name", flat=True)) == [
        "Li Wei"
    ]
    assert batch.errors[0]["row"] == 3
    assert "consent" in next(iter(batch.errors[0]["reasons"].values()))


def test_a_finished_batch_completes_once_with_a_webhook_and_a_results_csv(
    api, tenant, template, run_on_commit, settings
):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True
    webhook_endpoint_create(
        tenant=tenant, url="http://127.0.0.1:9/hooks", event_types=["batch.completed"]
    )
    rows = [["name", "virtue"], ["Ada", "courage"], ["=1+1", "courage"], ["Grace", "honesty"]]

    response = run_on_commit(_upload, api, template, _csv(rows))

    batch = Batch.objects.get(pk=response.json()["id"])
    assert batch.state == "completed"
    assert set(Job.objects.filter(batch=batch).values_list("state", flat=True)) == {
        JobState.SUCCEEDED
    }
    [event] = WebhookEvent.objects.filter(tenant=tenant, type="batch.completed")
    assert event.payload["data"]["jobs"]["by_state"] == {"succeeded": 2}
    assert event.payload["data"]["rejected_rows"] == 1
    results = api.get(f"/api/v1/batches/{batch.id}/results/")
    assert results.status_code == 200
    assert results.content.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with a BOM
    lines = list(csv.DictReader(io.StringIO(results.content.decode("utf-8-sig"))))
    assert [(line["row"], line["name"], line["state"]) for line in lines] == [
        ("2", "Ada", "succeeded"),
        ("3", "'=1+1", "rejected"),
        ("4", "Grace", "succeeded"),
    ]
    assert all(line["video_url"].startswith("http") for line in (lines[0], lines[2]))
    assert "formula" in lines[1]["error"]
    assert api.get(lines[0]["video_url"]).status_code == 200


def test_refused_rows_carry_their_submitted_values_escaped_in_the_results_csv(
    api, template, run_on_commit
):
    rows = [
        ["name", "virtue", "age", "end_user"],
        ["Ada", "courage", "9", "S-1"],
        ['=HYPERLINK("http://evil.example","open")', "courage", "9", "S-2"],
        ["+1+1", "honesty", "", "S-3"],
        ["-2+3", "courage", "10", "S-4"],
        ["@SUM(A1)", "courage", "11", "S-5"],
        ["Grace", "greed", "-3", "=cmd|' /C calc'!A0"],
        ["Li Wei", "greed", "-3", "S-7"],
    ]
    batch_id = run_on_commit(_upload, api, template, _csv(rows)).json()["id"]

    results = api.get(f"/api/v1/batches/{batch_id}/results/")

    assert results.status_code == 200
    lines = list(csv.reader(io.StringIO(results.content.decode("utf-8-sig"))))
    assert lines[0] == [
        "row",
        "variant",
        "end_user",
        "name",
        "virtue",
        "age",
        "job_id",
        "state",
        "video_url",
        "expires_at",
        "error",
    ]
    shown = [(line[0], line[2], line[3], line[4], line[5], line[7]) for line in lines[1:]]
    assert shown == [
        ("2", "S-1", "Ada", "courage", "9", "succeeded"),
        ("3", "S-2", '\'=HYPERLINK("http://evil.example","open")', "courage", "9", "rejected"),
        ("4", "S-3", "'+1+1", "honesty", "", "rejected"),
        ("5", "S-4", "'-2+3", "courage", "10", "rejected"),
        ("6", "S-5", "'@SUM(A1)", "courage", "11", "rejected"),
        ("7", "'=cmd|' /C calc'!A0", "Grace", "greed", "-3", "rejected"),
        ("8", "S-7", "Li Wei", "greed", "-3", "rejected"),
    ]
    errors = {line[0]: line[10] for line in lines[1:]}
    assert errors["2"] == ""
    assert all("formula" in errors[row] for row in ("3", "4", "5", "6", "7"))
    assert "courage, honesty" in errors["8"] and "values.age" in errors["8"]
    assert all(line[6] == "" and line[8] == "" for line in lines[3:])  # no job, no link


def test_the_results_csv_answers_a_client_that_asks_for_csv(api, template, run_on_commit):
    rows = [["name", "virtue"], ["Ada", "courage"]]
    batch_id = run_on_commit(_upload, api, template, _csv(rows)).json()["id"]

    results = api.get(f"/api/v1/batches/{batch_id}/results/", HTTP_ACCEPT="text/csv")
    missing = api.get(f"/api/v1/batches/{uuid.uuid4()}/results/", HTTP_ACCEPT="text/csv")

    assert (results.status_code, results["Content-Type"]) == (200, "text/csv; charset=utf-8")
    assert results.content.decode("utf-8-sig").splitlines()[1].startswith("2,,,Ada,courage,")
    assert (missing.status_code, missing["Content-Type"]) == (404, "application/problem+json")
    assert missing.json()["code"] == "not_found"


def test_variants_make_one_job_each_with_the_same_seed_for_comparison(api, tenant, template):
    response = api.post(
        "/api/v1/batches/variants/",
        {
            "template": template.slug,
            "values": {"name": "Ada"},
            "seed": 1234,
            "variants": [
                {"label": "film", "style": {"preset": "cinematic"}},
                {"label": "book", "style": {"preset": "storybook"}},
                {"label": "own", "prompt": "{name} plants a tree with {virtue}."},
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    jobs = list(Job.objects.filter(batch_id=response.json()["id"]).order_by("batch_row"))
    assert [j.variant_label for j in jobs] == ["film", "book", "own"]
    assert {j.seed for j in jobs} == {1234}
    prompts = [j.shots[0]["prompt"] for j in jobs]
    assert len(set(prompts)) == 3
    assert "plants a tree" in prompts[2]
    assert jobs[0].style["name"] == "cinematic"
    listed = api.get("/api/v1/jobs/", {"batch": response.json()["id"]}).json()["results"]
    assert {j["variant_label"] for j in listed} == {"film", "book", "own"}


def test_one_bad_variant_creates_no_job_at_all(api, template):
    response = api.post(
        "/api/v1/batches/variants/",
        {
            "template": str(template.id),
            "values": {"name": "Ada"},
            "variants": [{"style": {"preset": "cinematic"}}, {"style": {"preset": "nope"}}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["variants.1.style.preset"]
    assert (Job.objects.count(), Batch.objects.count()) == (0, 0)


def test_another_tenants_batch_is_404(api, other_tenant, other_api, template):
    theirs = factories.make_template(other_tenant)
    batch_id = _upload(other_api, theirs, _csv(_class_list(2))).json()["id"]
    assert api.get(f"/api/v1/batches/{batch_id}/").status_code == 404
    assert api.get(f"/api/v1/batches/{batch_id}/results/").status_code == 404
    assert _upload(api, theirs, _csv(_class_list(2))).status_code == 400  # no such template

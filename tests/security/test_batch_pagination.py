"""A roster may refuse all of its 10,000 rows; no single response carries every refusal.

The batch detail used to return its whole ``errors`` list (and the batch list every batch's),
so one hostile roster made every later poll of it a multi-megabyte answer. Refused rows are now
a page at a time, with a ``next`` link, in the API and on the dashboard's batch page.
"""

from __future__ import annotations

import csv
import io

import pytest

from generation import tasks
from generation.models import Batch
from tests import factories

pytestmark = pytest.mark.django_db

ROW_ERRORS_PAGE_SIZE = 100  # as the README documents them
ROW_ERRORS_MAX_PAGE_SIZE = 500
REFUSED = 230  # two full pages and a part


def _roster(refused: int, accepted: int = 2) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "virtue"])
    for i in range(accepted):
        writer.writerow([f"Pupil {i}", "courage"])
    for i in range(refused):
        writer.writerow([f"Refused {i}", "greed"])  # not one of the choices
    return out.getvalue().encode()


def _batch(api, template, refused: int = REFUSED) -> str:
    upload = io.BytesIO(_roster(refused))
    upload.name = "class.csv"
    response = api.post(
        "/api/v1/batches/", {"template": str(template.id), "file": upload}, format="multipart"
    )
    assert response.status_code == 202, response.json()
    tasks.batch_chunk(response.json()["id"])
    return response.json()["id"]


def test_the_batch_detail_has_one_page_of_refused_rows_and_next_links_give_the_rest(api, template):
    batch_id = _batch(api, template)
    expected_rows = list(range(4, 4 + REFUSED))  # header is row 1, two accepted rows follow

    detail = api.get(f"/api/v1/batches/{batch_id}/").json()

    assert detail["errors_count"] == REFUSED
    assert [e["row"] for e in detail["errors"]] == expected_rows[:ROW_ERRORS_PAGE_SIZE]
    assert detail["errors"][0]["reasons"] == {"values.virtue": "Must be one of: courage, honesty."}
    assert detail["errors_next"] == (
        f"http://testserver/api/v1/batches/{batch_id}/errors/"
        f"?after={expected_rows[ROW_ERRORS_PAGE_SIZE - 1]}&limit={ROW_ERRORS_PAGE_SIZE}"
    )
    seen = [e["row"] for e in detail["errors"]]
    url, pages = detail["errors_next"], []
    while url is not None:
        page = api.get(url).json()
        assert page["count"] == REFUSED
        pages.append(len(page["results"]))
        seen += [e["row"] for e in page["results"]]
        url = page["next"]
    assert pages == [ROW_ERRORS_PAGE_SIZE, REFUSED - 2 * ROW_ERRORS_PAGE_SIZE]
    assert seen == expected_rows
    listed = api.get("/api/v1/batches/").json()["results"]
    assert [(b["errors_count"], len(b["errors"])) for b in listed] == [
        (REFUSED, ROW_ERRORS_PAGE_SIZE)
    ]


def test_a_batch_with_few_refused_rows_has_no_next_link(api, template):
    batch_id = _batch(api, template, refused=3)

    detail = api.get(f"/api/v1/batches/{batch_id}/").json()

    assert ([e["row"] for e in detail["errors"]], detail["errors_next"]) == ([4, 5, 6], None)
    page = api.get(f"/api/v1/batches/{batch_id}/errors/?after=4&limit=1").json()
    assert (page["count"], [e["row"] for e in page["results"]]) == (3, [5])
    assert page["next"] == f"http://testserver/api/v1/batches/{batch_id}/errors/?after=5&limit=1"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"limit={ROW_ERRORS_MAX_PAGE_SIZE + 1}", "limit"),
        ("limit=0", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
    ],
)
def test_a_page_larger_than_the_maximum_or_a_bad_cursor_is_400(api, template, query, field):
    batch_id = _batch(api, template, refused=3)

    response = api.get(f"/api/v1/batches/{batch_id}/errors/?{query}")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_another_tenants_refused_rows_are_404(api, other_tenant, other_api):
    theirs = factories.make_template(other_tenant)
    batch_id = _batch(other_api, theirs, refused=3)

    assert api.get(f"/api/v1/batches/{batch_id}/errors/").status_code == 404
    assert other_api.get(f"/api/v1/batches/{batch_id}/errors/").status_code == 200


def test_the_dashboard_batch_page_shows_refused_rows_a_page_at_a_time(
    api, client, tenant, template
):
    batch_id = _batch(api, template)
    client.force_login(factories.make_member(tenant, role="viewer"))

    first = client.get(f"/app/batches/{batch_id}/").content.decode()
    last = client.get(f"/app/batches/{batch_id}/?errors_page=3").content.decode()

    assert f"{REFUSED} rows were refused" in first
    assert first.count("<tr data-row=") == ROW_ERRORS_PAGE_SIZE
    assert '<tr data-row="4">' in first and '<tr data-row="104">' not in first
    assert 'href="?errors_page=2"' in first
    assert last.count("<tr data-row=") == REFUSED - 2 * ROW_ERRORS_PAGE_SIZE
    assert '<tr data-row="233">' in last and 'href="?errors_page=2"' in last
    assert len(Batch.objects.get(pk=batch_id).errors) == REFUSED  # paged, never dropped

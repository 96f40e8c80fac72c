"""A tenant's variable ``pattern`` is hostile input: it must not let one value freeze a process.

Python's ``re`` backtracks: ``(a+)+$`` against a run of a's that ends in "!" takes time that
doubles with each character (26 characters took 2.4 s). Patterns are compiled and matched with
RE2 instead, which is linear in the value; what RE2 cannot compile is refused when the template
is saved, with the variable and the reason named.

Our own fixed patterns also meet hostile text: the access log's secret redaction reads every
request line, and the personal-data check reads every prompt. Two of them were quadratic on a
long run without a match (8 s of CPU for an 8,000-character query string in the log filter).
"""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from config.logging import REDACTED
from generation import tasks
from generation.models import Batch, Job, Template, TemplateVersion
from tests import factories

pytestmark = pytest.mark.django_db

HOSTILE_PATTERN = "(a+)+$"
# Within the variable's length limit; backtracking would take about 2**1999 steps on it.
HOSTILE_VALUE = "a" * 1999 + "!"
LIVENESS_BOUND_S = 5.0


class Hung(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in a view swallows it."""


@contextmanager
def does_not_hang(what: str) -> Iterator[None]:
    """Fail, with ``what`` named, if the block is still running after LIVENESS_BOUND_S.

    Python's regular expression engine checks for signals while it backtracks, so the alarm
    interrupts a runaway match. The bound is generous: the block does milliseconds of work.
    """

    def hung(signum, frame):
        raise Hung(
            f"{what} did not finish within {LIVENESS_BOUND_S:g} s: a regular expression is "
            "backtracking over hostile input"
        )

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, LIVENESS_BOUND_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _template_body(pattern: str) -> dict:
    return {
        "name": "Badge",
        "kind": "character",
        "variables": [
            {"name": "name", "type": "text", "max_length": 32},
            {"name": "code", "type": "text", "max_length": 2000, "pattern": pattern},
        ],
        "prompt": "{name} holds a badge that reads {code}.",
        "title": "{name}",
        "model": "preview",
        "width": 128,
        "height": 96,
        "fps": 8,
        "duration_s": 1,
    }


@pytest.fixture
def hostile_template(api) -> dict:
    response = api.post("/api/v1/templates/", _template_body(HOSTILE_PATTERN), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_nested_quantifier_pattern_is_saved_and_a_hostile_preview_does_not_hang(
    api, hostile_template
):
    with does_not_hang("POST /api/v1/templates/{id}/preview/"):
        response = api.post(
            f"/api/v1/templates/{hostile_template['id']}/preview/",
            {"values": {"name": "Ann", "code": HOSTILE_VALUE}},
            format="json",
        )

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "values.code", "message": "Does not match the allowed pattern for this variable."}
    ]
    matching = api.post(
        f"/api/v1/templates/{hostile_template['id']}/preview/",
        {"values": {"name": "Ann", "code": "a" * 1999}},
        format="json",
    )
    assert matching.status_code == 200, matching.json()


def test_a_hostile_job_value_does_not_hang_and_creates_nothing(api, hostile_template):
    with does_not_hang("POST /api/v1/jobs/"):
        response = api.post(
            "/api/v1/jobs/",
            {"template": hostile_template["id"], "values": {"name": "Ann", "code": HOSTILE_VALUE}},
            format="json",
        )

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["values.code"]
    assert Job.objects.count() == 0


def test_a_hostile_roster_row_does_not_hang_and_is_reported(api, hostile_template):
    upload = io.BytesIO(f"name,code\r\nAnn,{HOSTILE_VALUE}\r\nBen,aaa\r\n".encode())
    upload.name = "class.csv"
    response = api.post(
        "/api/v1/batches/",
        {"template": hostile_template["id"], "file": upload},
        format="multipart",
    )
    assert response.status_code == 202, response.json()

    with does_not_hang("the roster's rows becoming jobs"):
        tasks.batch_chunk(response.json()["id"])

    batch = Batch.objects.get(pk=response.json()["id"])
    assert batch.errors == [
        {
            "row": 2,
            "reasons": {"values.code": "Does not match the allowed pattern for this variable."},
        }
    ]
    assert list(Job.objects.values_list("values__name", flat=True)) == ["Ben"]


def test_patterns_match_in_re2_syntax_with_unicode_classes(api):
    body = _template_body(r"\p{Han}{2,4}|[A-Z]{2}-[0-9]{4}")
    template_id = api.post("/api/v1/templates/", body, format="json").json()["id"]

    def preview(code: str) -> int:
        return api.post(
            f"/api/v1/templates/{template_id}/preview/",
            {"values": {"name": "Ann", "code": code}},
            format="json",
        ).status_code

    assert [preview(code) for code in ("小明", "AB-1234", "ab-1234", "小", "AB-123")] == [
        200,
        200,
        400,
        400,
        400,
    ]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences such as \\1 are not supported"),
        (r"(?=a)a+", "lookahead (?=…) is not supported"),
        (r"(?<!x)a", "negative lookbehind (?<!…) is not supported"),
        (r"(?P<w>\w)(?P=w)", "named backreferences such as (?P=name) are not supported"),
        ("a" * 257, "the pattern is 257 characters long; the limit is 256"),
        ("\ud800+", "the pattern contains an invalid character (a lone surrogate)"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_at_save_with_the_variable_and_reason(
    api, pattern, reason
):
    # Sent as ASCII JSON, so that a lone surrogate arrives as the escape "\ud800".
    body = json.dumps(_template_body(pattern))
    response = api.post("/api/v1/templates/", body, content_type="application/json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["variables.1.pattern"]
    assert errors[0]["message"].startswith(f"Variable 'code': {reason}")
    assert Template.objects.count() == 0


def test_editing_a_template_to_a_backreference_pattern_is_refused_and_keeps_the_version(
    api, hostile_template
):
    body = _template_body(r"(\w+) \1")
    response = api.patch(
        f"/api/v1/templates/{hostile_template['id']}/",
        {"variables": body["variables"]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(
        "Variable 'code': backreferences such as \\1 are not supported"
    )
    assert TemplateVersion.objects.filter(template_id=hostile_template["id"]).count() == 1


def test_the_dashboard_editor_refuses_a_backreference_pattern_with_the_reason(client, tenant):
    client.force_login(factories.make_member(tenant, role="editor"))
    body = _template_body(r"(a)\1")
    form = {
        **{k: str(v) for k, v in body.items() if k not in ("variables", "name")},
        "name": "Badge",
        "style": "",
        "extra_output": "",
        "character": "",
        "product": "",
        "negative_prompt": "",
        "variables": json.dumps(body["variables"]),
    }

    response = client.post("/app/templates/new/", form)

    assert response.status_code == 400
    page = response.content.decode()
    assert "Variable 2, pattern: Variable &#x27;code&#x27;: backreferences such as \\1" in page
    assert Template.objects.count() == 0


def test_a_pattern_saved_before_re2_is_refused_at_use_not_backtracked(api, tenant):
    template = factories.make_template(
        tenant,
        variables=[{"name": "name", "type": "text", "max_length": 2000}],
        prompt="{name} waves.",
        title="{name}",
    )
    # As a version saved under the old check, which let Python's re compile anything.
    TemplateVersion.objects.filter(template=template).update(
        variables=[{"name": "name", "type": "text", "max_length": 2000, "pattern": r"(a+)+\1$"}]
    )

    with does_not_hang("POST /api/v1/jobs/ with a pre-RE2 pattern"):
        response = api.post(
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": HOSTILE_VALUE}},
            format="json",
        )

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "values.name",
            "message": "This variable's pattern can no longer be used (backreferences such as "
            "\\1 are not supported. Patterns use RE2 syntax, which always matches in linear "
            "time.); an editor must change it in the template.",
        }
    ]
    assert Job.objects.count() == 0


def test_a_long_hostile_query_string_does_not_hang_the_access_log(client, settings):
    settings.REELCAST_ACCESS_LOG = True
    [handler] = [h for h in logging.getLogger().handlers if h.name == "console"]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    query = "a-" * 20_000  # every "a" starts a word: the old redaction rescanned the run from each
    try:
        with does_not_hang("the access log line of GET /api/v1/templates/?q=a-a-…"):
            response = client.get(f"/api/v1/templates/?password=hunter2&q={query}")
    finally:
        handler.setStream(previous)

    assert response.status_code == 401
    [line] = [line for line in buffer.getvalue().splitlines() if "/api/v1/templates/?" in line]
    assert f"GET /api/v1/templates/?password={REDACTED}&q=a-a-a-" in line
    assert "hunter2" not in line


def test_a_long_run_in_a_prompt_does_not_hang_the_personal_data_check():
    from moderation.text import scan_text

    text = "-" * 40_000 + " write to ana.lima@example.com"

    with does_not_hang("the personal-data check of a 40,000-character prompt"):
        matches = scan_text(text, field="prompt")

    assert [(m.rule, m.excerpt) for m in matches] == [
        ("pattern/personal_data: email", "ana.lima@example.com")
    ]

"""An operator, created the documented way (``manage.py createoperator`` with the password in
REELCAST_OPERATOR_PASSWORD), signs in through the login form and finds a school's held job in
the moderation console's review queue."""

from __future__ import annotations

import secrets

from tests.acceptance.harness import run_command


def test_an_operator_sees_a_held_job_in_the_review_queue(platform_server, school):
    p = platform_server
    api = p.school_api()
    # A phone number in a school's video is personal data: held for a person to look at.
    held = api.post(
        f"{p.url}/api/v1/jobs/",
        json={
            "template": "courage-story",
            "values": {"name": "Li Wei", "place": "the playground, call me at 13800138000"},
            "end_user": "S-1003",
        },
        timeout=60,
    )
    assert held.status_code == 201, held.text
    assert held.json()["state"] == "in_review"

    password = secrets.token_urlsafe(16)
    run_command(
        ["manage.py", "createoperator", "olivia", "--email", "olivia@example.com", "--no-input"],
        env={**p.env, "REELCAST_OPERATOR_PASSWORD": password},
        log_dir=p.log_dir,
    )
    operator = p.sign_in("olivia", password)

    console = operator.get(f"{p.url}/console/", timeout=30)
    assert console.status_code == 200, console.text[:500]
    queue = operator.get(f"{p.url}/console/queue/", timeout=30)
    assert queue.status_code == 200
    assert "Maple Primary School" in queue.text
    cases = operator.get(
        f"{p.url}/api/v1/moderation/cases/", params={"status": "open"}, timeout=30
    ).json()
    held_case = [c for c in cases["results"] if c["job"]["id"] == held.json()["id"]]
    assert len(held_case) == 1, cases
    assert "personal_data" in str(held_case[0])

    # The school's own owner is not an operator.
    owner = p.sign_in(p.demo["username"], p.demo["password"])
    assert owner.get(f"{p.url}/console/", timeout=30).status_code == 403

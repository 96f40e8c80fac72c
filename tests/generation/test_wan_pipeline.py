"""Jobs on the wan backend through the whole pipeline (tiny real-architecture pipelines)."""

from __future__ import annotations

import pytest

from billing.models import UsageEvent
from generation import tasks
from generation.backends.base import PlatformFault
from generation.models import Job
from generation.postprocess.encode import probe_mp4
from generation.services import JobRequest, job_create
from generation.storage import get_bytes, job_key
from tests import factories

pytestmark = pytest.mark.django_db

TINY = {"model": "wan2.2-ti2v-5b", "width": 64, "height": 64, "fps": 24, "duration_s": 0.2}


@pytest.fixture(autouse=True)
def wan_pool(settings, tiny_models):
    import torch

    from generation.backends import wan

    torch.set_num_threads(1)
    settings.REELCAST_MODEL_DIR = str(tiny_models)
    settings.REELCAST_WAN_DEVICE = "cpu"
    settings.REELCAST_MODELS = {"wan2.2-ti2v-5b": {"steps": 3}, "wan2.2-t2v-a14b": {"steps": 4}}
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
        "gpu-test": {
            "hardware_class": "cpu",
            "capacity": 1,
            "models": ["wan2.2-ti2v-5b", "wan2.2-t2v-a14b"],
        },
    }
    wan.pipeline_cache().clear()
    wan.pipeline_cache().loads = 0
    yield
    wan.pipeline_cache().clear()


def test_a_wan_job_runs_to_succeeded_and_bills_each_shot_but_not_the_model_load(run_on_commit):
    tenant = factories.make_tenant()
    template = factories.make_template(tenant, prompt="{name} waves.\n\n{name} smiles.", **TINY)
    job = run_on_commit(
        job_create, tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    job.refresh_from_db()
    assert job.state == "succeeded", (job.error_code, job.error_message)
    assert job.pool == "gpu-test"
    assert [s["num_frames"] for s in job.shots] == [5, 5]
    info = probe_mp4(get_bytes(job.video_key))
    # 2 s title card (48 frames) + two 5-frame shots cross-faded over 2 frames (8 frames)
    assert (info["width"], info["height"], info["frames"], info["codec"]) == (64, 64, 56, "h264")
    assert info["audio"] is not None  # every output carries an AAC track
    assert info["metadata"]["AIGC"].startswith('{"Label":"1"')
    rows = UsageEvent.objects.filter(job=job).order_by("shot_index")
    assert [(r.id, r.stage, r.hardware_class, r.model) for r in rows] == [
        (f"job:{job.id}:generate:0", "generate", "cpu", "wan2.2-ti2v-5b"),
        (f"job:{job.id}:generate:1", "generate", "cpu", "wan2.2-ti2v-5b"),
    ]
    assert job.device_ms == sum(r.milliseconds for r in rows)
    assert job.model_load_ms > 0  # measured and kept, not billed
    assert not job.frames_key  # the raw hand-over file is gone once the video is made


def test_a_second_wan_job_reuses_the_warm_pipeline(run_on_commit):
    from generation.backends import wan

    tenant = factories.make_tenant()
    template = factories.make_template(tenant, **TINY)
    for name in ("Ada", "Bob"):
        run_on_commit(
            job_create, tenant=tenant, request=JobRequest(template=template, values={"name": name})
        )
    assert list(Job.objects.values_list("state", flat=True)) == ["succeeded", "succeeded"]
    assert wan.pipeline_cache().loads == 1
    second = Job.objects.get(values__name="Bob")
    assert second.model_load_ms == 0


def test_a_retry_of_a_job_reproduces_its_frames_from_the_recorded_seeds():
    from generation.backends import get_backend

    tenant = factories.make_tenant()
    template = factories.make_template(tenant, **TINY)
    job = job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    other = job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    backend = get_backend("wan")

    def frames(of):
        return backend.generate(
            tasks._build_request(of), on_progress=lambda d, t: None, should_cancel=lambda: False
        ).frames

    first, again, different = frames(job), frames(job), frames(other)
    assert job.shots[0]["seed"] != other.shots[0]["seed"]
    assert (first == again).all()
    assert not (first == different).all()


def test_out_of_memory_fails_the_job_unbilled_and_the_worker_takes_the_next(
    run_on_commit, monkeypatch
):
    from generation.backends.wan import WanBackend

    tenant = factories.make_tenant()
    template = factories.make_template(tenant, **TINY)
    real = WanBackend.generate
    calls = {"n": 0}

    def out_of_memory_once(self, request, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise PlatformFault("CUDA out of memory while decoding", code="gpu_out_of_memory")
        return real(self, request, **kwargs)

    monkeypatch.setattr(WanBackend, "generate", out_of_memory_once)
    first = run_on_commit(
        job_create, tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    second = run_on_commit(
        job_create, tenant=tenant, request=JobRequest(template=template, values={"name": "Bob"})
    ).job
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.error_code) == ("failed", "gpu_out_of_memory")
    assert UsageEvent.objects.filter(job=first).count() == 0
    assert second.state == "succeeded"
    assert UsageEvent.objects.filter(job=second).count() == 1
    assert not first.frames_key
    from django.core.files.storage import default_storage

    raw = job_key(first, "raw")
    assert not default_storage.exists(raw) or default_storage.listdir(raw) == ([], [])


def test_a_canceled_wan_job_is_billed_for_the_steps_it_ran(monkeypatch):
    tenant = factories.make_tenant()
    template = factories.make_template(tenant, prompt="{name} one.\n\n{name} two.", **TINY)
    job = job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    from generation.backends.wan import WanBackend

    real = WanBackend.generate

    def cancel_in_second_shot(self, request, *, on_progress, should_cancel):
        def progress(done, total):
            on_progress(done, total)
            if done == 4:  # shot 0 took steps 1-3; cancel during shot 1
                Job.objects.filter(pk=job.pk).update(cancel_requested_at="2026-01-01T00:00Z")

        return real(self, request, on_progress=progress, should_cancel=should_cancel)

    monkeypatch.setattr(WanBackend, "generate", cancel_in_second_shot)
    tasks.run_job(str(job.id))
    job.refresh_from_db()
    assert job.state == "canceled"
    rows = dict(UsageEvent.objects.filter(job=job).values_list("shot_index", "milliseconds"))
    assert sorted(rows) == [0, 1]  # the finished shot and the interrupted one's steps
    assert not job.video_key


# --- personalisation through the real pipelines ------------------------------------------------


def _png(colour, size=(48, 64)) -> str:
    import base64
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def captured_requests(monkeypatch):
    """The GenerationRequest each job handed to its backend."""
    seen = []
    build = tasks._build_request

    def spy(job):
        request = build(job)
        seen.append(request)
        return request

    monkeypatch.setattr(tasks, "_build_request", spy)
    return seen


def test_a_character_job_keeps_the_character_in_every_shot_and_uses_the_character_sheet(
    run_on_commit, captured_requests
):
    tenant = factories.make_tenant()
    template = factories.make_student_template(
        tenant,
        **TINY,
        reference_images=[{"role": "character", "image": _png((30, 90, 200))}],
    )
    consent = factories.make_consent(tenant, "Li Wei")
    job = run_on_commit(
        job_create,
        tenant=tenant,
        request=JobRequest(template=template, values={"name": "Li Wei"}, consent=str(consent.id)),
    ).job
    job.refresh_from_db()
    assert job.state == "succeeded", (job.error_code, job.error_message)
    character = "Li Wei, a ten-year-old pupil in a red school uniform"
    assert len(job.shots) == 2
    assert all(character in shot["prompt"] for shot in job.shots)
    [request] = captured_requests
    assert request.reference_image is not None  # the character sheet starts each shot (i2v)
    assert request.reference_images == ()


@pytest.mark.parametrize(
    ("model", "mode"),
    [("wan2.2-vace-fun-a14b", "r2v"), ("wan2.2-ti2v-5b", "i2v")],
)
def test_a_try_on_job_runs_on_both_paths(run_on_commit, captured_requests, settings, model, mode):
    settings.REELCAST_MODELS = {
        **settings.REELCAST_MODELS,
        "wan2.2-vace-fun-a14b": {"steps": 2},
    }
    settings.REELCAST_POOLS["gpu-test"]["models"].append("wan2.2-vace-fun-a14b")
    tenant = factories.make_tenant(kind="shop")
    size = {"width": 64, "height": 64, "fps": 16, "duration_s": 0.25}
    template = factories.make_template(
        tenant,
        kind="product",
        variables=[{"name": "photo", "type": "image"}],
        prompt="The shopper wears the coat on a New York street at dusk.",
        product="a camel wool coat",
        title="",
        model=model,
        reference_images=[{"role": "product", "image": _png((190, 150, 100))}],
        **size,
    )
    job = run_on_commit(
        job_create,
        tenant=tenant,
        request=JobRequest(
            template=template,
            values={"photo": _png((220, 200, 180))},
            consent={"consented_by": "Ana Lima"},
            end_user="shopper-1",
        ),
    ).job
    job.refresh_from_db()
    assert job.state == "succeeded", (job.error_code, job.error_message)
    assert "Product: a camel wool coat" in job.shots[0]["prompt"]
    [request] = captured_requests
    if mode == "r2v":  # VACE: the person and the garment as reference images
        assert request.reference_image is None
        assert len(request.reference_images) == 2
    else:  # image-to-video from a composed first frame
        assert request.reference_image is not None
        assert request.reference_images == ()

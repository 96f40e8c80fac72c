"""The wan backend, run end to end on tiny random-weight Wan2.2 pipelines of the real architectures.

The tiny models are built once per session (tests/support/tiny_wan.py), saved with
``save_pretrained`` and loaded back through the production loader, so these tests exercise the
real diffusers pipelines, the real loading code and the real step callback, only at 32x48 px.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from generation import registry  # noqa: E402
from generation.backends import wan  # noqa: E402
from generation.backends.base import (  # noqa: E402
    GenerationCanceled,
    GenerationRequest,
    PlatformFault,
    ShotSpec,
)
from tests.support import tiny_wan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

T2V = "wan2.2-t2v-a14b"
I2V = "wan2.2-i2v-a14b"
TI2V = "wan2.2-ti2v-5b"

# (model, width, height, with a reference image): the A14B models take multiples of 16, TI2V-5B
# multiples of 32; frames not square so that a swapped width and height would show.
GEOMETRIES = {
    "t2v-a14b": (T2V, 48, 32, False),
    "i2v-a14b": (I2V, 48, 32, True),
    "ti2v-5b-text": (TI2V, 64, 32, False),
    "ti2v-5b-image": (TI2V, 64, 32, True),
}


@pytest.fixture(autouse=True)
def wan_settings(settings, tiny_models):
    torch.set_num_threads(1)
    settings.REELCAST_MODEL_DIR = str(tiny_models)
    settings.REELCAST_MODELS = {}
    settings.REELCAST_ALLOW_HUB_DOWNLOADS = False
    settings.REELCAST_HARDWARE_CLASS = ""
    settings.REELCAST_WAN_DEVICE = "cpu"
    settings.REELCAST_WAN_OFFLOAD = "none"
    settings.REELCAST_WAN_VAE_TILING = False
    settings.REELCAST_WAN_CACHE_MAX_PIPELINES = 4
    wan.pipeline_cache().clear()
    wan.pipeline_cache().loads = 0
    yield settings
    wan.pipeline_cache().clear()


def reference_png(width: int = 100, height: int = 40) -> bytes:
    rng = np.random.default_rng(5)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_request(
    model: str,
    *,
    width: int,
    height: int,
    image: bool = False,
    seeds: tuple[int, ...] = (11,),
    frames: tuple[int, ...] = (5,),
    steps: int | None = 2,
    **options,
) -> GenerationRequest:
    shots = tuple(
        ShotSpec(
            index=index,
            prompt=f"a student walks in the park, shot {index}",
            negative_prompt="blurry, low quality",
            num_frames=count,
            seed=seed,
        )
        for index, (seed, count) in enumerate(zip(seeds, frames, strict=True))
    )
    return GenerationRequest(
        model=model,
        width=width,
        height=height,
        fps=16,
        shots=shots,
        reference_image=reference_png() if image else None,
        options={**({"steps": steps} if steps else {}), **options},
    )


def run(request, *, cancel=lambda: False, progress=None):
    events = [] if progress is None else progress
    return wan.WanBackend().generate(
        request, on_progress=lambda done, total: events.append((done, total)), should_cancel=cancel
    )


class Counter:
    """Counts forward passes of the experts and calls of the VAE decode of one pipeline."""

    def __init__(self, pipe, monkeypatch):
        self.transformer_calls = 0
        self.decodes = 0
        self.handles = [
            expert.register_forward_hook(self._on_forward) for expert in wan._experts(pipe)
        ]
        decode = pipe.vae.decode

        def counting_decode(*args, **kwargs):
            self.decodes += 1
            return decode(*args, **kwargs)

        monkeypatch.setattr(pipe.vae, "decode", counting_decode)

    def _on_forward(self, *_):
        self.transformer_calls += 1

    def remove(self):
        for handle in self.handles:
            handle.remove()


def test_importing_the_wan_backend_does_not_import_torch_or_diffusers():
    code = (
        "import sys, generation.backends.wan, generation.registry; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'diffusers', 'transformers', 'peft')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("model", "mode", "pipeline_class", "experts", "flow_shift", "boundary_ratio", "expand"),
    [
        (T2V, "t2v", "WanPipeline", 2, 12.0, 0.875, False),
        (I2V, "i2v", "WanImageToVideoPipeline", 2, 5.0, 0.9, False),
        (TI2V, "t2v", "WanPipeline", 1, 5.0, None, True),
        (TI2V, "i2v", "WanImageToVideoPipeline", 1, 5.0, None, True),
    ],
)
def test_load_pipeline_applies_the_official_sampler_settings(
    model, mode, pipeline_class, experts, flow_shift, boundary_ratio, expand, tiny_models
):
    spec = registry.get_model(model)
    on_disk = (tiny_models / model / "scheduler" / "scheduler_config.json").read_text()

    pipe = wan.load_pipeline(spec, device="cpu", mode=mode)

    assert type(pipe).__name__ == pipeline_class
    assert len(wan._experts(pipe)) == experts
    assert pipe.scheduler.config.flow_shift == flow_shift
    assert pipe.config.boundary_ratio == boundary_ratio
    assert pipe.config.expand_timesteps is expand
    assert pipe.transformer.dtype == torch.float32
    if model == T2V:
        # The converted A14B repos carry 3.0; the official T2V sampler uses 12.0.
        assert '"flow_shift": 3.0' in on_disk


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_generate_makes_frames_of_the_requested_shape_reproducible_by_seed(case):
    model, width, height, image = GEOMETRIES[case]
    request = make_request(
        model, width=width, height=height, image=image, seeds=(11, 12), frames=(5, 9)
    )

    first = run(request)
    again = run(request)
    other = run(make_request(model, width=width, height=height, image=image, seeds=(99,)))

    assert [shot.frames.shape for shot in first.shots] == [
        (5, height, width, 3),
        (9, height, width, 3),
    ]
    assert first.frames.shape == (14, height, width, 3)
    assert first.frames.dtype == np.uint8
    assert first.frames.std() > 0
    assert [shot.seed for shot in first.shots] == [11, 12]
    assert all(shot.device_seconds > 0 for shot in first.shots)
    assert first.hardware_class == "cpu"
    assert first.fps == 16
    assert first.model_load_seconds > 0
    assert again.model_load_seconds == 0.0
    for a, b in zip(first.shots, again.shots, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(first.shots[0].frames, other.shots[0].frames)
    assert not np.array_equal(first.shots[0].frames, first.shots[1].frames[:5])


def test_progress_counts_every_denoising_step_in_order_over_all_shots():
    events: list[tuple[int, int]] = []

    run(
        make_request(T2V, width=48, height=32, seeds=(1, 2), frames=(5, 5), steps=3),
        progress=events,
    )

    assert events == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]


def test_cancel_stops_after_the_current_step_and_skips_the_decode(monkeypatch):
    request = make_request(T2V, width=48, height=32, seeds=(1, 2), frames=(5, 5), steps=4)
    wan.pipeline_cache().get(registry.get_model(T2V), mode="t2v", variant=None, device="cpu")
    pipe = wan.pipeline_cache().peek((T2V, "t2v", ""))
    counter = Counter(pipe, monkeypatch)
    events: list[tuple[int, int]] = []

    # Stop once the second step of the second shot has finished.
    with pytest.raises(GenerationCanceled) as canceled:
        run(request, progress=events, cancel=lambda: bool(events) and events[-1][0] >= 6)
    counter.remove()

    assert events == [(1, 8), (2, 8), (3, 8), (4, 8), (5, 8), (6, 8)]
    # Classifier-free guidance: two expert passes per step; 4 steps of shot 0, 2 of shot 1.
    assert counter.transformer_calls == 2 * (4 + 2)
    assert counter.decodes == 1  # the first shot's; the interrupted one never decodes
    assert [shot.index for shot in canceled.value.completed] == [0]
    assert canceled.value.completed[0].frames.shape == (5, 32, 48, 3)
    assert canceled.value.partial_shot_index == 1
    assert canceled.value.partial_device_seconds > 0


def test_cancel_before_the_first_shot_loads_nothing():
    with pytest.raises(GenerationCanceled) as canceled:
        run(make_request(T2V, width=48, height=32), cancel=lambda: True)

    assert canceled.value.completed == []
    assert canceled.value.partial_device_seconds == 0.0
    assert canceled.value.partial_shot_index is None
    assert wan.pipeline_cache().loads == 0


def test_missing_weights_directory_is_named_and_the_hub_is_not_tried(
    wan_settings, tmp_path, monkeypatch
):
    import diffusers

    calls = []
    monkeypatch.setattr(
        diffusers.DiffusionPipeline,
        "download",
        classmethod(lambda cls, *args, **kwargs: calls.append(args)),
    )
    monkeypatch.setattr(
        diffusers.WanPipeline,
        "from_pretrained",
        classmethod(lambda cls, *args, **kwargs: calls.append(args)),
    )
    wan_settings.REELCAST_MODEL_DIR = str(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()

    with pytest.raises(wan.ModelWeightsMissing) as missing:
        run(make_request(T2V, width=48, height=32))
    with pytest.raises(wan.ModelWeightsMissing) as empty:
        wan.load_pipeline(
            dataclasses.replace(registry.get_model(T2V), weights=str(tmp_path / "empty")),
            device="cpu",
        )

    expected_dir = tmp_path / "nowhere" / T2V
    assert f"the weights directory {expected_dir} does not exist" in str(missing.value)
    assert "REELCAST_ALLOW_HUB_DOWNLOADS" in str(missing.value)
    assert missing.value.code == "model_weights_missing"
    assert isinstance(missing.value, PlatformFault)
    assert f"{tmp_path / 'empty'} has no model_index.json" in str(empty.value)
    assert calls == []
    assert wan.loaded_models() == []


def test_the_hub_id_is_used_only_when_downloads_are_allowed(wan_settings, tmp_path, monkeypatch):
    import diffusers

    calls = []

    class Stop(Exception):
        pass

    def fake_from_pretrained(cls, source, **kwargs):
        calls.append((source, kwargs))
        raise Stop

    monkeypatch.setattr(diffusers.WanPipeline, "from_pretrained", classmethod(fake_from_pretrained))
    wan_settings.REELCAST_MODEL_DIR = str(tmp_path / "nowhere")
    wan_settings.REELCAST_ALLOW_HUB_DOWNLOADS = True

    with pytest.raises(Stop):
        wan.load_pipeline(registry.get_model(T2V), device="cpu")

    assert [source for source, _ in calls] == ["Wan-AI/Wan2.2-T2V-A14B-Diffusers"]
    assert "local_files_only" not in calls[0][1]


def test_the_cache_keeps_pipelines_warm_and_evicts_the_least_recently_used(wan_settings):
    wan_settings.REELCAST_WAN_CACHE_MAX_PIPELINES = 2
    cache = wan.pipeline_cache()

    first = run(make_request(T2V, width=48, height=32))
    warm_pipe = cache.peek((T2V, "t2v", ""))
    second = run(make_request(T2V, width=48, height=32))
    run(make_request(TI2V, width=64, height=32))
    run(make_request(T2V, width=48, height=32))  # T2V becomes the most recently used
    run(make_request(I2V, width=48, height=32, image=True))

    assert first.model_load_seconds > 0
    assert second.model_load_seconds == 0.0
    assert cache.peek((T2V, "t2v", "")) is warm_pipe
    assert cache.loads == 3
    assert cache.evictions == [(TI2V, "t2v", "")]
    assert [(m["name"], m["mode"]) for m in wan.loaded_models()] == [(I2V, "i2v"), (T2V, "t2v")]
    assert all(m["approx_bytes"] > 100_000 and m["device"] == "cpu" for m in wan.loaded_models())


def test_the_cache_evicts_by_memory_budget_on_an_accelerator(wan_settings, monkeypatch):
    # A fake loader and the "meta" device stand in for a GPU: the budget logic is the same.
    class FakePipe:
        def __init__(self, size: int):
            self.components = {"transformer": torch.nn.Linear(size, 100, bias=False)}

        def maybe_free_model_hooks(self):
            pass

    sizes = {T2V: 1000, I2V: 1000, TI2V: 1500}  # x 100 floats x 4 bytes
    monkeypatch.setattr(wan, "load_pipeline", lambda spec, **kwargs: FakePipe(sizes[spec.name]))
    wan_settings.REELCAST_WAN_CACHE_GPU_BUDGET_GB = 1_100_000 / 1024**3  # 1.1 MB
    cache = wan.pipeline_cache()

    def load(name):
        spec = dataclasses.replace(registry.get_model(name), weights="")
        cache.get(spec, mode=spec.modes[0], variant=None, device="meta")

    load(T2V)  # 0.4 MB
    load(I2V)  # 0.8 MB
    load(TI2V)  # 1.4 MB > 1.1 MB: the least recently used (T2V) goes after loading
    evicted_after_first_pass = list(cache.evictions)
    load(T2V)  # its size is known now (0.4 MB): I2V goes before loading

    assert evicted_after_first_pass == [(T2V, "t2v", "")]
    assert cache.evictions == [(T2V, "t2v", ""), (I2V, "i2v", "")]
    assert [m["name"] for m in wan.loaded_models()] == [T2V, TI2V]


def test_the_weight_estimate_from_file_headers_matches_the_loaded_size(tiny_models):
    pipe = wan.load_pipeline(registry.get_model(TI2V), device="cpu")

    estimate = wan.estimate_weight_bytes(tiny_models / TI2V, cpu=True)

    assert estimate == pytest.approx(wan.pipeline_bytes(pipe), rel=0.05)


def test_a_lora_variant_is_fused_into_both_experts(wan_settings, tmp_path):
    pytest.importorskip("peft")
    high = tiny_wan.build_tiny_lora(
        tmp_path, in_channels=16, weight_name="high.safetensors", seed=1
    )
    low = tiny_wan.build_tiny_lora(
        tmp_path, in_channels=16, weight_name="low.safetensors", key_format="wan", seed=2
    )
    wan_settings.REELCAST_MODELS = {
        T2V: {
            "lora_variants": {
                "lightning": {
                    "path": str(high),
                    "path_2": str(low),
                    "scale": 0.5,
                    "steps": 3,
                    "guidance_scale": 1.0,
                    "guidance_scale_2": 1.0,
                }
            }
        }
    }
    events: list[tuple[int, int]] = []

    base = run(
        make_request(T2V, width=48, height=32, steps=3, guidance_scale=1.0, guidance_scale_2=1.0)
    )
    fast = run(
        make_request(T2V, width=48, height=32, steps=None, variant="lightning"), progress=events
    )

    cache = wan.pipeline_cache()
    base_pipe = cache.peek((T2V, "t2v", ""))
    lora_pipe = cache.peek((T2V, "t2v", "lightning"))
    assert events == [(1, 3), (2, 3), (3, 3)]
    assert fast.frames.shape == base.frames.shape
    assert not np.array_equal(fast.frames, base.frames)
    for expert in ("transformer", "transformer_2"):
        base_weight = getattr(base_pipe, expert).blocks[0].attn1.to_q.weight
        lora_layer = getattr(lora_pipe, expert).blocks[0].attn1.to_q
        assert type(lora_layer) is torch.nn.Linear  # fused, no adapter left at run time
        assert not torch.equal(lora_layer.weight, base_weight)


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="has no variant 'turbo'"):
        run(make_request(T2V, width=48, height=32, variant="turbo"))


@pytest.mark.parametrize(
    ("model", "width", "height", "frames", "image", "field"),
    [
        (T2V, 40, 32, 5, False, "width"),
        (TI2V, 64, 48, 5, False, "height"),
        (T2V, 48, 32, 6, False, "num_frames"),
        (I2V, 48, 32, 5, False, "reference_image"),
        (T2V, 48, 32, 5, True, "reference_image"),
    ],
)
def test_a_request_the_model_cannot_take_is_refused_before_loading(
    model, width, height, frames, image, field
):
    request = make_request(model, width=width, height=height, frames=(frames,), image=image)

    with pytest.raises(ValueError, match=field):
        run(request)

    assert wan.pipeline_cache().loads == 0


def test_out_of_memory_becomes_a_platform_fault():
    def exhaust(done, total):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(PlatformFault) as fault:
        wan.WanBackend().generate(
            make_request(TI2V, width=64, height=32),
            on_progress=exhaust,
            should_cancel=lambda: False,
        )

    assert fault.value.code == "gpu_out_of_memory"
    assert "shot 0" in str(fault.value)


def test_other_errors_from_the_pipeline_are_not_disguised():
    def fail(done, total):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    with pytest.raises(RuntimeError, match="CUDNN_STATUS_INTERNAL_ERROR"):
        wan.WanBackend().generate(
            make_request(TI2V, width=64, height=32), on_progress=fail, should_cancel=lambda: False
        )


def test_group_offload_and_vae_tiling_give_the_same_frames(wan_settings):
    plain = run(make_request(T2V, width=48, height=32))
    wan_settings.REELCAST_WAN_OFFLOAD = "group"
    wan_settings.REELCAST_WAN_VAE_TILING = True

    offloaded = run(make_request(T2V, width=48, height=32))

    assert wan.pipeline_cache().peek((T2V, "t2v", "")).vae.use_tiling
    np.testing.assert_array_equal(offloaded.frames, plain.frames)


def test_model_offload_without_an_accelerator_stays_on_the_cpu(wan_settings):
    wan_settings.REELCAST_WAN_OFFLOAD = "model"

    result = run(make_request(TI2V, width=64, height=32))

    assert result.frames.shape == (5, 32, 64, 3)
    assert wan.pipeline_cache().peek((TI2V, "t2v", "")).transformer.device.type == "cpu"


def test_warm_up_loads_models_before_the_first_job():
    loaded = wan.warm_up([TI2V, f"{TI2V}:i2v"])

    result = run(make_request(TI2V, width=64, height=32, image=True))

    assert [(m["name"], m["mode"]) for m in loaded] == [(TI2V, "i2v"), (TI2V, "t2v")]
    assert result.model_load_seconds == 0.0
    assert wan.pipeline_cache().loads == 2


def test_the_attention_backend_is_chosen_once_from_settings(wan_settings, monkeypatch):
    monkeypatch.setattr(wan, "_attention_choice", [])
    wan_settings.REELCAST_WAN_ATTENTION = "native"

    pipe = wan.load_pipeline(registry.get_model(T2V), device="cpu")
    wan_settings.REELCAST_WAN_ATTENTION = "flash"

    assert wan.attention_backend_name() == "native"
    for expert in wan._experts(pipe):
        assert expert.blocks[0].attn1.processor._attention_backend.value == "native"


def test_attention_backends_that_download_kernels_are_refused(wan_settings, monkeypatch):
    monkeypatch.setattr(wan, "_attention_choice", [])
    wan_settings.REELCAST_WAN_ATTENTION = "flash_hub"

    with pytest.raises(ValueError, match="downloads kernels from the hub"):
        wan.attention_backend_name()


def test_the_hardware_class_comes_from_settings_or_the_device(wan_settings):
    assert run(make_request(TI2V, width=64, height=32)).hardware_class == "cpu"
    wan_settings.REELCAST_HARDWARE_CLASS = "h100"
    assert run(make_request(TI2V, width=64, height=32)).hardware_class == "h100"


@pytest.mark.parametrize(
    ("gpu_name", "memory_gb", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 80, "h100"),
        ("NVIDIA H200", 141, "h200"),
        ("NVIDIA GH200 480GB", 96, "gh200"),
        ("NVIDIA A100-SXM4-80GB", 80, "a100-80gb"),
        ("NVIDIA A100-PCIE-40GB", 40, "a100-40gb"),
        ("NVIDIA L40S", 48, "l40s"),
        ("NVIDIA GeForce RTX 4090", 24, "rtx-4090"),
    ],
)
def test_hardware_classes_are_derived_from_gpu_names(gpu_name, memory_gb, expected):
    assert wan.hardware_class_for(gpu_name, memory_gb * 1024**3) == expected


def test_a_reference_image_is_cropped_or_padded_to_the_frame_aspect():
    from PIL import Image

    source = Image.new("RGB", (80, 40), (0, 255, 0))
    source.paste((255, 0, 0), (0, 0, 20, 40))
    source.paste((0, 0, 255), (60, 0, 80, 40))
    buffer = io.BytesIO()
    source.save(buffer, "PNG")

    cropped = np.asarray(wan.fit_reference_image(buffer.getvalue(), width=32, height=32))
    padded = np.asarray(wan.fit_reference_image(buffer.getvalue(), width=32, height=32, fit="pad"))

    assert cropped.shape == padded.shape == (32, 32, 3)
    for y, x in ((1, 1), (1, 30), (16, 16), (30, 1), (30, 30)):
        assert tuple(cropped[y, x]) == (0, 255, 0)  # only the green middle is kept
    assert tuple(padded[2, 16]) == (0, 0, 0)  # bars above and below
    assert tuple(padded[29, 16]) == (0, 0, 0)
    assert tuple(padded[16, 1]) == (255, 0, 0)  # the whole width is kept
    assert tuple(padded[16, 30]) == (0, 0, 255)
    assert tuple(padded[16, 16]) == (0, 255, 0)

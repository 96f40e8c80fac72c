"""The model registry: which video models exist, how they are loaded, and what sizes they take.

Plain data, importable by web processes (no torch). Operators extend or override entries with
the ``REELCAST_MODELS`` setting (a dict of name -> field overrides, see config/settings.py), and
point weights at local directories with ``REELCAST_MODEL_DIR`` or per-model ``weights``.

Validation lives here too, so the API refuses a size or frame count before anything is queued:
diffusers would otherwise round it down silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

from django.conf import settings


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str  # "preview" or "wan"
    title: str
    pipeline: str = ""  # diffusers pipeline class name for the wan backend
    # The class for image-to-video where it differs from ``pipeline``: TI2V-5B's one directory
    # loads as WanPipeline (text) and as WanImageToVideoPipeline (image).
    i2v_pipeline: str = ""
    # t2v: text to video; i2v: image to video (the image is the first frame); r2v: reference
    # images to video (VACE: the images condition the whole clip, none of them is a frame).
    modes: tuple[str, ...] = ("t2v",)
    weights: str = ""  # local directory holding the diffusers-format weights
    hub_id: str = ""  # used only when the operator allows hub downloads
    default_width: int = 854
    default_height: int = 480
    default_fps: int = 24
    size_multiple: int = 2
    max_width: int = 1920
    max_height: int = 1920
    max_frames_per_shot: int = 241
    frames_rule: str = "any"  # "any" or "4k+1"
    max_duration_s: float = 60.0
    steps: int = 0
    guidance_scale: float = 0.0
    guidance_scale_2: float | None = None
    boundary_ratio: float | None = None
    flow_shift: float | None = None
    min_gpu_memory_gb: int = 0
    hardware_classes: tuple[str, ...] = ("cpu",)
    # name -> {"path", "weight_name", "scale", "steps", optional "guidance_scale",
    # "guidance_scale_2", and "path_2"/"weight_name_2"/"scale_2" for the low-noise expert when it
    # has its own file (Lightning/LightX2V ship one per expert)}; see backends/wan.py.
    lora_variants: dict = field(default_factory=dict)
    # Memory options; "" / None fall back to REELCAST_WAN_OFFLOAD / REELCAST_WAN_VAE_TILING.
    offload: str = ""  # "none" | "model" | "group"
    vae_tiling: bool | None = None

    def frames_for(self, seconds: float, fps: int) -> int:
        """Frames for a shot of ``seconds``: the nearest count the model accepts, at least 1.

        For Wan models the count is 4k+1 (the VAE compresses time by 4); the plan shows the
        exact number, so nothing is rounded behind the user's back later.
        """
        raw = max(1, round(seconds * fps))
        if self.frames_rule == "4k+1":
            k = max(1, round((raw - 1) / 4))
            return min(4 * k + 1, self.max_frames_per_shot)
        return min(raw, self.max_frames_per_shot)


# Sampler settings of the three Wan2.2 models, checked against the official configs
# (github.com/Wan-Video/Wan2.2, wan/configs/wan_{t2v_A14B,i2v_A14B,ti2v_5B}.py):
#
#   model      sample_shift  steps  boundary  guide scale (high-noise, low-noise)  fps  frames
#   T2V-A14B   12.0          40     0.875     (4.0, 3.0)                           16   81
#   I2V-A14B    5.0          40     0.900     (3.5, 3.5)                           16   81
#   TI2V-5B     5.0          50     -         5.0                                  24   121
#
# The converted ``Wan-AI/Wan2.2-*-Diffusers`` repositories do not all carry these: their
# scheduler_config.json is UniPCMultistepScheduler(flow_prediction, use_flow_sigmas) with
# flow_shift 3.0 in the A14B repos (the Wan2.1 480p value), so loading them as published
# samples T2V-A14B with a quarter of the official shift and I2V-A14B with 3.0 instead of 5.0
# (diffusers issue #12094; Wan2.2 issue #69 "diffusers quality is lower"). diffusers' flow
# sigmas are the official time shift, sigma' = s*sigma / (1 + (s - 1)*sigma) over
# linspace(1, 1/1000), so setting flow_shift reproduces the official schedule. The loader
# (backends/wan.py) therefore always writes ``flow_shift`` below into the scheduler config and
# ``boundary_ratio`` into the pipeline config rather than trusting the repository's values.
# In diffusers ``guidance_scale`` drives the high-noise expert (``transformer``) and
# ``guidance_scale_2`` the low-noise one (``transformer_2``): the official tuple is written
# (low, high), so T2V-A14B is guidance_scale=4.0, guidance_scale_2=3.0.
BUILTIN_MODELS: dict[str, ModelSpec] = {
    "preview": ModelSpec(
        name="preview",
        backend="preview",
        title="Storyboard preview (CPU)",
        modes=("t2v", "i2v", "r2v"),
        default_width=854,
        default_height=480,
        default_fps=24,
        size_multiple=2,
        max_width=1920,
        max_height=1920,
        max_frames_per_shot=24 * 30,
        max_duration_s=60.0,
        hardware_classes=("cpu",),
    ),
    "wan2.2-ti2v-5b": ModelSpec(
        name="wan2.2-ti2v-5b",
        backend="wan",
        title="Wan2.2 TI2V-5B (text or image to video, 720p)",
        pipeline="WanPipeline",
        i2v_pipeline="WanImageToVideoPipeline",
        modes=("t2v", "i2v"),
        hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        default_width=1280,
        default_height=704,
        default_fps=24,
        size_multiple=32,
        max_width=1280,
        max_height=1280,
        max_frames_per_shot=121,
        frames_rule="4k+1",
        max_duration_s=30.0,
        steps=50,
        guidance_scale=5.0,
        flow_shift=5.0,
        min_gpu_memory_gb=24,
        hardware_classes=("h100", "h200", "a100-80gb", "l40s"),
    ),
    "wan2.2-t2v-a14b": ModelSpec(
        name="wan2.2-t2v-a14b",
        backend="wan",
        title="Wan2.2 T2V-A14B (two experts, text to video)",
        pipeline="WanPipeline",
        modes=("t2v",),
        hub_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        default_width=1280,
        default_height=720,
        default_fps=16,
        size_multiple=16,
        max_width=1280,
        max_height=1280,
        max_frames_per_shot=81,
        frames_rule="4k+1",
        max_duration_s=30.0,
        steps=40,
        guidance_scale=4.0,
        guidance_scale_2=3.0,
        boundary_ratio=0.875,
        flow_shift=12.0,
        min_gpu_memory_gb=80,
        hardware_classes=("h100", "h200", "a100-80gb"),
    ),
    "wan2.2-i2v-a14b": ModelSpec(
        name="wan2.2-i2v-a14b",
        backend="wan",
        title="Wan2.2 I2V-A14B (two experts, image to video)",
        pipeline="WanImageToVideoPipeline",
        modes=("i2v",),
        hub_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        default_width=1280,
        default_height=720,
        default_fps=16,
        size_multiple=16,
        max_width=1280,
        max_height=1280,
        max_frames_per_shot=81,
        frames_rule="4k+1",
        max_duration_s=30.0,
        steps=40,
        guidance_scale=3.5,
        guidance_scale_2=3.5,
        boundary_ratio=0.9,
        flow_shift=5.0,
        min_gpu_memory_gb=80,
        hardware_classes=("h100", "h200", "a100-80gb"),
    ),
    # Reference-to-video (VACE). Both run as diffusers' WanVACEPipeline; both also run from the
    # prompt alone (no reference: an empty control video under an all-white mask), so they list
    # "t2v" too, and the backend serves both modes from one loaded pipeline. "r2v" comes first:
    # it is what they are for, and what warm_up() loads by default.
    #
    # Wan2.2-VACE-Fun-A14B (alibaba-pai): VACE trained on Wan2.2-T2V-A14B, two experts. diffusers
    # supports that form since huggingface/diffusers#12324 ("Add Wan2.2 VACE - Fun", 0.36):
    # WanVACEPipeline takes transformer_2 and boundary_ratio, and
    # scripts/convert_wan_to_diffusers.py --model_type Wan2.2-VACE-Fun-14B converts the
    # original high_noise_model/low_noise_model folders with boundary_ratio 0.875. Neither
    # Wan-AI nor alibaba-pai publishes a diffusers-format repository; the only conversion on
    # the hub is a personal one (linoyts/Wan2.2-VACE-Fun-14B-diffusers), so no hub_id is set:
    # convert the official weights into REELCAST_MODEL_DIR/wan2.2-vace-fun-a14b, or name a
    # repository you trust in REELCAST_MODELS. Sampler from the publisher's reference script
    # (github.com/aigc-apps/VideoX-Fun, examples/wan2.2_vace_fun/predict_s2v.py, "subject to
    # video", with config/wan2.2/wan_civitai_t2v.yaml): 50 steps, one guidance scale 5.0 for
    # both experts, boundary 0.875, shift 12.0 with the UniPC sampler (the T2V-A14B value;
    # the converted repository carries 3.0), 81 frames at 16 fps, 832x480; trained at 512,
    # 768 and 1024 px buckets.
    #
    # Wan2.1-VACE-14B (Wan-AI, one expert; the diffusers docs list Wan-AI/Wan2.1-VACE-14B-diffusers):
    # official generate.py (github.com/Wan-Video/Wan2.1) gives VACE 50 steps, guide scale 5.0,
    # sample_shift 16 ("flf2v" or "vace"), 81 frames, fps 16 (wan/configs/shared_config.py),
    # sizes 1280*720, 720*1280, 832*480, 480*832 (wan/configs/__init__.py). The converted repo's
    # scheduler carries flow shift 3.0, so the loader overrides it as for the A14B models.
    # Reference images are scaled to fit and padded on white, as wan/vace.py prepare_source does.
    "wan2.2-vace-fun-a14b": ModelSpec(
        name="wan2.2-vace-fun-a14b",
        backend="wan",
        title="Wan2.2 VACE-Fun A14B (two experts, reference images to video)",
        pipeline="WanVACEPipeline",
        modes=("r2v", "t2v"),
        hub_id="",
        default_width=832,
        default_height=480,
        default_fps=16,
        size_multiple=16,
        max_width=1280,
        max_height=1280,
        max_frames_per_shot=81,
        frames_rule="4k+1",
        max_duration_s=30.0,
        steps=50,
        guidance_scale=5.0,
        guidance_scale_2=5.0,
        boundary_ratio=0.875,
        flow_shift=12.0,
        min_gpu_memory_gb=80,
        hardware_classes=("h100", "h200", "a100-80gb"),
    ),
    "wan2.1-vace-14b": ModelSpec(
        name="wan2.1-vace-14b",
        backend="wan",
        title="Wan2.1 VACE 14B (reference images to video)",
        pipeline="WanVACEPipeline",
        modes=("r2v", "t2v"),
        hub_id="Wan-AI/Wan2.1-VACE-14B-diffusers",
        default_width=1280,
        default_height=720,
        default_fps=16,
        size_multiple=16,
        max_width=1280,
        max_height=1280,
        max_frames_per_shot=81,
        frames_rule="4k+1",
        max_duration_s=30.0,
        steps=50,
        guidance_scale=5.0,
        flow_shift=16.0,
        min_gpu_memory_gb=80,
        hardware_classes=("h100", "h200", "a100-80gb"),
    ),
}


@cache
def _registry(overrides_key: str) -> dict[str, ModelSpec]:
    registry = dict(BUILTIN_MODELS)
    overrides: dict = getattr(settings, "REELCAST_MODELS", {}) or {}
    model_dir = getattr(settings, "REELCAST_MODEL_DIR", "")
    for name, spec in list(registry.items()):
        if spec.backend == "wan" and model_dir and not spec.weights:
            registry[name] = replace(spec, weights=f"{model_dir.rstrip('/')}/{name}")
    for name, fields in overrides.items():
        fields = dict(fields)
        for key in ("modes", "hardware_classes"):
            if key in fields:
                fields[key] = tuple(fields[key])
        if name in registry:
            registry[name] = replace(registry[name], **fields)
        else:
            registry[name] = ModelSpec(name=name, **fields)
    return registry


def all_models() -> dict[str, ModelSpec]:
    return _registry(
        repr(getattr(settings, "REELCAST_MODELS", {})) + getattr(settings, "REELCAST_MODEL_DIR", "")
    )


def get_model(name: str) -> ModelSpec:
    """The spec for ``name``; raises KeyError for an unknown model."""
    return all_models()[name]


def geometry_errors(
    spec: ModelSpec,
    *,
    width: int,
    height: int,
    fps: int,
    duration_s: float,
    frames_per_shot: list[int] | None = None,
) -> dict[str, str]:
    """Field -> reason for every size, rate or length this model will not take as given."""
    errors: dict[str, str] = {}
    m = spec.size_multiple
    if width <= 0 or width % m:
        errors["width"] = (
            f"{spec.name} needs a width that is a positive multiple of {m} (got {width})."
        )
    elif width > spec.max_width:
        errors["width"] = f"{spec.name} allows at most {spec.max_width} px width (got {width})."
    if height <= 0 or height % m:
        errors["height"] = (
            f"{spec.name} needs a height that is a positive multiple of {m} (got {height})."
        )
    elif height > spec.max_height:
        errors["height"] = f"{spec.name} allows at most {spec.max_height} px height (got {height})."
    if not 1 <= fps <= 60:
        errors["fps"] = f"fps must be between 1 and 60 (got {fps})."
    if not 0 < duration_s <= spec.max_duration_s:
        errors["duration_s"] = (
            f"{spec.name} makes videos up to {spec.max_duration_s:g} s (got {duration_s:g})."
        )
    for count in frames_per_shot or []:
        if count > spec.max_frames_per_shot:
            errors["duration_s"] = (
                f"a shot of {count} frames is longer than {spec.name} allows "
                f"({spec.max_frames_per_shot}); split the script into more shots."
            )
            break
        if spec.frames_rule == "4k+1" and (count - 1) % 4:
            errors["num_frames"] = f"{spec.name} needs 4k+1 frames per shot (got {count})."
            break
    return errors

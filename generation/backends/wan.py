"""The ``wan`` backend: Wan2.2 video models through Hugging Face diffusers.

This is the only module of the app that imports torch and diffusers, and it imports them inside
functions, so that importing it (or the registry, or the task layer) never loads torch in a web
process or a CPU worker.

What it guarantees:

- Nothing is downloaded unless the operator set ``REELCAST_ALLOW_HUB_DOWNLOADS``: weights come
  from ``spec.weights`` (a local directory) and a missing directory is a ``ModelWeightsMissing``
  platform fault that names it.
- The sampler is the official one: ``spec.flow_shift`` is written into the scheduler config and
  ``spec.boundary_ratio`` into the pipeline config (the converted repos carry other values; see
  the comment above ``registry.BUILTIN_MODELS``).
- The same request with the same seeds gives the same frames; device time is measured around
  each shot's pipeline call (prompt encoding, sampling, VAE decode; synchronised on CUDA, wall
  time on the CPU) and model loading is reported apart, unbilled.
- Three modes, chosen by the request: text to video, image to video (the image is the first
  frame) and reference images to video (VACE: the images condition the clip, padded on white).
- A cancel stops at the end of the current denoising step, before the VAE decode, and reports
  the device time already spent so that it can still be billed.
- Pipelines stay warm in one process-wide LRU cache, bounded by GPU memory (by count on CPU).
"""

from __future__ import annotations

import gc
import inspect
import io
import json
import logging
import math
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from config.logging import adopt_logger
from generation import registry
from generation.backends.base import (
    CancelCheck,
    GenerationCanceled,
    GenerationRequest,
    GenerationResult,
    PlatformFault,
    ProgressCallback,
    ShotResult,
)
from generation.registry import ModelSpec

logger = logging.getLogger(__name__)

MODES = ("t2v", "i2v", "r2v")
OFFLOAD_MODES = ("none", "model", "group")
IMAGE_FITS = ("crop", "pad")
# Each reference image adds one latent frame to every denoising step (81 frames are 21 latent
# frames), so the count is bounded: a try-on needs the person and one to three products.
MAX_REFERENCE_IMAGES = 4
# VACE pads reference images on white (wan/vace.py prepare_source; diffusers'
# WanVACEPipeline.preprocess_conditions fills its canvas with ones, white in [-1, 1]).
REFERENCE_BACKGROUND = (255, 255, 255)
MAX_SEQUENCE_LENGTH = 512  # the official text_len; the pipeline pads prompts to it
DEFAULT_CPU_CACHE_PIPELINES = 2
DEFAULT_GPU_BUDGET_FRACTION = 0.9

_SAFETENSORS_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


class ModelWeightsMissing(PlatformFault):
    """The configured weights directory is absent or is not a diffusers pipeline directory."""

    code = "model_weights_missing"


class _CancelRequested(Exception):
    """Raised from the step callback to leave the denoising loop at once (before the decode)."""


# --------------------------------------------------------------------------------------------
# Loading


def load_pipeline(
    spec: ModelSpec,
    *,
    device: Any,
    dtype: Any = None,
    mode: str = "t2v",
    variant: str | None = None,
) -> Any:
    """Load ``spec`` for ``mode`` ("t2v", "i2v" or "r2v") onto ``device``, ready to call.

    ``dtype`` defaults to bfloat16 with a float32 VAE on CUDA (``REELCAST_WAN_VAE_DTYPE``) and
    float32 on the CPU; a dict gives per-component dtypes as diffusers takes them. ``variant``
    names one of ``spec.lora_variants``, loaded into every expert.
    """
    torch = _torch()
    import diffusers

    device = torch.device(device)
    class_name = _pipeline_class_name(spec, mode)
    pipeline_class = getattr(diffusers, class_name, None)
    if not (
        isinstance(pipeline_class, type) and issubclass(pipeline_class, diffusers.DiffusionPipeline)
    ):
        raise ValueError(f"{spec.name}: {class_name!r} is not a diffusers pipeline class.")
    if (
        mode == "r2v"
        and "reference_images" not in inspect.signature(pipeline_class.__call__).parameters
    ):
        raise ValueError(
            f"{spec.name}: {class_name} takes no reference_images, so it cannot do r2v."
        )
    source, local = _weights_source(spec)
    if dtype is None:
        dtype = _default_dtype(torch, device)

    kwargs: dict[str, Any] = {"dtype": dtype}
    if local:
        kwargs["local_files_only"] = True
    pipe = pipeline_class.from_pretrained(source, **kwargs)
    pipe.set_progress_bar_config(disable=True)

    _apply_flow_shift(pipe, spec)
    if spec.boundary_ratio is not None:
        if getattr(pipe, "transformer_2", None) is None:
            raise ValueError(
                f"{spec.name} sets boundary_ratio {spec.boundary_ratio} but {source} has no "
                "transformer_2 (low-noise expert)."
            )
        pipe.register_to_config(boundary_ratio=spec.boundary_ratio)
    if variant:
        _load_lora_variant(pipe, spec, variant)
    attention = attention_backend_name()
    if attention:
        for transformer in _experts(pipe):
            transformer.set_attention_backend(attention)
    _place(pipe, spec, device)
    return pipe


def _pipeline_class_name(spec: ModelSpec, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}.")
    if mode not in spec.modes:
        raise ValueError(f"{spec.name} does not do {mode} (it does {', '.join(spec.modes)}).")
    if spec.backend != "wan" or not spec.pipeline:
        raise ValueError(f"{spec.name} is not a wan model.")
    if mode == "i2v" and spec.i2v_pipeline:
        return spec.i2v_pipeline
    return spec.pipeline


def _shared_mode(spec: ModelSpec, mode: str) -> str:
    """The mode under which ``mode``'s pipeline is cached: modes of one class share one copy.

    A VACE model does r2v and t2v with the same WanVACEPipeline; loading it twice would hold two
    copies of 27B parameters. TI2V-5B's t2v and i2v use two classes and stay apart.
    """
    class_name = _pipeline_class_name(spec, mode)
    for candidate in spec.modes:
        if candidate in MODES and _pipeline_class_name(spec, candidate) == class_name:
            return candidate
    return mode


def _hub_allowed() -> bool:
    return bool(getattr(settings, "REELCAST_ALLOW_HUB_DOWNLOADS", False))


def _weights_source(spec: ModelSpec) -> tuple[str, bool]:
    """(where to load from, whether it is local); never the hub unless the operator allows it."""
    directory = Path(spec.weights) if spec.weights else None
    if directory is not None and (directory / "model_index.json").is_file():
        return str(directory), True
    if _hub_allowed() and spec.hub_id:
        logger.warning("loading %s from the hub (%s): no local weights", spec.name, spec.hub_id)
        return spec.hub_id, False
    if directory is None:
        where = "no weights directory is configured"
    elif directory.is_dir():
        where = f"the weights directory {directory} has no model_index.json"
    else:
        where = f"the weights directory {directory} does not exist"
    raise ModelWeightsMissing(
        f"Weights for {spec.name} not found: {where}. Put the diffusers-format weights there "
        f"(REELCAST_MODEL_DIR/<model> or REELCAST_MODELS[{spec.name!r}]['weights']), or set "
        f"REELCAST_ALLOW_HUB_DOWNLOADS to fetch {spec.hub_id or 'them'} from the hub."
    )


def _default_dtype(torch: Any, device: Any) -> Any:
    if device.type == "cpu":
        return torch.float32
    vae_dtype = getattr(settings, "REELCAST_WAN_VAE_DTYPE", "float32") or "float32"
    if vae_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"REELCAST_WAN_VAE_DTYPE must be float32 or bfloat16, not {vae_dtype!r}.")
    return {"default": torch.bfloat16, "vae": getattr(torch, vae_dtype)}


def _apply_flow_shift(pipe: Any, spec: ModelSpec) -> None:
    if spec.flow_shift is None:
        return
    config = pipe.scheduler.config
    if "flow_shift" in config:
        if not config.get("use_flow_sigmas", False):
            raise ValueError(
                f"{spec.name}: {type(pipe.scheduler).__name__} is not configured with flow "
                "sigmas, so flow_shift would be ignored."
            )
        key = "flow_shift"
    elif "shift" in config:
        key = "shift"
    else:
        raise ValueError(f"{spec.name}: {type(pipe.scheduler).__name__} has no flow shift to set.")
    pipe.scheduler = type(pipe.scheduler).from_config(config, **{key: float(spec.flow_shift)})


def _experts(pipe: Any) -> list[Any]:
    return [
        model
        for model in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
        if model is not None
    ]


def _load_lora_variant(pipe: Any, spec: ModelSpec, variant: str) -> None:
    """Load ``spec.lora_variants[variant]`` into both experts and fuse it into their weights.

    Fusing removes the adapter's per-step cost (it matters most for 4-step distilled LoRAs);
    each cached pipeline carries exactly one variant, so nothing ever has to be unfused.
    """
    config = _variant_config(spec, variant)
    experts = {"transformer": pipe.transformer}
    if getattr(pipe, "transformer_2", None) is not None:
        experts["transformer_2"] = pipe.transformer_2
    scales = {"transformer": float(config.get("scale", 1.0))}
    for component in experts:
        suffix = "_2" if component == "transformer_2" else ""
        path = config.get(f"path{suffix}") or config["path"]
        weight_name = config.get(f"weight_name{suffix}") or config.get("weight_name")
        source, kwargs = _lora_source(spec, variant, path, weight_name)
        if suffix:
            kwargs["load_into_transformer_2"] = True
            scales[component] = float(config.get("scale_2", scales["transformer"]))
        pipe.load_lora_weights(source, adapter_name=variant, **kwargs)
    pipe.set_adapters([variant], adapter_weights=[scales])
    pipe.fuse_lora(components=list(experts), lora_scale=1.0, adapter_names=[variant])
    pipe.unload_lora_weights()


def _variant_config(spec: ModelSpec, variant: str) -> dict:
    variants = spec.lora_variants or {}
    if variant not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise ValueError(f"{spec.name} has no variant {variant!r} (known: {known}).")
    config = dict(variants[variant])
    if not config.get("path"):
        raise ValueError(f"{spec.name} variant {variant!r} has no LoRA path.")
    return config


def _lora_source(
    spec: ModelSpec, variant: str, path: str, weight_name: str | None
) -> tuple[str, dict]:
    candidate = Path(path)
    if candidate.is_file():
        return str(candidate.parent), {"weight_name": candidate.name, "local_files_only": True}
    if candidate.is_dir():
        if weight_name and not (candidate / weight_name).is_file():
            raise ModelWeightsMissing(
                f"LoRA {variant!r} of {spec.name}: {candidate / weight_name} does not exist."
            )
        kwargs: dict[str, Any] = {"local_files_only": True}
        if weight_name:
            kwargs["weight_name"] = weight_name
        return str(candidate), kwargs
    if _hub_allowed() and "/" in path and not path.startswith(("/", ".")):
        return path, {"weight_name": weight_name} if weight_name else {}
    raise ModelWeightsMissing(
        f"LoRA {variant!r} of {spec.name} not found at {path}; hub downloads are not allowed."
    )


def _place(pipe: Any, spec: ModelSpec, device: Any) -> None:
    """Put the pipeline on ``device`` with the configured offload and VAE tiling."""
    torch = _torch()
    offload = spec.offload or getattr(settings, "REELCAST_WAN_OFFLOAD", "none") or "none"
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, not {offload!r}.")
    if offload == "model" and device.type == "cpu":
        # enable_model_cpu_offload raises without an accelerator; on the CPU there is nothing
        # to offload to anyway.
        logger.info("model offload needs an accelerator; %s stays on the CPU", spec.name)
        offload = "none"
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.type == "cuda",
        )
    tiling = spec.vae_tiling
    if tiling is None:
        tiling = bool(getattr(settings, "REELCAST_WAN_VAE_TILING", False))
    if tiling:
        pipe.vae.enable_tiling()


# --------------------------------------------------------------------------------------------
# Process-wide choices

_attention_lock = threading.Lock()
_attention_choice: list[str] = []  # empty until chosen; then [name or ""]


def attention_backend_name() -> str:
    """The attention backend for this worker process, read from settings once.

    ``REELCAST_WAN_ATTENTION`` names a diffusers backend ("native", "flash", "_flash_3",
    "sage", ...). Backends whose name ends in ``_hub`` fetch kernels from the hub and are refused
    unless hub downloads are allowed. "" keeps diffusers' default (PyTorch SDPA).
    """
    with _attention_lock:
        if not _attention_choice:
            name = (getattr(settings, "REELCAST_WAN_ATTENTION", "") or "").strip().lower()
            if name:
                from diffusers.models.attention_dispatch import AttentionBackendName

                known = {member.value for member in AttentionBackendName}
                if name not in known:
                    raise ValueError(
                        f"REELCAST_WAN_ATTENTION={name!r} is not a diffusers attention backend "
                        f"({', '.join(sorted(known))})."
                    )
                if name.endswith("_hub") and not _hub_allowed():
                    raise ValueError(
                        f"REELCAST_WAN_ATTENTION={name!r} downloads kernels from the hub; "
                        "install the kernel package instead or allow hub downloads."
                    )
            _attention_choice.append(name)
        return _attention_choice[0]


def default_device() -> Any:
    torch = _torch()
    name = getattr(settings, "REELCAST_WAN_DEVICE", "") or ""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_GPU_CLASSES = (
    ("gh200", "gh200"),
    ("h200", "h200"),
    ("h100", "h100"),
    ("h800", "h800"),
    ("h20", "h20"),
    ("b200", "b200"),
    ("l40s", "l40s"),
    ("l40", "l40"),
    ("l4", "l4"),
    ("a10g", "a10g"),
    ("a6000", "rtx-a6000"),
)


def hardware_class_for(gpu_name: str, total_memory_bytes: int) -> str:
    """The billing hardware class for a GPU, from its marketing name."""
    name = gpu_name.lower()
    if "a100" in name:
        return "a100-80gb" if total_memory_bytes > 60 * 1024**3 else "a100-40gb"
    for token, hardware_class in _GPU_CLASSES:
        if token in name:
            return hardware_class
    name = re.sub(r"\b(nvidia|geforce|tesla)\b", " ", name)
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"


def detect_hardware_class(device: Any = None) -> str:
    configured = getattr(settings, "REELCAST_HARDWARE_CLASS", "") or ""
    if configured:
        return configured
    torch = _torch()
    device = torch.device(device) if device is not None else default_device()
    if device.type != "cuda":
        return "cpu"
    properties = torch.cuda.get_device_properties(device)
    return hardware_class_for(properties.name, properties.total_memory)


# --------------------------------------------------------------------------------------------
# The warm-pipeline cache


@dataclass
class _Entry:
    key: tuple[str, str, str]
    fingerprint: str
    pipe: Any
    approx_bytes: int
    device: str
    load_seconds: float


class PipelineCache:
    """Loaded pipelines keyed by (model, mode, variant), least recently used evicted first.

    On an accelerator the bound is memory: the weights of every cached pipeline (measured after
    loading, estimated from the safetensors headers before) must fit in
    ``REELCAST_WAN_CACHE_GPU_BUDGET_GB`` (default 90% of the device). On the CPU the bound is
    ``REELCAST_WAN_CACHE_MAX_PIPELINES``. The pipeline being loaded is never evicted for itself.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._measured: dict[str, int] = {}  # fingerprint -> bytes once loaded
        self._lock = threading.RLock()
        self.loads = 0
        self.evictions: list[tuple[str, str, str]] = []

    def get(
        self, spec: ModelSpec, *, mode: str, variant: str | None, device: Any
    ) -> tuple[Any, float]:
        """(pipeline, seconds spent loading it now: 0.0 when it was warm)."""
        torch = _torch()
        device = torch.device(device)
        mode = _shared_mode(spec, mode)
        key = (spec.name, mode, variant or "")
        fingerprint = repr((key, spec, str(device), _placement_settings()))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.fingerprint == fingerprint:
                self._entries.move_to_end(key)
                return entry.pipe, 0.0
            if entry is not None:
                self._evict(key)
            self._make_room(device, self._expected_bytes(fingerprint, spec, device))
            _synchronize(torch, device)
            started = time.perf_counter()
            pipe = load_pipeline(spec, device=device, mode=mode, variant=variant)
            _synchronize(torch, device)
            seconds = time.perf_counter() - started
            size = pipeline_bytes(pipe)
            self._measured[fingerprint] = size
            self._entries[key] = _Entry(key, fingerprint, pipe, size, str(device), seconds)
            self.loads += 1
            self._make_room(device, 0, keep=key)
            return pipe, seconds

    def peek(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            return entry.pipe if entry is not None else None

    def describe(self) -> list[dict]:
        """Most recently used first: name, mode, variant, approx_bytes, device, load_seconds."""
        with self._lock:
            return [
                {
                    "name": entry.key[0],
                    "mode": entry.key[1],
                    "variant": entry.key[2],
                    "approx_bytes": entry.approx_bytes,
                    "device": entry.device,
                    "load_seconds": round(entry.load_seconds, 3),
                }
                for entry in reversed(self._entries.values())
            ]

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._evict(key)
            self.evictions.clear()

    def _expected_bytes(self, fingerprint: str, spec: ModelSpec, device: Any) -> int:
        if fingerprint in self._measured:
            return self._measured[fingerprint]
        if spec.weights and Path(spec.weights).is_dir():
            return estimate_weight_bytes(spec.weights, cpu=device.type == "cpu")
        return 0

    def _make_room(self, device: Any, incoming: int, keep: tuple | None = None) -> None:
        if device.type == "cpu":
            limit = int(
                getattr(settings, "REELCAST_WAN_CACHE_MAX_PIPELINES", DEFAULT_CPU_CACHE_PIPELINES)
            )
            limit = max(1, limit)
            reserve = 0 if keep is not None else 1
            while len(self._entries) + reserve > limit and self._evictable(keep):
                self._evict(self._evictable(keep)[0])
            return
        budget = _gpu_budget_bytes(device)
        while self._evictable(keep) and self._resident_bytes() + incoming > budget:
            self._evict(self._evictable(keep)[0])

    def _evictable(self, keep: tuple | None) -> list[tuple[str, str, str]]:
        return [key for key in self._entries if key != keep]

    def _resident_bytes(self) -> int:
        return sum(entry.approx_bytes for entry in self._entries.values())

    def _evict(self, key: tuple[str, str, str]) -> None:
        entry = self._entries.pop(key)
        self.evictions.append(key)
        logger.info("evicting %s/%s/%s (%d bytes)", *key, entry.approx_bytes)
        try:
            entry.pipe.maybe_free_model_hooks()
        finally:
            del entry
            _free_memory()


def _placement_settings() -> tuple:
    return (
        getattr(settings, "REELCAST_WAN_OFFLOAD", "none"),
        getattr(settings, "REELCAST_WAN_VAE_TILING", False),
        getattr(settings, "REELCAST_WAN_VAE_DTYPE", "float32"),
        getattr(settings, "REELCAST_ALLOW_HUB_DOWNLOADS", False),
    )


def _gpu_budget_bytes(device: Any) -> int:
    configured = float(getattr(settings, "REELCAST_WAN_CACHE_GPU_BUDGET_GB", 0) or 0)
    if configured > 0:
        return int(configured * 1024**3)
    torch = _torch()
    total = torch.cuda.get_device_properties(device).total_memory
    return int(total * DEFAULT_GPU_BUDGET_FRACTION)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's models, wherever they live."""
    torch = _torch()
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


def estimate_weight_bytes(directory: str | Path, *, cpu: bool) -> int:
    """What the weights under ``directory`` will take once loaded, read from file headers only.

    Safetensors headers give every tensor's shape; the size is counted in the dtype the loader
    will use (float32 on the CPU; bfloat16, VAE float32, on an accelerator). Other weight files
    count at their size on disk.
    """
    total = 0
    for path in Path(directory).rglob("*"):
        if not path.is_file():
            continue
        component = path.relative_to(directory).parts[0]
        bytes_per_element = 4 if cpu or component == "vae" else 2
        if path.suffix == ".safetensors":
            total += _safetensors_elements(path) * bytes_per_element
        elif path.suffix in (".bin", ".pt", ".pth", ".ckpt"):
            total += path.stat().st_size
    return total


def _safetensors_elements(path: Path) -> int:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return sum(
        math.prod(info["shape"])
        for name, info in header.items()
        if name != "__metadata__" and info.get("dtype") in _SAFETENSORS_BYTES
    )


_CACHE = PipelineCache()


def pipeline_cache() -> PipelineCache:
    return _CACHE


def loaded_models() -> list[dict]:
    """For the worker heartbeat: what is warm, most recently used first, with approx bytes."""
    return _CACHE.describe()


def warm_up(model_names: Iterable[str]) -> list[dict]:
    """Load models at worker start so that the first job does not pay for it.

    Each name is ``model``, ``model:mode`` or ``model:mode:variant``; without a mode the model's
    first mode is loaded. Returns ``loaded_models()``.
    """
    device = default_device()
    for item in model_names:
        name, _, rest = item.partition(":")
        mode, _, variant = rest.partition(":")
        spec = registry.get_model(name)
        _CACHE.get(spec, mode=mode or spec.modes[0], variant=variant or None, device=device)
    return loaded_models()


# --------------------------------------------------------------------------------------------
# Generation


class WanBackend:
    """Generates every shot of a request with one warm Wan2.2 pipeline."""

    name = "wan"

    def __init__(self, *, device: str | None = None) -> None:
        self._device_name = device

    @property
    def device(self) -> Any:
        if self._device_name:
            return _torch().device(self._device_name)
        return default_device()

    @property
    def hardware_class(self) -> str:
        configured = getattr(settings, "REELCAST_HARDWARE_CLASS", "") or ""
        return configured or detect_hardware_class(self.device)

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        should_cancel: CancelCheck,
    ) -> GenerationResult:
        """Make every shot; progress counts denoising steps over the whole request.

        ``on_progress(done, total)`` runs after each step with ``total = steps * shots``, so
        two shots of 3 steps report (1, 6) ... (6, 6). Request options: ``variant`` (a LoRA
        variant), ``steps``, ``guidance_scale``, ``guidance_scale_2``, ``image_fit``
        ("crop" or "pad" the reference image to the frame's aspect ratio).

        The mode follows the request (``request_mode``): ``reference_images`` make it r2v, each
        image scaled to fit the frame and padded on white as VACE expects; ``reference_image``
        makes it i2v, the image being the first frame; neither makes it t2v. Images are decoded
        before the model is loaded, so an unreadable upload costs no loading.
        """
        spec = registry.get_model(request.model)
        mode = request_mode(request)
        errors = request_errors(spec, request)
        if errors:
            raise ValueError(
                "; ".join(f"{field}: {reason}" for field, reason in sorted(errors.items()))
            )
        options = request.options or {}
        variant = options.get("variant") or None
        variant_config = _variant_config(spec, variant) if variant else {}
        steps = int(options.get("steps") or variant_config.get("steps") or spec.steps)
        guidance_scale = float(
            options.get("guidance_scale", variant_config.get("guidance_scale", spec.guidance_scale))
        )
        guidance_scale_2 = options.get(
            "guidance_scale_2", variant_config.get("guidance_scale_2", spec.guidance_scale_2)
        )
        if steps < 1:
            raise ValueError(f"{spec.name}: steps must be at least 1 (got {steps}).")

        if should_cancel():
            raise GenerationCanceled(
                completed=[], partial_device_seconds=0.0, partial_shot_index=None
            )

        image_inputs: dict[str, Any] = {}
        if mode == "i2v":
            image_inputs["image"] = fit_reference_image(
                request.reference_image,
                width=request.width,
                height=request.height,
                fit=options.get("image_fit", "crop"),
            )
        elif mode == "r2v":
            image_inputs["reference_images"] = fit_reference_images(
                request.reference_images, width=request.width, height=request.height
            )

        torch = _torch()
        device = self.device
        try:
            pipe, load_seconds = _CACHE.get(spec, mode=mode, variant=variant, device=device)
        except Exception as exc:
            if _is_out_of_memory(torch, exc):
                _free_memory()
                raise PlatformFault(
                    f"out of GPU memory while loading {spec.name}: {exc}", code="gpu_out_of_memory"
                ) from exc
            raise

        call_kwargs: dict[str, Any] = {
            "height": request.height,
            "width": request.width,
            "num_inference_steps": steps,
            "guidance_scale": guidance_scale,
            "output_type": "np",
            "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "callback_on_step_end_tensor_inputs": [],
        }
        if guidance_scale_2 is not None and pipe.config.get("boundary_ratio") is not None:
            call_kwargs["guidance_scale_2"] = float(guidance_scale_2)
        call_kwargs.update(image_inputs)

        total_steps = steps * len(request.shots)
        completed: list[ShotResult] = []
        for position, shot in enumerate(request.shots):
            if should_cancel():
                raise GenerationCanceled(
                    completed=completed, partial_device_seconds=0.0, partial_shot_index=None
                )
            steps_before = position * steps

            def on_step_end(_pipe, step_index, _timestep, _tensors, _before=steps_before):
                on_progress(_before + step_index + 1, total_steps)
                if should_cancel():
                    raise _CancelRequested
                return {}

            generator = torch.Generator(device=device).manual_seed(shot.seed)
            _synchronize(torch, device)
            started = time.perf_counter()
            try:
                output = pipe(
                    prompt=shot.prompt,
                    negative_prompt=shot.negative_prompt or None,
                    num_frames=shot.num_frames,
                    generator=generator,
                    callback_on_step_end=on_step_end,
                    **call_kwargs,
                )
                _synchronize(torch, device)
            except _CancelRequested:
                _synchronize(torch, device)
                spent = time.perf_counter() - started
                pipe.maybe_free_model_hooks()
                raise GenerationCanceled(
                    completed=completed,
                    partial_device_seconds=spent,
                    partial_shot_index=shot.index,
                ) from None
            except Exception as exc:
                pipe.maybe_free_model_hooks()
                if not _is_out_of_memory(torch, exc):
                    raise
                _free_memory()
                raise PlatformFault(
                    f"out of GPU memory generating shot {shot.index} of {spec.name} at "
                    f"{request.width}x{request.height}, {shot.num_frames} frames: {exc}",
                    code="gpu_out_of_memory",
                ) from exc
            seconds = time.perf_counter() - started
            frames = frames_to_uint8(output.frames[0])
            expected = (shot.num_frames, request.height, request.width, 3)
            if frames.shape != expected:
                raise PlatformFault(
                    f"{spec.name} returned frames of shape {frames.shape}, expected {expected}.",
                    code="backend_shape_mismatch",
                )
            completed.append(
                ShotResult(index=shot.index, frames=frames, device_seconds=seconds, seed=shot.seed)
            )

        return GenerationResult(
            shots=completed,
            fps=request.fps,
            hardware_class=self.hardware_class,
            model_load_seconds=load_seconds,
        )


def request_mode(request: GenerationRequest) -> str:
    """r2v with reference images, i2v with a first-frame image, t2v with neither."""
    if request.reference_images:
        return "r2v"
    if request.reference_image is not None:
        return "i2v"
    return "t2v"


def request_errors(spec: ModelSpec, request: GenerationRequest) -> dict[str, str]:
    """Field -> reason for everything this model will not take in ``request`` as given."""
    errors: dict[str, str] = {}
    if spec.backend != "wan":
        errors["model"] = f"{spec.name} is not a wan model."
        return errors
    if not request.shots:
        errors["shots"] = "a request needs at least one shot."
        return errors
    frames = [shot.num_frames for shot in request.shots]
    duration = sum(frames) / request.fps if request.fps > 0 else 0.0
    errors.update(
        registry.geometry_errors(
            spec,
            width=request.width,
            height=request.height,
            fps=request.fps,
            duration_s=duration,
            frames_per_shot=frames,
        )
    )
    if any(count < 1 for count in frames):
        errors["num_frames"] = "every shot needs at least one frame."
    mode = request_mode(request)
    if request.reference_images and request.reference_image is not None:
        errors["reference_images"] = (
            "give reference images (reference-to-video) or a reference image (the first "
            "frame), not both."
        )
    elif mode == "r2v" and "r2v" not in spec.modes:
        errors["reference_images"] = (
            f"{spec.name} does not take reference images; reference-to-video needs a model "
            "with the r2v mode (a VACE model)."
        )
    elif mode == "r2v" and len(request.reference_images) > MAX_REFERENCE_IMAGES:
        errors["reference_images"] = (
            f"at most {MAX_REFERENCE_IMAGES} reference images "
            f"(got {len(request.reference_images)})."
        )
    elif mode not in spec.modes:
        if mode == "i2v":
            errors["reference_image"] = f"{spec.name} does not take a reference image."
        elif "i2v" in spec.modes:
            errors["reference_image"] = f"{spec.name} needs a reference image."
        else:
            errors["reference_images"] = f"{spec.name} needs reference images."
    fit = (request.options or {}).get("image_fit", "crop")
    if fit not in IMAGE_FITS:
        errors["image_fit"] = f"image_fit must be one of {', '.join(IMAGE_FITS)} (got {fit!r})."
    return errors


def fit_reference_image(data: bytes, *, width: int, height: int, fit: str = "crop") -> Any:
    """The reference image as an RGB PIL image of exactly ``width`` x ``height``.

    diffusers resizes the image to the frame size without keeping its aspect ratio; cropping
    (centre) or padding (black bars) first keeps the subject undistorted.
    """
    from PIL import Image, ImageOps

    if fit not in IMAGE_FITS:
        raise ValueError(f"image_fit must be one of {', '.join(IMAGE_FITS)}, not {fit!r}.")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the reference image cannot be read: {exc}") from exc
    resample = Image.Resampling.LANCZOS
    if fit == "crop":
        return ImageOps.fit(image, (width, height), method=resample, centering=(0.5, 0.5))
    return ImageOps.pad(image, (width, height), method=resample, color=(0, 0, 0))


def fit_reference_images(images: Iterable[bytes], *, width: int, height: int) -> list[Any]:
    """Reference images for VACE: RGB PIL images of exactly ``width`` x ``height``.

    Each is turned upright (EXIF), scaled to fit whole and centred on white, transparency on
    white too (product photos are often cut-out PNGs): what the official wan/vace.py and
    diffusers' WanVACEPipeline do to a reference of another size. Doing it here, once, decodes
    a 12-megapixel phone photo at the frame size instead of handing it to the pipeline whole.
    Nothing is cropped, so a garment is never cut.
    """
    from PIL import Image, ImageOps

    from generation.tryon import decode_upright

    fitted = []
    for number, data in enumerate(images, start=1):
        image = decode_upright(
            data, f"reference image {number}", max(width, height), REFERENCE_BACKGROUND
        )
        fitted.append(
            ImageOps.pad(
                image,
                (width, height),
                method=Image.Resampling.LANCZOS,
                color=REFERENCE_BACKGROUND,
            )
        )
    return fitted


def frames_to_uint8(frames: Any) -> np.ndarray:
    """Float frames in [0, 1], shape (frames, height, width, 3), to uint8 RGB."""
    array = np.asarray(frames, dtype=np.float32)
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# torch helpers (all lazy)


def _torch() -> Any:
    import torch

    adopt_logger("torch")  # torch gives its loggers stderr handlers of their own
    return torch


def _synchronize(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_out_of_memory(torch: Any, exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_memory() -> None:
    gc.collect()
    torch = _torch()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

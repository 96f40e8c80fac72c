"""Per-job overhead of the wan backend, measured on a tiny random-weight Wan2.2 pipeline (CPU).

Builds the tiny model (tests/support/tiny_wan.py) in a temporary directory, loads it once
through ``WanBackend``, then runs N one-shot jobs and, as the reference, N direct calls of the
same diffusers pipeline with the same arguments. The difference is what the backend adds per
job: request validation, cache lookup, generator, step callback, timing, frame conversion.

    .venv/bin/python bench/tiny_pipeline.py [--model wan2.2-t2v-a14b] [--jobs 20] [--steps 4]

Headline (last line): ``model=... load_s=... ms_per_job=... raw_ms_per_job=...
overhead_ms_per_job=... ratio_to_raw_pipeline=... outside_pipeline_ms_per_job=...
ms_per_step=...``. On a busy machine the direct-call comparison is noisy (a few ms either way);
``outside_pipeline_ms_per_job`` (job time minus the device time measured around the pipeline
call) is the backend's own bookkeeping and is stable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"wan2.2-t2v-a14b": (48, 32), "wan2.2-i2v-a14b": (48, 32), "wan2.2-ti2v-5b": (64, 32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SIZES), default="wan2.2-t2v-a14b")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    import diffusers  # noqa: F401  (import cost reported apart from load time)

    import_s = time.perf_counter() - started

    from django.conf import settings

    with tempfile.TemporaryDirectory(prefix="tiny-wan-bench-") as root:
        settings.configure(
            REELCAST_MODEL_DIR=root,
            REELCAST_WAN_DEVICE="cpu",
            REELCAST_HARDWARE_CLASS="cpu",
            LOGGING_CONFIG=None,
        )
        from generation import registry
        from generation.backends import wan
        from generation.backends.base import GenerationRequest, ShotSpec
        from tests.support import tiny_wan

        tiny_wan.BUILDERS[args.model](Path(root) / args.model)
        width, height = SIZES[args.model]
        image = _reference_image() if args.model == "wan2.2-i2v-a14b" else None

        def request(seed: int) -> GenerationRequest:
            shot = ShotSpec(
                index=0,
                prompt="a student walks through the park",
                negative_prompt="blurry",
                num_frames=args.frames,
                seed=seed,
            )
            return GenerationRequest(
                model=args.model,
                width=width,
                height=height,
                fps=16,
                shots=(shot,),
                reference_image=image,
                options={"steps": args.steps},
            )

        backend = wan.WanBackend()
        step_times: list[float] = []
        last = [0.0]

        def on_progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if done > 1:
                step_times.append(now - last[0])
            last[0] = now

        first = backend.generate(request(0), on_progress=on_progress, should_cancel=lambda: False)
        load_s = first.model_load_seconds

        pipe = wan.pipeline_cache().peek((args.model, "i2v" if image else "t2v", ""))
        spec = registry.get_model(args.model)
        call = {
            "height": height,
            "width": width,
            "num_frames": args.frames,
            "num_inference_steps": args.steps,
            "guidance_scale": spec.guidance_scale,
            "output_type": "np",
            "max_sequence_length": wan.MAX_SEQUENCE_LENGTH,
        }
        if spec.guidance_scale_2 is not None:
            call["guidance_scale_2"] = spec.guidance_scale_2
        if image is not None:
            call["image"] = wan.fit_reference_image(image, width=width, height=height)

        # Backend jobs and direct calls alternate, so that drift in the machine's speed hits
        # both alike.
        job_times, device_times, raw_times = [], [], []
        for seed in range(1, args.jobs + 1):
            last[0] = time.perf_counter()
            t0 = time.perf_counter()
            result = backend.generate(
                request(seed), on_progress=on_progress, should_cancel=lambda: False
            )
            job_times.append(time.perf_counter() - t0)
            device_times.append(result.shots[0].device_seconds)
            t0 = time.perf_counter()
            pipe(
                prompt="a student walks through the park",
                negative_prompt="blurry",
                generator=torch.Generator("cpu").manual_seed(seed),
                **call,
            )
            raw_times.append(time.perf_counter() - t0)

    ms_per_job = statistics.median(job_times) * 1000
    raw_ms = statistics.median(raw_times) * 1000
    device_ms = statistics.median(device_times) * 1000
    ms_per_step = statistics.median(step_times) * 1000
    print(f"model: {args.model} {width}x{height}, {args.frames} frames, {args.steps} steps, CFG")
    print(f"torch threads: {torch.get_num_threads()}, jobs: {args.jobs} (medians below)")
    print(f"import torch+diffusers: {import_s:.2f} s, first load through the cache: {load_s:.3f} s")
    print(f"backend job: {ms_per_job:.1f} ms (device seconds billed: {device_ms:.1f} ms)")
    print(f"backend work outside the pipeline call: {ms_per_job - device_ms:.2f} ms")
    print(f"direct pipeline call: {raw_ms:.1f} ms")
    print(f"per denoising step (between progress events): {ms_per_step:.1f} ms")
    print(
        f"model={args.model} load_s={load_s:.3f} ms_per_job={ms_per_job:.1f} "
        f"raw_ms_per_job={raw_ms:.1f} overhead_ms_per_job={ms_per_job - raw_ms:.1f} "
        f"ratio_to_raw_pipeline={ms_per_job / raw_ms:.3f} "
        f"outside_pipeline_ms_per_job={ms_per_job - device_ms:.2f} ms_per_step={ms_per_step:.1f}"
    )


def _reference_image() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (100, 40), (180, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    main()

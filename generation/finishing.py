"""From a job (and its tenant's brand kit) to the finishing pipeline's inputs, and back to
stored files. The task only sequences these; the frame work is generation.postprocess."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from generation.models import BrandKit, Job
from generation.postprocess.brand import BrandKit as BrandLook
from generation.postprocess.finish import Finished, FinishSpec, FrameHook
from generation.postprocess.layout import canvas_size
from generation.storage import get_bytes, job_key, put_bytes
from moderation.provenance_service import implicit_label

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def split_shots(job: Job, frames: np.ndarray) -> list[np.ndarray]:
    """The raw hand-over holds the shots back to back; the plan says how long each is."""
    bounds = np.cumsum([shot["num_frames"] for shot in job.shots])[:-1]
    return np.split(frames, bounds)


def label_locale(job: Job, brand: BrandKit | None) -> str:
    if brand is not None and brand.label_locale:
        return brand.label_locale
    text = job.title + " ".join(shot["prompt"] for shot in job.shots)
    return "zh-Hans" if _CJK.search(text) else "en"


def finish_spec_for(job: Job, *, frame_hooks: tuple[FrameHook, ...] = ()) -> FinishSpec:
    brand = BrandKit.objects.for_tenant(job.tenant).first()
    look = BrandLook()
    music = None
    if brand is not None:
        look = BrandLook(
            logo_png=get_bytes(brand.logo_key) if brand.logo_key else None,
            logo_corner=brand.logo_corner,
            logo_size=brand.logo_size,
            primary_colour=brand.primary_colour,
            secondary_colour=brand.secondary_colour,
            intro_text=brand.intro_text,
            intro_seconds=brand.intro_seconds,
            outro_text=brand.outro_text,
            outro_seconds=brand.outro_seconds,
        )
        music = get_bytes(brand.music_key) if brand.music_key else None
    return FinishSpec(
        width=job.width,
        height=job.height,
        fps=job.fps,
        orientation="portrait" if job.height > job.width else "landscape",
        locale=label_locale(job, brand),
        title=job.title,
        # Ours for every backend: shots carry no text of their own (the preview storyboard
        # included), so the title card, like the subtitles, is drawn once, here.
        title_seconds=2.0,
        subtitles=tuple(shot.get("scene_text") or shot["prompt"] for shot in job.shots),
        brand=look,
        music=music,
        # The implicit label: codes, not names; the job id is the produce id, signed.
        aigc=implicit_label(job),
        frame_hooks=frame_hooks,
    )


def variant_specs(job: Job, primary: FinishSpec) -> dict[str, FinishSpec]:
    """The same finish on the template's further canvases (16:9 <-> 9:16), same short side."""
    short = min(job.width, job.height)
    specs = {}
    for orientation in job.extra_outputs:
        width, height = canvas_size(orientation, short)
        specs[orientation] = replace(primary, width=width, height=height, orientation=orientation)
    return specs


def store_variant(job: Job, orientation: str, finished: Finished, *, mp4: bytes) -> dict[str, str]:
    return {
        "video": put_bytes(job_key(job, f"video-{orientation}.mp4"), mp4),
        "poster": put_bytes(job_key(job, f"poster-{orientation}.jpg"), finished.poster_jpeg),
    }


@dataclass(frozen=True)
class StoredOutputs:
    video_key: str
    poster_key: str
    video_bytes: int


def store_outputs(job: Job, finished: Finished, *, mp4: bytes) -> StoredOutputs:
    """Write every output under the job's tenant-scoped prefix (``mp4``: the signed video)."""
    put_bytes(job_key(job, f"preview.{finished.preview_format}"), finished.preview)
    put_bytes(job_key(job, "subtitles.srt"), finished.srt.encode())
    put_bytes(job_key(job, "subtitles.vtt"), finished.vtt.encode())
    poster_key = put_bytes(job_key(job, "poster.jpg"), finished.poster_jpeg)
    video_key = put_bytes(job_key(job, "video.mp4"), mp4)
    return StoredOutputs(video_key=video_key, poster_key=poster_key, video_bytes=len(mp4))

"""The contract every video backend implements.

A backend turns a shot plan into raw RGB frames and reports how long the device worked on each
shot. It knows nothing about Django, jobs or storage: the task layer hands it plain data and two
callables, and records what comes back. `preview` (CPU) and `wan` (diffusers on a GPU) implement
it; the job pipeline cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

ProgressCallback = Callable[[int, int], None]
"""Called as ``on_progress(done, total)`` in units the backend chooses (steps or frames)."""

CancelCheck = Callable[[], bool]
"""Returns True once the job has been asked to stop; backends poll it between units of work."""


@dataclass(frozen=True)
class ShotSpec:
    """One shot of the plan: what to show and how many frames to make."""

    index: int
    prompt: str
    negative_prompt: str
    num_frames: int
    seed: int
    scene_text: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a backend needs for one job, already validated by the Django layer."""

    model: str
    width: int
    height: int
    fps: int
    shots: tuple[ShotSpec, ...]
    title: str = ""
    # The first frame, for image-to-video (i2v).
    reference_image: bytes | None = None
    # Images that condition the whole clip without being a frame of it, for reference-to-video
    # (r2v, VACE). In a try-on the person's photo comes first, then the product images
    # (generation.tryon.tryon_inputs builds both fields). At most one of the two is set.
    reference_images: tuple[bytes, ...] = ()
    options: dict = field(default_factory=dict)


@dataclass
class ShotResult:
    """Frames as uint8 RGB, shape (frames, height, width, 3), and the device time they took."""

    index: int
    frames: np.ndarray
    device_seconds: float
    seed: int


@dataclass
class GenerationResult:
    shots: list[ShotResult]
    fps: int
    hardware_class: str
    model_load_seconds: float = 0.0

    @property
    def frames(self) -> np.ndarray:
        return np.concatenate([shot.frames for shot in self.shots], axis=0)


class GenerationCanceled(Exception):
    """Raised from inside a backend when the cancel check said stop.

    ``completed`` holds the shots that finished and ``partial_device_seconds`` the device time
    spent on the interrupted shot, so that the steps that did run can still be billed.
    """

    def __init__(
        self,
        *,
        completed: list[ShotResult],
        partial_device_seconds: float,
        partial_shot_index: int | None,
    ):
        super().__init__("generation canceled")
        self.completed = completed
        self.partial_device_seconds = partial_device_seconds
        self.partial_shot_index = partial_shot_index


class PlatformFault(Exception):
    """A failure that is the platform's, not the tenant's (out of memory, lost device).

    Jobs that end with a platform fault are not billed.
    """

    code = "platform_fault"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class Backend(Protocol):
    name: str
    hardware_class: str

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        should_cancel: CancelCheck,
    ) -> GenerationResult: ...

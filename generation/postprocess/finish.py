"""Shots in, a finished video out: one pass over the frames, one encode.

``finish`` lays the video out on a timeline (intro card, title card, the shots, outro card;
shots cross-fade into each other, cards cut), renders everything static once (cards,
subtitles, logo, label), and then walks the timeline frame by frame. Each frame is composed
(fitted shot or card, cross-faded where two overlap), gets its subtitle, the logo, the visible
AI label and then the frame hooks (the invisible watermark), is converted to yuv420p and goes
straight into the one libx264 encode; the poster and preview frames are picked off the same
stream. Nothing is written to disk and decoded again, and nothing touches the MP4 after the
encode wrote it with its ``AIGC`` tag, so a C2PA signature (issue 6) can be the last write.

Composing runs in one worker thread a few frames ahead of the encoder (numpy, swscale and
x264 all release the GIL), and the animated preview is encoded beside the video once its
frames are in: on a machine with a core to spare the finishing costs little more wall time
than the encode alone (``bench/postprocess.py``).

Timing, in frames of the composed video. Consecutive shots overlap by the cross-fade (at most
half of either), so the video is shorter than the sum of its parts by the overlaps. During a
cross-fade the incoming shot's weight rises (k + 0.5) / overlap; a segment's *span* starts at
the first frame in which it is more than half the picture and ends where the next one's
starts. Subtitle cues, the burned-in text and the sidecars all use the spans. Cards cut: a
dissolve out of a flat card costs the encoder several times a normal frame, and the brief for
transitions is between shots.

No Django here: the job pipeline maps its models onto ``FinishSpec`` and stores ``Finished``.
"""

from __future__ import annotations

import io
import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter
from PIL import Image

from generation.postprocess import audio
from generation.postprocess.brand import (
    BrandKit,
    load_logo,
    logo_overlay,
    place_logo,
    render_card,
)
from generation.postprocess.encode import encode_mp4, poster_jpeg, to_video_frame
from generation.postprocess.label import AigcLabel, apply_ai_label, label_box
from generation.postprocess.layout import Box, Fitter, check_canvas, cross_fade, parse_colour
from generation.postprocess.subtitles import Cue, RenderedSubtitle, render_subtitle, to_srt, to_vtt

FrameHook = Callable[[int, np.ndarray], np.ndarray]
"""``hook(frame_index, frame) -> frame``: called once per output frame, in order, last.

``frame`` is uint8 RGB (height, width, 3), already labelled. Change it in place and return it,
or return a new array of the same shape; do not keep it after returning, since its buffer
holds the next frame next. Hooks run in one worker thread, never two frames at once."""

T = TypeVar("T")

AIGC_TAG = "AIGC"
PIPELINE_DEPTH = 4  # composed frames waiting for the encoder: 4 x 1.4 MB at 720p
TITLE_SIZE = 0.11  # of the shorter side
CARD_SIZE = 0.08


@dataclass(frozen=True)
class FinishSpec:
    """Everything ``finish`` needs besides the shots: plain data, validated by ``validate``.

    ``width`` x ``height`` is the output canvas and must agree with ``orientation``
    (``layout.canvas_size`` gives 16:9 and 9:16 sizes); shots of another size are fitted by
    centre-crop (``fit="crop"``) or letterboxed (``fit="pad"``). ``subtitles`` holds one text
    per shot ("" for none) or is empty; their times come from the shots' frame counts, so the
    sidecars cannot disagree with the picture. ``music`` is any audio file ffmpeg decodes.
    There is deliberately no field that turns the AI label off or moves it.
    """

    width: int
    height: int
    fps: int
    aigc: AigcLabel
    orientation: str = "landscape"
    locale: str = "zh-Hans"
    title: str = ""
    title_seconds: float = 2.0
    subtitles: tuple[str, ...] = ()
    brand: BrandKit = field(default_factory=BrandKit)
    music: bytes | None = None
    target_lufs: float = audio.TARGET_LUFS
    transition_seconds: float = 0.3
    fit: str = "crop"
    frame_hooks: tuple[FrameHook, ...] = ()
    crf: int = 20
    preset: str = "veryfast"
    preview_seconds: float = 3.0
    preview_fps: int = 8
    preview_max_side: int = 480

    def validate(self, shot_count: int) -> None:
        check_canvas(self.width, self.height, self.orientation)
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be between 1 and 120 (got {self.fps})")
        if self.subtitles and len(self.subtitles) != shot_count:
            raise ValueError(f"{len(self.subtitles)} subtitles for {shot_count} shots")
        if self.title_seconds < 0 or self.transition_seconds < 0:
            raise ValueError("durations cannot be negative")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"fit must be 'crop' or 'pad' (got {self.fit!r})")
        if not 1 <= self.preview_fps <= 30 or not 16 <= self.preview_max_side <= 480:
            raise ValueError("the preview is 1-30 fps and at most 480 pixels on its longer side")
        self.brand.validate()
        self.aigc.fields()
        label_box(self.width, self.height, self.locale)


@dataclass(frozen=True)
class Span:
    """Where one segment of the timeline is the main picture: frames [start, end)."""

    kind: str  # "intro", "title", "shot" or "outro"
    start_frame: int
    end_frame: int
    shot_index: int | None = None


@dataclass(frozen=True)
class Finished:
    """The finished video and everything derived from it in the same pass."""

    mp4: bytes
    poster_jpeg: bytes
    preview: bytes
    preview_format: str  # "webp": animated, looping
    srt: str
    vtt: str
    label_box: Box
    logo_box: Box | None
    width: int
    height: int
    fps: int
    frame_count: int
    duration_s: float
    cues: tuple[Cue, ...]
    spans: tuple[Span, ...]
    aigc_json: str
    music_lufs: float | None  # integrated loudness of the soundtrack as encoded; None: silence


@dataclass(frozen=True)
class _Segment:
    kind: str
    length: int
    source: Callable[[int], np.ndarray]  # frame k of the segment on the canvas, read-only
    subtitle: RenderedSubtitle | None = None
    shot_index: int | None = None
    text: str = ""
    corner_logo: bool = True


@dataclass(frozen=True)
class _Timeline:
    starts: tuple[int, ...]
    overlaps: tuple[int, ...]  # between segment i and i + 1
    cuts: tuple[int, ...]  # first frame of segment i + 1's span
    total: int

    @classmethod
    def lay_out(cls, segments: Sequence[_Segment], transition: int) -> _Timeline:
        """Shots cross-fade into shots; cards (intro, title, outro) cut."""
        lengths = [segment.length for segment in segments]
        starts, overlaps, cuts = [0], [], []
        for previous, current in itertools.pairwise(segments):
            dissolve = previous.kind == current.kind == "shot"
            overlap = min(transition, previous.length // 2, current.length // 2) if dissolve else 0
            starts.append(starts[-1] + previous.length - overlap)
            overlaps.append(overlap)
            cuts.append(starts[-1] + (overlap + 1) // 2)
        return cls(tuple(starts), tuple(overlaps), tuple(cuts), starts[-1] + lengths[-1])

    def span(self, index: int) -> tuple[int, int]:
        start = self.cuts[index - 1] if index > 0 else 0
        end = self.cuts[index] if index < len(self.cuts) else self.total
        return start, end


class _Canvas:
    """One RGB ``av.VideoFrame`` reused for every output frame, and a numpy view of its pixels.

    Frames are composed straight into the buffer the colour converter reads, so a frame is
    copied once (shot to canvas) instead of three times (to a new array, into a VideoFrame).
    """

    def __init__(self, width: int, height: int):
        self.frame = av.VideoFrame(width, height, "rgb24")
        plane = self.frame.planes[0]
        self.pixels = np.lib.stride_tricks.as_strided(
            np.frombuffer(plane, np.uint8),
            shape=(height, width, 3),
            strides=(plane.line_size, 3, 1),
        )


def finish(shots: Sequence[np.ndarray], spec: FinishSpec) -> Finished:
    """Compose, label, hook and encode ``shots`` (uint8 RGB, (frames, height, width, 3) each).

    Frame hooks get the frame being encoded: they may change it in place or return a new
    array, and must not keep it after they return (its buffer holds the next frame next).
    Raises ValueError for an invalid spec or shots, before any encoding starts.
    """
    shots = _check_shots(shots)
    spec.validate(len(shots))
    width, height, fps = spec.width, spec.height, spec.fps
    kit = spec.brand

    label = label_box(width, height, spec.locale)
    logo = load_logo(kit.logo_png) if kit.logo_png is not None else None
    corner_logo = None
    logo_box = None
    if logo is not None:
        placed, logo_box = place_logo(
            logo,
            corner=kit.logo_corner,
            size=kit.logo_size,
            width=width,
            height=height,
            label=label,
        )
        corner_logo = logo_overlay(placed, logo_box)
    avoid = [box for box in (logo_box, label) if box is not None]

    segments: list[_Segment] = []
    if kit.intro_seconds > 0:
        card = render_card(
            kit.intro_text, width=width, height=height, kit=kit, logo=logo, text_size=CARD_SIZE
        )
        segments.append(
            _Segment(
                "intro",
                _frames(kit.intro_seconds, fps),
                _still(card),
                text=kit.intro_text,
                corner_logo=logo is None,
            )
        )
    if spec.title.strip() and spec.title_seconds > 0:
        card = render_card(spec.title, width=width, height=height, kit=kit, text_size=TITLE_SIZE)
        segments.append(
            _Segment("title", _frames(spec.title_seconds, fps), _still(card), text=spec.title)
        )
    pad_colour = parse_colour(kit.primary_colour) if spec.fit == "pad" else (0, 0, 0)
    for number, shot in enumerate(shots):
        fitter = Fitter(shot.shape[1:3], (width, height), mode=spec.fit, pad_colour=pad_colour)
        text = spec.subtitles[number] if spec.subtitles else ""
        subtitle = render_subtitle(text, width=width, height=height, avoid=avoid)
        segments.append(
            _Segment(
                "shot",
                shot.shape[0],
                _moving(shot, fitter),
                subtitle=subtitle,
                shot_index=number,
                text=text,
            )
        )
    if kit.outro_seconds > 0:
        card = render_card(
            kit.outro_text, width=width, height=height, kit=kit, logo=logo, text_size=CARD_SIZE
        )
        segments.append(
            _Segment(
                "outro",
                _frames(kit.outro_seconds, fps),
                _still(card),
                text=kit.outro_text,
                corner_logo=logo is None,
            )
        )

    timeline = _Timeline.lay_out(segments, round(spec.transition_seconds * fps))
    spans = tuple(
        Span(segment.kind, *timeline.span(number), shot_index=segment.shot_index)
        for number, segment in enumerate(segments)
    )
    cues = tuple(
        Cue(span.start_frame, span.end_frame, fps, segment.text)
        for span, segment in zip(spans, segments, strict=True)
        if segment.kind == "shot" and segment.text.strip()
    )
    poster_at = _poster_frame(spans)
    preview_at = _preview_frames(spans, timeline.total, spec)
    preview_size = _preview_size(width, height, spec.preview_max_side)
    last_preview = max(preview_at)
    captured: dict[str, object] = {}
    preview_images: list[Image.Image] = []

    def frames(background: ThreadPoolExecutor) -> Iterator[av.VideoFrame]:
        canvas = _Canvas(width, height)
        pixels = canvas.pixels
        scratch = (np.empty((height, width, 3), np.uint16), np.empty((height, width, 3), np.uint16))
        reformatter = VideoReformatter()
        current = 0
        for index in range(timeline.total):
            while current + 1 < len(segments) and index >= timeline.starts[current + 1]:
                current += 1
            incoming = segments[current].source(index - timeline.starts[current])
            previous_start = timeline.starts[current - 1] if current else 0
            if current and index < previous_start + segments[current - 1].length:
                weight = (index - timeline.starts[current] + 0.5) / timeline.overlaps[current - 1]
                outgoing = segments[current - 1].source(index - previous_start)
                cross_fade(outgoing, incoming, weight, out=pixels, scratch=scratch)
            else:
                np.copyto(pixels, incoming)
            shown = segments[
                current if current == 0 or index >= timeline.cuts[current - 1] else current - 1
            ]
            if shown.subtitle is not None:
                shown.subtitle.overlay.apply(pixels)
            if corner_logo is not None and shown.corner_logo:
                corner_logo.apply(pixels)
            apply_ai_label(pixels, locale=spec.locale)
            for hook in spec.frame_hooks:
                returned = hook(index, pixels)
                if returned is not pixels:
                    _check_hooked(returned, hook, width=width, height=height)
                    np.copyto(pixels, returned)
            if index == poster_at:
                captured["poster"] = pixels.copy()
            video_frame = to_video_frame(canvas.frame, reformatter)
            if index in preview_at:
                preview_images.append(_preview_image(video_frame, preview_size, reformatter))
                if index == last_preview:
                    # The preview is whole long before the video is: encode it beside the video.
                    captured["preview"] = background.submit(
                        _animated_webp, list(preview_images), spec.preview_fps
                    )
            yield video_frame

    soundtrack, loudness = audio.prepare_music(
        spec.music, seconds=timeline.total / fps, target_lufs=spec.target_lufs
    )
    aigc_json = spec.aigc.to_json()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish-preview") as background:
        composed = _ahead(frames(background), depth=PIPELINE_DEPTH)
        try:
            mp4 = encode_mp4(
                composed,
                fps=fps,
                width=width,
                height=height,
                crf=spec.crf,
                preset=spec.preset,
                metadata={AIGC_TAG: aigc_json},
                audio=soundtrack,
                audio_rate=audio.SAMPLE_RATE,
            )
        finally:
            composed.close()
        preview = captured["preview"].result()
    return Finished(
        mp4=mp4,
        poster_jpeg=poster_jpeg(captured["poster"]),
        preview=preview,
        preview_format="webp",
        srt=to_srt(cues),
        vtt=to_vtt(cues),
        label_box=label,
        logo_box=logo_box,
        width=width,
        height=height,
        fps=fps,
        frame_count=timeline.total,
        duration_s=timeline.total / fps,
        cues=cues,
        spans=spans,
        aigc_json=aigc_json,
        music_lufs=loudness,
    )


def _check_hooked(frame: object, hook: FrameHook, *, width: int, height: int) -> None:
    if (
        not isinstance(frame, np.ndarray)
        or frame.shape != (height, width, 3)
        or frame.dtype != np.uint8
    ):
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ValueError(
            f"frame hook {hook!r} returned {shape}; it must return a uint8 "
            f"({height}, {width}, 3) frame"
        )


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def _ahead(items: Iterator[T], *, depth: int) -> Generator[T, None, None]:
    """``items``, produced by a worker thread up to ``depth`` ahead of the consumer.

    Composition (numpy, Pillow, swscale) and x264 both release the GIL, so on a machine with a
    core to spare the frames are ready by the time the encoder asks. The producer runs the
    generator in order in one thread, so frame hooks still see each frame once, in order. An
    error in the producer is raised here; closing this generator (the encoder failed) stops
    the producer before the next frame.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as error:  # re-raised in the consumer's thread
            offer(_Failed(error))

    worker = threading.Thread(target=produce, name="finish-compose", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def _check_shots(shots: Sequence[np.ndarray]) -> list[np.ndarray]:
    if not shots:
        raise ValueError("finish needs at least one shot")
    checked = []
    for number, shot in enumerate(shots):
        if (
            not isinstance(shot, np.ndarray)
            or shot.ndim != 4
            or shot.shape[3] != 3
            or shot.dtype != np.uint8
            or shot.shape[0] < 1
        ):
            shape = getattr(shot, "shape", type(shot).__name__)
            raise ValueError(f"shot {number} must be uint8 (frames, height, width, 3), got {shape}")
        checked.append(shot)
    return checked


def _frames(seconds: float, fps: int) -> int:
    return max(1, round(seconds * fps))


def _still(card: np.ndarray) -> Callable[[int], np.ndarray]:
    return lambda _k: card


def _moving(shot: np.ndarray, fitter: Fitter) -> Callable[[int], np.ndarray]:
    return lambda k: fitter.source(shot[k])


def _poster_frame(spans: Sequence[Span]) -> int:
    """The middle of the title card (it carries the personalised name), else of the first
    shot."""
    chosen = next((s for s in spans if s.kind == "title"), None)
    chosen = chosen or next(s for s in spans if s.kind == "shot")
    return (chosen.start_frame + chosen.end_frame - 1) // 2


def _preview_frames(spans: Sequence[Span], total: int, spec: FinishSpec) -> frozenset[int]:
    """``preview_seconds`` sampled at ``preview_fps`` from where the first shot starts."""
    step = spec.fps / spec.preview_fps
    count = max(1, round(spec.preview_seconds * spec.preview_fps))
    first_shot = next(s for s in spans if s.kind == "shot").start_frame
    start = max(0, min(first_shot, total - round(count * step)))
    return frozenset(
        index for index in (start + round(n * step) for n in range(count)) if index < total
    )


def _preview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _preview_image(
    frame: av.VideoFrame, size: tuple[int, int], reformatter: VideoReformatter
) -> Image.Image:
    """The encoder's own yuv420p frame, scaled (area average) and converted back to RGB by
    swscale in one step: a fifth of the cost of scaling the RGB frame with Pillow."""
    small = reformatter.reformat(
        frame,
        width=size[0],
        height=size[1],
        format="rgb24",
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
        interpolation=Interpolation.AREA,
    )
    return small.to_image()


def _animated_webp(images: Sequence[Image.Image], fps: int) -> bytes:
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        "WEBP",
        save_all=True,
        append_images=list(images[1:]),
        duration=round(1000 / fps),
        loop=0,
        quality=70,
        method=1,
    )
    return buffer.getvalue()

"""Frames to a streamable H.264 MP4, a JPEG poster, and a probe that reads an MP4 back.

The MP4 is what tenants download and embed, so it is the most compatible form there is:
H.264 High profile, yuv420p, BT.709, and the ``moov`` index before the media data
(``+faststart``) so a browser starts playing before the whole file has arrived.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter
from PIL import Image

VIDEO_CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
PROFILE = "high"
AUDIO_CODEC = "aac"
AUDIO_FORMAT = "fltp"
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}
# One AAC-LC frame: the encoder takes exactly this many samples per channel per frame.
AAC_FRAME_SAMPLES = 1024
# libavutil's AVCOL_* value for ITU-R BT.709 primaries, transfer and matrix, and for limited
# ("tv", 16-235) range: what players assume for H.264 when nothing is said, said explicitly.
BT709 = 1
LIMITED_RANGE = 1


def encode_mp4(
    frames: Iterable[np.ndarray | av.VideoFrame],
    *,
    fps: int,
    width: int,
    height: int,
    crf: int = 20,
    preset: str = "veryfast",
    metadata: dict[str, str] | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = 48000,
    audio_bitrate: int = 128_000,
) -> bytes:
    """Encode uint8 RGB frames of shape (height, width, 3) into MP4 bytes.

    A frame may also be an ``av.VideoFrame`` that ``to_video_frame`` already converted, so a
    producer can do the colour conversion in its own thread while this one encodes.

    Frame ``i`` is shown at ``i / fps`` for ``1 / fps``, so the file holds exactly as many
    frames as were given and lasts ``frames / fps`` seconds. Frames are consumed one at a time,
    so a generator keeps memory flat. Raises ValueError for a frame of another shape or type,
    for odd sizes (yuv420p halves both) and for no frames at all. Metadata keys are written as
    MP4 ``mdta`` tags, so keys of our own (a job id) survive next to ``title`` and ``comment``.

    ``audio``, float32 samples in [-1, 1] shaped (channels, samples) at ``audio_rate``, adds an
    AAC-LC stream (1 or 2 channels). Its packets are muxed as the video advances, so the file is
    interleaved in time order however long it is; samples past the last video frame are cut.
    """
    if fps < 1:
        raise ValueError(f"fps must be at least 1 (got {fps})")
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even width and height (got {width}x{height})")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be between 0 and 51 (got {crf})")
    if audio is not None:
        audio = _check_audio(audio, audio_rate=audio_rate)
    time_base = Fraction(1, fps)
    container_flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
    # faststart rewrites the file after the last packet by reopening it by name, which a
    # BytesIO cannot offer, so the muxer writes to a private temporary file.
    with tempfile.TemporaryDirectory(prefix="reelcast-encode-") as directory:
        path = os.path.join(directory, "video.mp4")
        container = av.open(path, "w", format="mp4", options={"movflags": container_flags})
        try:
            for key, value in (metadata or {}).items():
                container.metadata[key] = value
            stream = container.add_stream(VIDEO_CODEC, rate=fps)
            stream.width = width
            stream.height = height
            stream.pix_fmt = PIXEL_FORMAT
            codec = stream.codec_context
            codec.time_base = time_base
            codec.color_primaries = BT709
            codec.color_trc = BT709
            codec.colorspace = BT709
            codec.color_range = LIMITED_RANGE
            codec.options = {"crf": str(crf), "preset": preset, "profile": PROFILE}
            audio_track = (
                _AudioTrack(container, audio, rate=audio_rate, bitrate=audio_bitrate)
                if audio is not None
                else None
            )
            reformatter = VideoReformatter()
            count = 0
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    _check_video_frame(frame, width=width, height=height, number=count)
                    video_frame = frame
                else:
                    _check_frame(frame, width=width, height=height, number=count)
                    video_frame = to_video_frame(frame, reformatter)
                video_frame.pts = count
                video_frame.time_base = time_base
                container.mux(stream.encode(video_frame))
                count += 1
                if audio_track is not None:
                    audio_track.write_until(Fraction(count, fps))
            if count == 0:
                raise ValueError("an MP4 needs at least one frame")
            container.mux(stream.encode(None))
            if audio_track is not None:
                audio_track.finish(Fraction(count, fps))
        except BaseException:
            # Closing writes the trailer, which can fail too on a half-made file; the error
            # that stopped the encode is the one to report.
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()
        with open(path, "rb") as written:
            return written.read()


def to_video_frame(
    frame: np.ndarray | av.VideoFrame, reformatter: VideoReformatter | None = None
) -> av.VideoFrame:
    """An RGB frame (full range, as decoded and drawn; an array or an rgb24 ``VideoFrame``)
    as a new yuv420p BT.709 limited-range ``av.VideoFrame``: what the encoder takes."""
    if isinstance(frame, np.ndarray):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return (reformatter or VideoReformatter()).reformat(
        frame,
        format=PIXEL_FORMAT,
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG,
        dst_color_range=ColorRange.MPEG,
    )


def _check_video_frame(frame: av.VideoFrame, *, width: int, height: int, number: int) -> None:
    if (frame.width, frame.height) != (width, height) or frame.format.name != PIXEL_FORMAT:
        raise ValueError(
            f"frame {number} is a {frame.width}x{frame.height} {frame.format.name} VideoFrame, "
            f"expected {width}x{height} {PIXEL_FORMAT}"
        )


def _check_frame(frame: np.ndarray, *, width: int, height: int, number: int) -> None:
    expected = (height, width, 3)
    if not isinstance(frame, np.ndarray) or frame.shape != expected:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ValueError(f"frame {number} has shape {shape}, expected {expected}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame {number} has dtype {frame.dtype}, expected uint8")


def _check_audio(audio: np.ndarray, *, audio_rate: int) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 2:
        shape = getattr(audio, "shape", type(audio).__name__)
        raise ValueError(f"audio must be a (channels, samples) array, got {shape}")
    if audio.shape[0] not in AUDIO_LAYOUTS:
        raise ValueError(f"audio must have 1 or 2 channels, got {audio.shape[0]}")
    if audio_rate < 8000:
        raise ValueError(f"audio_rate must be at least 8000 Hz (got {audio_rate})")
    return np.ascontiguousarray(audio, dtype=np.float32)


class _AudioTrack:
    """An AAC stream fed in AAC-frame-sized pieces as the video clock moves on."""

    def __init__(self, container, samples: np.ndarray, *, rate: int, bitrate: int):
        self.container = container
        self.samples = samples
        self.rate = rate
        self.layout = AUDIO_LAYOUTS[samples.shape[0]]
        self.stream = container.add_stream(AUDIO_CODEC, rate=rate, layout=self.layout)
        self.stream.codec_context.format = AUDIO_FORMAT
        self.stream.bit_rate = bitrate
        self.written = 0

    def write_until(self, seconds: Fraction) -> None:
        """Encode every whole AAC frame that starts before ``seconds``."""
        end = min(int(seconds * self.rate), self.samples.shape[1])
        while self.written + AAC_FRAME_SAMPLES <= end:
            self._encode(self.written + AAC_FRAME_SAMPLES)

    def finish(self, seconds: Fraction) -> None:
        """Encode up to exactly ``seconds`` (silence where the samples run out), then flush."""
        end = round(seconds * self.rate)
        if self.samples.shape[1] < end:
            pad = np.zeros((self.samples.shape[0], end - self.samples.shape[1]), np.float32)
            self.samples = np.concatenate([self.samples, pad], axis=1)
        while self.written < end:
            self._encode(min(self.written + AAC_FRAME_SAMPLES, end))
        self.container.mux(self.stream.encode(None))

    def _encode(self, stop: int) -> None:
        chunk = np.ascontiguousarray(self.samples[:, self.written : stop])
        frame = av.AudioFrame.from_ndarray(chunk, format=AUDIO_FORMAT, layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self.written
        frame.time_base = Fraction(1, self.rate)
        self.container.mux(self.stream.encode(frame))
        self.written = stop


def poster_jpeg(frame: np.ndarray, *, max_width: int = 1280, quality: int = 85) -> bytes:
    """One RGB frame as a JPEG, scaled down (never up) to at most ``max_width`` pixels wide."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a poster needs an RGB frame (height, width, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"a poster needs a uint8 frame, got {frame.dtype}")
    if max_width < 1:
        raise ValueError(f"max_width must be at least 1 (got {max_width})")
    image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def probe_mp4(data: bytes) -> dict:
    """What an MP4 really holds, read back by decoding every frame of its first video stream.

    Keys: ``width``, ``height``, ``frames`` (decoded), ``codec`` (e.g. "h264"), ``profile``
    (e.g. "High"), ``pix_fmt``, ``fps`` (float), ``duration_s``, ``metadata`` (container
    tags), ``boxes`` (top-level MP4 box types in file order), ``moov_before_mdat`` and
    ``audio``: None, or the first audio stream's ``codec``, ``profile``, ``channels`` and
    ``sample_rate`` (the header only; ``audio.decode_audio`` decodes the samples).
    """
    boxes = mp4_top_level_boxes(data)
    with av.open(io.BytesIO(data), "r") as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context
        frames = sum(1 for _ in container.decode(stream))
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        rate = stream.average_rate or stream.base_rate
        audio = None
        if container.streams.audio:
            audio_codec = container.streams.audio[0].codec_context
            audio = {
                "codec": audio_codec.name,
                "profile": audio_codec.profile,
                "channels": audio_codec.channels,
                "sample_rate": audio_codec.sample_rate,
            }
        return {
            "width": codec.width,
            "height": codec.height,
            "frames": frames,
            "codec": codec.name,
            "profile": codec.profile,
            "pix_fmt": codec.pix_fmt,
            "fps": float(rate) if rate else 0.0,
            "duration_s": duration_s,
            "metadata": dict(container.metadata),
            "boxes": boxes,
            "moov_before_mdat": (
                "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
            ),
            "audio": audio,
        }


def mp4_top_level_boxes(data: bytes) -> list[str]:
    """The types of the top-level boxes (atoms) of an ISO BMFF file, in order.

    Each box starts with a 32-bit big-endian size and a 4-character type; size 1 means a 64-bit
    size follows, size 0 means "to the end of the file". Raises ValueError on a truncated or
    malformed box rather than guessing.
    """
    boxes: list[str] = []
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < 8:
            raise ValueError(f"truncated box header at byte {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if end - offset < 16:
                raise ValueError(f"truncated 64-bit box size at byte {offset}")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise ValueError(f"box {kind!r} at byte {offset} has an impossible size {size}")
        boxes.append(kind.decode("latin-1"))
        offset += size
    return boxes

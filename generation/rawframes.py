"""Lossless hand-over of raw frames from a GPU worker to the CPU cluster (FFV1 in Matroska).

The GPU worker writes what the model made and is free at once; post-processing decodes it
exactly (bit-identical RGB) on a CPU worker.
"""

from __future__ import annotations

import io

import av
import numpy as np


def pack(frames: np.ndarray, *, fps: int) -> bytes:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 (frames, height, width, 3), got {frames.dtype} {frames.shape}"
        )
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0"
        stream.thread_count = 0
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def unpack(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

"""Fixtures the C2PA tests share."""

from __future__ import annotations

import pytest

from moderation.provenance.devcert import generate_dev_chain
from tests.moderation import clips


@pytest.fixture(scope="module")
def credentials():
    """A fresh development signing chain, one per test module."""
    return generate_dev_chain()


@pytest.fixture(scope="module")
def mp4() -> bytes:
    """A short faststart MP4, as the post-processing encode writes it."""
    return clips.encode(clips.make_clip(5, height=144, width=256, frames=12), fps=12, crf=23)

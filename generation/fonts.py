"""The one font every rendered text uses: Noto Sans CJK, shipped on PyPI.

Personalised text mixes scripts (a student's Chinese name in a Latin sentence), so title cards,
scene text, subtitles and the AI label all draw with a pan-CJK font that also covers Latin. It
comes from the ``cvttf-NotoSansCJK-Regular`` wheel, which puts the .otf next to its
``__init__.py``; nothing is looked up on the host or downloaded.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from functools import lru_cache

from PIL import ImageFont

FONT_PACKAGE = "cvttf_NotoSansCJK_Regular"
FONT_SUFFIXES = (".otf", ".ttf", ".ttc")


class FontNotFoundError(RuntimeError):
    """The font package is not installed, or holds no font file."""


@lru_cache(maxsize=1)
def cjk_font_path() -> str:
    """The file system path of the Noto Sans CJK font inside the installed font package."""
    if importlib.util.find_spec(FONT_PACKAGE) is None:
        raise FontNotFoundError(
            f"The font package {FONT_PACKAGE!r} is not installed; install the PyPI distribution "
            "'cvttf-NotoSansCJK-Regular' (a dependency of reelcast)."
        )
    package_files = importlib.resources.files(FONT_PACKAGE)
    candidates = sorted(
        entry.name
        for entry in package_files.iterdir()
        if entry.is_file() and entry.name.lower().endswith(FONT_SUFFIXES)
    )
    if not candidates:
        raise FontNotFoundError(
            f"The package {FONT_PACKAGE!r} holds no .otf/.ttf/.ttc font file; reinstall "
            "'cvttf-NotoSansCJK-Regular'."
        )
    # Wheels are installed as plain directories, so the resource is a real file with a path.
    return str(package_files / candidates[0])


@lru_cache(maxsize=64)
def load_font(size: int) -> ImageFont.FreeTypeFont:
    """The CJK font at ``size`` pixels, opened once per size and shared by every renderer."""
    if size < 1:
        raise ValueError(f"font size must be at least 1 pixel (got {size})")
    return ImageFont.truetype(cjk_font_path(), size)

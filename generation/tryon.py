"""Virtual try-on: a shopper's photo and a shop's product images, turned into model inputs.

A try-on template holds product images (a garment) and a scene ("a shopper wearing this coat on
a New York street at dusk"); the end user uploads a photo of themselves. Two paths lead from
those to a video, and the model decides which (``choose_tryon_path``):

- ``"r2v"``, reference-to-video, for VACE models (``wan2.2-vace-fun-a14b``, ``wan2.1-vace-14b``):
  the person photo and every product image go to the model as separate reference images. The
  model generates the template's scene with the referenced subjects in it, so a prompt that
  says the person wears the coat asks for exactly that; the clip need not start from any given
  frame. This is the preferred path. VACE is a general subject-reference model (Wan2.2-VACE-Fun
  is trained for "video generation by specifying the subject"), not a dedicated try-on model:
  fine garment details (print, logo, cut) and the person's likeness are followed, not
  guaranteed.
- ``"i2v"``, image-to-video from a composed first frame, for models without VACE
  (``wan2.2-i2v-a14b``, ``wan2.2-ti2v-5b``): ``compose_first_frame`` lays the person photo and
  the products out side by side in one frame, and the model animates that frame. See its
  docstring for why this is the weaker path.

Pure Pillow: importable by web processes, deterministic (the same inputs give byte-identical
PNGs), so a retried job composes the same first frame.
"""

from __future__ import annotations

import io
import math
from typing import Protocol

from PIL import Image, ImageDraw, ImageOps

RGB = tuple[int, int, int]

# With the person, this is generation.backends.wan.MAX_REFERENCE_IMAGES.
MAX_PRODUCTS = 3
MIN_SIDE = 16
SCENE_COLOUR: RGB = (228, 226, 222)
PANEL_COLOUR: RGB = (255, 255, 255)
PANEL_BORDER: RGB = (150, 150, 150)
# The product panel takes this share of the frame's long side; the person fills the rest.
PANEL_FRACTION = 0.3
MARGIN_FRACTION = 0.04


class _Spec(Protocol):
    name: str
    modes: tuple[str, ...]


def choose_tryon_path(spec: _Spec) -> str:
    """``"r2v"`` where the model takes reference images (VACE), else ``"i2v"``.

    Raises ValueError for a model that takes neither (text-only models): it has no way to see
    the person or the product.
    """
    if "r2v" in spec.modes:
        return "r2v"
    if "i2v" in spec.modes:
        return "i2v"
    raise ValueError(
        f"{spec.name} takes neither reference images nor a first frame, so it cannot show a "
        "person wearing a product; choose a model with the r2v or i2v mode."
    )


def tryon_inputs(
    spec: _Spec, *, person: bytes, products: list[bytes], width: int, height: int
) -> tuple[str, bytes | None, tuple[bytes, ...]]:
    """``(mode, reference_image, reference_images)`` for a GenerationRequest of ``spec``.

    r2v: ``("r2v", None, (person, *products))``, the bytes as uploaded (the wan backend fits
    them to the frame). i2v: ``("i2v", first_frame_png, ())`` with the frame composed here at
    ``width`` x ``height``. Every image is checked to be readable, so a broken upload is refused
    before anything is queued; raises ValueError naming the image.
    """
    if not products:
        raise ValueError("a try-on needs at least one product image.")
    if len(products) > MAX_PRODUCTS:
        raise ValueError(f"a try-on takes at most {MAX_PRODUCTS} product images.")
    path = choose_tryon_path(spec)
    if path == "r2v":
        _check_readable(person, "the person photo")
        for number, product in enumerate(products, start=1):
            _check_readable(product, f"product image {number}")
        return "r2v", None, (person, *products)
    frame = compose_first_frame(person=person, products=products, width=width, height=height)
    return "i2v", frame, ()


def compose_first_frame(
    *,
    person: bytes,
    products: list[bytes],
    width: int,
    height: int,
    scene_colour: RGB = SCENE_COLOUR,
) -> bytes:
    """A PNG of exactly ``width`` x ``height``: the person photo beside a panel of the products.

    The person photo is turned upright (EXIF), scaled to fit whole and centred in the part of
    the frame the panel leaves free, on ``scene_colour``; the products, each fitted whole, sit
    on a white card along the right edge of a landscape frame, or the bottom of a portrait one,
    so the panel never covers the person.

    This is the weaker try-on path. An image-to-video model continues the frame it is given:
    it animates the person as photographed, in the clothes of the photo, with the product panel
    still in the picture (or morphing into the scene). It does not dress the person; at most the
    prompt ("the woman puts on the coat") nudges it, with little control over how the garment
    looks. Use it only for models without VACE. A VACE model (the r2v path) takes the person and
    the garment as separate references and generates the scene with the person wearing it.
    """
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ValueError(
            f"the frame must be at least {MIN_SIDE}x{MIN_SIDE} (got {width}x{height})."
        )
    if len(products) > MAX_PRODUCTS:
        raise ValueError(f"at most {MAX_PRODUCTS} product images (got {len(products)}).")
    frame = compose_image(
        person=person, products=products, width=width, height=height, scene_colour=scene_colour
    )
    buffer = io.BytesIO()
    frame.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def compose_image(
    *,
    person: bytes,
    products: list[bytes],
    width: int,
    height: int,
    scene_colour: RGB = SCENE_COLOUR,
) -> Image.Image:
    """``compose_first_frame`` as an RGB PIL image (the preview backend draws it directly)."""
    margin = max(2, round(min(width, height) * MARGIN_FRACTION))
    frame = Image.new("RGB", (width, height), scene_colour)
    if products:
        person_area, panel = _layout(width, height, margin)
    else:
        person_area, panel = (0, 0, width, height), None

    area_width, area_height = person_area[2] - person_area[0], person_area[3] - person_area[1]
    photo = decode_upright(person, "the person photo", max(area_width, area_height), scene_colour)
    photo = ImageOps.contain(photo, (area_width, area_height), Image.Resampling.LANCZOS)
    frame.paste(
        photo,
        (
            person_area[0] + (area_width - photo.width) // 2,
            person_area[1] + (area_height - photo.height) // 2,
        ),
    )
    if panel is not None:
        _draw_panel(frame, panel, products, margin)
    return frame


def _layout(
    width: int, height: int, margin: int
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(person area, product panel) as (left, top, right, bottom), right and bottom exclusive."""
    if width >= height:
        panel_width = max(MIN_SIDE // 2, round(width * PANEL_FRACTION))
        panel = (width - margin - panel_width, margin, width - margin, height - margin)
        return (0, 0, panel[0] - margin, height), panel
    panel_height = max(MIN_SIDE // 2, round(height * PANEL_FRACTION))
    panel = (margin, height - margin - panel_height, width - margin, height - margin)
    return (0, 0, width, panel[1] - margin), panel


def _draw_panel(
    frame: Image.Image, panel: tuple[int, int, int, int], products: list[bytes], margin: int
) -> None:
    """The products in equal slots on a white card, stacked along the panel's long side."""
    left, top, right, bottom = panel
    border = max(1, round(min(frame.size) / 240))
    ImageDraw.Draw(frame).rectangle(
        (left, top, right - 1, bottom - 1), fill=PANEL_COLOUR, outline=PANEL_BORDER, width=border
    )
    padding = border + max(1, margin // 2)
    inner_width, inner_height = right - left - 2 * padding, bottom - top - 2 * padding
    count = len(products)
    vertical = inner_height >= inner_width
    along = inner_height if vertical else inner_width
    slot = max(1, (along - (count - 1) * padding) // count)
    for index, data in enumerate(products):
        slot_size = (inner_width, slot) if vertical else (slot, inner_height)
        image = decode_upright(data, f"product image {index + 1}", max(slot_size), PANEL_COLOUR)
        image = ImageOps.contain(image, slot_size, Image.Resampling.LANCZOS)
        offset = index * (slot + padding)
        slot_left = left + padding + (0 if vertical else offset)
        slot_top = top + padding + (offset if vertical else 0)
        frame.paste(
            image,
            (
                slot_left + (slot_size[0] - image.width) // 2,
                slot_top + (slot_size[1] - image.height) // 2,
            ),
        )


def decode_upright(data: bytes, label: str, min_side: int, background: RGB) -> Image.Image:
    """RGB pixels the right way up (EXIF orientation), transparency on ``background``."""
    try:
        image = Image.open(io.BytesIO(data))
        # JPEG only: decode at the smallest power-of-two scale that still covers min_side.
        side = max(1, math.ceil(min_side))
        image.draft("RGB", (side, side))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, background)
            image.paste(rgba, (0, 0), rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{label} cannot be read as an image: {err}") from err
    return image


def _check_readable(data: bytes, label: str) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"{label} cannot be read as an image: {err}") from err

"""Virtual try-on: the composed first frame, the path choice, and both paths end to end.

The reference-to-video path runs the tiny two-expert WanVACEPipeline (tests/support/tiny_wan.py)
through the production loader and WanBackend.generate; the image-to-video path runs the tiny
I2V-A14B and TI2V-5B pipelines on a frame composed by generation.tryon.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation import registry, tryon
from generation.backends.base import GenerationRequest, ShotSpec
from generation.backends.preview import PreviewBackend

ROOT = Path(__file__).resolve().parents[2]

VACE = "wan2.2-vace-fun-a14b"
VACE_21 = "wan2.1-vace-14b"
T2V = "wan2.2-t2v-a14b"
I2V = "wan2.2-i2v-a14b"
TI2V = "wan2.2-ti2v-5b"

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    return png(Image.new("RGB", size, colour))


def noise(size: tuple[int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return png(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def colour_box(frame: np.ndarray, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels within 40 of ``colour`` on every channel."""
    mask = (np.abs(frame - np.array(colour)) < 40).all(axis=-1)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows.size, f"no pixel of {colour}"
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


# --------------------------------------------------------------------------------------------
# The composed first frame (Pillow only)


def test_importing_tryon_loads_neither_torch_nor_django():
    code = (
        "import sys, generation.tryon; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'django'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_first_frame_puts_the_fitted_person_beside_a_panel_of_the_product():
    # 320x180: margin round(180 * 0.04) = 7, panel 96 wide at x 217..313, y 7..173; the person
    # area is x 0..210, where a 60x120 portrait fits as 90x180, centred at x 60.
    frame = decoded(
        tryon.compose_first_frame(
            person=solid((60, 120), RED), products=[solid((80, 80), BLUE)], width=320, height=180
        )
    )

    assert frame.shape == (180, 320, 3)
    assert colour_box(frame, RED) == (60, 0, 150, 180)
    # Inside the panel (border 1, padding 4): an 88x158 slot, the square product 88x88, centred.
    assert colour_box(frame, BLUE) == (221, 46, 309, 134)
    assert tuple(frame[90, 30]) == tryon.SCENE_COLOUR  # beside the person: the scene colour
    assert tuple(frame[20, 265]) == (255, 255, 255)  # the card behind the product
    assert tuple(frame[90, 215]) == tryon.SCENE_COLOUR  # the gap between person and panel


def test_a_portrait_frame_puts_the_products_side_by_side_below_the_person():
    frame = decoded(
        tryon.compose_first_frame(
            person=solid((100, 100), RED),
            products=[solid((50, 100), GREEN), solid((50, 100), BLUE)],
            width=180,
            height=320,
        )
    )

    assert frame.shape == (320, 180, 3)
    person, green, blue = colour_box(frame, RED), colour_box(frame, GREEN), colour_box(frame, BLUE)
    panel_top = 320 - 7 - round(320 * tryon.PANEL_FRACTION)
    assert person[3] <= panel_top - 7  # the panel never covers the person
    assert (person[2] - person[0], person[3] - person[1]) == (180, 180)
    assert green[1] >= panel_top and blue[1] >= panel_top
    assert green[2] <= blue[0]  # one after the other along the panel


def test_the_person_photo_is_turned_upright_from_its_exif_orientation():
    # Stored landscape, red left and blue right; orientation 6 ("rotate 90° clockwise to view")
    # means the camera saw a portrait, red on top of blue.
    stored = Image.new("RGB", (200, 100), RED)
    stored.paste(BLUE, (100, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())

    frame = decoded(
        tryon.compose_first_frame(
            person=buffer.getvalue(), products=[solid((40, 40), GREEN)], width=320, height=180
        )
    )

    red, blue = colour_box(frame, RED), colour_box(frame, BLUE)
    left, right = min(red[0], blue[0]), max(red[2], blue[2])
    assert right - left < blue[3] - red[1]  # taller than wide: upright
    assert red[3] <= blue[1] + 2  # red above blue


def test_a_cut_out_product_sits_on_the_white_card_not_on_black():
    product = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    product.paste((0, 0, 255, 255), (20, 20, 60, 60))

    frame = decoded(
        tryon.compose_first_frame(
            person=solid((60, 120), RED), products=[png(product)], width=320, height=180
        )
    )

    blue = colour_box(frame, BLUE)
    assert tuple(frame[blue[1] - 5, (blue[0] + blue[2]) // 2]) == (255, 255, 255)
    assert not (np.abs(frame[7:173, 217:313]).sum(axis=-1) < 30).any()  # no black in the panel


def test_the_same_inputs_compose_byte_identical_frames():
    arguments = {
        "person": noise((90, 160), 1),
        "products": [noise((64, 64), 2), noise((50, 70), 3)],
        "width": 256,
        "height": 144,
    }

    assert tryon.compose_first_frame(**arguments) == tryon.compose_first_frame(**arguments)


@pytest.mark.parametrize(
    ("person", "products", "message"),
    [
        (b"not an image", [solid((8, 8), BLUE)], "the person photo cannot be read"),
        (solid((8, 8), RED), [solid((8, 8), BLUE), b"<html>"], "product image 2 cannot be read"),
    ],
)
def test_a_file_that_is_not_an_image_is_refused(person, products, message):
    with pytest.raises(ValueError, match=message):
        tryon.compose_first_frame(person=person, products=products, width=64, height=64)


def test_a_frame_too_small_or_too_many_products_are_refused():
    with pytest.raises(ValueError, match="at least 16x16"):
        tryon.compose_first_frame(person=solid((8, 8), RED), products=[], width=8, height=64)
    with pytest.raises(ValueError, match="at most 3 product images"):
        tryon.compose_first_frame(
            person=solid((8, 8), RED), products=[solid((8, 8), BLUE)] * 4, width=64, height=64
        )


# --------------------------------------------------------------------------------------------
# Choosing the path


@pytest.mark.parametrize(
    ("model", "path"),
    [(VACE, "r2v"), (VACE_21, "r2v"), (I2V, "i2v"), (TI2V, "i2v"), ("preview", "r2v")],
)
def test_vace_models_take_references_and_the_others_a_composed_first_frame(model, path):
    assert tryon.choose_tryon_path(registry.get_model(model)) == path


def test_a_text_only_model_cannot_do_a_try_on():
    with pytest.raises(ValueError, match="takes neither reference images"):
        tryon.choose_tryon_path(registry.get_model(T2V))


def test_tryon_inputs_give_references_to_vace_and_a_composed_frame_to_image_to_video():
    person, coat = solid((60, 120), RED), solid((80, 80), BLUE)

    vace = tryon.tryon_inputs(
        registry.get_model(VACE), person=person, products=[coat], width=320, height=176
    )
    i2v = tryon.tryon_inputs(
        registry.get_model(I2V), person=person, products=[coat], width=320, height=176
    )

    assert vace == ("r2v", None, (person, coat))
    assert i2v == (
        "i2v",
        tryon.compose_first_frame(person=person, products=[coat], width=320, height=176),
        (),
    )


@pytest.mark.parametrize(
    ("products", "message"),
    [
        ([], "at least one product image"),
        ([solid((8, 8), BLUE)] * 4, "at most 3 product images"),
        ([b"GIF89a broken"], "product image 1 cannot be read"),
    ],
)
def test_tryon_inputs_refuse_missing_surplus_or_unreadable_products(products, message):
    with pytest.raises(ValueError, match=message):
        tryon.tryon_inputs(
            registry.get_model(VACE),
            person=solid((8, 8), RED),
            products=products,
            width=64,
            height=64,
        )


def test_the_product_limit_fits_the_backends_reference_limit():
    from generation.backends import wan

    assert tryon.MAX_PRODUCTS + 1 == wan.MAX_REFERENCE_IMAGES


@pytest.mark.parametrize("model", [VACE, VACE_21])
def test_the_vace_defaults_pass_their_own_checks(model):
    spec = registry.get_model(model)
    frames = spec.frames_for(5.0, spec.default_fps)

    assert frames == 81
    assert spec.modes == ("r2v", "t2v")
    assert spec.pipeline == "WanVACEPipeline"
    assert (
        registry.geometry_errors(
            spec,
            width=spec.default_width,
            height=spec.default_height,
            fps=spec.default_fps,
            duration_s=5.0,
            frames_per_shot=[frames],
        )
        == {}
    )


# --------------------------------------------------------------------------------------------
# The preview backend (CPU storyboard)


def preview_request(**fields) -> GenerationRequest:
    shot = ShotSpec(0, "a shopper in a coat, New York at dusk", "", 6, 17, scene_text="The coat")
    return GenerationRequest(
        model="preview", width=320, height=180, fps=12, shots=(shot,), **fields
    )


def preview_frames(request: GenerationRequest) -> np.ndarray:
    return (
        PreviewBackend()
        .generate(request, on_progress=lambda d, t: None, should_cancel=lambda: False)
        .frames
    )


def test_the_preview_shows_the_person_and_the_product_of_a_try_on():
    magenta, green = (255, 0, 255), (0, 255, 0)
    references = (solid((120, 240), magenta), solid((80, 80), green))

    with_references = preview_frames(preview_request(reference_images=references))
    without = preview_frames(preview_request())

    for frame in with_references:
        assert np.all(frame == magenta, axis=-1).sum() > 1000
        assert np.all(frame == green, axis=-1).sum() > 100
    assert np.all(without == magenta, axis=-1).sum() == 0
    assert np.array_equal(
        with_references, preview_frames(preview_request(reference_images=references))
    )


def test_the_preview_refuses_both_kinds_of_reference_or_an_unreadable_one():
    with pytest.raises(ValueError, match="not both"):
        preview_frames(
            preview_request(
                reference_image=solid((8, 8), RED), reference_images=(solid((8, 8), RED),)
            )
        )
    with pytest.raises(ValueError, match="the person photo cannot be read"):
        preview_frames(preview_request(reference_images=(b"nope", solid((8, 8), RED))))


# --------------------------------------------------------------------------------------------
# Both paths on tiny real-architecture pipelines


@pytest.fixture
def wan_settings(settings, tiny_models):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from generation.backends import wan

    torch.set_num_threads(1)
    settings.REELCAST_MODEL_DIR = str(tiny_models)
    settings.REELCAST_MODELS = {}
    settings.REELCAST_ALLOW_HUB_DOWNLOADS = False
    settings.REELCAST_HARDWARE_CLASS = ""
    settings.REELCAST_WAN_DEVICE = "cpu"
    settings.REELCAST_WAN_OFFLOAD = "none"
    settings.REELCAST_WAN_VAE_TILING = False
    settings.REELCAST_WAN_CACHE_MAX_PIPELINES = 4
    wan.pipeline_cache().clear()
    wan.pipeline_cache().loads = 0
    yield settings
    wan.pipeline_cache().clear()


def wan_request(
    model: str,
    *,
    width: int = 48,
    height: int = 32,
    reference_image: bytes | None = None,
    reference_images: tuple[bytes, ...] = (),
    seeds: tuple[int, ...] = (11,),
    steps: int = 2,
    **options,
) -> GenerationRequest:
    return GenerationRequest(
        model=model,
        width=width,
        height=height,
        fps=16,
        shots=tuple(
            ShotSpec(
                index=index,
                prompt="a woman wearing the coat walks down a new york street at dusk",
                negative_prompt="blurry, low quality",
                num_frames=5,
                seed=seed,
            )
            for index, seed in enumerate(seeds)
        ),
        reference_image=reference_image,
        reference_images=reference_images,
        options={"steps": steps, **options},
    )


def generate(request, *, progress=None, cancel=lambda: False):
    from generation.backends import wan

    events = [] if progress is None else progress
    return wan.WanBackend().generate(
        request, on_progress=lambda done, total: events.append((done, total)), should_cancel=cancel
    )


PERSON = noise((40, 72), 21)
COAT = noise((48, 48), 22)
SCARF = noise((48, 48), 23)


def test_the_vace_models_load_with_the_official_sampler_settings(wan_settings):
    from generation.backends import wan

    two = wan.load_pipeline(registry.get_model(VACE), device="cpu", mode="r2v")
    one = wan.load_pipeline(registry.get_model(VACE_21), device="cpu", mode="r2v")

    assert type(two).__name__ == type(one).__name__ == "WanVACEPipeline"
    assert [type(expert).__name__ for expert in wan._experts(two)] == [
        "WanVACETransformer3DModel",
        "WanVACETransformer3DModel",
    ]
    assert (two.config.boundary_ratio, two.scheduler.config.flow_shift) == (0.875, 12.0)
    assert (len(wan._experts(one)), one.config.boundary_ratio) == (1, None)
    assert one.scheduler.config.flow_shift == 16.0


def test_a_try_on_through_vace_uses_the_person_and_the_garment(wan_settings, monkeypatch):
    from generation.backends import wan

    mode, image, references = tryon.tryon_inputs(
        registry.get_model(VACE), person=PERSON, products=[COAT], width=48, height=32
    )
    request = wan_request(VACE, reference_image=image, reference_images=references, seeds=(11, 12))
    pipe, _ = wan.pipeline_cache().get(
        registry.get_model(VACE), mode=mode, variant=None, device="cpu"
    )
    latent_frames: list[int] = []
    handles = [
        expert.register_forward_hook(
            lambda _m, args, kwargs, _out: latent_frames.append(kwargs["hidden_states"].shape[2]),
            with_kwargs=True,
        )
        for expert in wan._experts(pipe)
    ]
    seen: list = []
    preprocess = pipe.preprocess_conditions

    def spy(video, mask, reference_images, *args, **kwargs):
        seen.append(reference_images)
        return preprocess(video, mask, reference_images, *args, **kwargs)

    monkeypatch.setattr(pipe, "preprocess_conditions", spy)

    first = generate(request)
    again = generate(request)
    other_garment = generate(dataclasses.replace(request, reference_images=(PERSON, SCARF)))
    for handle in handles:
        handle.remove()

    assert mode == "r2v"
    assert [shot.frames.shape for shot in first.shots] == [(5, 32, 48, 3), (5, 32, 48, 3)]
    assert first.frames.dtype == np.uint8 and first.frames.std() > 0
    assert all(shot.device_seconds > 0 for shot in first.shots)
    for a, b in zip(first.shots, again.shots, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(first.frames, other_garment.frames)
    # 5 frames are 2 latent frames; each reference adds one in front of them, for every pass.
    assert set(latent_frames) == {2 + 2}
    # The references reach the pipeline as frame-sized images, padded on white: the 40x72
    # portrait person is 18 px wide in a 48x32 frame, with white bars left and right.
    references_seen = seen[0]
    assert [r.size for r in references_seen] == [(48, 32), (48, 32)]
    person = np.asarray(references_seen[0])
    assert (person[:, :10] == 255).all() and (person[:, -10:] == 255).all()
    assert not (person[:, 20:28] == 255).all()


def test_a_vace_try_on_counts_progress_and_runs_a_one_expert_model(wan_settings):
    events: list[tuple[int, int]] = []

    result = generate(
        wan_request(VACE_21, reference_images=(PERSON, COAT), seeds=(1, 2), steps=2),
        progress=events,
    )

    assert events == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.frames.shape == (10, 32, 48, 3)


def test_a_vace_model_also_runs_from_the_prompt_alone_on_the_same_pipeline(wan_settings):
    from generation.backends import wan

    with_references = generate(wan_request(VACE, reference_images=(PERSON, COAT)))
    text_only = generate(wan_request(VACE))

    assert text_only.frames.shape == (5, 32, 48, 3)
    assert not np.array_equal(text_only.frames, with_references.frames)
    assert text_only.model_load_seconds == 0.0  # one warm pipeline serves r2v and t2v
    assert wan.pipeline_cache().loads == 1
    assert [(m["name"], m["mode"]) for m in wan.loaded_models()] == [(VACE, "r2v")]


def test_a_lora_variant_is_fused_into_both_vace_experts(wan_settings, tmp_path):
    pytest.importorskip("peft")
    from tests.support import tiny_wan

    lora = tiny_wan.build_tiny_lora(tmp_path, in_channels=16, key_format="wan")
    wan_settings.REELCAST_MODELS = {
        VACE: {"lora_variants": {"lightning": {"path": str(lora), "steps": 2}}}
    }

    base = generate(wan_request(VACE, reference_images=(PERSON, COAT)))
    fast = generate(wan_request(VACE, reference_images=(PERSON, COAT), variant="lightning"))

    assert fast.frames.shape == base.frames.shape
    assert not np.array_equal(fast.frames, base.frames)


@pytest.mark.parametrize(("model", "width", "height"), [(I2V, 48, 32), (TI2V, 64, 32)])
def test_a_try_on_without_vace_animates_the_composed_first_frame(
    wan_settings, model, width, height
):
    mode, image, references = tryon.tryon_inputs(
        registry.get_model(model), person=PERSON, products=[COAT], width=width, height=height
    )
    request = wan_request(
        model, width=width, height=height, reference_image=image, reference_images=references
    )

    _, other_image, _ = tryon.tryon_inputs(
        registry.get_model(model), person=PERSON, products=[SCARF], width=width, height=height
    )

    first = generate(request)
    again = generate(request)
    other_garment = generate(dataclasses.replace(request, reference_image=other_image))

    assert (mode, references) == ("i2v", ())
    assert Image.open(io.BytesIO(image)).size == (width, height)
    assert first.frames.shape == (5, height, width, 3)
    np.testing.assert_array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other_garment.frames)


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    [
        (T2V, {"reference_images": (PERSON, COAT)}, "reference_images", "does not take reference"),
        (I2V, {"reference_images": (PERSON, COAT)}, "reference_images", "does not take reference"),
        (TI2V, {"reference_images": (PERSON,)}, "reference_images", "does not take reference"),
        (VACE, {"reference_image": PERSON}, "reference_image", "does not take a reference image"),
        (
            VACE,
            {"reference_image": PERSON, "reference_images": (PERSON, COAT)},
            "reference_images",
            "not both",
        ),
        (
            VACE,
            {"reference_images": (PERSON, COAT, COAT, COAT, COAT)},
            "reference_images",
            "at most 4",
        ),
    ],
)
def test_a_reference_the_model_cannot_take_is_refused_before_loading(
    wan_settings, model, fields, field, message
):
    from generation.backends import wan

    request = wan_request(model, width=64, height=32, **fields)

    assert field in wan.request_errors(registry.get_model(model), request)
    with pytest.raises(ValueError, match=f"{field}: .*{message}"):
        generate(request)
    assert wan.pipeline_cache().loads == 0


def test_an_r2v_only_model_refuses_a_request_without_references(wan_settings):
    from generation.backends import wan

    spec = dataclasses.replace(registry.get_model(VACE), modes=("r2v",))

    assert wan.request_errors(spec, wan_request(VACE)) == {
        "reference_images": f"{VACE} needs reference images."
    }


def test_an_unreadable_reference_is_refused_before_loading(wan_settings):
    from generation.backends import wan

    with pytest.raises(ValueError, match="reference image 2 cannot be read"):
        generate(wan_request(VACE, reference_images=(PERSON, b"not an image")))
    assert wan.pipeline_cache().loads == 0


def test_a_pipeline_class_without_reference_images_cannot_do_r2v(wan_settings):
    from generation.backends import wan

    spec = dataclasses.replace(registry.get_model(T2V), modes=("t2v", "r2v"))

    with pytest.raises(ValueError, match="WanPipeline takes no reference_images"):
        wan.load_pipeline(spec, device="cpu", mode="r2v")

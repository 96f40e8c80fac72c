"""The finishing pass: what a viewer, a player and a regulator find in the finished video.

Every check decodes the MP4 (or the preview, or the sidecars) that ``finish`` returned, so
the assertions are about the delivered bytes, not about what the code meant to draw.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import threading
import wave
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from generation.fonts import load_font
from generation.postprocess import audio
from generation.postprocess.brand import BrandKit
from generation.postprocess.encode import probe_mp4
from generation.postprocess.finish import FinishSpec, finish
from generation.postprocess.label import (
    AigcLabel,
    apply_ai_label,
    label_box,
    label_layout,
)
from generation.postprocess.layout import CORNERS, Box, canvas_size, corner_box, safe_margins
from generation.postprocess.subtitles import render_subtitle
from generation.postprocess.text import wrap

AIGC = AigcLabel(content_producer="RC0001", produce_id="job-7f3a9c")
NOTDEF = "\ue000"  # a private-use code point Noto Sans CJK has no glyph for: it draws .notdef


# --- fixtures made in code -------------------------------------------------------------------


def natural_frames(
    count: int, width: int, height: int, *, seed: int = 0, tint: tuple[int, int, int] = (0, 0, 0)
) -> np.ndarray:
    """A bright sky over darker ground, a drifting sun, a moving figure, film grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, 3), np.float32)
    base[..., 0] = 215 - 150 * yy / height + tint[0]
    base[..., 1] = 225 - 120 * yy / height + 10 * np.sin(xx / width * 6) + tint[1]
    base[..., 2] = 250 - 170 * yy / height + tint[2]
    frames = np.empty((count, height, width, 3), np.uint8)
    for number in range(count):
        frame = base + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
        sun = (xx - width * 0.6 - number) ** 2 + (yy - height * 0.3) ** 2 < (height * 0.1) ** 2
        frame[sun] = (250, 210, 90)
        left = int(width * 0.3) + 2 * number
        frame[int(height * 0.55) : int(height * 0.9), left : left + width // 12] = (50, 40, 60)
        frames[number] = np.clip(frame, 0, 255)
    return frames


def flat_frames(count: int, width: int, height: int, colour: tuple[int, int, int]) -> np.ndarray:
    frames = np.empty((count, height, width, 3), np.uint8)
    frames[...] = colour
    return frames


def logo_png(width: int = 300, height: int = 200) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle(
        (0, 0, width - 1, height - 1), radius=20, fill=(230, 20, 40, 255)
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of (channels, samples) floats, as a tenant might upload."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").T.copy()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(samples.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def music(seconds: float, rate: int, *, level: float, seed: int = 0) -> np.ndarray:
    """Chords with a beat and a little noise: not a test tone, so gating and K-weighting
    matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    beat = 0.55 + 0.45 * (np.sin(2 * np.pi * 2 * t) > 0)
    chord = sum(
        np.sin(2 * np.pi * f * t + p)
        for f, p in ((110, 0), (220, 1), (277.2, 2), (329.6, 3), (880, 4))
    )
    left = chord / 5 * beat + 0.08 * rng.standard_normal(t.size) * beat
    right = np.roll(left, 240) * 0.9
    return (level * np.stack([left, right])).astype(np.float32)


def spec(width: int = 320, height: int = 180, **changes) -> FinishSpec:
    orientation = "portrait" if height > width else "landscape"
    return dataclasses.replace(
        FinishSpec(width=width, height=height, fps=24, aigc=AIGC, orientation=orientation),
        **changes,
    )


def decode_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    return frame[box.y : box.y + box.h, box.x : box.x + box.w]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


def rendered_text(
    text: str, size: int, canvas: tuple[int, int], origin: tuple[int, int], anchor: str
) -> np.ndarray:
    """The font's own rendering of ``text``, drawn here and not by the code under test."""
    image = Image.new("L", canvas, 0)
    ImageDraw.Draw(image).text(origin, text, font=load_font(size), fill=255, anchor=anchor)
    return np.asarray(image, np.float64)


def ebur128_integrated(samples: np.ndarray, rate: int) -> float:
    """ffmpeg's own EBU R128 meter: an implementation of BS.1770 that is not ours."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format="fltp", sample_rate=rate, layout="stereo", time_base=Fraction(1, rate)
    )
    meter = graph.add("ebur128", "metadata=1")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last = None
    for start in range(0, samples.shape[1], 4800):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, start : start + 4800], np.float32),
            format="fltp",
            layout="stereo",
        )
        frame.sample_rate = rate
        frame.pts = start
        graph.push(frame)
        while True:
            try:
                last = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
    return float(last.metadata["lavfi.r128.I"])


# --- the visible label ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled():
    """Intro card, title card, two shots: the label must be on cards and pictures alike."""
    the_spec = spec(
        title="李明同学",
        title_seconds=1.0,
        subtitles=("小明，你好！", "Hello, Li Ming."),
        brand=BrandKit(
            intro_text="枫叶学校", intro_seconds=0.5, logo_png=logo_png(), logo_corner="top-left"
        ),
    )
    shots = [natural_frames(36, 320, 180, seed=1), natural_frames(36, 320, 180, seed=2)]
    return the_spec, finish(shots, the_spec)


def test_it_draws_the_label_on_every_frame_from_the_first_where_the_rule_says(labelled):
    the_spec, finished = labelled
    frames = decode_frames(finished.mp4)
    layout = label_layout(320, 180, "zh-Hans")
    expected = rendered_text(layout.text, layout.font_size, (320, 180), layout.text_origin, "la")
    assert finished.label_box == layout.box
    assert layout.box.x >= safe_margins(320, 180)[0] and layout.box.y >= safe_margins(320, 180)[1]
    # cards cut, the two shots cross-fade over 7 frames
    assert len(frames) == finished.frame_count == 12 + 24 + 36 + 36 - 7

    two_seconds = 2 * the_spec.fps
    for number, frame in enumerate(frames):
        plate = luma(crop(frame, layout.box))
        text_rows = np.flatnonzero((plate > 170).any(axis=1))
        # White text on a dark plate, on a card and over bright sky alike
        assert np.mean(plate < 70) > 0.6, number
        assert text_rows[-1] - text_rows[0] + 1 >= 0.05 * 180, number
        # and the text is "AI生成" as the font draws it
        assert correlation(plate, crop(expected, layout.box)) > 0.85, number
        if number in (0, two_seconds):
            assert frame.shape == (180, 320, 3)


def test_the_label_text_is_at_least_five_percent_of_the_shorter_side():
    for width, height in ((320, 180), (1280, 720), (720, 1280), (1920, 1080)):
        for locale in ("zh-Hans", "en"):
            layout = label_layout(width, height, locale)
            _, top, _, bottom = load_font(layout.font_size).getbbox("AI", anchor="ls")
            assert bottom - top >= 0.05 * min(width, height)
            assert layout.box.inside(width, height)


def test_it_labels_in_english_when_the_locale_is_english():
    finished = finish([natural_frames(12, 320, 180)], spec(locale="en"))
    layout = label_layout(320, 180, "en")
    expected = rendered_text("AI-generated", layout.font_size, (320, 180), layout.text_origin, "la")
    first = decode_frames(finished.mp4)[0]

    assert layout.text == "AI-generated"
    assert correlation(luma(crop(first, layout.box)), crop(expected, layout.box)) > 0.85


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
@pytest.mark.parametrize("corner", CORNERS)
def test_the_logo_never_overlaps_the_label_whatever_corner_the_tenant_picks(orientation, corner):
    width, height = (320, 180) if orientation == "landscape" else (180, 320)
    the_spec = spec(
        width, height, brand=BrandKit(logo_png=logo_png(), logo_corner=corner, logo_size=0.3)
    )
    finished = finish([flat_frames(3, width, height, (20, 120, 20))], the_spec)
    first = decode_frames(finished.mp4)[0]

    assert finished.logo_box is not None
    assert not finished.logo_box.intersects(finished.label_box)
    # the logo (red) is drawn where it says, and the label is still whole
    logo = crop(first, finished.logo_box).astype(int)
    assert np.mean((logo[..., 0] > 180) & (logo[..., 1] < 80)) > 0.8
    assert np.mean(luma(crop(first, finished.label_box)) < 70) > 0.6
    # the tenant's corner is kept unless it is the label's; then the other top corner
    expected = "top-right" if corner == "top-left" else corner
    w, h = finished.logo_box.w, finished.logo_box.h
    assert finished.logo_box == corner_box(expected, w, h, width=width, height=height)


def test_the_poster_and_the_preview_carry_the_label_too(labelled):
    _, finished = labelled
    layout = label_layout(320, 180, "zh-Hans")
    expected = crop(
        rendered_text(layout.text, layout.font_size, (320, 180), layout.text_origin, "la"),
        layout.box,
    )
    poster = np.asarray(Image.open(io.BytesIO(finished.poster_jpeg)).convert("RGB"))
    preview = Image.open(io.BytesIO(finished.preview))

    assert poster.shape == (180, 320, 3)
    assert correlation(luma(crop(poster, layout.box)), expected) > 0.85
    assert preview.size == (320, 180)  # never scaled up
    for number in range(preview.n_frames):
        preview.seek(number)
        picture = np.asarray(preview.convert("RGB"))
        assert correlation(luma(crop(picture, layout.box)), expected) > 0.8, number


def test_apply_ai_label_draws_on_a_plain_frame_and_leaves_the_rest_alone():
    frame = np.full((180, 320, 3), 240, np.uint8)
    box = label_box(320, 180, "zh-Hans")

    apply_ai_label(frame, locale="zh-Hans")

    outside = frame.copy()
    outside[box.y : box.y + box.h, box.x : box.x + box.w] = 240
    assert (outside == 240).all()
    assert np.mean(luma(crop(frame, box)) < 70) > 0.6
    with pytest.raises(ValueError, match="locale"):
        apply_ai_label(frame, locale="fr")


# --- subtitles and sidecars -----------------------------------------------------------------


def test_subtitles_are_burned_in_with_cjk_glyphs_not_tofu():
    text = "小明鼓起勇气说出了想法"
    width, height = 640, 360
    finished = finish([natural_frames(24, width, height)], spec(width, height, subtitles=(text,)))
    frame = decode_frames(finished.mp4)[12]
    layout = render_subtitle(
        text, width=width, height=height, avoid=[label_box(width, height, "zh-Hans")]
    )
    (line,) = layout.text.lines
    origin = layout.baselines[0]
    glyphs = rendered_text(line, layout.text.size, (width, height), origin, "ls")
    tofu = rendered_text(NOTDEF * len(line), layout.text.size, (width, height), origin, "ls")
    ink = load_font(layout.text.size).getbbox(line, anchor="ls")
    region = Box(origin[0] + ink[0], origin[1] + ink[1], ink[2] - ink[0], ink[3] - ink[1])
    seen = luma(crop(frame, region))

    assert line == text
    assert correlation(seen, crop(glyphs, region)) > 0.85
    assert correlation(seen, crop(tofu, region)) < 0.5
    # inside the title-safe area
    margin_x, margin_y = safe_margins(width, height)
    assert layout.box.x >= margin_x and layout.box.x + layout.box.w <= width - margin_x
    assert layout.box.y + layout.box.h <= height - margin_y


def test_it_wraps_chinese_per_character_and_latin_per_word_into_two_lines_at_most():
    width, height = 640, 360
    chinese = "小明鼓起勇气，在全班同学面前大声说出了自己的想法，老师和同学们都为他鼓掌。"
    latin = (
        "Everyone listened quietly, and Xiaoming smiled all the way home after school "
        "that day, proud of himself."
    )
    margin_x, margin_y = safe_margins(width, height)

    for text in (chinese, latin):
        layout = render_subtitle(text, width=width, height=height)
        font = load_font(layout.text.size)
        assert 1 < len(layout.text.lines) <= 2
        assert not layout.text.truncated
        assert "".join(layout.text.lines).replace(" ", "") == text.replace(" ", "")
        assert layout.box.x >= margin_x and layout.box.x + layout.box.w <= width - margin_x
        assert layout.box.y + layout.box.h <= height - margin_y
        assert all(font.getlength(line) <= width - 2 * margin_x for line in layout.text.lines)
    latin_lines = render_subtitle(latin, width=width, height=height).text.lines
    assert all(word in latin.split() for line in latin_lines for word in line.split())
    # a closing mark never starts a line
    assert wrap("一二三四五六，七八", load_font(20), 6 * 20 + 5) == ["一二三四五", "六，七八"]


def test_a_subtitle_moves_up_to_clear_a_logo_in_a_bottom_corner():
    text = "Everyone listened quietly, and Xiaoming smiled all the way home after school."
    logo = Box(540, 290, 64, 52)  # bottom-right, inside the safe area of 640x360
    plain = render_subtitle(text, width=640, height=360)
    cleared = render_subtitle(text, width=640, height=360, avoid=[logo])

    assert plain.box.intersects(logo)
    assert not cleared.box.intersects(logo)
    assert cleared.text.lines == plain.text.lines


def test_it_shrinks_then_cuts_a_subtitle_that_does_not_fit_two_lines():
    text = "很长的字幕" * 30
    layout = render_subtitle(text, width=320, height=180)

    assert len(layout.text.lines) == 2
    assert layout.text.truncated
    assert layout.text.lines[-1].endswith("…")
    assert layout.text.size < round(0.055 * 180) or layout.text.size == 8


def test_srt_and_vtt_cues_match_where_each_shot_is_on_screen():
    # intro 12 frames, title 24 (cards cut), shots 30 / 36 / 24 cross-fading over 6 frames:
    # segments start at 0, 12, 36, 60, 90; a shot takes over (more than half the picture) 3
    # frames into its cross-fade, so the shots own [36, 63), [63, 93), [93, 114).
    the_spec = spec(
        title="王小红",
        title_seconds=1.0,
        transition_seconds=0.25,
        subtitles=("第一句。", "Second <line> & more", "第三句"),
        brand=BrandKit(intro_text="Intro", intro_seconds=0.5),
    )
    colours = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]
    shots = [flat_frames(n, 320, 180, c) for n, c in zip((30, 36, 24), colours, strict=True)]
    finished = finish(shots, the_spec)

    assert finished.srt == (
        "1\n00:00:01,500 --> 00:00:02,625\n第一句。\n\n"
        "2\n00:00:02,625 --> 00:00:03,875\nSecond <line> & more\n\n"
        "3\n00:00:03,875 --> 00:00:04,750\n第三句\n\n"
    )
    assert finished.vtt == (
        "WEBVTT\n\n"
        "00:00:01.500 --> 00:00:02.625\n第一句。\n\n"
        "00:00:02.625 --> 00:00:03.875\nSecond &lt;line&gt; &amp; more\n\n"
        "00:00:03.875 --> 00:00:04.750\n第三句\n"
    )
    assert finished.frame_count == 114
    # the picture agrees: at each cue's first frame its shot dominates, the frame before not
    frames = decode_frames(finished.mp4)
    centre = (slice(70, 110), slice(130, 190))

    def dominant(frame: np.ndarray) -> int:
        mean = frame[centre].reshape(-1, 3).mean(axis=0)
        return int(np.argmin([np.abs(mean - c).sum() for c in colours]))

    for shot, cue in enumerate(finished.cues):
        assert dominant(frames[cue.start_frame]) == shot
        assert dominant(frames[cue.end_frame - 1]) == shot
        if shot:
            assert dominant(frames[cue.start_frame - 1]) == shot - 1


# --- the file -------------------------------------------------------------------------------


def test_it_writes_h264_high_yuv420p_with_aac_faststart_and_the_aigc_tag(labelled):
    _, finished = labelled
    probe = probe_mp4(finished.mp4)

    assert (probe["codec"], probe["profile"], probe["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert probe["moov_before_mdat"] is True
    assert probe["boxes"][:2] == ["ftyp", "moov"]
    assert probe["audio"] == {"codec": "aac", "profile": "LC", "channels": 2, "sample_rate": 48000}
    assert probe["frames"] == finished.frame_count
    assert probe["metadata"]["AIGC"] == finished.aigc_json
    assert json.loads(probe["metadata"]["AIGC"]) == {
        "Label": "1",
        "ContentProducer": "RC0001",
        "ProduceID": "job-7f3a9c",
        "ReservedCode1": "",
        "ContentPropagator": "RC0001",
        "PropagateID": "job-7f3a9c",
        "ReservedCode2": "",
    }
    assert finished.aigc_json == (
        '{"Label":"1","ContentProducer":"RC0001","ProduceID":"job-7f3a9c","ReservedCode1":"",'
        '"ContentPropagator":"RC0001","PropagateID":"job-7f3a9c","ReservedCode2":""}'
    )


def test_the_aigc_tag_refuses_names_with_spaces_or_quotes_and_a_second_propagator():
    for bad in ("Maple School", 'RC"1', "RC\\1"):
        with pytest.raises(ValueError, match="ContentProducer"):
            AigcLabel(content_producer=bad, produce_id="1").to_json()
    with pytest.raises(ValueError, match="first write"):
        AigcLabel(content_producer="RC1", produce_id="1", content_propagator="RC2").to_json()


def test_without_music_there_is_still_a_silent_aac_track():
    finished = finish([natural_frames(24, 320, 180)], spec())
    samples = audio.decode_audio(finished.mp4)

    assert probe_mp4(finished.mp4)["audio"]["codec"] == "aac"
    assert samples.shape[0] == 2
    assert abs(samples.shape[1] / 48000 - finished.duration_s) < 0.05
    assert np.abs(samples).max() < 1e-3
    assert finished.music_lufs is None


@pytest.mark.parametrize(("level", "rate"), [(0.9, 44100), (0.02, 48000)])
def test_music_is_trimmed_faded_and_normalised_to_minus_16_lufs(level, rate):
    # 10 s of loud (about -9 LUFS) or very quiet (about -43 LUFS) music for a 4 s video
    source = music(10, rate, level=level)
    finished = finish(
        [natural_frames(96, 320, 180)], spec(music=wav_bytes(source, rate), transition_seconds=0)
    )
    decoded = audio.decode_audio(finished.mp4)
    second = 48000

    assert abs(decoded.shape[1] / second - 4.0) < 0.05
    assert abs(audio.integrated_loudness(decoded, second) - (-16.0)) <= 1.0
    assert abs(ebur128_integrated(decoded, second) - (-16.0)) <= 1.0
    assert np.abs(decoded).max() <= 1.0
    # faded in and out: the first and last 50 ms are far quieter than the middle
    rms = lambda part: float(np.sqrt(np.mean(part**2)))  # noqa: E731
    middle = rms(decoded[:, 2 * second : 2 * second + second // 2])
    assert rms(decoded[:, 2400 : 2400 + second // 20]) < middle / 10
    assert rms(decoded[:, -second // 20 :]) < middle / 10


def test_the_loudness_meter_follows_bs_1770():
    (shelf_b, shelf_a), (high_b, high_a) = audio.k_weighting(48000)
    assert np.allclose(shelf_b, audio.BS1770_SHELF_48K[0], atol=1e-9)
    assert np.allclose(shelf_a, audio.BS1770_SHELF_48K[1], atol=1e-9)
    assert np.allclose(high_b, audio.BS1770_HIGHPASS_48K[0], atol=1e-9)
    assert np.allclose(high_a, audio.BS1770_HIGHPASS_48K[1], atol=1e-9)
    t = np.arange(5 * 48000) / 48000
    tone = np.stack([0.1 * np.sin(2 * np.pi * 1000 * t)] * 2)
    # a 1 kHz sine at -20 dBFS in both channels measures -20 LUFS (K-weighting is ~0 dB there)
    assert audio.integrated_loudness(tone, 48000) == pytest.approx(-20.0, abs=0.05)
    # silence is gated out: 5 s more of it would take 3 LU off an ungated mean; only the few
    # blocks straddling the edge count, as in ffmpeg's meter
    padded = np.concatenate([tone, np.zeros_like(tone)], axis=1)
    assert audio.integrated_loudness(padded, 48000) == pytest.approx(-20.0, abs=0.2)
    assert audio.integrated_loudness(padded, 48000) == pytest.approx(
        ebur128_integrated(padded, 48000), abs=0.1
    )
    # and ffmpeg's meter agrees on real music
    song = music(6, 48000, level=0.3)
    assert audio.integrated_loudness(song, 48000) == pytest.approx(
        ebur128_integrated(song, 48000), abs=0.1
    )


# --- layout, hooks, preview -----------------------------------------------------------------


def test_portrait_comes_out_9_16_from_the_same_code_path():
    width, height = canvas_size("portrait", 180)
    shots = [natural_frames(12, 320, 180)]  # a landscape shot, centre-cropped to portrait
    finished = finish(shots, spec(width, height, orientation="portrait", subtitles=("竖屏字幕",)))
    probe = probe_mp4(finished.mp4)
    first = decode_frames(finished.mp4)[0]

    assert (width, height) == (180, 320)
    assert (probe["width"], probe["height"]) == (180, 320)
    assert finished.label_box == label_layout(180, 320, "zh-Hans").box
    assert np.mean(luma(crop(first, finished.label_box)) < 70) > 0.6
    # the figure in the middle of the landscape shot is in the middle of the portrait frame
    source_centre = shots[0][0, 90, 150:170].astype(int)
    assert np.abs(first[160, 80:100].astype(int) - source_centre).mean() < 40


def test_the_frame_hook_sees_every_frame_once_in_order_after_the_label():
    seen = []
    label = label_box(320, 180, "zh-Hans")

    def watermark(index: int, frame: np.ndarray) -> np.ndarray:
        seen.append((index, float(luma(crop(frame, label)).mean())))
        frame[-20:, -20:] = (255, 0, 255)  # changed in place: must reach the file
        return frame

    def returns_a_copy(index: int, frame: np.ndarray) -> np.ndarray:
        copied = frame.copy()
        copied[-20:, :20] = (0, 255, 255)
        return copied

    the_spec = spec(title="小红", title_seconds=0.5, frame_hooks=(watermark, returns_a_copy))
    finished = finish(
        [natural_frames(20, 320, 180), natural_frames(20, 320, 180, seed=3)], the_spec
    )
    frames = decode_frames(finished.mp4)

    assert [index for index, _ in seen] == list(range(finished.frame_count))
    assert all(mean < 120 for _, mean in seen)  # the label's dark plate was already there
    for frame in frames:
        assert np.abs(frame[-15:-5, -15:-5].astype(int) - (255, 0, 255)).mean() < 20
        assert np.abs(frame[-15:-5, 5:15].astype(int) - (0, 255, 255)).mean() < 20


def test_a_hook_that_returns_the_wrong_shape_fails_the_job():
    with pytest.raises(ValueError, match="frame hook"):
        finish([natural_frames(4, 320, 180)], spec(frame_hooks=(lambda index, frame: frame[:10],)))


def test_an_error_in_a_hook_reaches_the_caller_and_leaves_no_thread_behind():
    before = threading.active_count()

    def broken(index: int, frame: np.ndarray) -> np.ndarray:
        if index == 5:
            raise RuntimeError("watermark key missing")
        return frame

    with pytest.raises(RuntimeError, match="watermark key missing"):
        finish([natural_frames(30, 320, 180)], spec(frame_hooks=(broken,)))
    assert threading.active_count() == before


def test_a_failing_encode_stops_the_composing_thread(monkeypatch):
    from generation.postprocess import finish as finish_module

    before = threading.active_count()
    seen = []

    def encoder_that_fails(frames, **_):
        for number, _frame in enumerate(frames):
            if number == 3:
                raise OSError("disk full")

    def hook(index: int, frame: np.ndarray) -> np.ndarray:
        seen.append(index)
        return frame

    monkeypatch.setattr(finish_module, "encode_mp4", encoder_that_fails)
    with pytest.raises(OSError, match="disk full"):
        finish([natural_frames(60, 320, 180)], spec(frame_hooks=(hook,)))
    assert threading.active_count() == before
    assert len(seen) < 60  # it stopped, a few frames ahead at most


def test_the_preview_is_a_small_animated_webp():
    finished = finish([natural_frames(72, 640, 360)], spec(640, 360))
    preview = Image.open(io.BytesIO(finished.preview))

    assert preview.format == "WEBP"
    assert preview.is_animated
    assert preview.n_frames == 24  # 3 s at 8 fps
    assert max(preview.size) <= 480
    assert preview.size == (480, 270)
    assert finished.preview_format == "webp"


def test_shots_of_another_shape_are_padded_when_asked():
    square = flat_frames(6, 180, 180, (250, 250, 250))
    finished = finish([square], spec(fit="pad", brand=BrandKit(primary_colour="#102030")))
    first = decode_frames(finished.mp4)[0]

    assert np.abs(first[100, 10].astype(int) - (16, 32, 48)).mean() < 12  # padding
    assert first[100, 160].min() > 235  # the picture, whole

"""An invisible, keyed spread-spectrum watermark in the luma of every frame.

What it protects: a leaked copy of a video names the job that made it, after the ordinary things
that happen to a leaked video (re-encoding, downscaling, cropping, brightness changes, dropped
frames, excerpts), and a video without our watermark never names a job.

Design, embedding:

- The 64-bit payload is followed by a 32-bit keyed check (truncated HMAC-SHA256 of the payload)
  and coded with the rate-1/3, constraint-length-7 convolutional code of LTE (generators 133,
  171, 165 octal), zero-terminated: 96 information bits become 306 coded bits.
- A tile of 32 x 32 "chips" carries two keyed ±1 patterns added together: a sync pattern that
  is the same for every video of a key, and the message, in which every coded bit owns 3 or 4
  chips spread over the tile by a keyed permutation, each chip scrambled by a keyed sign.
- The chip grid is interpolated to pixels by zero-padding its spectrum, so the pattern is band
  limited (below half a cycle per chip): there is no energy at the high frequencies that H.264
  and downscaling throw away first. A chip is 8 pixels at 720p (a tile is 256 pixels) and grows
  with the frame's shorter side.
- The tile repeats over the whole frame, is scaled to a fixed RMS amplitude (PSNR about 41 dB)
  and is added to R, G and B alike, which changes luma only and leaves chroma untouched. It is
  the same in every frame, so dropped frames, excerpts and frame-rate changes need no temporal
  synchronisation; ``frame_index`` is accepted so the call site need not change if a future
  version varies the pattern in time.

Design, extraction:

- Each frame's luma is whitened by a local predictor (the pixel minus the mean of its neighbours
  two pixels away), clipped so strong edges do not dominate, and averaged over frames: moving
  content averages away and the fixed pattern adds up. This is the soft vote across frames.
  The average's spectrum is then flattened (divided by its local mean magnitude), which leaves
  the tile's line spectrum standing out of the content's smooth one.
- The tile period (so the scale) comes from the autocorrelation of that average, which peaks at
  multiples of the period; its sub-pixel value from a fit over several multiples. Each peak,
  and its half and third, is a candidate.
- The average is folded modulo each candidate period onto one tile; a cyclic cross-correlation
  with the sync pattern gives the offset (so crops are re-aligned) and a score that ranks the
  candidates. Decoding is tried on the best three periods, four offsets each.
- The matched filter (the adjoint of the interpolation) gives each chip's soft value; the soft
  values of a coded bit's chips are summed; a soft-decision Viterbi decoder gives 96 bits.

False positives: a payload is returned only when the 32-bit keyed check of the decoded bits
matches. On a video without the watermark the decoder's output is not related to the key's
HMAC, so each decoding attempt passes with probability 2**-32; ``extract`` makes at most
``MAX_ATTEMPTS`` (12) attempts, so a false positive per video is at most 12 * 2**-32 ≈ 2.8e-9,
below the required 1e-6 by a factor of more than 300.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

PAYLOAD_BITS = 64
CHECK_BITS = 32
INFO_BITS = PAYLOAD_BITS + CHECK_BITS
CONSTRAINT_LENGTH = 7
GENERATORS = (0o133, 0o171, 0o165)
CODED_BITS = (INFO_BITS + CONSTRAINT_LENGTH - 1) * len(GENERATORS)
TILE_CHIPS = 32
# Power split between the sync pattern and the message: the sync correlation integrates all
# 1024 chips of a tile, a coded bit only its 3 or 4, so the sync needs the smaller share.
SYNC_WEIGHT = 0.42
MESSAGE_WEIGHT = float(np.sqrt(1.0 - SYNC_WEIGHT**2))
TARGET_PSNR_DB = 41.0
MAX_ATTEMPTS = 12
# A 720p frame has 8-pixel chips (a 256-pixel tile): after 0.5x and CRF 28 the 4-pixel chips
# that are left still carry the message, where 4-pixel chips (2 left) lose most of it. Frames
# below 540 lines keep 6 (3 after 0.5x), which is marginal after 0.5x + CRF 28 at 360p.
MIN_CHIP_PX = 6
CHIP_PX_PER_SHORT_SIDE = 90
# The smallest period the detector looks for: 2-pixel chips.
MIN_PERIOD_PX = 2 * TILE_CHIPS - 8
RESIDUAL_CLIP = 6.0
SPECTRUM_SMOOTHING = 4
# Autocorrelation lags are searched up to this fraction of the frame's side (a 0.5x copy of a
# 360p video is 180 pixels tall and its tile 96).
MAX_LAG_FRACTION = 0.7
DEFAULT_MAX_FRAMES = 360

_STATES = 1 << (CONSTRAINT_LENGTH - 1)


@dataclass(frozen=True)
class Detection:
    """What ``extract`` found.

    ``payload`` is the 64-bit job payload when the keyed check passed, otherwise None.
    ``confidence`` is the normalised correlation (0..1) between the received soft bits and the
    decoded codeword re-encoded; ``bit_errors_corrected`` counts the coded bits whose hard
    decision disagreed with that codeword (out of ``CODED_BITS``). ``sync_score`` is the sync
    correlation peak in standard deviations; ``period_px`` and ``offset_chips`` say how the tile
    was found. ``soft_bits`` are the coded bits' soft values of the best attempt (positive
    means 0), for measuring bit error rates against a known codeword.
    """

    payload: int | None
    confidence: float
    bit_errors_corrected: int
    frames_used: int
    sync_score: float = 0.0
    period_px: tuple[float, float] = (0.0, 0.0)
    offset_chips: tuple[float, float] = (0.0, 0.0)
    attempts: int = 0
    soft_bits: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def bit_error_rate(self) -> float:
        """Raw coded bit error rate before error correction (only meaningful when decoded)."""
        return self.bit_errors_corrected / CODED_BITS


# --- keys and codes -------------------------------------------------------------------------


def _keyed_rng(key: bytes, label: bytes) -> np.random.Generator:
    digest = hmac.new(key, b"reelcast-watermark/" + label, hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _check_value(payload: int, key: bytes) -> int:
    message = b"reelcast-watermark/check" + payload.to_bytes(8, "big")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return int.from_bytes(digest[: CHECK_BITS // 8], "big")


def _validate(payload: int, key: bytes) -> None:
    if not isinstance(payload, int) or not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError(f"payload must be an int in [0, 2**{PAYLOAD_BITS}) (got {payload!r})")
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("key must be at least 16 bytes")


def _int_to_bits(value: int, width: int) -> np.ndarray:
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], dtype=np.uint8)


def _bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


@functools.cache
def _trellis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each next state and each of its two predecessors: the predecessor, and the ±1 symbols.

    The register holds the input bit above the last six; the next state drops the oldest.
    """
    previous = np.zeros((_STATES, 2), dtype=np.int64)
    symbols = np.zeros((_STATES, 2, len(GENERATORS)), dtype=np.float32)
    for next_state in range(_STATES):
        bit_in = next_state >> (CONSTRAINT_LENGTH - 2)
        for oldest in (0, 1):
            state = ((next_state << 1) & (_STATES - 1)) | oldest
            register = (bit_in << (CONSTRAINT_LENGTH - 1)) | state
            previous[next_state, oldest] = state
            for k, generator in enumerate(GENERATORS):
                parity = (register & generator).bit_count() & 1
                symbols[next_state, oldest, k] = 1.0 - 2.0 * parity
    return previous, symbols, np.arange(_STATES) >> (CONSTRAINT_LENGTH - 2)


def convolutional_encode(info_bits: np.ndarray) -> np.ndarray:
    """The zero-terminated rate-1/3 codeword (0/1) of ``info_bits`` (0/1)."""
    state = 0
    out = []
    for bit in [*(int(b) for b in info_bits), *([0] * (CONSTRAINT_LENGTH - 1))]:
        register = (bit << (CONSTRAINT_LENGTH - 1)) | state
        out.extend((register & generator).bit_count() & 1 for generator in GENERATORS)
        state = register >> 1
    return np.array(out, dtype=np.uint8)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Maximum-correlation decoding of soft values (positive means 0), one word per row.

    ``soft`` has shape (words, CODED_BITS) or (CODED_BITS,); returns the information bits
    (0/1), shape (words, INFO_BITS) or (INFO_BITS,). The path must end in state 0.
    """
    single = soft.ndim == 1
    soft = np.atleast_2d(np.asarray(soft, dtype=np.float32))
    words, length = soft.shape
    outputs = len(GENERATORS)
    steps = length // outputs
    previous, symbols, _ = _trellis()
    metrics = np.full((words, _STATES), -np.inf, dtype=np.float32)
    metrics[:, 0] = 0.0
    choices = np.zeros((steps, words, _STATES), dtype=np.uint8)
    received = soft.reshape(words, steps, outputs)
    for step in range(steps):
        # branch[w, next, oldest] = correlation of the received symbols with the branch's.
        branch = np.einsum("wk,nok->wno", received[:, step], symbols)
        candidates = metrics[:, previous] + branch
        choice = candidates[:, :, 1] > candidates[:, :, 0]
        choices[step] = choice
        metrics = np.where(choice, candidates[:, :, 1], candidates[:, :, 0])
    state = np.zeros(words, dtype=np.int64)
    bits = np.zeros((words, steps), dtype=np.uint8)
    rows = np.arange(words)
    for step in range(steps - 1, -1, -1):
        bits[:, step] = state >> (CONSTRAINT_LENGTH - 2)
        state = previous[state, choices[step, rows, state]]
    info = bits[:, :INFO_BITS]
    return info[0] if single else info


def coded_bits(payload: int, *, key: bytes) -> np.ndarray:
    """The 306 coded bits (0/1) that carry ``payload`` under ``key``."""
    _validate(payload, key)
    info = np.concatenate(
        [
            _int_to_bits(payload, PAYLOAD_BITS),
            _int_to_bits(_check_value(payload, key), CHECK_BITS),
        ]
    )
    return convolutional_encode(info)


# --- patterns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    sync: np.ndarray  # (32, 32) ±1
    scramble: np.ndarray  # (32, 32) ±1
    owner: np.ndarray  # (32, 32) coded bit index of each chip
    sync_spectrum: dict  # fine-grid size -> fft2 of the interpolated sync pattern


@functools.lru_cache(maxsize=8)
def _layout(key: bytes) -> _Layout:
    rng = _keyed_rng(key, b"layout")
    chips = TILE_CHIPS * TILE_CHIPS
    sync = rng.choice(np.array([-1.0, 1.0]), size=(TILE_CHIPS, TILE_CHIPS))
    scramble = rng.choice(np.array([-1.0, 1.0]), size=(TILE_CHIPS, TILE_CHIPS))
    owner = np.empty(chips, dtype=np.int64)
    owner[rng.permutation(chips)] = np.arange(chips) % CODED_BITS
    return _Layout(sync, scramble, owner.reshape(TILE_CHIPS, TILE_CHIPS), {})


def _band_indices(size: int) -> np.ndarray:
    """Indices in a ``size``-point spectrum of the frequencies -15..15 of a 32-chip tile."""
    half = TILE_CHIPS // 2 - 1
    return np.concatenate([np.arange(0, half + 1), np.arange(size - half, size)])


def _interpolate(chips: np.ndarray, factor: int) -> np.ndarray:
    """Band-limited cyclic interpolation of a 32 x 32 chip grid to ``factor`` samples a chip.

    The Nyquist frequency of the chip grid is dropped so the result is real and symmetric.
    """
    size = TILE_CHIPS * factor
    band = _band_indices(TILE_CHIPS)
    spectrum = np.fft.fft2(chips)
    fine = np.zeros((size, size), dtype=complex)
    fine_band = _band_indices(size)
    fine[np.ix_(fine_band, fine_band)] = spectrum[np.ix_(band, band)]
    return np.real(np.fft.ifft2(fine)) * (factor * factor)


def chip_px_for(height: int, width: int) -> int:
    """Pixels per chip for a frame of this size: 4 at 720p, more for larger frames."""
    return max(MIN_CHIP_PX, round(min(height, width) / CHIP_PX_PER_SHORT_SIDE))


def _amplitude_for(psnr_db: float) -> float:
    return 255.0 / (10.0 ** (psnr_db / 20.0))


@dataclass(frozen=True)
class _Delta:
    """A frame's luma change split for saturating uint8 arithmetic on (h, w, 3) frames:
    ``max(min(frame, ceiling) + up, down) - down`` equals ``clip(frame + delta, 0, 255)``
    (one of ``up`` and ``down`` is 0 at each pixel), without a 16-bit copy of the frame."""

    ceiling: np.ndarray
    up: np.ndarray
    down: np.ndarray


def frame_delta(payload: int, key: bytes, height: int, width: int) -> np.ndarray:
    """The int16 luma change for a frame of this size: the tile repeated from the top left."""
    _validate(payload, key)
    layout = _layout(key)
    symbols = 1.0 - 2.0 * coded_bits(payload, key=key).astype(np.float64)
    chips = SYNC_WEIGHT * layout.sync + MESSAGE_WEIGHT * symbols[layout.owner] * layout.scramble
    chip_px = chip_px_for(height, width)
    tile = _interpolate(chips, chip_px)
    tile *= _amplitude_for(TARGET_PSNR_DB) / np.sqrt(np.mean(tile**2))
    reps_y = -(-height // tile.shape[0])
    reps_x = -(-width // tile.shape[1])
    delta = np.tile(tile, (reps_y, reps_x))[:height, :width]
    return np.rint(delta).astype(np.int16)


@functools.lru_cache(maxsize=4)
def _cached_delta(payload: int, key: bytes, height: int, width: int) -> _Delta:
    delta = frame_delta(payload, key, height, width)[:, :, None]
    up = np.ascontiguousarray(np.repeat(np.clip(delta, 0, 255), 3, axis=2).astype(np.uint8))
    down = np.ascontiguousarray(np.repeat(np.clip(-delta, 0, 255), 3, axis=2).astype(np.uint8))
    ceiling = 255 - up
    for array in (ceiling, up, down):
        array.setflags(write=False)
    return _Delta(ceiling, up, down)


# --- embedding ------------------------------------------------------------------------------


def _check_frame(frame: np.ndarray, frame_index: int) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"expected an RGB frame (height, width, 3), got {getattr(frame, 'shape', frame)}"
        )
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    if frame_index < 0:
        raise ValueError(f"frame_index must not be negative (got {frame_index})")


def _apply_in_place(frame: np.ndarray, delta: _Delta) -> None:
    np.minimum(frame, delta.ceiling, out=frame)
    frame += delta.up
    np.maximum(frame, delta.down, out=frame)
    frame -= delta.down


def embed_frame(
    frame_rgb_uint8: np.ndarray, payload: int, *, frame_index: int, key: bytes
) -> np.ndarray:
    """Return a copy of an RGB uint8 frame carrying ``payload`` under ``key``.

    The pattern for a (payload, key, size) is computed once and cached, so a video pays for it
    on its first frame only. ``frame_index`` is accepted for the call site's sake; the pattern
    is the same in every frame (see the module's docstring).
    """
    _validate(payload, key)
    _check_frame(frame_rgb_uint8, frame_index)
    height, width = frame_rgb_uint8.shape[:2]
    marked = np.array(frame_rgb_uint8, dtype=np.uint8, order="C", copy=True)
    _apply_in_place(marked, _cached_delta(payload, key, height, width))
    return marked


def make_frame_hook(payload: int, key: bytes) -> Callable[[int, np.ndarray], np.ndarray]:
    """A ``(frame_index, frame) -> frame`` function that watermarks every frame it is given.

    It changes a writeable C-contiguous frame in place and returns it (the post-processing
    pass's frame hooks may), and otherwise returns a marked copy, as ``embed_frame``.
    """
    _validate(payload, key)

    def hook(frame_index: int, frame: np.ndarray) -> np.ndarray:
        _check_frame(frame, frame_index)
        if not (frame.flags.writeable and frame.flags.c_contiguous):
            return embed_frame(frame, payload, frame_index=frame_index, key=key)
        height, width = frame.shape[:2]
        _apply_in_place(frame, _cached_delta(payload, key, height, width))
        return frame

    return hook


# --- extraction -----------------------------------------------------------------------------


def _luma(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame.astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] == 3:
        # BT.709 weights in 1/256ths; the watermark moved R, G and B alike, so any weights
        # summing to one see all of it.
        weighted = frame[:, :, 0].astype(np.uint16) * 54
        weighted += frame[:, :, 1].astype(np.uint16) * 183
        weighted += frame[:, :, 2].astype(np.uint16) * 19
        return weighted.astype(np.float32) * (1.0 / 256.0)
    raise ValueError(f"expected an RGB (h, w, 3) or luma (h, w) frame, got {frame.shape}")


def _residual(luma: np.ndarray) -> np.ndarray:
    """The pixel minus the mean of its four neighbours two pixels away, clipped."""
    residual = np.zeros_like(luma)
    inner = residual[2:-2, 2:-2]
    inner += luma[:-4, 2:-2]
    inner += luma[4:, 2:-2]
    inner += luma[2:-2, :-4]
    inner += luma[2:-2, 4:]
    inner *= -0.25
    inner += luma[2:-2, 2:-2]
    np.clip(residual, -RESIDUAL_CLIP, RESIDUAL_CLIP, out=residual)
    return residual


def _box_mean(values: np.ndarray, radius: int, axis: int, *, cyclic: bool) -> np.ndarray:
    pad = [(radius + 1, radius) if i == axis else (0, 0) for i in range(values.ndim)]
    sums = np.cumsum(np.pad(values, pad, mode="wrap" if cyclic else "edge"), axis=axis)
    size = values.shape[axis]
    upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + size), axis=axis)
    lower = np.take(sums, np.arange(size), axis=axis)
    return (upper - lower) / (2 * radius + 1)


def _whiten(average: np.ndarray) -> np.ndarray:
    """The average with its spectrum flattened.

    Content leaves a smooth spectrum; the repeated tile leaves lines at multiples of the
    inverse period. Dividing by the locally averaged magnitude flattens the first and keeps
    the second, which sharpens both the autocorrelation peaks and the sync correlation.
    """
    spectrum = np.fft.rfft2(average)
    power = np.abs(spectrum) ** 2
    smooth = _box_mean(power, SPECTRUM_SMOOTHING, 0, cyclic=True)
    smooth = _box_mean(smooth, SPECTRUM_SMOOTHING, 1, cyclic=False)
    smooth += 1e-12 + 1e-9 * smooth.mean()
    return np.fft.irfft2(spectrum / np.sqrt(smooth), s=average.shape)


def _lag_profile(image: np.ndarray, axis: int) -> np.ndarray:
    """Autocorrelation along ``axis`` (summed over the other), for lags up to
    ``MAX_LAG_FRACTION`` of the length, each divided by its overlap and by lag 0's value."""
    length = image.shape[axis]
    spectrum = np.fft.rfft(image, n=2 * length, axis=axis)
    power = np.sum(np.abs(spectrum) ** 2, axis=1 - axis)
    profile = np.fft.irfft(power, n=2 * length)[: int(length * MAX_LAG_FRACTION)]
    profile /= length - np.arange(len(profile))
    return profile / max(profile[0], 1e-12)


def _detrend(profile: np.ndarray) -> np.ndarray:
    width = 9
    return profile - np.convolve(profile, np.ones(width) / width, mode="same")


def _peak_near(profile: np.ndarray, centre: float, reach: int) -> float | None:
    low = max(1, int(np.floor(centre)) - reach)
    high = min(len(profile) - 2, int(np.ceil(centre)) + reach)
    if high <= low:
        return None
    index = low + int(np.argmax(profile[low : high + 1]))
    return index + _sub_sample(profile[index - 1], profile[index], profile[index + 1])


def _refine_period(profile: np.ndarray, coarse: float) -> float:
    """Least-squares period from the peaks at the multiples of ``coarse`` that fit in."""
    numerator = 0.0
    denominator = 0.0
    period = coarse
    multiple = 1
    while multiple * period + 3 < len(profile) - 2:
        location = _peak_near(profile, multiple * period, reach=3 if multiple == 1 else 2)
        if location is None:
            break
        numerator += multiple * location
        denominator += multiple * multiple
        period = numerator / denominator
        multiple += 1
    return period


def _period_candidates(whitened: np.ndarray) -> list[tuple[float, float]]:
    """Likely (vertical, horizontal) tile periods, best first, from the autocorrelation.

    Rows and columns are searched together (a copy is scaled alike both ways) where both are
    long enough, then each axis's period is refined on its own.
    """
    column = _detrend(_lag_profile(whitened, 0))
    row = _detrend(_lag_profile(whitened, 1))
    reach = max(len(row), len(column))
    if reach <= MIN_PERIOD_PX + 2:
        return []
    search = np.zeros(reach - MIN_PERIOD_PX)
    weight = np.zeros(reach - MIN_PERIOD_PX)
    for profile in (row, column):
        available = profile[MIN_PERIOD_PX:]
        search[: len(available)] += available
        weight[: len(available)] += 1
    search /= np.maximum(weight, 1)
    local_max = (search > np.roll(search, 1)) & (search >= np.roll(search, -1))
    local_max[0] = local_max[-1] = False
    order = np.argsort(np.where(local_max, search, -np.inf))[::-1]
    coarse: list[int] = []
    for index in order[:4]:
        if not local_max[index]:
            break
        lag = int(index) + MIN_PERIOD_PX
        # A peak may be at 2P or 3P (a short side holds few periods, and the search only
        # looks up to MAX_LAG_FRACTION of it): the fundamental is tried too, and the sync
        # correlation says which is right.
        for divisor in (1, 2, 3):
            sub = round(lag / divisor)
            if sub >= MIN_PERIOD_PX and all(abs(sub - other) > 0.02 * sub for other in coarse):
                coarse.append(sub)
    candidates = []
    for lag in coarse:
        vertical = _refine_period(column, lag) if lag + 3 < len(column) - 2 else None
        horizontal = _refine_period(row, lag) if lag + 3 < len(row) - 2 else None
        candidates.append((vertical or horizontal or lag, horizontal or vertical or lag))
    return candidates


def _fold(average: np.ndarray, period: tuple[float, float], bins: int) -> np.ndarray:
    """Mean of ``average`` at each of the tile's ``bins``-per-chip positions (cyclic)."""
    size = TILE_CHIPS * bins
    height, width = average.shape
    rows = np.floor(np.arange(height) * (size / period[0]) + 0.5).astype(np.int64) % size
    columns = np.floor(np.arange(width) * (size / period[1]) + 0.5).astype(np.int64) % size
    index = (rows[:, None] * size + columns[None, :]).ravel()
    sums = np.bincount(index, weights=average.ravel(), minlength=size * size)
    counts = np.bincount(index, minlength=size * size)
    folded = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return folded.reshape(size, size)


def _sync_spectrum(layout: _Layout, bins: int) -> np.ndarray:
    if bins not in layout.sync_spectrum:
        layout.sync_spectrum[bins] = np.fft.fft2(_interpolate(layout.sync, bins))
    return layout.sync_spectrum[bins]


@dataclass(frozen=True)
class _Alignment:
    score: float
    offset: tuple[float, float]  # in fine samples


def _alignments(
    folded_spectrum: np.ndarray, sync_spectrum: np.ndarray, count: int
) -> list[_Alignment]:
    correlation = np.real(np.fft.ifft2(folded_spectrum * np.conj(sync_spectrum)))
    size = correlation.shape[0]
    spread = correlation.std()
    if spread <= 0:
        return []
    centred = (correlation - correlation.mean()) / spread
    found: list[_Alignment] = []
    flat_order = np.argsort(centred, axis=None)[::-1]
    for flat in flat_order[: 8 * count]:
        y, x = divmod(int(flat), size)
        if any(
            min(abs(y - a.offset[0]) % size, -abs(y - a.offset[0]) % size) < 3
            and min(abs(x - a.offset[1]) % size, -abs(x - a.offset[1]) % size) < 3
            for a in found
        ):
            continue
        offset_y = y + _sub_sample(
            centred[(y - 1) % size, x], centred[y, x], centred[(y + 1) % size, x]
        )
        offset_x = x + _sub_sample(
            centred[y, (x - 1) % size], centred[y, x], centred[y, (x + 1) % size]
        )
        found.append(_Alignment(float(centred[y, x]), (offset_y, offset_x)))
        if len(found) == count:
            break
    return found


def _sub_sample(left: float, middle: float, right: float) -> float:
    curvature = left - 2 * middle + right
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def _chip_values(folded_spectrum: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """Matched-filter value at each chip of the tile, shifted back by ``offset`` samples."""
    size = folded_spectrum.shape[0]
    band = _band_indices(size)
    frequencies = np.fft.fftfreq(size)[band]
    shift_y = np.exp(2j * np.pi * frequencies * offset[0])
    shift_x = np.exp(2j * np.pi * frequencies * offset[1])
    coarse = np.zeros((TILE_CHIPS, TILE_CHIPS), dtype=complex)
    chip_band = _band_indices(TILE_CHIPS)
    coarse[np.ix_(chip_band, chip_band)] = (
        folded_spectrum[np.ix_(band, band)] * shift_y[:, None] * shift_x[None, :]
    )
    return np.real(np.fft.ifft2(coarse))


@dataclass(frozen=True)
class _Folding:
    period: tuple[float, float]
    bins: int
    spectrum: np.ndarray
    alignments: list[_Alignment]


def _ranked_foldings(whitened: np.ndarray, layout: _Layout) -> list[_Folding]:
    """Every candidate period folded and sync-correlated, best sync peak first.

    Ranking by the sync peak, before any decoding, keeps the number of decoding attempts (and
    so the false-positive bound) fixed however many periods are looked at.
    """
    foldings = []
    for period in _period_candidates(whitened):
        bins = int(np.clip(np.floor(min(period) / TILE_CHIPS), 1, 4))
        spectrum = np.fft.fft2(_fold(whitened, period, bins))
        alignments = _alignments(spectrum, _sync_spectrum(layout, bins), count=4)
        if alignments:
            foldings.append(_Folding(period, bins, spectrum, alignments))
    foldings.sort(key=lambda folding: folding.alignments[0].score, reverse=True)
    return foldings


def _decode_soft(soft: np.ndarray, key: bytes) -> tuple[int | None, float, int]:
    scale = np.sqrt(np.mean(soft**2))
    if not np.isfinite(scale) or scale <= 0:
        return None, 0.0, 0
    info = viterbi_decode((soft / scale).astype(np.float32))
    payload = _bits_to_int(info[:PAYLOAD_BITS])
    check = _bits_to_int(info[PAYLOAD_BITS:])
    codeword = 1.0 - 2.0 * convolutional_encode(info).astype(np.float64)
    confidence = float(np.dot(soft, codeword) / np.sum(np.abs(soft)))
    errors = int(np.count_nonzero(np.sign(soft) != codeword))
    if check != _check_value(payload, key):
        return None, confidence, errors
    return payload, confidence, errors


class Extractor:
    """Takes a video's frames one at a time (RGB uint8 (h, w, 3) or luma (h, w)) and then says
    what watermark they carry; frames beyond ``max_frames`` are ignored.

    Only the running sum of whitened residuals is kept, so memory does not grow with the video.
    """

    def __init__(self, *, key: bytes, max_frames: int = DEFAULT_MAX_FRAMES):
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("key must be at least 16 bytes")
        self._key = key
        self._max_frames = max_frames
        self._total: np.ndarray | None = None
        self._count = 0

    @property
    def wants_more(self) -> bool:
        """False once ``max_frames`` frames have been taken: the caller may stop decoding."""
        return self._count < self._max_frames

    def add(self, frame: np.ndarray) -> None:
        if not self.wants_more:
            return
        frame = np.asarray(frame)
        residual = _residual(_luma(frame))
        if self._total is None:
            self._total = residual.astype(np.float64)
        elif residual.shape != self._total.shape:
            raise ValueError(f"frame {self._count} has shape {frame.shape}, unlike the first frame")
        else:
            self._total += residual
        self._count += 1

    def result(self) -> Detection:
        count = self._count
        if self._total is None or min(self._total.shape) < 2 * MIN_PERIOD_PX:
            return Detection(None, 0.0, 0, count)
        return _detect(self._total / count, count, self._key)


def extract(
    frames: Iterable[np.ndarray], *, key: bytes, max_frames: int = DEFAULT_MAX_FRAMES
) -> Detection:
    """Find the watermark in frames (RGB uint8 (h, w, 3) or luma (h, w)) of one video.

    Returns a Detection whose ``payload`` is None when no watermark of ``key`` was found; a
    payload is only ever one whose keyed check passed (see the module's docstring for the
    false-positive bound). Reads at most ``max_frames`` frames.
    """
    extractor = Extractor(key=key, max_frames=max_frames)
    for frame in frames:
        if not extractor.wants_more:
            break
        extractor.add(frame)
    return extractor.result()


def _detect(average: np.ndarray, count: int, key: bytes) -> Detection:
    layout = _layout(key)
    whitened = _whiten(average)
    best: Detection | None = None
    attempts = 0
    for folding in _ranked_foldings(whitened, layout)[:3]:
        period, bins, folded_spectrum = folding.period, folding.bins, folding.spectrum
        for alignment in folding.alignments:
            if attempts >= MAX_ATTEMPTS:
                break
            attempts += 1
            chips = _chip_values(folded_spectrum, alignment.offset)
            sync_gain = float(np.sum(chips * layout.sync)) / chips.size
            chips = chips - sync_gain * layout.sync
            soft = np.bincount(
                layout.owner.ravel(),
                weights=(chips * layout.scramble).ravel(),
                minlength=CODED_BITS,
            )
            payload, confidence, errors = _decode_soft(soft, key)
            detection = Detection(
                payload=payload,
                confidence=confidence if payload is not None else 0.0,
                bit_errors_corrected=errors if payload is not None else 0,
                frames_used=count,
                sync_score=alignment.score,
                period_px=(float(period[0]), float(period[1])),
                offset_chips=(alignment.offset[0] / bins, alignment.offset[1] / bins),
                attempts=attempts,
                soft_bits=soft,
            )
            if payload is not None:
                return detection
            if best is None or alignment.score > best.sync_score:
                best = detection
    if best is None:
        return Detection(None, 0.0, 0, count, attempts=attempts)
    return Detection(
        None,
        0.0,
        0,
        count,
        sync_score=best.sync_score,
        period_px=best.period_px,
        offset_chips=best.offset_chips,
        attempts=attempts,
        soft_bits=best.soft_bits,
    )

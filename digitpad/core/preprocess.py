"""Any picture of a digit -> the 28x28 MNIST-style input the network reads.

Owns the preprocessing pipeline that makes a person's drawing look like an MNIST digit:
white ink on black, strokes as wide as MNIST's (1.4 to 3.6 px, median 2.1), fitted into a
20x20 box keeping the aspect ratio with area-averaging, and shifted (sub-pixel) so its
centre of mass sits where MNIST's does. The input can be a canvas bitmap, a scanned page or a file from another program: any
size, grey/RGB/RGBA, uint8/uint16/float, either polarity, with specks.

Steps, each a small function below:

1. ``_to_grey``          composite alpha over the background, convert to grey in [0, 1]
2. ``_find_polarity``    decide which side is ink (border + histogram); normalise ink to [0, 1]
3. ``_drop_specks``      connected components far lighter than the largest stroke are noise
4. ``_crop_to_ink``      crop to the ink's bounding box (no ink -> a blank result)
5. ``_normalise_stroke`` estimate the stroke width (distance transform), thicken or thin it
6. ``_fit_and_centre``   fit the longest side to 20 px (area averaging) and place in 28x28
7.                       with the centre of mass at MNIST's position, without cutting ink

Large images are block-averaged early: components are found on a grid of at most
``ANALYSIS_SIZE`` px, and the stroke is reworked at ``WORK_SIZE``..2*``WORK_SIZE`` px, so
a 280x280 canvas takes a millisecond or two. NumPy and SciPy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

PREPROCESS_VERSION = 1

OUT_SIZE = 28             # network input side, px
BOX_SIZE = 20             # the digit's longest side in the output, px (MNIST)
COM_TARGET = 14.0         # MNIST centre of mass (row and column), pixel-index coordinates
WIDTH_RANGE = (1.4, 3.6)  # stroke widths left alone, output px: MNIST's 5th-95th percentile
MIN_CONTRAST = 0.04       # a picture whose grey levels span less than this is blank
SPECK_FRACTION = 0.1      # components lighter than this fraction of the heaviest are specks...
PIECE_EXTENT = 0.25       # ...unless at least this fraction of its extent (stroke fragments)
DOT_DEPTH = 0.35          # ink whose deepest point is this fraction of its extent is a dot
ANALYSIS_SIZE = 128       # longest side of the grid on which ink is found and labelled
WORK_SIZE = 64            # the stroke is reworked with its longest side in [WORK_SIZE, 2*WORK_SIZE)
SHRINK_PIXELS = 4_000_000   # pictures larger than this are block-averaged while converting
MAX_PIXELS = 100_000_000    # pictures larger than this are refused
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R BT.601 luma weights


@dataclass(frozen=True)
class Preprocessed:
    """The network input made from one picture, and what was done to make it."""

    image: np.ndarray            # (28, 28) float32 in [0, 1], white ink on black; zeros when blank
    blank: bool                  # no digit found: the image must not be classified
    blank_reason: str = ""       # why it is blank ("" when it is not)
    inverted: bool = False       # the input had dark ink on a light background
    background: float = 0.0      # grey level of the input's background, in [0, 1]
    bbox: tuple[int, int, int, int] | None = None   # ink (row0, row1, col0, col1), input px, half-open
    stroke_width: float = 0.0    # estimated stroke width of the input, input px
    output_stroke_width: float = 0.0   # stroke width in the 28x28 image, px
    scale: float = 0.0           # output px per input px
    shift: tuple[float, float] = (0.0, 0.0)   # (dy, dx) output px moved to centre the mass
    # together: an input point p = (y, x) lands at about 14 + shift + scale * (p - bbox centre)
    # in output coordinates where pixel i spans [i, i + 1)
    specks_removed: int = 0      # connected components dropped as noise
    input_shape: tuple[int, ...] = ()

    def describe(self) -> str:
        """One line saying what was done, for a status bar or tooltip."""
        if self.blank:
            return f"blank: {self.blank_reason}"
        parts = ["dark ink on light, inverted" if self.inverted else "light ink on dark"]
        if self.specks_removed:
            parts.append(f"{self.specks_removed} speck{'s' if self.specks_removed > 1 else ''} removed")
        parts.append(f"stroke {self.stroke_width:.1f} px -> {self.output_stroke_width:.1f} px")
        parts.append(f"scale x{self.scale:.3g}")
        parts.append(f"shift ({self.shift[0]:+.1f}, {self.shift[1]:+.1f})")
        return ", ".join(parts)


def _blank(shape, reason: str, **what) -> Preprocessed:
    return Preprocessed(np.zeros((OUT_SIZE, OUT_SIZE), np.float32), True, reason,
                        input_shape=tuple(shape), **what)


# ---------------------------------------------------------------- input checks, step 1


def _check_input(image) -> np.ndarray:
    """Return ``image`` as an (H, W) or (H, W, C) numeric array, or raise a clear ValueError."""
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError) as e:
        raise ValueError(f"image is not an array: {e}") from None
    if arr.dtype == object or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
                                   or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"image must hold numbers (bool, int, uint or float), got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ValueError("image must be 2-D grey (H, W) or 3-D (H, W, C) with C = 1, 2 (grey, alpha), "
                         f"3 (RGB) or 4 (RGBA); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    n = arr.shape[0] * arr.shape[1]
    if n > MAX_PIXELS:
        raise ValueError(f"image is too large: {arr.shape[0]}x{arr.shape[1]} = {n:,} pixels "
                         f"(at most {MAX_PIXELS:,})")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError("image contains NaN values")
        if np.isinf(arr).any():
            raise ValueError("image contains infinite values")
    return arr


def _unit_range(arr: np.ndarray) -> tuple[float, float]:
    """(offset, gain) mapping the array's values to [0, 1]: ``(arr - offset) * gain``.

    uint8 uses 0..255. Other integers use the smallest of 0..255, 0..1023, 0..4095 and
    0..65535 that holds their values (8-bit data in a uint16 array, 10- and 12-bit sensors),
    floats are taken as [0, 1] when they fit; anything else is stretched from its minimum
    to its maximum. A constant array gets gain 0 (all zeros, hence blank).
    """
    if arr.dtype == bool:
        return 0.0, 1.0
    if arr.dtype == np.uint8:
        return 0.0, 1.0 / 255.0
    lo, hi = float(arr.min()), float(arr.max())
    if arr.dtype.kind in "iu" and lo >= 0:
        for top in (255.0, 1023.0, 4095.0, 65535.0):
            if hi <= top:
                return 0.0, 1.0 / top
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    span = hi / 2.0 - lo / 2.0          # halves: hi - lo may overflow for huge floats
    if not span > 0.0:
        return lo, 0.0
    return lo, 0.5 / span


def _alpha_background(colour: np.ndarray, alpha: np.ndarray) -> float:
    """Grey level to composite transparent pixels over, from a (h, w) sample of grey and alpha.

    Mostly-opaque pictures (a page with a transparent margin) get the page's own grey;
    mostly-transparent ones (strokes on nothing) get the opposite of the strokes' grey, so
    black strokes land on white and white strokes on black.
    """
    opaque = alpha > 0.5
    if opaque.mean() > 0.5:
        return float(np.median(colour[opaque]))
    weight = float(alpha.sum())
    if weight <= 0.0:
        return 0.0
    mean_ink = float((colour * alpha).sum()) / weight
    return 1.0 if mean_ink < 0.5 else 0.0


def _grey_channels(arr: np.ndarray, offset: float, gain: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(grey, alpha) float32 arrays in [0, 1] from an (h, w) or (h, w, C) slice; alpha may be None."""
    wide = arr.dtype.kind == "f" and (offset != 0.0 or gain != 1.0)  # float16/32 extremes overflow in float32
    x = arr.astype(np.float64 if wide else np.float32)
    if gain != 1.0:
        x *= gain
    if offset != 0.0:
        x -= offset * gain              # arr * gain - offset * gain: no overflow for huge floats
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        return x, None
    c = x.shape[2]
    grey = x[:, :, 0] if c == 2 else x[:, :, :3] @ _LUMA      # (h, w)
    alpha = x[:, :, c - 1] if c in (2, 4) else None
    return grey, alpha


def _composite(grey: np.ndarray, alpha: np.ndarray | None, background: float | None) -> np.ndarray:
    """Grey composited over ``background`` by ``alpha`` (either None: no compositing), clipped."""
    if alpha is not None and background is not None:
        grey = grey * alpha + np.float32(background) * (1.0 - alpha)         # (h, w)
    return np.clip(grey, 0.0, 1.0, out=grey)


def _to_grey(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Step 1: alpha composited over the background, converted to grey.

    Returns (grey, factor): grey is (ceil(H/factor), ceil(W/factor)) float32 in [0, 1].
    Pictures above ``SHRINK_PIXELS`` are converted in bands of rows and block-averaged by
    ``factor`` on the way, so a huge picture never exists as a float array.
    """
    h, w = arr.shape[:2]
    offset, gain = _unit_range(arr)
    has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    factor = max(1, math.ceil(math.sqrt(h * w / SHRINK_PIXELS)))
    if factor == 1:
        grey, alpha = _grey_channels(arr, offset, gain)
        background = None
        if alpha is not None and float(alpha.min()) < 1.0:
            s = max(1, int(math.sqrt(h * w / 65536)))
            background = _alpha_background(grey[::s, ::s], alpha[::s, ::s])
        return _composite(grey, alpha, background), 1
    background = None
    if has_alpha:
        s = max(1, int(math.sqrt(h * w / 65536)))
        grey, alpha = _grey_channels(arr[::s, ::s], offset, gain)
        background = _alpha_background(grey, alpha)
    band = factor * max(1, 1_000_000 // (w * factor))          # rows per band, a multiple of factor
    sums = [_block_reduce(_composite(*_grey_channels(arr[r:r + band], offset, gain), background),
                          factor, np.add) for r in range(0, h, band)]
    return np.concatenate(sums) / _block_counts(h, w, factor), factor


# ---------------------------------------------------------------- block reductions


def _block_reduce(a: np.ndarray, f: int, op: np.ufunc) -> np.ndarray:
    """Reduce (H, W) over f x f blocks with ``op`` (np.add, np.maximum, np.minimum).

    Returns (ceil(H/f), ceil(W/f)); the last blocks may be partial. Small blocks combine
    strided slices in place (f cheap passes per axis); big ones reduce a reshaped axis.
    """
    if f == 1:
        return a
    return _reduce_axis(_reduce_axis(a, f, op).T, f, op).T


def _reduce_axis(a: np.ndarray, f: int, op: np.ufunc) -> np.ndarray:
    """(H, W) -> (ceil(H/f), W): ``op`` over each run of f rows, the last run maybe shorter."""
    if f <= 8:
        out = a[0::f].copy()
        for k in range(1, f):
            part = a[k::f]
            op(out[:len(part)], part, out=out[:len(part)])
        return out
    h = a.shape[0]
    whole = h // f * f
    parts = [op.reduce(a[:whole].reshape(h // f, f, -1), axis=1)] if whole else []
    if whole < h:
        parts.append(op.reduce(a[whole:], axis=0, keepdims=True))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _block_counts(h: int, w: int, f: int) -> np.ndarray:
    """Number of pixels in each f x f block of an (h, w) array, shape (ceil(h/f), ceil(w/f))."""
    rows = np.minimum(f, h - np.arange(0, h, f)).astype(np.float32)
    cols = np.minimum(f, w - np.arange(0, w, f)).astype(np.float32)
    return rows[:, None] * cols[None, :]


# ---------------------------------------------------------------- step 2: polarity


@dataclass(frozen=True)
class _Polarity:
    inverted: bool      # ink is dark: ink-ness = 1 - grey
    background: float   # grey level of the background
    low: float          # ink-ness mapped to 0
    high: float         # ink-ness mapped to 1

    def ink(self, grey: np.ndarray) -> np.ndarray:
        """Ink-ness in [0, 1] of grey levels: 0 on the background, 1 in the stroke's core."""
        x = (1.0 - grey) if self.inverted else grey.copy()
        x -= np.float32(self.low)
        x *= np.float32(1.0 / (self.high - self.low))
        return np.clip(x, 0.0, 1.0, out=x)


def _find_polarity(grey: np.ndarray, coarse_mean: np.ndarray, f: int
                   ) -> tuple[_Polarity, np.ndarray] | None:
    """Step 2: which side is ink, and the grey levels of background and ink. None if uniform.

    The background is the border's median grey (the median of ``coarse_mean``, the f x f
    block means, when the border is ambiguous); ink is whichever extreme is farther from
    it. Ink's level is a high percentile of the blocks' extremes, so one hot pixel does not
    set the contrast. Returns (polarity, blocks): blocks (h, w) is each f x f block's grey
    at its inkiest (minimum for dark ink, maximum for light ink).
    """
    lo, hi = float(grey.min()), float(grey.max())
    if hi - lo < MIN_CONTRAST:
        return None
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    bg = float(np.median(border))
    if 0.35 < (bg - lo) / (hi - lo) < 0.65:
        bg = float(np.median(coarse_mean))
    inverted = (hi - bg) < (bg - lo)
    blocks = _block_reduce(grey, f, np.minimum if inverted else np.maximum)  # (h, w)
    ink_bg = 1.0 - bg if inverted else bg
    extremes = (1.0 - blocks) if inverted else blocks
    peak = 1.0 - lo if inverted else hi
    strong = extremes[extremes > ink_bg + 0.5 * (peak - ink_bg)]
    level = float(np.percentile(strong, 90)) if strong.size >= 8 else peak
    if level - ink_bg < MIN_CONTRAST:
        return None
    span = level - ink_bg
    # a small dead zone at both ends: background noise -> 0, the stroke's core -> 1
    return _Polarity(inverted, bg, ink_bg + 0.08 * span, ink_bg + 0.92 * span), blocks


# ---------------------------------------------------------------- step 3: specks


def _drop_specks(mask: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Step 3: drop connected components far lighter and far smaller than the heaviest stroke.

    ``mask`` (h, w) bool marks blocks holding ink, ``mass`` (h, w) their amount of ink. A
    component stays if it holds at least SPECK_FRACTION of the heaviest one's ink, or if it
    is a stroke fragment: at least PIECE_EXTENT of the heaviest one's extent (a loop or bar
    drawn separately with a thin pen is light but long; a speck is light and short).
    Returns (kept, dropped, n_dropped): bool masks of the blocks kept and of those dropped.
    """
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))            # (h, w) int
    if n <= 1:
        return mask, np.zeros_like(mask), 0
    weight = np.bincount(labels.ravel(), weights=mass.ravel(), minlength=n + 1)   # (n + 1,)
    weight[0] = 0.0
    heaviest = int(weight.argmax())
    extent = np.zeros(n + 1)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        extent[i] = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
    keep = (weight >= SPECK_FRACTION * weight[heaviest]) | (
        (extent >= PIECE_EXTENT * extent[heaviest]) & (weight >= 0.02 * weight[heaviest]))
    keep[0] = False
    speck = ~keep
    speck[0] = False
    return keep[labels], speck[labels], int(n - keep[1:].sum())


# ---------------------------------------------------------------- step 4: crop


def _grow_one(mask: np.ndarray) -> np.ndarray:
    """A bool mask grown by one pixel in all eight directions (3x3 dilation)."""
    p = np.pad(mask, 1)
    rows = p[:-2] | p[1:-1] | p[2:]                                          # (h, w + 2)
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]                        # (h, w)


def _crop_to_ink(grey: np.ndarray, polarity: _Polarity, kept: np.ndarray, dropped: np.ndarray,
                 f: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Step 4: ink-ness of the kept ink, cropped to its bounding box.

    ``kept``/``dropped`` are masks on the f x f block grid. Blocks next to kept ones are
    included (they hold the strokes' soft edges) unless they belong to a speck.
    Returns (ink, bbox): ink (h, w) float32 in [0, 1], bbox (row0, row1, col0, col1) in grey px.
    """
    zone = _grow_one(kept) & ~dropped                                       # (hb, wb)
    rows, cols = np.flatnonzero(zone.any(1)), np.flatnonzero(zone.any(0))
    rb0, rb1, cb0, cb1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    r0, r1 = rb0 * f, min(rb1 * f, grey.shape[0])
    c0, c1 = cb0 * f, min(cb1 * f, grey.shape[1])
    ink = polarity.ink(grey[r0:r1, c0:c1])                                   # (r1-r0, c1-c0)
    if f > 1:       # each block's flag over its pixels (the last blocks may be cut by the edge)
        rows = np.full(rb1 - rb0, f)
        rows[-1] = (r1 - r0) - f * (rb1 - rb0 - 1)
        cols = np.full(cb1 - cb0, f)
        cols[-1] = (c1 - c0) - f * (cb1 - cb0 - 1)
        ink *= zone[rb0:rb1, cb0:cb1].repeat(rows, 0).repeat(cols, 1)
    elif not zone.all():
        ink *= zone[rb0:rb1, cb0:cb1]
    on = ink > 0.0
    rr, cc = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    ink = ink[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1]
    return ink, (int(r0 + rr[0]), int(r0 + rr[-1] + 1), int(c0 + cc[0]), int(c0 + cc[-1] + 1))


# ---------------------------------------------------------------- resampling


def _area_matrix(n_in: int, n_out: int, scale: float, offset: float) -> np.ndarray:
    """(n_out, n_in) area-averaging weights: input px i covers output [offset + scale*i, +scale)."""
    a = offset + scale * np.arange(n_in, dtype=np.float64)                  # (n_in,) left edges
    j = np.arange(n_out, dtype=np.float64)[:, None]                         # (n_out, 1)
    overlap = np.minimum(j + 1.0, a + scale) - np.maximum(j, a)              # (n_out, n_in)
    return np.clip(overlap, 0.0, None).astype(np.float32)


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights resizing n_in samples to n_out (edges clamped)."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5                    # (n_out,) input coords
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), i0] += 1.0 - t
    m[np.arange(n_out), i1] += t
    return m


def _to_working(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The cropped ink at working resolution: (soft, solid, step).

    soft (h, w) float32 is the ink's coverage, solid (h, w) bool its shape; step is input px per
    working px. Big crops are block-averaged (partial blocks at the crop's edge count the
    page beyond it as background); a stroke thinner than a block is kept in ``solid`` through
    the blocks' maxima. Small crops are enlarged by linear interpolation.
    """
    h, w = ink.shape
    longest = max(h, w)
    if longest >= WORK_SIZE:
        f = longest // WORK_SIZE
        if f == 1:
            return ink, ink > 0.5, 1.0
        soft = _block_reduce(ink, f, np.add) * np.float32(1.0 / (f * f))     # (ceil(h/f), ceil(w/f))
        solid = soft > 0.5
        peak = _block_reduce(ink, f, np.maximum) > 0.5
        if solid.sum() < 0.7 * peak.sum():        # strokes thinner than a block
            solid = peak
        return soft, solid, float(f)
    zoom = WORK_SIZE / longest
    hz, wz = max(1, round(h * zoom)), max(1, round(w * zoom))
    soft = _linear_matrix(h, hz) @ ink @ _linear_matrix(w, wz).T              # (hz, wz)
    return soft, soft > 0.4, longest / WORK_SIZE


# ---------------------------------------------------------------- step 5: stroke width


def _centre_lines(inside: np.ndarray) -> np.ndarray:
    """Pixels where the distance to the edge peaks across the stroke (its centre lines), bool.

    A pixel counts if, along one of the four directions, it is at least as deep as both
    neighbours and deeper than one of them (so a plateau along the stroke is not a peak).
    """
    h, w = inside.shape
    p = np.pad(inside.astype(np.float32), 1)
    c = p[1:-1, 1:-1]
    peak = np.zeros((h, w), bool)
    for (y0, x0), (y1, x1) in (((0, 1), (2, 1)), ((1, 0), (1, 2)), ((0, 0), (2, 2)), ((0, 2), (2, 0))):
        a, b = p[y0:y0 + h, x0:x0 + w], p[y1:y1 + h, x1:x1 + w]
        peak |= (c >= np.maximum(a, b)) & (c > np.minimum(a, b))
    return peak & (c > 0)


def _stroke_width(solid: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Stroke width of a bool shape (with a background border), px.

    Twice the median depth of the centre lines, less half a pixel (depths count to the
    nearest background pixel's centre). Centre-line pixels well below the deepest point
    nearby are spurs grown by corners and stroke ends, and are left out.
    Returns (width, thin_width, inside, centre): the median width, the width of the
    thinnest quarter of the stroke, the distance transform and the centre lines.
    """
    inside = ndi.distance_transform_edt(solid)                               # (h, w) float64
    centre = _centre_lines(inside)
    if not centre.any():
        return 1.0, 1.0, inside, centre
    reach = int(math.ceil(float(inside.max())))
    main = centre & (inside >= 0.7 * ndi.maximum_filter(inside, size=2 * reach + 1))
    q25, q50 = np.percentile(inside[main], [25, 50])
    return max(1.0, 2.0 * q50 - 0.5), max(1.0, 2.0 * q25 - 0.5), inside, centre


def _is_dot(solid: np.ndarray, inside: np.ndarray) -> bool:
    """True when the shape is a blob rather than strokes: its deepest point is over a third of its size.

    A disc's centre lies half its diameter deep; a digit, even a stubby "1" drawn with a fat
    brush, is at least about four half-widths long.
    """
    rows, cols = np.flatnonzero(solid.any(1)), np.flatnonzero(solid.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return float(inside.max()) > DOT_DEPTH * extent


def _normalise_stroke(soft: np.ndarray, solid: np.ndarray, width: float, thin_width: float,
                      inside: np.ndarray, centre: np.ndarray, px_per_out: float
                      ) -> tuple[np.ndarray, float, float]:
    """Step 5: thicken or thin the stroke so it is MNIST-wide at the output scale.

    ``soft`` (h, w) is the working coverage, ``solid`` its shape, ``width``, ``thin_width``,
    ``inside`` and ``centre`` what ``_stroke_width`` found, ``px_per_out`` working px per
    output px. A stroke whose width lies in WIDTH_RANGE is left alone (MNIST's own digits
    pass through); others are grown (distance from the shape) or shrunk (distance inside it)
    to the nearer end of the range, anti-aliased over one px. Thinning stops before the
    thinnest quarter of the stroke goes below 3/4 of the goal (a blob with a thin tail keeps
    its tail), and redraws the centre line of any part that erosion would still erase.
    Arrays need a background border at least one px wide; growing adds its own room.
    Returns (new coverage float32, (h, w) or larger, width before, median width after), widths
    in working px.
    """
    covered = float(solid.sum())
    true_width = width * min(1.0, float(soft.sum()) / covered) if covered else 0.0
    out_width = true_width / px_per_out
    goal = min(max(out_width, WIDTH_RANGE[0]), WIDTH_RANGE[1])              # output px
    if WIDTH_RANGE[0] <= out_width <= WIDTH_RANGE[1] or abs(goal - out_width) < 0.15:
        return soft, true_width, true_width
    # growing by c on each side also lengthens the box by 2c; solve for the working width t
    # with t / ((longest + t - width) / BOX_SIZE) = goal
    longest = px_per_out * BOX_SIZE
    target = max(1.0, goal * (longest - width) / (BOX_SIZE - goal))
    change = (target - width) / 2.0                # px added (+) or removed (-) on each side
    if change >= 0:
        solid = np.pad(solid, int(math.ceil(change)) + 1)                    # room to grow
        outside = ndi.distance_transform_edt(~solid)                         # (h + 2p, w + 2p)
        new = np.clip(change + 1.0 - outside, 0.0, 1.0)
    else:
        cut = min(-change, max(0.0, (thin_width - 0.75 * target) / 2.0))
        if cut < 0.25:
            return soft, true_width, true_width
        target = width - 2.0 * cut
        new = np.clip(inside - cut, 0.0, 1.0)
        # centre lines that erosion erases are redrawn at the target width, inside the old
        # shape; centre lines well below the deepest point nearby are spurs of ragged edges
        near_max = ndi.maximum_filter(inside, size=2 * int(math.ceil(width / 2)) + 1)
        lost = centre & (inside <= cut + 0.5) & (inside >= 0.7 * near_max)
        if lost.any():
            near = ndi.distance_transform_edt(~lost)
            new = np.maximum(new, np.clip(target / 2.0 + 0.5 - near, 0.0, 1.0) * solid)
    return new.astype(np.float32), true_width, target


# ---------------------------------------------------------------- step 6 + 7: fit and centre


FAINT_PEAK = 0.5  # a result whose brightest pixel is below this is brought up to full white


def _fit_and_centre(soft: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Steps 6 and 7: the longest side to BOX_SIZE px with area averaging, centred by mass.

    The centre of mass lands on (COM_TARGET, COM_TARGET) unless that would push ink out of
    the 28x28 field, in which case the box stops at the edge. Area averaging keeps the
    centre of mass, so the shift is computed before resampling and applied exactly (sub-pixel).
    Returns (image (28, 28) float32, scale output px per working px, (dy, dx) shift applied
    relative to the box centred in the field).
    """
    on = soft > 0.0
    rr, cc = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    soft = soft[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1]                          # (h, w) tight
    h, w = soft.shape
    scale = BOX_SIZE / max(h, w)
    mass = float(soft.sum())
    com = (float(soft.sum(1) @ (np.arange(h) + 0.5)) / mass,                 # continuous coords
           float(soft.sum(0) @ (np.arange(w) + 0.5)) / mass)
    offsets, shift = [], []
    for c, n in zip(com, (h, w)):
        centred = (OUT_SIZE - scale * n) / 2.0
        offset = min(max(COM_TARGET + 0.5 - scale * c, 0.0), OUT_SIZE - scale * n)
        offsets.append(offset)
        shift.append(offset - centred)
    rows = _area_matrix(h, OUT_SIZE, scale, offsets[0])                      # (28, h)
    cols = _area_matrix(w, OUT_SIZE, scale, offsets[1])                      # (28, w)
    out = rows @ soft.astype(np.float32, copy=False) @ cols.T                # (28, 28)
    peak = float(out.max())
    if 0.0 < peak < FAINT_PEAK:
        # ink made only of specks far apart (two single pixels at opposite ends of a tall
        # picture) averages down to a shadow: bring its brightest pixel to full white, as
        # every MNIST digit has. Drawn digits peak near 1 and are left as they are.
        out *= np.float32(1.0 / peak)
    return np.clip(out, 0.0, 1.0), scale, (shift[0], shift[1])


# ---------------------------------------------------------------- the pipeline


def preprocess(image) -> Preprocessed:
    """Turn any picture of a digit into the 28x28 input an MNIST network expects.

    Parameters
    ----------
    image : array_like
        (H, W) grey, or (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
        Any size up to ``MAX_PIXELS``; dtype bool, uint8 (0..255), other integers (0..255,
        0..1023, 0..4095 or 0..65535, the smallest that holds the values), or float ([0, 1];
        other ranges are stretched from their minimum to their maximum). Either polarity:
        dark ink on a light page or light ink on a dark canvas.

    Returns
    -------
    Preprocessed
        ``.image`` (28, 28) float32 in [0, 1], white ink on black, the digit's longest side
        20 px, its centre of mass at MNIST's place. ``.blank`` is True (and ``.image`` all
        zeros) when there is no digit: a uniform picture, or ink that is only a dot. The
        other fields say what was done (polarity, bounding box, stroke width, scale, shift,
        specks removed).

    Raises
    ------
    ValueError
        When the input is not an image: wrong number of dimensions or channels, empty,
        non-numeric, NaN or infinite values, or more than ``MAX_PIXELS`` pixels.
    """
    arr = _check_input(image)
    shape = tuple(int(s) for s in arr.shape)
    grey, shrink = _to_grey(arr)                                             # (H', W') float32
    gh, gw = grey.shape
    f = max(1, math.ceil(max(gh, gw) / ANALYSIS_SIZE))
    if f > 1:
        counts = _block_counts(gh, gw, f)                                    # (gh/f, gw/f)
        coarse_mean = _block_reduce(grey, f, np.add) / counts
    else:
        counts, coarse_mean = 1.0, grey
    found = _find_polarity(grey, coarse_mean, f)
    if found is None:
        return _blank(shape, "no ink: the picture is uniform")
    polarity, extremes = found
    what = {"inverted": polarity.inverted, "background": polarity.background}

    strong = polarity.ink(extremes) > 0.5                                    # (h, w) bool
    kept, dropped, n_specks = _drop_specks(strong, polarity.ink(coarse_mean) * counts)
    if not kept.any():
        return _blank(shape, "no ink", **what)
    ink, bbox = _crop_to_ink(grey, polarity, kept, dropped, f)               # (h, w) in [0, 1]
    limits = (shape[0], shape[0], shape[1], shape[1])
    what.update(bbox=tuple(min(b * shrink, lim) for b, lim in zip(bbox, limits)),
                specks_removed=n_specks)

    soft, solid, step = _to_working(ink)
    step *= shrink                                                           # input px per working px
    px_per_out = max(soft.shape) / BOX_SIZE                                  # working px per output px
    soft, solid = np.pad(soft, 1), np.pad(solid, 1)                          # (h + 2, w + 2)
    width, thin_width, inside, centre = _stroke_width(solid)
    if _is_dot(solid, inside):
        return _blank(shape, "the ink is a dot, not a digit", stroke_width=width * step, **what)
    new, width, new_width = _normalise_stroke(soft, solid, width, thin_width, inside, centre, px_per_out)
    if not new.any():                   # cannot happen: erosion stops short of the deepest px
        return _blank(shape, "no ink", **what)
    image_out, scale, shift = _fit_and_centre(new)
    return Preprocessed(image_out, False, "", stroke_width=width * step,
                        output_stroke_width=new_width * scale, scale=scale / step, shift=shift,
                        input_shape=shape, **what)

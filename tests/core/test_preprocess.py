"""Tests for digitpad.core.preprocess: each step, the whole pipeline's invariances, bad input
(property-tested with hypothesis), and the round trip on real MNIST digits."""

from __future__ import annotations

import math
import traceback
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from digitpad.core import preprocess as pp
from digitpad.core.preprocess import PREPROCESS_VERSION, Preprocessed, preprocess


# ---------------------------------------------------------------- drawing helpers


def canvas(h: int, w: int, strokes, pen: float, ink: float = 1.0, page: float = 0.0) -> np.ndarray:
    """A (h, w) uint8 picture of polylines drawn with a round anti-aliased pen ``pen`` px wide."""
    centre = np.ones((h, w), bool)
    for line in strokes:
        for (r0, c0), (r1, c1) in zip(line[:-1], line[1:]):
            n = int(math.hypot(r1 - r0, c1 - c0) * 2) + 2
            rr = np.rint(np.linspace(r0, r1, n)).astype(int)
            cc = np.rint(np.linspace(c0, c1, n)).astype(int)
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            centre[rr[ok], cc[ok]] = False
    cover = np.clip(pen / 2 + 0.5 - ndi.distance_transform_edt(centre), 0, 1)
    return np.round((page + (ink - page) * cover) * 255).astype(np.uint8)


def seven(h=280, w=280, pen=16.0, dy=0, dx=0, s=1.0):
    """A "7" drawn on an (h, w) canvas, about 0.6 h tall, shifted by (dy, dx), scaled by s."""
    pts = [(60, 70), (60, 200), (230, 110)]
    pts = [(dy + h / 280 * s * r, dx + w / 280 * s * c) for r, c in pts]
    return canvas(h, w, [pts], pen)


def com(img: np.ndarray) -> tuple[float, float]:
    m = img.sum()
    r, c = np.indices(img.shape)
    return float((img * r).sum() / m), float((img * c).sum() / m)


def extent(img: np.ndarray, thr: float = 0.0) -> tuple[int, int]:
    on = img > thr
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def check_output(res: Preprocessed) -> None:
    """What every result must satisfy."""
    assert isinstance(res, Preprocessed)
    assert res.image.shape == (28, 28) and res.image.dtype == np.float32
    assert np.isfinite(res.image).all()
    assert res.image.min() >= 0.0 and res.image.max() <= 1.0
    if res.blank:
        assert not res.image.any() and res.blank_reason
    else:
        assert res.image.max() > 0.5 and res.blank_reason == ""
        assert math.isfinite(res.stroke_width) and res.stroke_width > 0
        assert math.isfinite(res.scale) and res.scale > 0
        assert all(math.isfinite(s) for s in res.shift)


# ---------------------------------------------------------------- step 1: input, grey


def test_version_is_an_int():
    assert isinstance(PREPROCESS_VERSION, int) and PREPROCESS_VERSION >= 1


@pytest.mark.parametrize("bad, words", [
    (np.zeros((0, 0)), "empty"),
    (np.zeros((0, 5, 3)), "empty"),
    (np.zeros(10), "2-D grey"),
    (np.zeros((4, 4, 4, 4)), "2-D grey"),
    (np.zeros((4, 4, 5)), "got shape (4, 4, 5)"),
    (np.full((8, 8), np.nan), "NaN"),
    (np.array([[0.0, np.inf], [0.0, 0.0]]), "infinite"),
    (np.array([["a", "b"], ["c", "d"]]), "numbers"),
    (np.zeros((3, 3), complex), "numbers"),
    ([[1, 2], [3]], "not an array"),
    (None, "numbers"),
])
def test_bad_input_raises_a_clear_value_error(bad, words):
    with pytest.raises(ValueError, match="image") as info:
        preprocess(bad)
    assert words in str(info.value)


def test_too_many_pixels_is_refused(monkeypatch):
    monkeypatch.setattr(pp, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match="too large"):
        preprocess(np.zeros((40, 40), np.uint8))


@pytest.mark.parametrize("arr, expected", [
    (np.array([[0, 255]], np.uint8), (0.0, 1 / 255)),
    (np.array([[0, 100]], np.uint16), (0.0, 1 / 255)),
    (np.array([[0, 60000]], np.uint16), (0.0, 1 / 65535)),
    (np.array([[0, 255]], np.int64), (0.0, 1 / 255)),
    (np.array([[0, 1000]], np.uint16), (0.0, 1 / 1023)),
    (np.array([[0, 4000]], np.int32), (0.0, 1 / 4095)),
    (np.array([[0, 70000]], np.int32), (0.0, 1 / 70000)),
    (np.array([[-10, 30]], np.int16), (-10.0, 1 / 40)),
    (np.array([[0.0, 0.7]], np.float32), (0.0, 1.0)),
    (np.array([[-1.0, 1.0]]), (-1.0, 0.5)),
    (np.array([[0.0, 255.0]]), (0.0, 1 / 255)),
    (np.array([[3.0, 3.0]]), (3.0, 0.0)),
    (np.array([[True, False]]), (0.0, 1.0)),
])
def test_unit_range(arr, expected):
    offset, gain = pp._unit_range(arr)
    assert offset == pytest.approx(expected[0]) and gain == pytest.approx(expected[1])
    unit = (arr.astype(np.float64) - offset) * gain
    assert unit.min() >= 0 and unit.max() <= 1 + 1e-9


def test_unit_range_of_huge_floats_does_not_overflow():
    arr = np.array([[-1e308, 1e308]])
    grey, _ = pp._to_grey(arr)
    assert np.isfinite(grey).all() and grey.min() == 0 and grey.max() == pytest.approx(1)


def test_rgb_to_grey_uses_luma():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    grey, f = pp._to_grey(rgb)
    assert f == 1 and grey.shape == (2, 3)
    np.testing.assert_allclose(grey[0], [0.299, 0.587, 0.114], atol=1e-6)


@pytest.mark.parametrize("stroke_colour, page", [(0, 1.0), (255, 0.0)])
def test_transparent_page_takes_the_colour_opposite_the_strokes(stroke_colour, page):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = 128                    # what hides under alpha 0 must not matter
    rgba[5:15, 9:11, :3] = stroke_colour
    rgba[5:15, 9:11, 3] = 255
    grey, _ = pp._to_grey(rgba)
    assert grey[0, 0] == pytest.approx(page)
    assert grey[10, 10] == pytest.approx(stroke_colour / 255)


def test_opaque_page_with_transparent_margin_keeps_the_page_colour():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[2:38, 2:38] = (240, 240, 240, 255)        # a light page, mostly opaque
    rgba[10:30, 19:21] = (10, 10, 10, 255)         # dark ink
    grey, _ = pp._to_grey(rgba)
    assert grey[0, 0] == pytest.approx(240 / 255)  # the margin looks like the page, not like ink
    res = preprocess(rgba)
    assert res.inverted and not res.blank
    assert res.bbox == (10, 30, 19, 21)


def test_grey_alpha_pair_is_read():
    ga = np.zeros((30, 30, 2), np.float32)
    ga[5:25, 14:16] = (1.0, 1.0)
    res = preprocess(ga)
    assert not res.blank and res.bbox == (5, 25, 14, 16)


@pytest.mark.parametrize("shape", [(1, 3_000_000), (3_000_000, 2), (5000, 5000)])
def test_huge_and_extremely_elongated_pictures(shape):
    img = np.zeros(shape, np.uint8)
    h, w = shape
    img[h // 4:max(h // 4 + 1, 3 * h // 4), w // 2:w // 2 + max(1, w // 50)] = 255     # a bar
    tracemalloc.start()
    try:
        res = preprocess(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * img.size + 50_000_000      # working memory stays proportional to the input
    check_output(res)
    assert not res.blank
    r0, r1, c0, c1 = res.bbox
    assert abs(r0 - h // 4) <= 2 and abs(c0 - w // 2) <= 2 and r1 <= h and c1 <= w


def test_huge_picture_is_shrunk_while_converting(monkeypatch):
    monkeypatch.setattr(pp, "SHRINK_PIXELS", 10_000)
    img = seven(400, 400, pen=20)                   # 160,000 px -> factor 4
    grey, f = pp._to_grey(img)
    assert f == 4 and grey.shape == (100, 100)
    np.testing.assert_allclose(grey, img.reshape(100, 4, 100, 4).mean((1, 3)) / 255, atol=1e-5)
    small = preprocess(img)
    monkeypatch.undo()
    assert corr(small.image, preprocess(img).image) > 0.97
    assert small.bbox[0] % 4 == 0


# ---------------------------------------------------------------- step 2: polarity


@pytest.mark.parametrize("page, ink, inverted", [(0.0, 1.0, False), (1.0, 0.0, True),
                                                  (0.9, 0.3, True), (0.2, 0.6, False)])
def test_polarity(page, ink, inverted):
    img = seven(pen=12).astype(np.float32) / 255                    # 0 page, 1 ink
    img = page + (ink - page) * img
    grey, _ = pp._to_grey(img)
    pol, blocks = pp._find_polarity(grey, grey, 1)
    assert blocks is grey or np.array_equal(blocks, grey)
    assert pol.inverted is inverted
    assert pol.background == pytest.approx(page, abs=0.01)
    assert pol.ink(np.float32([[page]]))[0, 0] == 0.0
    assert pol.ink(np.float32([[ink]]))[0, 0] == 1.0


def test_polarity_blocks_are_the_inky_extreme():
    grey = np.full((90, 90), 0.9, np.float32)
    grey[10:80, 44:47] = 0.1                                 # dark ink, 3 px wide
    coarse_mean = pp._block_reduce(grey, 9, np.add) / pp._block_counts(90, 90, 9)
    pol, blocks = pp._find_polarity(grey, coarse_mean, 9)
    assert pol.inverted and blocks.shape == (10, 10)
    assert blocks[3, 4] == pytest.approx(0.1) and blocks[3, 0] == pytest.approx(0.9)


def test_grow_one():
    mask = np.zeros((5, 6), bool)
    mask[0, 0] = mask[3, 3] = True
    grown = pp._grow_one(mask)
    np.testing.assert_array_equal(grown, ndi.binary_dilation(mask, np.ones((3, 3), bool)))


def test_polarity_of_a_mostly_inked_picture_comes_from_the_border():
    img = np.zeros((100, 100), np.float32)
    img[5:95, 5:95] = 1.0                         # 81 % ink, a dark frame around it
    pol, _ = pp._find_polarity(img, img, 1)
    assert pol.inverted is False


def test_uniform_picture_has_no_polarity():
    img = np.full((50, 50), 0.5, np.float32) + np.random.default_rng(0).normal(0, 0.005, (50, 50)).astype(np.float32)
    assert pp._find_polarity(img, img, 1) is None


def test_inverted_and_coloured_pictures_give_the_same_digit():
    img = seven(pen=14)
    base = preprocess(img)
    assert not base.inverted
    neg = preprocess(255 - img)
    assert neg.inverted
    np.testing.assert_allclose(neg.image, base.image, atol=0.02)
    paper = np.stack([255 - img, (255 - img) * 0.9, (255 - img) * 0.8], -1).astype(np.uint8)
    assert corr(preprocess(paper).image, base.image) > 0.98


@pytest.mark.parametrize("convert", [
    lambda a: a.astype(np.uint16) * 257,
    lambda a: a.astype(np.float32) / 255,
    lambda a: a.astype(np.float64) * 4.0 - 7.0,       # any float range is stretched
    lambda a: a.astype(np.int64),
    lambda a: a[..., None],
    lambda a: np.dstack([a, a, a, np.full_like(a, 255)]),
])
def test_dtype_and_channels_do_not_change_the_result(convert):
    img = seven(pen=14)
    np.testing.assert_allclose(preprocess(convert(img)).image, preprocess(img).image, atol=1e-3)


# ---------------------------------------------------------------- step 3: specks


def test_drop_specks_keeps_heavy_components_only():
    mask = np.zeros((30, 30), bool)
    mask[2:20, 5:8] = True          # a stroke, 54 blocks
    mask[3:6, 15:27] = True         # another stroke, 36 blocks: kept (not far lighter)
    mask[25, 25] = True             # a speck
    mask[28:30, 0:2] = True         # a speck
    kept, dropped, n = pp._drop_specks(mask, mask.astype(np.float32))
    assert n == 2
    assert kept[10, 6] and kept[4, 20] and not kept[25, 25]
    assert dropped[25, 25] and dropped[29, 1] and not dropped[10, 6]


def test_specks_do_not_move_or_shrink_the_digit():
    img = seven(pen=14)
    clean = preprocess(img)
    dirty = img.copy()
    dirty[5:9, 5:9] = 255                         # far corner
    dirty[270:274, 270:276] = 200
    dirty[150, 20] = 255
    res = preprocess(dirty)
    assert res.specks_removed == 3
    assert res.bbox == clean.bbox
    np.testing.assert_allclose(res.image, clean.image, atol=1e-4)


# ---------------------------------------------------------------- step 4: crop, blank


def test_bbox_is_the_ink_in_input_pixels():
    img = np.zeros((200, 300), np.uint8)
    img[40:160, 100:112] = 255                    # a "1"
    res = preprocess(img)
    assert res.bbox == (40, 160, 100, 112)
    assert not res.inverted and res.input_shape == (200, 300)


@pytest.mark.parametrize("img, why", [
    (np.zeros((280, 280), np.uint8), "uniform"),
    (np.full((280, 280), 255, np.uint8), "uniform"),
    (np.full((10, 10), 0.37), "uniform"),
    (np.ones((1, 1)), "uniform"),
])
def test_blank_pictures_are_blank(img, why):
    res = preprocess(img)
    check_output(res)
    assert res.blank and why in res.blank_reason


@pytest.mark.parametrize("make", [
    lambda: np.pad(np.ones((1, 1), np.uint8) * 255, 13),                 # one pixel of ink
    lambda: canvas(280, 280, [[(140, 140), (140, 140)]], pen=30),         # a click with a fat brush
    lambda: canvas(280, 280, [[(140, 140), (140, 150)]], pen=30),         # a short dab
    lambda: 255 - np.pad(np.ones((3, 3), np.uint8) * 255, 50),           # a dark blot on white
])
def test_a_dot_is_not_a_digit(make):
    res = preprocess(make())
    check_output(res)
    assert res.blank and "dot" in res.blank_reason


def test_a_short_fat_one_is_still_a_digit():
    res = preprocess(canvas(280, 280, [[(100, 140), (180, 140)]], pen=30))
    check_output(res)
    assert not res.blank


# ---------------------------------------------------------------- step 5: stroke width


@pytest.mark.parametrize("n", [2, 4, 7, 10, 16])
def test_stroke_width_of_a_band(n):
    solid = np.zeros((60, 80), bool)
    solid[10:50, 20:20 + n] = True
    solid[10:10 + n, 20:70] = True                 # an "L" of width n
    width, thin_width, inside, centre = pp._stroke_width(solid)
    assert thin_width <= width
    assert width == pytest.approx(n, rel=0.25, abs=0.6)
    assert inside[40].max() == math.ceil(n / 2)           # across the vertical arm


def _row_width(img: np.ndarray) -> float:
    """Stroke width of a vertical bar in a result: ink per row in the middle rows."""
    rows = np.flatnonzero(img.any(1))
    mid = img[rows[0] + 6:rows[-1] - 5]
    return float(mid.sum(1).mean())


@pytest.mark.parametrize("size, pen", [(1000, 2), (1000, 1), (280, 40), (280, 16), (100, 1), (60, 12)])
def test_any_pen_ends_mnist_wide(size, pen):
    img = canvas(size, size, [[(0.2 * size, 0.5 * size), (0.8 * size, 0.5 * size)]], pen)
    res = preprocess(img)
    check_output(res)
    assert not res.blank
    width = _row_width(res.image)
    assert pp.WIDTH_RANGE[0] - 0.25 <= width <= pp.WIDTH_RANGE[1] + 0.25
    assert res.output_stroke_width == pytest.approx(width, abs=0.4)
    assert res.stroke_width == pytest.approx(pen, rel=0.5, abs=1.0)
    h, w = extent(res.image, 0.05)
    assert h in (20, 21) and w <= 5                # a "1" stays thin


def test_width_in_range_is_left_alone():
    img = canvas(280, 280, [[(50, 140), (230, 140)]], pen=24)        # 24/180*20 = 2.7 px at 28x28
    res = preprocess(img)
    assert res.output_stroke_width == pytest.approx(res.stroke_width * res.scale, rel=0.05)
    assert pp.WIDTH_RANGE[0] <= res.output_stroke_width <= pp.WIDTH_RANGE[1]


def test_thinning_keeps_thin_parts_of_a_fat_stroke():
    # a fat bar with a thin hairline hook: erosion alone would erase the hook
    img = canvas(400, 400, [[(60, 100), (340, 100)]], pen=70)
    hook = canvas(400, 400, [[(60, 100), (60, 300), (200, 300)]], pen=6)
    res = preprocess(np.maximum(img, hook))
    assert not res.blank
    # the hook's far end (right side, middle rows) still has ink
    right = res.image[:, 15:]
    assert right.max() > 0.5


@pytest.mark.parametrize("rows, centre", [(9, [14]), (10, [14, 15]), (1, [10]), (2, [10, 11])])
def test_centre_lines_of_a_bar(rows, centre):
    solid = np.zeros((40, 60), bool)
    solid[10:10 + rows, 5:55] = True
    lines = pp._centre_lines(ndi.distance_transform_edt(solid))
    assert np.flatnonzero(lines[:, 10:50].any(1)).tolist() == centre
    assert lines[centre[0], 10:50].all()


# ---------------------------------------------------------------- steps 6, 7: fit and centre


def test_area_matrix_conserves_mass_inside_the_field():
    m = pp._area_matrix(80, 28, 0.25, 4.0)
    np.testing.assert_allclose(m.sum(0), 0.25, atol=1e-6)   # each input px spreads 0.25 out px
    np.testing.assert_allclose(m.sum(1)[5:23], 1.0, atol=1e-6)


def test_linear_matrix_rows_sum_to_one():
    m = pp._linear_matrix(7, 30)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)


def test_fit_puts_mass_centre_at_mnist_place_and_box_at_20():
    soft = np.zeros((100, 70), np.float32)
    soft[5:95, 10:20] = 1.0
    soft[5:15, 10:60] = 1.0                                   # a "7"-ish Gamma shape
    out, scale, shift = pp._fit_and_centre(soft)
    assert scale == pytest.approx(20 / 90)
    assert com(out) == pytest.approx((pp.COM_TARGET, pp.COM_TARGET), abs=0.02)
    assert out.sum() == pytest.approx(soft.sum() * scale ** 2, rel=1e-4)     # nothing cut off
    h, w = extent(out, 0.01)
    assert h in (20, 21) and w in (11, 12)


def test_fit_never_cuts_ink_when_the_mass_is_far_off_centre():
    soft = np.zeros((200, 200), np.float32)
    soft[0:40, 0:200] = 1.0                                   # heavy top bar
    soft[40:200, 98:102] = 1.0                                # thin long stem
    out, scale, shift = pp._fit_and_centre(soft)
    assert out.sum() == pytest.approx(soft.sum() * scale ** 2, rel=1e-4)
    rows = np.flatnonzero(out.any(1))
    assert rows[0] >= 0 and rows[-1] <= 27
    assert shift[0] > 0                                        # pushed down, stopped at the edge
    assert com(out)[0] < pp.COM_TARGET


@pytest.mark.parametrize("dy, dx", [(0, 0), (-38, -46), (85, 110), (-38, 110), (85, -46)])
def test_position_on_the_canvas_does_not_matter(dy, dx):
    np.testing.assert_allclose(preprocess(seven(dy=dy, dx=dx, s=0.8)).image,
                               preprocess(seven(s=0.8)).image, atol=0.02)


def test_size_of_the_drawing_barely_matters():
    small = preprocess(seven(280, 280, pen=10, s=0.5))
    big = preprocess(canvas(1120, 1120, [[(240, 280), (240, 800), (920, 440)]], pen=40))
    assert corr(small.image, big.image) > 0.95
    assert com(small.image) == pytest.approx((14, 14), abs=0.1)
    assert small.scale > big.scale * 3


@pytest.mark.parametrize("make", [
    lambda: seven(280, 280, pen=18, dy=30, dx=-40),
    lambda: 255 - seven(1000, 700, pen=3, dy=200, dx=100),
    lambda: canvas(300, 500, [[(40, 60), (250, 90), (250, 400)]], pen=60),
])
def test_bbox_scale_and_shift_say_where_input_points_land(make):
    img = make()
    res = preprocess(img)
    ink = img.astype(np.float64) / 255
    if res.inverted:
        ink = 1 - ink
    r0, r1, c0, c1 = res.bbox
    centre = np.array([(r0 + r1) / 2, (c0 + c1) / 2])
    # the input's centre of mass must land on the output's (continuous coordinates)
    landed = 14.0 + np.array(res.shift) + res.scale * (np.array(com(ink)) + 0.5 - centre)
    np.testing.assert_allclose(landed, np.array(com(res.image)) + 0.5, atol=0.35)


def test_aspect_ratio_is_kept():
    img = np.zeros((300, 300), np.uint8)
    img[50:250, 100:110] = 255
    img[50:60, 100:200] = 255                     # a Gamma 200 tall, 100 wide
    h, w = extent(preprocess(img).image, 0.3)
    assert h in (19, 20, 21) and w in (10, 11, 12)


def test_canvas_strokes_come_out_soft_edged_like_mnist():
    res = preprocess(seven(pen=16))
    img = res.image
    inked = img[img > 0]
    assert (inked > 0.95).mean() > 0.2            # solid cores
    assert ((inked > 0.05) & (inked < 0.95)).mean() > 0.2   # anti-aliased edges
    assert 60 < img.sum() < 160                   # MNIST digits hold about 100 of ink


# ---------------------------------------------------------------- bad input, property-tested


OUR_MODULE = pp.__file__


def _raised_here(e: BaseException) -> bool:
    return traceback.extract_tb(e.__traceback__)[-1].filename == OUR_MODULE


dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_])
shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=48),
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=24).map(lambda s: s[:2] + (s[2] % 5,)),
    st.tuples(st.just(1), st.integers(1, 3000)),
    st.tuples(st.integers(1, 3000), st.integers(1, 3)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(dtypes, shapes, elements=None))
def test_any_array_gives_a_result_or_a_clear_error(arr):
    try:
        res = preprocess(arr)
    except ValueError as e:
        assert _raised_here(e), f"error from inside a library: {e!r}"
        assert "image" in str(e)
        return
    check_output(res)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.sampled_from([np.uint8, np.float32, np.float64]),
       st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_random_ink_gives_a_sane_result(h, w, dtype, seed, density):
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w)) < density).astype(np.float64)
    if dtype == np.uint8:
        arr = (arr * 255).astype(np.uint8)
    res = preprocess(arr.astype(dtype))
    check_output(res)
    if not res.blank:
        r0, r1, c0, c1 = res.bbox
        assert 0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e30, 1e30), st.floats(1e-3, 1e30), st.booleans())
def test_floats_outside_unit_range_are_read(low, span, dark_ink):
    img = seven(pen=14).astype(np.float64) / 255
    if dark_ink:
        img = 1 - img
    arr = (low + span * img).astype(np.float32)
    if np.ptp(arr) == 0 or (arr.min() >= 0 and arr.max() <= 1 and np.ptp(arr) < pp.MIN_CONTRAST):
        assert preprocess(arr).blank              # too faint (values in [0, 1] are absolute)
        return
    if arr.min() >= 0 and arr.max() <= 1 and np.ptp(arr) < 2 * pp.MIN_CONTRAST:
        check_output(preprocess(arr))             # at the threshold: either answer is fine
        return
    res = preprocess(arr)
    check_output(res)
    assert not res.blank and res.inverted is dark_ink


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 27), st.integers(0, 27), st.integers(1, 255))
def test_one_pixel_of_ink_is_blank_not_a_one(r, c, v):
    img = np.zeros((28, 28), np.uint8)
    img[r, c] = v
    res = preprocess(img)
    check_output(res)
    assert res.blank


def test_nan_inside_colour_channels_is_named():
    rgba = np.zeros((10, 10, 4), np.float32)
    rgba[3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN") as info:
        preprocess(rgba)
    assert _raised_here(info.value)


# ---------------------------------------------------------------- real MNIST


@pytest.mark.mnist
def test_mnist_digits_survive_the_round_trip(mnist):
    digits = mnist.test_images[:300]
    results = [preprocess(d) for d in digits]
    outs = np.stack([r.image for r in results])                           # (300, 28, 28)
    ref = digits.astype(np.float32) / 255
    # MNIST centred its digits to the nearest pixel; ours are centred exactly
    centred = [ndi.shift(r, np.subtract((14.0, 14.0), com(r)), order=1) for r in ref]
    c = np.array([corr(o, r) for o, r in zip(outs, centred)])
    # digits whose stroke is MNIST-typical come back as they were; the rest are thickened
    # or thinned, so they move further
    untouched = np.array([r.output_stroke_width == pytest.approx(r.stroke_width * r.scale, rel=0.02)
                          for r in results])
    assert untouched.mean() > 0.85                 # MNIST widths are left as they are
    assert np.median(c[untouched]) > 0.99 and c[untouched].min() > 0.95
    assert np.median(c) > 0.95 and c.min() > 0.6
    coms = np.array([com(o) for o in outs])
    np.testing.assert_allclose(coms.mean(0), (14.0, 14.0), atol=0.05)
    assert coms.std(0).max() < 0.05                                       # sub-pixel centring
    np.testing.assert_allclose(outs.sum((1, 2)).mean(), ref.sum((1, 2)).mean(), rtol=0.1)
    sizes = np.array([max(extent(o, 0.0)) for o in outs])
    assert np.isin(sizes, (20, 21, 22)).mean() > 0.95


@pytest.mark.mnist
def test_mnist_digits_as_drawings_come_back(mnist):
    """A digit enlarged x10 onto a big light page, dark ink, comes back close to itself."""
    for d in mnist.test_images[:20]:
        page = ndi.zoom(d.astype(np.float32) / 255, 10, order=1)        # (280, 280)
        page = np.pad(page, ((40, 200), (300, 20)))
        res = preprocess(255 - np.round(page * 255).astype(np.uint8))
        assert res.inverted and not res.blank
        assert corr(res.image, preprocess(d).image) > 0.85


def test_two_specks_far_apart_still_give_visible_ink():
    """Found by the property test: two single pixels 50 rows apart in a 195x3 picture gave a result
    that was not blank but whose brightest pixel was 0.4996."""
    arr = np.zeros((195, 3), np.float32)
    arr[144, 0], arr[194, 2] = 1.65e15, 1.04e15
    res = preprocess(arr)
    check_output(res)
    assert not res.blank and res.image.max() == pytest.approx(1.0)

"""Tests for digitpad.core.augment: distortions against SciPy references, and the prefetcher."""

import dataclasses
import itertools
import queue
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits

from digitpad.core import augment
from digitpad.core.augment import AugmentConfig, Prefetcher, augmented_batches, distort

NONE = AugmentConfig.identity()


def only(**strengths) -> AugmentConfig:
    """A configuration with every distortion off except the given ones."""
    return dataclasses.replace(NONE, **strengths)


def strokes(n: int, seed: int = 0, size: int = 28) -> np.ndarray:
    """Synthetic uint8 'digits' (n, size, size): two thick random segments in the central 16 px."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = np.zeros((n, size, size))
    lo, hi = size / 2 - 8, size / 2 + 8
    for i in range(n):
        for _ in range(2):
            (r0, c0), (r1, c1) = rng.uniform(lo, hi, (2, 2))
            length2 = (r1 - r0) ** 2 + (c1 - c0) ** 2 + 1e-9
            t = np.clip(((rows - r0) * (r1 - r0) + (cols - c0) * (c1 - c0)) / length2, 0, 1)  # nearest point
            distance = np.hypot(rows - (r0 + t * (r1 - r0)), cols - (c0 + t * (c1 - c0)))
            images[i] = np.maximum(images[i], np.clip(2.0 - distance, 0, 1))
    return np.round(images * 255).astype(np.uint8)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(n, 2) ink-weighted (row, column) means."""
    rows, cols = np.mgrid[0 : images.shape[1], 0 : images.shape[2]]
    ink = images.sum(axis=(1, 2))
    return np.stack([(images * rows).sum(axis=(1, 2)) / ink, (images * cols).sum(axis=(1, 2)) / ink], axis=1)


DIGITS = strokes(64)


# --- shapes, dtype, range ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 64])
def test_shape_dtype_and_range_for_uint8_input(n):
    out = distort(DIGITS[:n], np.random.default_rng(0))
    assert out.shape == (n, 28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() > 0.5  # the ink is still there


def test_float_input_of_any_float_dtype():
    x64 = DIGITS[:8] / 255.0
    out64 = distort(x64, np.random.default_rng(3))
    out32 = distort(x64.astype(np.float32), np.random.default_rng(3))
    out8 = distort(DIGITS[:8], np.random.default_rng(3))
    assert out64.dtype == np.float32
    np.testing.assert_allclose(out64, out8, atol=1e-6)
    np.testing.assert_allclose(out32, out8, atol=1e-6)


def test_empty_batch():
    out = distort(np.zeros((0, 28, 28), np.uint8), np.random.default_rng(0))
    assert out.shape == (0, 28, 28) and out.dtype == np.float32


def test_other_image_sizes():
    x = strokes(6, size=36)[:, 4:24, :]  # (6, 20, 36)
    out = distort(x, np.random.default_rng(1))
    assert out.shape == (6, 20, 36)
    np.testing.assert_allclose(distort(x, np.random.default_rng(1), NONE), x / 255, atol=1e-6)


def test_input_is_not_modified_and_output_is_new():
    x = DIGITS[:4].astype(np.float32) / 255
    before = x.copy()
    out = distort(x, np.random.default_rng(0))
    identity = distort(x, np.random.default_rng(0), NONE)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x) and not np.shares_memory(identity, x)


def test_outputs_of_successive_calls_do_not_share_memory():
    a = distort(DIGITS[:16], np.random.default_rng(0))
    a_copy = a.copy()
    b = distort(DIGITS[16:32], np.random.default_rng(1))
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, a_copy)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 20),
    rotation=st.floats(0, 45),
    low=st.floats(0.5, 1.0),
    high=st.floats(1.0, 1.6),
    shear=st.floats(0, 30),
    translate=st.floats(0, 6),
    alpha=st.floats(0, 60),
    sigma=st.floats(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_strengths_give_finite_images_in_range(n, rotation, low, high, shear, translate, alpha, sigma, seed):
    config = AugmentConfig(rotation, (low, high), shear, translate, alpha, sigma)
    out = distort(DIGITS[:n], np.random.default_rng(seed), config)
    assert out.shape == (n, 28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_values_in_unit_range_for_saturated_input():
    x = np.ones((32, 28, 28), np.float32)  # every bilinear mix of ones must stay <= 1
    strong = distort(x, np.random.default_rng(0), AugmentConfig(elastic_alpha=60, elastic_sigma=3))
    assert strong.max() <= 1.0 and strong.min() >= 0.0
    out = distort(x, np.random.default_rng(0))
    assert out.max() <= 1.0 and out.min() >= 0.0
    assert out[:, 10:18, 10:18].min() > 0.999  # the centre still samples inside the frame
    assert out[:, [0, -1]].mean() < 0.9  # while some of the border comes from outside it


# --- determinism --------------------------------------------------------------------------


def test_same_seed_same_output():
    a = distort(DIGITS, np.random.default_rng(42))
    b = distort(DIGITS, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_different_seeds_differ_and_images_differ_from_each_other():
    a = distort(DIGITS, np.random.default_rng(1))
    b = distort(DIGITS, np.random.default_rng(2))
    assert np.abs(a - b).mean(axis=(1, 2)).min() > 1e-3  # every image distorted differently
    # Two copies of one image in a batch get independent distortions.
    twins = distort(np.repeat(DIGITS[:1], 2, axis=0), np.random.default_rng(1))
    assert np.abs(twins[0] - twins[1]).mean() > 1e-3


def test_generator_advances_between_calls():
    rng = np.random.default_rng(7)
    a = distort(DIGITS[:8], rng)
    b = distort(DIGITS[:8], rng)
    assert np.abs(a - b).mean() > 1e-3


def test_result_does_not_depend_on_chunking(monkeypatch):
    expected = distort(DIGITS, np.random.default_rng(5))
    monkeypatch.setattr(augment, "_CHUNK", 7)
    chunked = distort(DIGITS, np.random.default_rng(5))
    # The same distortions, but the coordinates come from matrix products of another shape,
    # which BLAS may sum in another order: equal to float32 rounding, not bit for bit
    # (OpenBLAS' Haswell kernels differ by up to 2e-6 on 1.6% of the pixels).
    np.testing.assert_allclose(chunked, expected, rtol=0, atol=1e-4)


def test_concurrent_calls_in_threads_match_sequential_ones():
    seeds = range(6)
    # Bit for bit only at a fixed BLAS thread count: another count may split the products
    # differently, and other tests may leave the count where they set it.
    with threadpool_limits(limits=1, user_api="blas"):
        expected = [distort(DIGITS, np.random.default_rng(s)) for s in seeds]
        results = {}

        def work(seed):
            for _ in range(5):  # interleave many calls, each thread with its own generator
                results[seed] = distort(DIGITS, np.random.default_rng(seed))

        threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for s in seeds:
        np.testing.assert_array_equal(results[s], expected[s])


# --- zero and small strength --------------------------------------------------------------


def test_zero_strength_is_identity_and_draws_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out = distort(DIGITS, rng, AugmentConfig.identity())
    np.testing.assert_allclose(out, DIGITS / 255.0, rtol=0, atol=1e-7)
    assert rng.bit_generator.state == state
    floats = np.random.default_rng(1).random((3, 28, 28))
    np.testing.assert_allclose(distort(floats, rng, NONE), floats, rtol=0, atol=1e-7)


def test_identity_config_forms_agree():
    zeros = AugmentConfig(rotation_deg=0, scale=(1, 1), shear_deg=0, translate_px=0, elastic_alpha=0)
    assert zeros.is_identity and AugmentConfig.identity().is_identity
    assert AugmentConfig().scaled(0) == AugmentConfig.identity()
    assert AugmentConfig().scaled(1) == AugmentConfig()
    assert not AugmentConfig().is_identity
    assert not only(translate_px=0.1).is_identity


def test_tiny_strength_is_nearly_identity():
    # Catches half-pixel offsets or a wrong centre in the non-identity path.
    out = distort(DIGITS, np.random.default_rng(0), AugmentConfig().scaled(1e-6))
    np.testing.assert_allclose(out, DIGITS / 255.0, atol=1e-3)


def test_integer_shift_moves_pixels_exactly():
    # A shift t = (+1 row, -2 columns) moves ink at q to q + t; what leaves the frame is lost.
    x = DIGITS[:3] / 255.0
    inverse = np.broadcast_to(np.eye(2), (3, 2, 2))
    shift = np.tile([1.0, -2.0], (3, 1))
    out = augment._bilinear(x, augment._coordinates(inverse, shift, (28, 28)).copy())
    expected = np.zeros_like(x)
    expected[:, 1:, :-2] = x[:, :-1, 2:]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_strength_scales_the_change():
    changes = [
        np.abs(distort(DIGITS, np.random.default_rng(11), AugmentConfig().scaled(k)) - DIGITS / 255.0).mean()
        for k in (0.1, 0.3, 1.0)
    ]
    assert changes[0] < changes[1] < changes[2]


# --- geometry -----------------------------------------------------------------------------


def test_translation_only_shifts_centre_of_mass_by_the_drawn_shift():
    n, t = len(DIGITS), 2.0
    out = distort(DIGITS, np.random.default_rng(9), only(translate_px=t))
    moved = centre_of_mass(out) - centre_of_mass(DIGITS / 255.0)  # (n, 2)
    # Shifts are uniform in [-t, t] per axis: bounded, both signs, spread like uniform.
    assert np.abs(moved).max() <= t + 1e-3
    assert moved.min() < -t / 2 and moved.max() > t / 2
    assert abs(moved.std() - t / np.sqrt(3)) < 0.3
    # And exactly the drawn ones (five uniforms per image; translation is the last two).
    drawn = t * np.random.default_rng(9).uniform(-1, 1, (n, 5))[:, 3:5]
    np.testing.assert_allclose(moved, drawn, atol=1e-3)
    # Linear interpolation keeps the ink of a shifted digit that stays inside the frame.
    np.testing.assert_allclose(out.sum(axis=(1, 2)), DIGITS.sum(axis=(1, 2)) / 255.0, rtol=1e-4)


def test_rotation_only_preserves_ink_and_centre():
    x = DIGITS / 255.0
    out = distort(DIGITS, np.random.default_rng(2), only(rotation_deg=15))
    ratio = out.sum(axis=(1, 2)) / x.sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, 1.0, atol=0.02)
    assert np.abs(out - x).mean() > 0.01  # it did rotate
    # Rotation about the image centre moves the centre of mass by at most r * angle.
    offset = centre_of_mass(x) - 13.5
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(x), axis=1)
    assert np.all(moved <= np.linalg.norm(offset, axis=1) * np.deg2rad(15) + 0.05)


def test_scale_changes_ink_by_the_area_factor():
    x = DIGITS / 255.0
    for zoom in (0.85, 1.15):
        out = distort(DIGITS, np.random.default_rng(0), only(scale=(zoom, zoom)))
        ratio = out.sum(axis=(1, 2)) / x.sum(axis=(1, 2))
        # Resampling thin strokes on a finer or coarser grid aliases a little per image.
        np.testing.assert_allclose(ratio, zoom**2, rtol=0.06)
        assert abs(ratio.mean() / zoom**2 - 1) < 0.01


def test_shear_only_preserves_ink():
    out = distort(DIGITS, np.random.default_rng(4), only(shear_deg=15))
    ratio = out.sum(axis=(1, 2)) / (DIGITS / 255.0).sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, 1.0, atol=0.02)
    assert np.abs(out - DIGITS / 255.0).mean() > 0.005


def test_affine_coordinates_match_scipy_affine_transform():
    x = np.random.default_rng(0).random((6, 28, 28))
    config = AugmentConfig(rotation_deg=40, scale=(0.7, 1.3), shear_deg=25, translate_px=5, elastic_alpha=0)
    inverse, shift = augment._affine_matrices(np.random.default_rng(1), 6, config)
    coords = augment._coordinates(inverse, shift, (28, 28)).copy()
    mine = augment._bilinear(x, coords)
    centre = np.array([13.5, 13.5])
    for i in range(6):
        # Output p samples the input at inverse @ (p - c - t) + c.
        offset = centre - inverse[i] @ (centre + shift[i])
        expected = ndi.affine_transform(x[i], inverse[i], offset=offset, order=1, mode="grid-constant")
        np.testing.assert_allclose(mine[i], expected, atol=1e-5)


def test_affine_matrices_invert_the_forward_map():
    config = AugmentConfig(rotation_deg=30, scale=(0.8, 1.2), shear_deg=20)
    u = np.random.default_rng(3).uniform(-1, 1, (50, 5))
    inverse, _ = augment._affine_matrices(np.random.default_rng(3), 50, config)
    angle, shear = np.deg2rad(30) * u[:, 0], np.tan(np.deg2rad(20) * u[:, 2])
    zoom = 1.0 + 0.2 * u[:, 1]
    for i in range(50):
        c, s = np.cos(angle[i]), np.sin(angle[i])
        forward = zoom[i] * np.array([[c, -s], [s, c]]) @ np.array([[1, 0], [shear[i], 1]])
        np.testing.assert_allclose(inverse[i] @ forward, np.eye(2), atol=1e-12)


def test_bilinear_matches_scipy_map_coordinates_inside_and_outside():
    rng = np.random.default_rng(0)
    x = rng.random((4, 28, 28))
    coords = rng.uniform(-4, 32, (2, 4, 28, 28))
    coords[:, :, :4] = np.round(coords[:, :, :4])  # integer and exactly-on-border coordinates too
    coords[:, 0, 0, :4] = [[-1, 0, 27, 28], [28, 27, 0, -1]]
    mine = augment._bilinear(x, coords)
    for i in range(4):
        expected = ndi.map_coordinates(x[i], coords[:, i], order=1, mode="grid-constant")
        np.testing.assert_allclose(mine[i], expected, atol=1e-5)


# --- elastic field ------------------------------------------------------------------------


def _elastic_fields(n: int, alpha: float, sigma: float, seed: int = 0) -> np.ndarray:
    """Displacement fields (2, n, 28, 28) from the elastic part alone."""
    config = AugmentConfig(elastic_alpha=alpha, elastic_sigma=sigma)
    noise = augment._elastic_noise(np.random.default_rng(seed), n, (28, 28), config)
    grid = np.stack(np.mgrid[0:28, 0:28].astype(np.float32))[:, None]  # (2, 1, 28, 28)
    identity = np.broadcast_to(np.eye(2), (n, 2, 2))
    return augment._coordinates(identity, np.zeros((n, 2)), (28, 28), noise, sigma) - grid


@pytest.mark.parametrize("alpha, sigma", [(36.0, 6.0), (34.0, 4.0)])
def test_elastic_field_has_the_statistics_of_simards_recipe(alpha, sigma):
    n = 3000
    fields = _elastic_fields(n, alpha, sigma)  # (2, n, 28, 28)
    # Reference: alpha * gaussian_filter(uniform(-1, 1)) on a larger canvas, cropped.
    pad = int(4 * sigma)
    noise = np.random.default_rng(1).uniform(-1, 1, (n, 28 + 2 * pad, 28 + 2 * pad))
    reference = alpha * ndi.gaussian_filter(noise, (0, sigma, sigma), mode="constant")[:, pad:-pad, pad:-pad]
    theory = alpha / (2 * np.sqrt(3 * np.pi) * sigma)
    assert abs(reference[:, 14, 14].std() / theory - 1) < 0.05  # the reference is what we think
    for component in fields:
        std = component.std(axis=0)  # (28, 28): stationary, same everywhere, incl. corners
        np.testing.assert_allclose(std[[0, 0, 14, 27], [0, 27, 14, 27]], theory, rtol=0.06)
        assert abs(component.mean()) < 0.02 * theory * 28
        # Same spatial correlation as the reference at several lags.
        for lag in (2, 5, 9):
            mine = np.corrcoef(component[:, 14, 8], component[:, 14, 8 + lag])[0, 1]
            ref = np.corrcoef(reference[:, 14, 8], reference[:, 14, 8 + lag])[0, 1]
            assert abs(mine - ref) < 0.05
    # Row and column displacements are independent.
    assert abs(np.corrcoef(fields[0][:, 14, 14], fields[1][:, 14, 14])[0, 1]) < 0.08


def test_elastic_factor_keeps_the_variance():
    for sigma in (1.0, 4.0, 6.0, 10.0):
        factor = augment._elastic_factor(28, sigma)
        pad = int(np.ceil(4 * sigma))
        impulses = np.eye(28 + 2 * pad)
        kernel = ndi.gaussian_filter1d(impulses, sigma, axis=1, mode="constant", truncate=4.0)  # row k: impulse k
        kernel = kernel[:, pad:-pad].T  # (28, 28 + 2p): smoothed image pixels from padded noise
        full = np.sum(kernel**2, axis=1)
        kept = np.sum(factor.astype(np.float64) ** 2, axis=1)
        np.testing.assert_allclose(kept, full, rtol=2e-4)
        assert factor.shape[1] <= 28


def test_elastic_only_moves_ink_locally():
    x = DIGITS / 255.0
    out = distort(DIGITS, np.random.default_rng(0), only(elastic_alpha=36, elastic_sigma=6))
    assert np.abs(out - x).mean() > 0.01
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(x), axis=1)
    assert moved.max() < 2.5  # displacements of about 1 px, smooth: the digit stays put
    # Local stretching changes the ink of each image (the field's Jacobian is about
    # 1 +- 0.16 per axis) but not on average.
    ratio = out.sum(axis=(1, 2)) / x.sum(axis=(1, 2))
    assert abs(np.median(ratio) - 1) < 0.05
    assert 0.5 < ratio.min() and ratio.max() < 1.6


# --- configuration ------------------------------------------------------------------------


def test_config_defaults_and_is_frozen_and_hashable():
    config = AugmentConfig()
    assert config.rotation_deg == 15.0 and config.scale == (0.85, 1.15) and config.translate_px == 2.0
    assert config.elastic_alpha > 0 and config.elastic_sigma > 0 and config.shear_deg > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rotation_deg = 0  # type: ignore[misc]
    assert hash(config) == hash(AugmentConfig())
    assert AugmentConfig(scale=[0.9, 1.1]).scale == (0.9, 1.1)


def test_scaled_pulls_the_scale_range_towards_one():
    half = AugmentConfig().scaled(0.5)
    assert half.scale == pytest.approx((0.925, 1.075))
    assert half.rotation_deg == 7.5 and half.translate_px == 1.0
    assert half.elastic_alpha == AugmentConfig().elastic_alpha / 2
    assert half.elastic_sigma == AugmentConfig().elastic_sigma


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rotation_deg": -1},
        {"translate_px": float("nan")},
        {"scale": (1.2, 0.9)},
        {"scale": (0.0, 1.0)},
        {"scale": (1.0,)},
        {"shear_deg": 90},
        {"elastic_alpha": 10, "elastic_sigma": 0},
        {"elastic_alpha": float("inf")},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_scaled_rejects_negative_strength():
    with pytest.raises(ValueError):
        AugmentConfig().scaled(-0.5)


def test_distort_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shape"):
        distort(DIGITS[0], rng)
    with pytest.raises(ValueError, match="shape"):
        distort(DIGITS.reshape(64, 784), rng)
    with pytest.raises(TypeError, match="dtype"):
        distort(DIGITS.astype(np.int64), rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort(DIGITS.astype(np.float32), rng)  # 0..255 floats
    bad = np.zeros((2, 28, 28))
    bad[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        distort(bad, rng)
    with pytest.raises(TypeError, match="Generator"):
        distort(DIGITS, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AugmentConfig"):
        distort(DIGITS, rng, {"rotation_deg": 0})  # type: ignore[arg-type]


# --- augmented_batches --------------------------------------------------------------------


def test_augmented_batches_keeps_labels_and_matches_distort():
    labels = np.arange(len(DIGITS)) % 10
    order = np.random.default_rng(0).permutation(len(DIGITS))
    batches = np.array_split(order, 5)
    produced = list(augmented_batches(DIGITS, labels, batches, np.random.default_rng(3)))
    assert len(produced) == 5
    rng = np.random.default_rng(3)
    for (x, y), indices in zip(produced, batches):
        np.testing.assert_array_equal(y, labels[indices])
        assert x.shape == (len(indices), 784) and x.dtype == np.float32
        np.testing.assert_array_equal(x, distort(DIGITS[indices], rng).reshape(len(indices), 784))


def test_augmented_batches_unflattened_and_length_check():
    labels = np.zeros(len(DIGITS), np.uint8)
    (x, y), = augmented_batches(DIGITS, labels, [np.arange(3)], np.random.default_rng(0), flatten=False)
    assert x.shape == (3, 28, 28) and y.dtype == np.uint8
    with pytest.raises(ValueError, match="length"):
        next(augmented_batches(DIGITS, labels[:-1], [np.arange(3)], np.random.default_rng(0)))


# --- real MNIST ---------------------------------------------------------------------------


@pytest.mark.mnist
def test_default_distortion_keeps_mnist_digits_in_frame(mnist):
    images = mnist.test_images[:2000]
    out = distort(images, np.random.default_rng(0))
    ink_ratio = out.sum(axis=(1, 2)) / (images.sum(axis=(1, 2)) / 255.0)
    assert 0.9 < np.median(ink_ratio) < 1.1  # scale is symmetric around 1
    assert np.percentile(ink_ratio, 1) > 0.6  # nothing loses most of its ink off the edge
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(images / 255.0), axis=1)
    assert np.percentile(moved, 99) < 4.0


# --- Prefetcher ---------------------------------------------------------------------------


def test_prefetcher_yields_an_iterator_in_order_then_stops():
    with Prefetcher(iter(range(20)), depth=3) as p:
        assert list(p) == list(range(20))
        with pytest.raises(StopIteration):
            p.get()


def test_prefetcher_accepts_a_generator_and_an_iterable():
    with Prefetcher((i * i for i in range(5))) as p:
        assert list(p) == [0, 1, 4, 9, 16]
    with Prefetcher([1, 2, 3]) as p:  # an iterable is iterated
        assert list(p) == [1, 2, 3]


def test_prefetcher_calls_a_callable_repeatedly_in_its_own_thread():
    calls = []

    def produce():
        calls.append(threading.get_ident())
        return len(calls) - 1

    with Prefetcher((produce() for _ in itertools.count()), depth=2) as p:
        assert [p.get(timeout=5) for _ in range(10)] == list(range(10))
    assert threading.get_ident() not in calls


def test_prefetcher_produces_ahead_up_to_depth():
    produced = threading.Semaphore(0)
    count = 0

    def produce():
        nonlocal count
        count += 1
        produced.release()
        return count

    p = Prefetcher((produce() for _ in itertools.count()), depth=3)
    try:
        for _ in range(4):  # three queued plus one blocked on put, without any get()
            assert produced.acquire(timeout=5)
        assert not produced.acquire(timeout=0.2)  # and no more: the queue bounds it
        assert count == 4
        assert p.get(timeout=5) == 1
        assert produced.acquire(timeout=5)  # taking one lets it produce one more
    finally:
        assert p.close()


def test_prefetcher_reraises_producer_exception_in_consumer():
    def items():
        yield 1
        yield 2
        raise ValueError("bad batch")

    with Prefetcher(items()) as p:
        assert p.get(timeout=5) == 1
        assert p.get(timeout=5) == 2
        with pytest.raises(ValueError, match="bad batch"):
            p.get(timeout=5)
        with pytest.raises(StopIteration):  # finished after the error
            p.get(timeout=5)


def test_prefetcher_exception_from_callable_and_in_for_loop():
    def produce():
        raise KeyError("missing")

    with Prefetcher((produce() for _ in itertools.count())) as p, pytest.raises(KeyError, match="missing"):
        for _ in p:
            pass


def test_prefetcher_close_does_not_hang_with_full_queue():
    full = threading.Event()
    calls = 0

    def produce():
        nonlocal calls
        calls += 1
        if calls > 2:  # depth results queued; this one waits on put
            full.set()
        return np.zeros(1000)

    p = Prefetcher((produce() for _ in itertools.count()), depth=2)
    assert full.wait(timeout=5)
    assert p.close(timeout=30) is True  # returns as soon as the thread ends (speed: benchmarks/)
    assert not p._thread.is_alive() and p.closed
    with pytest.raises(StopIteration):
        p.get()
    assert p.close() is True  # closing twice is fine


def test_prefetcher_close_wakes_a_waiting_consumer_and_returns_promptly():
    release = threading.Event()
    started = threading.Event()

    def produce():
        started.set()
        release.wait()  # a slow producer, stuck in its call
        return 1

    p = Prefetcher((produce() for _ in itertools.count()))
    outcome = queue.Queue()

    def consume():
        try:
            outcome.put(p.get())
        except StopIteration:
            outcome.put("stopped")

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(timeout=5)
    assert p.close(timeout=0.2) is False  # the producer call is still running
    assert outcome.get(timeout=5) == "stopped"  # the consumer was woken, not left waiting
    consumer.join(timeout=5)
    release.set()  # let the producer's call return: its result is dropped and the thread ends
    p._thread.join(timeout=5)
    assert not p._thread.is_alive()
    assert p._thread.daemon


def test_prefetcher_close_finalises_a_generator_producer():
    finalised = threading.Event()

    def items():
        try:
            while True:
                yield 1
        finally:
            finalised.set()

    p = Prefetcher(items(), depth=1)
    assert p.get(timeout=5) == 1
    assert not finalised.is_set()
    assert p.close()
    assert finalised.wait(timeout=5)


def test_prefetcher_get_timeout():
    never = threading.Event()

    def produce():
        never.wait()

    p = Prefetcher((produce() for _ in itertools.count()))
    with pytest.raises(queue.Empty):
        p.get(timeout=0.05)
    p.close(timeout=0.1)
    never.set()


def test_prefetcher_rejects_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter([]), depth=0)
    with pytest.raises(TypeError):
        Prefetcher(42)  # type: ignore[arg-type]


def test_prefetched_augmented_batches_match_sequential_ones():
    labels = np.arange(len(DIGITS)) % 10
    batches = np.array_split(np.arange(len(DIGITS)), 8)
    expected = list(augmented_batches(DIGITS, labels, batches, np.random.default_rng(4)))
    with Prefetcher(augmented_batches(DIGITS, labels, batches, np.random.default_rng(4)), depth=2) as p:
        got = list(p)
    assert len(got) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)

"""Explore: class summaries, the digit map, switching units off, robustness curves."""

import numpy as np
import pytest

from digitpad.core import explore
from digitpad.core.mlp import MLP, MLPConfig


def blocks(n=400, seed=0):
    """Digits whose class is a bright horizontal bar at a class-dependent height."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k:5 + 2 * k, 4:24] = 255
    return images, labels


def test_class_summary_means_and_counts():
    images, labels = blocks()
    s = explore.class_summary(images, labels)
    assert s.counts.tolist() == np.bincount(labels, minlength=10).tolist()
    assert s.means.shape == (10, 28, 28) and s.means.dtype == np.float32
    for k in range(10):
        assert s.means[k, 3 + 2 * k, 10] == pytest.approx(1.0)
        assert s.means[k, 27, 10] == 0.0


def test_random_digits_are_of_the_class():
    _, labels = blocks()
    idx = explore.random_digits(labels, 3, 5, np.random.default_rng(1))
    assert len(idx) == 5 and (labels[idx] == 3).all() and len(set(idx)) == 5
    assert len(explore.random_digits(labels, 3, 10_000, np.random.default_rng(1))) == (labels == 3).sum()


def test_pca_map_has_a_point_per_digit_and_places_a_known_digit_on_itself():
    images, labels = blocks()
    model = MLP(MLPConfig(hidden=(32, 16)), rng=0)
    m = explore.digit_map(model, images, labels, "pca", n=200)
    assert m.coords.shape == (200, 2) and len(m.labels) == 200
    assert set(np.bincount(m.labels, minlength=10)) != {0}
    np.testing.assert_allclose(m.place(m.features[7]), m.coords[7], rtol=1e-4, atol=1e-4)
    assert m.nearest(m.coords[7], radius=1e-9) in (7, *np.flatnonzero((m.coords == m.coords[7]).all(1)))
    assert m.misread.dtype == bool


def test_tsne_map_places_new_points_among_their_neighbours():
    images, labels = blocks(n=150)
    model = MLP(MLPConfig(hidden=(16,)), rng=0)
    m = explore.digit_map(model, images, labels, "tsne", n=150)
    assert m.coords.shape == (150, 2) and m.projector is None
    p = m.place(m.features[0])
    lo, hi = m.coords.min(axis=0), m.coords.max(axis=0)
    assert ((p >= lo) & (p <= hi)).all()


def test_switching_units_off_changes_the_reading_and_leaves_the_original_alone():
    model = MLP(MLPConfig(hidden=(20, 10), activation="sigmoid"), rng=0)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    before = model.logits(x).copy()
    off = explore.switch_off(model, {0: np.arange(20)})
    np.testing.assert_array_equal(model.logits(x), before)  # the same arrays, the same operations
    # with every unit of layer 0 off, the output no longer depends on the input
    out = off.logits(x)
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), rtol=1e-5, atol=1e-6)
    some = explore.switch_off(model, {1: [0, 3]})
    assert not np.allclose(some.logits(x), before)
    with pytest.raises(ValueError, match="layer"):
        explore.switch_off(model, {2: [0]})
    with pytest.raises(ValueError, match="units"):
        explore.switch_off(model, {1: [10]})


def test_choose_units_least_most_random():
    activity = np.array([0.5, 0.0, 2.0, 1.0, 0.1])
    assert explore.choose_units(activity, 2, "least").tolist() == [1, 4]
    assert explore.choose_units(activity, 2, "most").tolist() == [2, 3]
    r = explore.choose_units(activity, 3, "random", np.random.default_rng(0))
    assert len(set(r.tolist())) == 3
    assert len(explore.choose_units(activity, 99, "most")) == 5


def test_unit_activity_is_the_mean_output():
    model = MLP(MLPConfig(hidden=(8,)), rng=0)
    images, _ = blocks(n=50)
    act = explore.unit_activity(model, images, batch=7)
    expected = model.trace(images.reshape(50, -1).astype(np.float32) / 255).activations[0].mean(axis=0)
    np.testing.assert_allclose(act[0], expected, rtol=1e-5, atol=1e-6)


def test_robustness_falls_with_rotation_for_a_trained_model(mnist):
    from digitpad.core.model_io import load_model, shipped_model_path

    model, _ = load_model(shipped_model_path())
    calls = []
    curves = explore.robustness_curves([model], mnist.test_images, mnist.test_labels, kinds=("rotation",), n=150,
                                       progress=lambda d, t: calls.append((d, t)))
    acc = curves["rotation"][0]
    assert acc.shape == (len(explore.ROBUSTNESS_LEVELS["rotation"]),)
    assert acc[0] > 0.9 and acc[-1] < acc[0] - 0.05
    assert calls[-1][0] == calls[-1][1]


def test_robustness_can_be_cancelled():
    images, labels = blocks(n=100)
    model = MLP(MLPConfig(hidden=(8,)), rng=0)
    with pytest.raises(explore.Cancelled):
        explore.robustness_curves([model], images, labels, n=100, cancel=lambda: True)

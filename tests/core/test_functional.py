"""Activations, derivatives, softmax and cross-entropy against finite differences and extreme inputs."""

import numpy as np
import pytest

from digitpad.core.functional import (
    ACTIVATIONS,
    DERIVATIVES,
    cross_entropy,
    cross_entropy_step,
    log_softmax,
    row_max,
    softmax,
)


def _gradient(logits, labels):
    """d(mean cross-entropy)/d(logits), from the training step's loss on a copy of ``logits``."""
    z = np.array(logits, dtype=np.result_type(logits, np.float32))
    cross_entropy_step(z, np.asarray(labels, dtype=np.intp))
    return z


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_through_output_matches_finite_differences(name):
    rng = np.random.default_rng(1)
    z = rng.uniform(-3, 3, size=200)
    z = z[np.abs(z) > 1e-3]  # away from the ReLU kink
    h = 1e-6
    numeric = (ACTIVATIONS[name](z + h) - ACTIVATIONS[name](z - h)) / (2 * h)
    out = ACTIVATIONS[name](z.copy())
    analytic = DERIVATIVES[name](out, np.ones_like(z))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_sigmoid_derivative_is_at_most_a_quarter():
    z = np.linspace(-20, 20, 10001)
    out = ACTIVATIONS["sigmoid"](z.copy())
    d = DERIVATIVES["sigmoid"](out, np.ones_like(z))
    assert d.max() == pytest.approx(0.25, abs=1e-6)
    assert np.all(d <= 0.25 + 1e-12)


def test_sigmoid_does_not_overflow():
    out = ACTIVATIONS["sigmoid"](np.array([-1e4, 0.0, 1e4], dtype=np.float32))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-7)


def test_softmax_sums_to_one_and_survives_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3.0, 1.0, 0.2]], dtype=np.float32)
    p = softmax(logits)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def test_cross_entropy_is_finite_with_huge_logits():
    logits = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=np.float32)
    labels = np.array([1, 0])
    loss = cross_entropy(logits, labels)
    assert np.isfinite(loss) and loss == pytest.approx(2e4, rel=1e-4)
    g = _gradient(logits, labels)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0.5, -0.5], [-0.5, 0.5]], atol=1e-6)


def test_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 10))
    labels = rng.integers(0, 10, size=4)
    g = _gradient(logits, labels)
    h = 1e-6
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (cross_entropy(up, labels) - cross_entropy(down, labels)) / (2 * h)
    np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-9)


def test_temperature_softens_probabilities():
    logits = np.array([[4.0, 1.0, 0.0]])
    assert softmax(logits, 2.0).max() < softmax(logits).max() < softmax(logits, 0.5).max()
    np.testing.assert_allclose(np.exp(log_softmax(logits, 2.0)), softmax(logits, 2.0), rtol=1e-6)


@pytest.mark.parametrize("temperature", [1e-300, 1e-12, 0.05, 1.0, 20.0, 1e6, 1e308])
def test_softmax_is_finite_at_any_temperature_and_keeps_the_answer(temperature):
    logits = np.random.default_rng(3).normal(scale=5, size=(50, 10)).astype(np.float32)
    for f in (softmax, lambda z, t: np.exp(log_softmax(z, t))):
        p = f(logits, temperature)
        assert np.isfinite(p).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
        if temperature <= 20:  # far above, float32 cannot tell the probabilities apart (hence the clamp)
            np.testing.assert_array_equal(p.argmax(axis=1), logits.argmax(axis=1))
    assert np.isfinite(log_softmax(logits, temperature)[np.arange(50), logits.argmax(axis=1)]).all()


def test_softmax_of_overflowed_scores_is_finite_and_ranks_them():
    logits = np.array([[1.0, np.inf, 3.0, np.nan],  # a score that overflowed wins
                       [np.nan, 2.0, -np.inf, 1.0],  # NaN and -inf rank last
                       [np.nan, np.nan, np.nan, np.nan],  # nothing usable: all equal
                       [np.inf, 0.0, np.inf, -np.inf]], np.float32)  # two overflowed: they share
    for t in (1e-300, 1.0, 20.0):
        p = softmax(logits, t)
        assert np.isfinite(p).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
        assert p[0].argmax() == 1 and p[1].argmax() == 1 and p[1, 0] == p[1, 2] == 0
        np.testing.assert_allclose(p[2], 0.25)
        np.testing.assert_allclose(p[3], [0.5, 0, 0.5, 0])


def test_cross_entropy_sum_and_temperature():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(7, 10)) * 3
    labels = rng.integers(0, 10, size=7)
    mean = cross_entropy(logits, labels)
    assert cross_entropy(logits, labels, reduction="sum") == pytest.approx(7 * mean, rel=1e-12)
    by_hand = -np.mean(np.log(softmax(logits / 2.5))[np.arange(7), labels])
    assert cross_entropy(logits, labels, temperature=2.5) == pytest.approx(by_hand, rel=1e-9)
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, labels, reduction="none")


def test_the_loss_step_gives_the_loss_and_leaves_the_gradient_in_place():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=6)
    z = logits.copy()
    loss, correct = cross_entropy_step(z, labels)
    assert loss == pytest.approx(cross_entropy(logits, labels), rel=1e-6)
    assert correct == int((logits.argmax(1) == labels).sum())
    expected = softmax(logits.astype(np.float64)) - np.eye(10)[labels]
    np.testing.assert_allclose(z, expected / 6, rtol=1e-5, atol=1e-7)


def test_cross_entropy_of_scores_that_are_not_finite_is_nan():
    labels = np.array([0, 1])
    for bad in (np.inf, -np.inf, np.nan):
        logits = np.array([[1.0, 2.0], [bad, 0.5]], np.float32)
        assert np.isnan(cross_entropy(logits, labels))  # training reads it as divergence


def test_cross_entropy_at_a_small_temperature_stays_finite():
    logits = np.array([[30.0, 0.0, -30.0]], np.float32)
    assert cross_entropy(logits, [1], temperature=0.05) == pytest.approx(600.0, rel=1e-5)


def test_row_max_is_each_rows_max_and_nan_where_a_row_has_one():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(9, 10)).astype(np.float32)
    z[2, 4] = np.inf
    z[3] = -np.inf
    z[5, 7] = np.nan
    got = row_max(z)
    assert got.shape == (9, 1)
    np.testing.assert_array_equal(got[:, 0], z.max(axis=1))
    assert np.isnan(got[5, 0]) and got[2, 0] == np.inf and got[3, 0] == -np.inf

"""The compiled training kernels against their NumPy versions, and the fallback without numba."""

import os
import subprocess
import sys

import numpy as np
import pytest

from digitpad.core import kernels
from digitpad.core.train import TrainConfig, Trainer
from tests.core.test_train import tiny_mnist

f32 = np.float32


@pytest.fixture(scope="module")
def jit():
    if os.environ.get("DIGITPAD_JIT", "1").strip() == "0":
        pytest.fail("DIGITPAD_JIT=0 is set: the compiled kernels cannot be checked")
    assert kernels.prepare(), f"numba is a dependency of digitpad, yet: {kernels.status()}"
    return kernels.compiled()


def _adam_args(rng, n=1000):
    p, g = rng.standard_normal(n, dtype=f32), rng.standard_normal(n, dtype=f32) * f32(1e-2)
    m, v = rng.standard_normal(n, dtype=f32) * f32(1e-2), rng.random(n, dtype=f32) * f32(1e-4)
    v[:10] = 0  # a parameter whose gradient was always zero: eps alone keeps the division finite
    g[:10] = 0
    return [p, g, m, v, np.empty(n, f32)]


@pytest.mark.parametrize("wd", [0.0, 1e-3])
def test_compiled_adam_matches_numpy(jit, wd):
    rng = np.random.default_rng(0)
    a = _adam_args(rng)
    b = [x.copy() for x in a]
    scalars = (f32(0.9), f32(0.999), f32(1e-3), f32(1e-8), f32(wd))
    jit["adam"](*a, *scalars)
    kernels.NUMPY["adam"](*b, *scalars)
    for name, x, y in zip(("p", "g", "m", "v", "update"), a, b):
        if name == "g":
            continue  # NumPy adds the weight decay into g in place; the loop keeps it in a register
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-12, err_msg=name)
    assert np.isfinite(a[0]).all() and not np.array_equal(a[0], _adam_args(np.random.default_rng(0))[0])


def _logits(rng, n=64, c=10, scale=3.0):
    return (rng.standard_normal((n, c)) * scale).astype(f32), rng.integers(0, c, n).astype(np.intp)


def test_compiled_loss_step_matches_numpy_and_the_loss(jit):
    from digitpad.core.functional import cross_entropy

    rng = np.random.default_rng(1)
    z, y = _logits(rng)
    z[0, :] = z[0, 0]  # a tie: both count the first of the equal scores
    expected_loss = cross_entropy(z, y)
    expected_correct = int((z.argmax(1) == y).sum())
    a, b = z.copy(), z.copy()
    loss_a, correct_a = jit["cross_entropy_step"](a, y)
    loss_b, correct_b = kernels.NUMPY["cross_entropy_step"](b, y)
    assert correct_a == correct_b == expected_correct
    assert loss_a == pytest.approx(expected_loss, rel=1e-5) and loss_b == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(a.sum(axis=1), 0.0, atol=1e-6)  # softmax - onehot: every row sums to 0


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_loss_step_of_huge_and_broken_scores(jit, impl):
    step = jit["cross_entropy_step"] if impl == "compiled" else kernels.NUMPY["cross_entropy_step"]
    huge = np.array([[1e4, -1e4], [-1e4, 1e4]], f32)
    loss, correct = step(huge, np.array([1, 0], np.intp))
    assert loss == pytest.approx(2e4, rel=1e-4) and correct == 0
    np.testing.assert_allclose(huge, [[0.5, -0.5], [-0.5, 0.5]], atol=1e-6)
    for bad in (np.inf, -np.inf, np.nan):
        z = np.array([[1.0, 2.0], [bad, 0.5]], f32)
        assert np.isnan(step(z, np.array([0, 1], np.intp))[0])  # training reads it as divergence
    with pytest.raises(IndexError):
        step(np.zeros((2, 3), f32), np.array([0, 3], np.intp))


def test_compiled_bias_relu_and_mask_match_numpy(jit):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((16, 32), dtype=f32)
    z[0, 0] = np.nan  # a network that blew up stays visible
    b = rng.standard_normal(32, dtype=f32)
    a, c = z.copy(), z.copy()
    jit["bias_relu"](a, b)
    kernels.NUMPY["bias_relu"](c, b)
    np.testing.assert_array_equal(a, c)  # one addition and a comparison: no rounding to differ by
    assert np.isnan(a[0, 0]) and (a[1:] >= 0).all() and (a == 0).any()

    delta = rng.standard_normal((16, 32), dtype=f32)
    delta[1, :] = np.inf  # an overflowed gradient through a dead unit is NaN in NumPy too
    d1, d2 = delta.copy(), delta.copy()
    with np.errstate(invalid="ignore"):
        jit["relu_backward"](d1, a, np.empty(a.shape, bool))
        kernels.NUMPY["relu_backward"](d2, a, np.empty(a.shape, bool))
    np.testing.assert_array_equal(d1, d2)
    assert (d1[2:][a[2:] <= 0] == 0).all()


def test_compiled_gather_matches_numpy(jit):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 784), dtype=np.uint8)
    idx = rng.permutation(50)[:17]
    a, b = np.empty((17, 784), f32), np.empty((17, 784), f32)
    jit["gather_scaled"](images, idx, a)
    kernels.NUMPY["gather_scaled"](images, idx, b)
    np.testing.assert_array_equal(a, b)
    assert a.max() <= 1.0 and a.min() >= 0.0
    with pytest.raises(IndexError):
        jit["gather_scaled"](images, np.array([50]), a[:1])


def test_a_run_with_either_kernels_learns_the_same(jit, monkeypatch):
    data = tiny_mnist()
    cfg = TrainConfig(hidden=(32,), epochs=2, batch_size=50, val_size=100, seed=0, threads=1,
                      stats_every=0, snapshot_every=0)
    compiled = Trainer(cfg, data)
    for _ in compiled:
        pass
    for name, fn in kernels.NUMPY.items():
        monkeypatch.setattr(kernels, name, fn)
    plain = Trainer(cfg, data)
    for _ in plain:
        pass
    assert compiled.result.best_val_accuracy > 0.9
    for w1, w2 in zip(compiled.model.weights, plain.model.weights):
        np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-4)


def test_without_numba_training_falls_back_to_numpy(tmp_path):
    code = ("from digitpad.core import kernels; ok = kernels.prepare(); "
            "print(ok, kernels.status()); print(kernels.adam is kernels.NUMPY['adam'])")
    env = {**os.environ, "DIGITPAD_JIT": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                         check=True).stdout.splitlines()
    assert out == ["False NumPy kernels (DIGITPAD_JIT=0)", "True"]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_statistics_through_the_training_buffers_match_the_trace(activation):
    from digitpad.core.mlp import MLP, MLPConfig, Workspace
    from digitpad.core.stats import ACT_EDGES, LOGIT_EDGES, dead_fraction, gradient_stats, histogram, layer_stats

    rng = np.random.default_rng(6)
    model = MLP(MLPConfig(hidden=(64, 32), activation=activation), 1)
    probe = rng.random((40, 784), dtype=f32)
    grads = gradient_stats([w * f32(1e-3) for w in model.weights], [b + f32(1e-4) for b in model.biases])
    trace = model.trace(probe)
    traced = [*trace.activations, trace.logits]
    buffered = layer_stats(model, probe, grads, ws=Workspace.for_model(model, len(probe)))
    assert len(buffered) == 3
    for i, (out, b) in enumerate(zip(traced, buffered)):
        hidden = i < 2
        assert float(out.mean()) == pytest.approx(b.act_mean, rel=1e-5, abs=1e-7)
        assert float(out.std()) == pytest.approx(b.act_std, rel=1e-5, abs=1e-7)
        assert (dead_fraction(activation, out) if hidden else 0.0) == b.dead_fraction
        a_hist = histogram(out, ACT_EDGES[activation] if hidden else LOGIT_EDGES)
        assert a_hist.sum() == b.act_hist.sum()
        assert np.abs(a_hist - b.act_hist).max() <= 1  # a value on a bin edge may round either way
    assert buffered[0].act_hist.sum() == 40 * 64


def test_a_run_with_the_compiled_step_is_repeatable_bit_for_bit(jit):
    cfg = TrainConfig(hidden=(32,), epochs=1, batch_size=50, val_size=100, seed=3, threads=1, dropout=0.1)
    runs = []
    for _ in range(2):
        t = Trainer(cfg, tiny_mnist())
        losses = [getattr(r, "loss", None) for r in t]
        runs.append((losses, t.model.weights))
    assert kernels.adam is jit["adam"]  # the runs did use the compiled loops
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)  # same shapes, same thread count

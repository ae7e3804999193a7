"""The network's backward pass against finite differences (float64), and its inference passes."""

import numpy as np
import pytest

from digitpad.core.functional import HIDDEN_ACTIVATIONS, cross_entropy
from digitpad.core.mlp import MLP, MLPConfig, Workspace


def _as_float64(model):
    model.weights = [w.astype(np.float64) for w in model.weights]
    model.biases = [b.astype(np.float64) for b in model.biases]
    return model


def _loss(model, x, y):
    return cross_entropy(model.logits(x), y)


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(0)
    cfg = MLPConfig(n_in=12, hidden=(7, 5), n_out=4, activation=activation)
    model = _as_float64(MLP(cfg, rng))
    for b in model.biases:
        b[:] = rng.normal(scale=0.1, size=b.shape)
    x = rng.normal(size=(6, 12))
    y = rng.integers(0, 4, size=6)
    ws = Workspace.for_model(model, 6)
    ws.outs = [o.astype(np.float64) for o in ws.outs]
    ws.deltas = [d.astype(np.float64) for d in ws.deltas]
    ws.grad_w = [g.astype(np.float64) for g in ws.grad_w]
    ws.grad_b = [g.astype(np.float64) for g in ws.grad_b]
    model.forward_train(x, ws)
    model.loss_step(y, ws)
    model.backward(x, ws)
    h = 1e-6
    for params, grads in ((model.weights, ws.grad_w), (model.biases, ws.grad_b)):
        for p, g in zip(params, grads):
            numeric = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + h
                up = _loss(model, x, y)
                p[idx] = old - h
                down = _loss(model, x, y)
                p[idx] = old
                numeric[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, numeric, rtol=1e-4, atol=1e-7)


def test_dropout_backward_matches_finite_differences_with_fixed_mask():
    rng = np.random.default_rng(3)
    cfg = MLPConfig(n_in=8, hidden=(6,), n_out=3, activation="tanh")
    model = _as_float64(MLP(cfg, rng))
    x = rng.normal(size=(5, 8))
    y = rng.integers(0, 3, size=5)
    ws = Workspace.for_model(model, 5, dropout=True)
    ws.outs = [o.astype(np.float64) for o in ws.outs]
    ws.deltas = [d.astype(np.float64) for d in ws.deltas]
    ws.grad_w = [g.astype(np.float64) for g in ws.grad_w]
    ws.grad_b = [g.astype(np.float64) for g in ws.grad_b]
    model.forward_train(x, ws, dropout=0.5, rng=np.random.default_rng(7))
    keep = ws.keep[0].copy()
    model.loss_step(y, ws)
    model.backward(x, ws, dropout=0.5)

    def loss_with_mask(m):
        a = np.tanh(x @ m.weights[0] + m.biases[0]) * keep / 0.5
        return cross_entropy(a @ m.weights[1] + m.biases[1], y)

    h = 1e-6
    w = model.weights[0]
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + h
        up = loss_with_mask(model)
        w[idx] = old - h
        down = loss_with_mask(model)
        w[idx] = old
        numeric[idx] = (up - down) / (2 * h)
    np.testing.assert_allclose(ws.grad_w[0], numeric, rtol=1e-4, atol=1e-7)


def test_trace_agrees_with_predict_proba_and_inputs_of_any_shape():
    model = MLP(MLPConfig(hidden=(32, 16)), 5)
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    t = model.trace(x)
    np.testing.assert_allclose(t.probabilities, model.predict_proba(x), rtol=1e-5)
    np.testing.assert_allclose(t.probabilities.sum(1), 1.0, rtol=1e-5)
    assert [a.shape for a in t.activations] == [(3, 32), (3, 16)]
    assert model.predict_proba(x[0].reshape(28, 28)).shape == (1, 10)
    assert model.predict_proba(x[0]).shape == (1, 10)
    u8 = (x * 255).astype(np.uint8)
    np.testing.assert_allclose(model.predict_proba(u8), model.predict_proba(u8 / np.float32(255)), rtol=1e-5)
    with pytest.raises(ValueError, match="784"):
        model.predict_proba(np.zeros((2, 100)))


def test_input_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    model = _as_float64(MLP(MLPConfig(n_in=9, hidden=(6,), n_out=3, activation="sigmoid"), rng))
    x = rng.normal(size=(1, 9))
    g = model.input_gradient(x, 2)
    h = 1e-6
    numeric = np.array([
        (model.logits(x + h * e)[0, 2] - model.logits(x - h * e)[0, 2]) / (2 * h) for e in np.eye(9)
    ])
    np.testing.assert_allclose(g[0], numeric, rtol=1e-5, atol=1e-9)


def test_same_seed_same_weights_and_init_scale_matches_activation():
    a, b = MLP(MLPConfig(), 42), MLP(MLPConfig(), 42)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    assert a.weights[0].dtype == np.float32
    relu = MLP(MLPConfig(hidden=(512,), activation="relu"), 0).weights[0].std()
    tanh = MLP(MLPConfig(hidden=(512,), activation="tanh"), 0).weights[0].std()
    assert relu == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert tanh == pytest.approx(np.sqrt(2 / (784 + 512)), rel=0.02)


def test_config_refuses_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        MLPConfig(activation="softplus")


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_one_sample_takes_the_blas_free_path_and_agrees_with_a_batch(activation, monkeypatch):
    model = MLP(MLPConfig(hidden=(64, 32, 16), activation=activation), rng=4)
    x = np.random.default_rng(5).random((3, 784), dtype=np.float32)
    batch = model.trace(x, 1.7)
    einsum_calls = []
    real_einsum = np.einsum
    monkeypatch.setattr(np, "einsum", lambda *a, **k: einsum_calls.append(a[0]) or real_einsum(*a, **k))
    one = model.trace(x[1], 1.7)
    assert len(einsum_calls) == model.n_layers  # every layer through NumPy's loops, none through BLAS
    for a, b in zip(one.pre + one.activations + [one.logits, one.probabilities],
                    batch.pre + batch.activations + [batch.logits, batch.probabilities]):
        assert a.shape == (1, b.shape[1])
        np.testing.assert_allclose(a[0], b[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.logits(x[1]), one.logits, rtol=1e-6)
    assert model.predict(x[1])[0] == one.probabilities.argmax()


def test_the_inference_passes_keep_nothing_and_leave_the_input_alone():
    model = MLP(MLPConfig(hidden=(8,)), rng=1)
    x = np.random.default_rng(2).random((2, 784))  # float64: used as it is, not copied
    before = x.copy()
    model.logits(x)
    model.trace(x[0])
    np.testing.assert_array_equal(x, before)


def test_input_gradient_reuses_a_given_trace(monkeypatch):
    model = MLP(MLPConfig(hidden=(16, 8)), rng=3)
    x = np.random.default_rng(4).random((1, 784), dtype=np.float32)
    trace = model.trace(x)
    expected = model.input_gradient(x, 3)
    monkeypatch.setattr(model, "trace", lambda *a, **k: pytest.fail("a second forward pass"))
    np.testing.assert_allclose(model.input_gradient(x, 3, trace), expected, rtol=1e-6)


def test_huge_finite_weights_still_give_finite_probabilities():
    model = MLP(MLPConfig(hidden=(16,)), rng=0)
    for w in model.weights:
        w /= np.abs(w).max()
        w *= np.float32(3e38)  # finite, but every score overflows float32
    assert model.is_finite()
    x = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    with np.errstate(all="ignore"):
        for t in (model.predict_proba(x), model.trace(x[0]).probabilities):
            assert np.isfinite(t).all()
            np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)

"""Evaluation: confusion and accuracy agree, mistakes, Wilson interval, calibration, temperature, saliency."""

from types import SimpleNamespace

import numpy as np
import pytest

from digitpad.core.evaluate import (
    EvaluationCancelled,
    calibration,
    evaluate_logits,
    evaluate_model,
    fit_temperature,
    saliency,
    top_units,
    validation_split,
    wilson_interval,
)
from digitpad.core.functional import softmax
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.train import TrainConfig, Trainer, evaluate
from tests.conftest import assert_same_answers, near_ties


def noisy_set(n=3000, seed=0):
    """Random digits and a random small network: an accuracy well away from 0 and 1 is not needed,
    only a mix of right and wrong answers, which labels taken partly from the model give."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    model = MLP(MLPConfig(hidden=(32,)), rng=seed)
    pred = model.predict(images)
    labels = np.where(rng.random(n) < 0.6, pred, rng.integers(0, 10, n)).astype(np.uint8)
    return model, images, labels


def test_confusion_sums_to_set_size_and_diagonal_is_accuracy():
    model, images, labels = noisy_set()
    ev = evaluate_model(model, images, labels)
    assert ev.confusion.shape == (10, 10)
    assert ev.confusion.sum() == ev.n == len(labels)
    assert np.trace(ev.confusion) / ev.n == pytest.approx(ev.accuracy)
    assert 0.55 < ev.accuracy < 0.75  # a real mix of right and wrong
    # evaluate() reads in batches of another size: only near ties may be read differently
    ties = near_ties(model.logits(images)).sum()
    assert abs(ev.accuracy - evaluate(model, images, labels)[1]) * ev.n <= ties
    np.testing.assert_array_equal(ev.confusion.sum(axis=1), np.bincount(labels, minlength=10))
    for k in range(10):
        assert ev.per_class[k] == pytest.approx(np.mean(ev.predictions[labels == k] == k))
    cell = ev.cell(3, 5)
    assert len(cell) == ev.confusion[3, 5]
    assert np.all(labels[cell] == 3) and np.all(ev.predictions[cell] == 5)
    with pytest.raises(ValueError):
        ev.confusion[0, 0] = 1  # read-only


def test_mistakes_are_exactly_the_wrong_answers_most_confident_first():
    model, images, labels = noisy_set(seed=1)
    ev = evaluate_model(model, images, labels)
    assert_same_answers(ev.predictions, model.logits(images))  # read in batches, not in one product
    expected = np.flatnonzero(ev.predictions != labels)
    assert len(expected) > 100
    np.testing.assert_array_equal(np.sort(ev.mistakes), expected)
    conf = ev.confidences[ev.mistakes]
    assert np.all(np.diff(conf) <= 0)
    probs = model.predict_proba(images[ev.mistakes[:5]])
    np.testing.assert_allclose(conf[:5], probs.max(axis=1), rtol=1e-5)


def test_progress_is_reported_and_cancel_stops():
    model, images, labels = noisy_set(n=2500)
    seen = []
    evaluate_model(model, images, labels, progress=lambda d, t: seen.append((d, t)), batch=1000)
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    with pytest.raises(EvaluationCancelled):
        evaluate_model(model, images, labels, cancel=lambda: len(seen) > 3,
                       progress=lambda d, t: seen.append((d, t)), batch=1000)
    assert len(seen) == 4


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), rel=1e-6)
    lo, hi = wilson_interval(9800, 10000)
    assert lo == pytest.approx(0.977066, abs=2e-6) and hi == pytest.approx(0.982566, abs=2e-6)
    assert lo < 0.98 < hi


def test_calibration_error_of_calibrated_and_overconfident_answers():
    conf = np.full(1000, 0.8)
    correct = np.arange(1000) < 800
    ece, rel = calibration(conf, correct)
    assert ece == pytest.approx(0.0, abs=1e-12)
    assert rel.counts.sum() == 1000 and len(rel.edges) == 16
    b = int(np.nanargmax(rel.counts))
    assert rel.accuracy[b] == pytest.approx(0.8) and rel.confidence[b] == pytest.approx(0.8)
    assert np.isnan(rel.accuracy[0])
    ece, _ = calibration(np.full(10, 0.99), np.zeros(10, bool))
    assert ece == pytest.approx(0.99)


def overconfident_logits(n, scale, seed):
    """Labels drawn from softmax(z); the model reports scale * z, so it is over-confident by ``scale``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, 10))
    p = softmax(z)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return (z * scale).astype(np.float32), labels


def test_fitted_temperature_lowers_calibration_error_on_held_out_data():
    fit_logits, fit_labels = overconfident_logits(5000, 3.0, seed=0)
    test_logits, test_labels = overconfident_logits(5000, 3.0, seed=1)
    t = fit_temperature(fit_logits, fit_labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = evaluate_logits(test_logits, test_labels)
    after = evaluate_logits(test_logits, test_labels, temperature=t)
    assert after.ece < before.ece / 3
    assert after.nll < before.nll
    np.testing.assert_array_equal(after.predictions, before.predictions)  # answers do not change


def test_validation_split_is_the_one_training_held_out():
    rng = np.random.default_rng(0)
    data = SimpleNamespace(train_images=rng.integers(0, 256, (900, 28, 28), dtype=np.uint8),
                           train_labels=rng.integers(0, 10, 900).astype(np.uint8))
    cfg = TrainConfig(hidden=(8,), epochs=1, val_size=150, seed=7, limit=300)
    images, labels = validation_split(data, cfg.to_dict())
    trainer = Trainer(cfg, data)
    np.testing.assert_array_equal(images.reshape(len(images), -1), trainer.val_images)
    np.testing.assert_array_equal(labels, trainer.val_labels)
    with pytest.raises(ValueError, match="validation"):
        validation_split(data, TrainConfig(val_size=0))


def test_saliency_of_a_linear_model_is_weights_times_input():
    rng = np.random.default_rng(3)
    model = MLP(MLPConfig(hidden=()), rng=3)
    x = rng.random((28, 28)).astype(np.float32)
    for cls in (0, 4, 9):
        s = saliency(model, x, cls)
        assert s.shape == (28, 28)
        np.testing.assert_allclose(s, (model.weights[0][:, cls] * x.ravel()).reshape(28, 28), rtol=1e-6)
    idx, imgs = top_units(model, x, 5)
    assert idx.shape == (0,) and imgs.shape == (0, 28, 28)


def test_saliency_of_a_hidden_layer_model_matches_finite_differences_times_input():
    rng = np.random.default_rng(4)
    model = MLP(MLPConfig(hidden=(16, 8), activation="tanh"), rng=4)
    x = rng.random(784)
    s = saliency(model, x.astype(np.float32), 2).ravel()
    m64 = MLP.from_arrays(model.config, model.weights, model.biases)
    m64.weights = [w.astype(np.float64) for w in m64.weights]
    m64.biases = [b.astype(np.float64) for b in m64.biases]
    for i in rng.choice(784, 6, replace=False):
        e = np.zeros(784)
        e[i] = 1e-6
        g = (m64.logits(x + e)[0, 2] - m64.logits(x - e)[0, 2]) / 2e-6
        assert s[i] == pytest.approx(g * x[i], rel=1e-3, abs=1e-6)


def test_top_units_are_the_most_active_with_their_weight_images():
    rng = np.random.default_rng(5)
    model = MLP(MLPConfig(hidden=(20, 10)), rng=5)
    x = rng.random((28, 28)).astype(np.float32)
    idx, imgs = top_units(model, x, 4)
    act = model.trace(x).activations[0][0]
    np.testing.assert_array_equal(idx, np.argsort(-act)[:4])
    np.testing.assert_array_equal(imgs[1], model.weights[0][:, idx[1]].reshape(28, 28))
    assert len(top_units(model, x, 50)[0]) == 20


def test_temperature_from_validation_lowers_test_calibration_error_on_mnist(mnist):
    cfg = TrainConfig(hidden=(64,), epochs=2, limit=5000, lr=3e-3, stats_every=0, snapshot_every=0)
    trainer = Trainer(cfg, mnist)
    for _ in trainer:
        pass
    model = trainer.result.model
    val_images, val_labels = validation_split(mnist, cfg.to_dict())
    t = fit_temperature(model, val_labels, images=val_images)
    before = evaluate_model(model, mnist.test_images, mnist.test_labels)
    after = evaluate_model(model, mnist.test_images, mnist.test_labels, temperature=t)
    assert before.accuracy > 0.85
    assert after.ece < before.ece
    assert after.nll < before.nll


def test_map_to_input_puts_the_28x28_image_back_where_the_ink_was(mnist):
    from digitpad.core.evaluate import map_to_input
    from digitpad.core.preprocess import Preprocessed, preprocess

    digit = mnist.test_images[0]  # a 7
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    crop = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32) / 255
    picture = np.zeros((200, 300), np.float32)  # wide: shown letterboxed in a 300 px square
    big = np.kron(crop, np.ones((6, 6), np.float32))  # 6 input px per MNIST px
    picture[40:40 + big.shape[0], 170:170 + big.shape[1]] = big
    pre = preprocess(picture)
    assert not pre.blank
    back = map_to_input(pre.image, pre, 150)  # 2 input px per result px
    expected = np.zeros((300, 300), np.float32)
    expected[50:250] = picture  # the letterboxed square
    expected = expected.reshape(150, 2, 150, 2).mean(axis=(1, 3))
    corr = np.corrcoef(back.ravel(), expected.ravel())[0, 1]
    assert corr > 0.85
    y, x = np.indices(back.shape)
    centre = [((a * y).sum() / a.sum(), (a * x).sum() / a.sum()) for a in (back, expected)]
    np.testing.assert_allclose(centre[0], centre[1], atol=1.5)  # within 3 input px
    assert back[:20].max() == 0 and back[:, :75].max() == 0  # nothing where there was no ink
    identity = Preprocessed(pre.image, False, input_shape=(28, 28), bbox=(0, 28, 0, 28), scale=1.0)
    np.testing.assert_allclose(map_to_input(pre.image, identity, 28), pre.image, atol=1e-6)
    assert not map_to_input(pre.image, preprocess(np.zeros((50, 50))), 40).any()


@pytest.mark.parametrize("bad", [5, [1, 2], "quick", {"hidden": 5}, {"nonsense": 1}])
def test_validation_split_refuses_a_train_config_that_is_not_one(bad):
    mnist = SimpleNamespace(train_images=np.zeros((100, 28, 28), np.uint8), train_labels=np.zeros(100, np.uint8))
    with pytest.raises(ValueError, match="train_config"):
        validation_split(mnist, bad)


def test_reliability_curve_and_nll_agree_with_scikit_learn():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import log_loss

    model, images, labels = noisy_set(seed=2)
    ev = evaluate_model(model, images, labels, temperature=1.3)
    correct = ev.predictions == ev.labels
    prob_true, prob_pred = calibration_curve(correct, ev.confidences.astype(np.float64), n_bins=15)
    filled = ev.reliability.counts > 0
    np.testing.assert_allclose(ev.reliability.accuracy[filled], prob_true, rtol=1e-9)
    np.testing.assert_allclose(ev.reliability.confidence[filled], prob_pred, rtol=1e-9)
    assert np.isnan(ev.reliability.accuracy[~filled]).all()
    probs = softmax(ev.logits.astype(np.float64), 1.3)
    assert ev.nll == pytest.approx(log_loss(labels, probs, labels=np.arange(10)), rel=1e-6)


def test_an_empty_set_evaluates_to_nothing_without_raising():
    ev = evaluate_logits(np.zeros((0, 10), np.float32), np.zeros(0, np.uint8))
    assert ev.n == 0 and ev.confusion.shape == (10, 10) and ev.confusion.sum() == 0
    assert np.isnan(ev.accuracy) and np.isnan(ev.nll) and ev.accuracy_ci95 == (0.0, 1.0)


def test_scikit_learn_is_imported_only_when_a_set_is_evaluated():
    import subprocess
    import sys

    code = ("import sys, digitpad.core.evaluate, digitpad.core.reading, digitpad.core.model_io\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'PySide6'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr

"""Training: determinism, records, stop, divergence, optimisers and schedules, real MNIST accuracy."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.optim import SGD, Adam, learning_rate
from digitpad.core.train import (
    GRAD_LOG_EDGES,
    PRESETS,
    EpochRecord,
    StepRecord,
    TrainConfig,
    Trainer,
    evaluate,
    live_config,
    parse_hidden,
    run_size,
    split_indices,
    train,
)


def tiny_mnist(n=1200, seed=0):
    """Ten separable blobs dressed as MNIST: class k lights up row band k."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 230
    return SimpleNamespace(train_images=images, train_labels=labels,
                           test_images=images[:200], test_labels=labels[:200])


SMALL = TrainConfig(hidden=(32, 16), epochs=2, batch_size=50, val_size=200, lr=3e-3, stats_every=5,
                    snapshot_every=4, probe_size=64, threads=1)


def test_same_seed_gives_identical_weights_and_losses():
    data = tiny_mnist()
    runs = []
    for _ in range(2):
        t = Trainer(SMALL, data)
        losses = [r.loss for r in t if isinstance(r, StepRecord)]
        runs.append((losses, t.result.model))
    assert runs[0][0] == runs[1][0]
    for wa, wb in zip(runs[0][1].weights, runs[1][1].weights):
        np.testing.assert_array_equal(wa, wb)
    other = Trainer(replace(SMALL, seed=1), data)
    assert [r.loss for r in other if isinstance(r, StepRecord)] != runs[0][0]


def test_records_carry_per_layer_statistics_as_copies():
    data = tiny_mnist()
    t = Trainer(SMALL, data)
    records = list(t)
    steps = [r for r in records if isinstance(r, StepRecord)]
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert len(epochs) == 2 and epochs[-1].epoch == 2
    assert steps[-1].step == t.total_steps == 2 * 20
    with_stats = [r for r in steps if r.layers is not None]
    assert len(with_stats) == t.total_steps // SMALL.stats_every
    first = with_stats[0].layers
    assert len(first) == 3  # two hidden layers and the output layer
    for layer in first:
        assert layer.grad_hist.shape == (len(GRAD_LOG_EDGES) - 1,)
        assert layer.grad_norm > 0 and 0 <= layer.dead_fraction <= 1
        assert layer.act_hist.sum() > 0
        assert np.isfinite(layer.update_ratio) and layer.update_ratio > 0
    snaps = [r for r in steps if r.weights is not None]
    assert len(snaps) == t.total_steps // SMALL.snapshot_every
    w_early, w_late = snaps[0].weights[0][0], snaps[-1].weights[0][0]
    assert not np.array_equal(w_early, w_late)  # copies, not views of the live buffers


def test_training_learns_and_returns_best_validation_model():
    data = tiny_mnist()
    result = train(SMALL, data)
    assert result.best_val_accuracy > 0.9
    assert result.history[result.best_epoch - 1].val_accuracy == result.best_val_accuracy
    _, acc = evaluate(result.model, data.test_images, data.test_labels)
    assert acc > 0.9


def test_stop_ends_at_a_step_boundary_and_keeps_best_so_far():
    data = tiny_mnist()
    t = Trainer(replace(SMALL, epochs=5), data)
    n = 0
    for r in t:
        if isinstance(r, StepRecord):
            n += 1
            if n == 7:
                t.stop()
    assert n == 7
    assert t.result.stopped and t.result.steps == 7
    assert t.result.model.is_finite()


def test_adam_with_absurd_learning_rate_is_stopped_as_exploded():
    t = Trainer(replace(SMALL, lr=1e3, epochs=3), tiny_mnist())
    records = list(t)
    assert t.result.diverged and "exploded" in t.result.message and "1000" in t.result.message
    assert records[-1].message == t.result.message
    assert t.result.steps < t.total_steps


def test_absurd_learning_rate_diverges_and_restores_finite_weights():
    data = tiny_mnist()
    cfg = replace(SMALL, lr=1e6, optimizer="sgd", epochs=3)
    t = Trainer(cfg, data)
    records = list(t)
    assert t.result.diverged
    assert "learning rate" in t.result.message and "too high" in t.result.message
    assert records[-1].message == t.result.message
    assert t.result.model.is_finite() and t.model.is_finite()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_every_activation_and_optimizer_learns(activation, optimizer):
    cfg = replace(SMALL, activation=activation, optimizer=optimizer, lr=3e-3 if optimizer == "adam" else 0.1,
                  epochs=3, dropout=0.1, weight_decay=1e-4)
    result = train(cfg, tiny_mnist())
    assert result.best_val_accuracy > 0.5


def test_sigmoid_gradients_vanish_toward_the_input():
    cfg = replace(SMALL, hidden=(32, 32, 32, 32), activation="sigmoid", epochs=1, stats_every=1)
    t = Trainer(cfg, tiny_mnist())
    layers = next(r for r in t if isinstance(r, StepRecord) and r.layers).layers
    t.stop()
    assert layers[0].grad_norm < layers[-1].grad_norm / 10


def test_config_refuses_bad_values_naming_the_field():
    for field, value in [("lr", -1.0), ("batch_size", 0), ("dropout", 1.0), ("activation", "x"),
                         ("epochs", 0), ("schedule", "step"), ("hidden", (0,))]:
        with pytest.raises(ValueError, match=f"^{field}"):
            replace(SMALL, **{field: value})
    with pytest.raises(ValueError, match="not a training setting"):
        TrainConfig.from_dict({"learning_rate": 1})
    assert TrainConfig.from_dict(SMALL.to_dict()) == SMALL


def test_schedules():
    assert learning_rate("constant", 0.1, 50, 100) == 0.1
    assert learning_rate("cosine", 0.1, 0, 100) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 100, 100) == pytest.approx(0.0, abs=1e-12)
    peak = max(learning_rate("onecycle", 0.1, s, 100) for s in range(101))
    assert peak == pytest.approx(0.1, rel=1e-6)
    assert learning_rate("onecycle", 0.1, 0, 100) == pytest.approx(0.004)
    assert learning_rate("onecycle", 0.1, 100, 100) == pytest.approx(1e-5)


def test_adam_and_sgd_minimise_a_quadratic():
    for make in (lambda p: Adam(p), lambda p: SGD(p, momentum=0.9, nesterov=True)):
        w = np.array([[3.0, -2.0]], dtype=np.float32)
        opt = make([w])
        for _ in range(500):
            opt.update([w], [2 * w.copy()], 0.05)
        assert np.abs(w).max() < 0.05


def test_adam_first_step_moves_each_weight_by_lr():
    w = np.array([[1.0, 1.0]], dtype=np.float32)
    Adam([w]).update([w], [np.array([[0.5, -2.0]], dtype=np.float32)], 0.01)
    np.testing.assert_allclose(w, [[0.99, 1.01]], rtol=1e-5)


def test_adam_follows_the_textbook_update_with_weight_decay_on_matrices_only():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    opt = Adam([w, b], weight_decay=0.01)
    ref = [w.astype(np.float64), b.astype(np.float64)]
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    for t in range(1, 31):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in (w, b)]
        for i, g in enumerate(grads):
            g = g.astype(np.float64) + (0.01 * ref[i] if i == 0 else 0.0)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            ref[i] -= lr * m_hat / (np.sqrt(v_hat) + eps)
        opt.update([w, b], grads, lr)
    np.testing.assert_allclose(w, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, ref[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_nesterov_sgd_follows_the_textbook_update(momentum):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    opt = SGD([w], momentum=momentum, nesterov=True)
    ref, vel, lr = w.astype(np.float64), np.zeros((3, 2)), 0.05
    for _ in range(20):
        g = rng.standard_normal((3, 2)).astype(np.float32)
        vel = momentum * vel - lr * g
        ref += momentum * vel - lr * g
        opt.update([w], [g], lr)
        assert np.isfinite(w).all()
        np.testing.assert_allclose(opt.last_update[0], momentum * vel - lr * g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.mnist
def test_one_epoch_on_5000_digits_clearly_beats_chance(mnist):
    cfg = TrainConfig(limit=5000, epochs=1, batch_size=64)
    result = train(cfg, mnist)
    _, acc = evaluate(result.model, mnist.test_images, mnist.test_labels)
    assert acc > 0.8


@pytest.mark.mnist
def test_quick_preset_reaches_97_percent_on_the_full_set(mnist):
    result = train(PRESETS["quick"], mnist)
    _, acc = evaluate(result.model, mnist.test_images, mnist.test_labels)
    assert acc >= 0.97


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_ratio_is_the_step_size_over_the_weights(optimizer):
    cfg = replace(SMALL, stats_every=1, snapshot_every=1, optimizer=optimizer, nesterov=optimizer == "sgd",
                  lr=3e-3 if optimizer == "adam" else 0.05, weight_decay=1e-3, epochs=1)
    steps = [r for r in Trainer(cfg, tiny_mnist()) if isinstance(r, StepRecord)]
    for prev, cur in zip(steps[:5], steps[1:6]):
        for i, layer in enumerate(cur.layers):
            w_prev, w_cur = prev.weights[0][i], cur.weights[0][i]
            expected = np.linalg.norm(w_cur - w_prev) / np.linalg.norm(w_cur)
            assert layer.update_ratio == pytest.approx(expected, rel=1e-3)


def test_stop_after_the_last_epoch_ended_is_not_reported_as_stopped_early():
    data = tiny_mnist()
    t = Trainer(replace(SMALL, epochs=2), data)
    for r in t:
        if isinstance(r, EpochRecord) and r.epoch == 2:
            t.stop()  # the run has nothing left to do
    assert t.result.epochs_done == 2
    assert not t.result.stopped and t.result.message == ""


def test_exploding_run_restores_weights_from_before_the_loss_blew_up():
    data = tiny_mnist()
    cfg = replace(SMALL, lr=1e3, epochs=3, stats_every=1)
    t = Trainer(cfg, data)
    list(t)
    assert t.result.diverged and "exploded" in t.result.message
    logits = t.result.model.logits(data.test_images[:200])
    from digitpad.core.functional import cross_entropy

    assert cross_entropy(logits, data.test_labels[:200]) < 1.5 * np.log(10)


def test_split_indices_alone_gives_the_trainers_validation_digits():
    data = tiny_mnist()
    cfg = replace(SMALL, seed=7)
    t = Trainer(cfg, data)
    _, val = split_indices(len(data.train_labels), cfg)
    np.testing.assert_array_equal(t.val_labels, data.train_labels[val])
    np.testing.assert_array_equal(t.val_images, data.train_images.reshape(len(data.train_labels), -1)[val])


def test_live_config_gives_short_runs_enough_statistics_points():
    quick = PRESETS["quick"]  # 55,000 digits, batch 512, 5 epochs: 540 steps
    assert live_config(quick, 60000).stats_every == 540 // 80
    long_run = replace(quick, epochs=60)
    assert live_config(long_run, 60000).stats_every == long_run.stats_every
    tiny = replace(quick, limit=1000, epochs=1)
    assert live_config(tiny, 60000).stats_every == 5
    assert live_config(replace(quick, stats_every=0), 60000).stats_every == 0


def test_a_stop_within_an_epoch_that_keeps_the_current_weights_names_no_epoch():
    data = tiny_mnist()
    t = Trainer(replace(SMALL, epochs=5), data)
    for r in t:
        if isinstance(r, StepRecord) and r.step == 50:  # ten steps into the third epoch
            t.stop()
    result = t.result
    assert result.stopped and result.epochs_done == 2 and result.steps == 50
    # the weights of step 50 beat the end of epoch 2 here (the loss is still falling)
    for kept, current in zip(result.model.weights, t.model.weights):
        np.testing.assert_array_equal(kept, current)
    assert result.best_epoch == 0 and result.best_step == 50


def test_a_stop_that_keeps_an_epochs_weights_names_that_epoch():
    result = train(SMALL, tiny_mnist())
    assert result.best_epoch >= 1 and result.best_step == result.best_epoch * 20


def test_a_blow_up_within_a_few_steps_is_caught_when_the_epoch_ends():
    # two steps: too few for the smoothed loss, and the weights stay finite (huge)
    cfg = replace(SMALL, optimizer="sgd", lr=1e5, epochs=1, batch_size=512)
    t = Trainer(cfg, tiny_mnist())
    records = list(t)
    assert t.result.steps == 2
    assert t.result.diverged and "exploded" in t.result.message and "100000" in t.result.message
    assert records[-1].message == t.result.message
    assert t.result.epochs_done == 0 and not t.result.history
    loss, _ = evaluate(t.result.model, t.val_images, t.val_labels)
    assert loss < 1.5 * np.log(10)  # the last good weights, not the exploded ones


def test_without_validation_digits_a_blow_up_is_caught_on_training_digits():
    cfg = replace(SMALL, optimizer="sgd", lr=1e5, epochs=1, batch_size=512, val_size=0, limit=1000)
    t = Trainer(cfg, tiny_mnist())
    list(t)
    assert t.result.diverged and "training loss exploded" in t.result.message


def test_config_refuses_a_negative_seed_naming_it():
    with pytest.raises(ValueError, match="^seed"):
        replace(SMALL, seed=-1)
    assert replace(SMALL, seed=2**40).seed == 2**40


@pytest.mark.parametrize("hidden", [(8192, 8192), (16384,) * 8])
def test_config_refuses_a_network_over_the_model_file_parameter_cap(hidden):
    from digitpad.core import model_io

    with pytest.raises(ValueError, match=r"^hidden: .*more than a digitpad model may have \(67,108,864\)"):
        replace(SMALL, hidden=hidden)
    assert model_io.MAX_PARAMS == 64 * 1024 * 1024  # one cap, for training and for loading
    n = MLPConfig(hidden=(8192, 7000)).n_params
    assert n <= model_io.MAX_PARAMS and replace(SMALL, hidden=(8192, 7000)).hidden == (8192, 7000)


def test_warm_start_continues_from_the_given_weights_and_leaves_them_alone():
    data = tiny_mnist()
    trained = train(SMALL, data).model
    before = [w.copy() for w in trained.weights]
    cfg = replace(SMALL, epochs=1, seed=5)
    warm = Trainer(cfg, data, initial=trained)
    cold = Trainer(cfg, data)
    warm_first = next(r for r in warm if isinstance(r, StepRecord))
    cold_first = next(r for r in cold if isinstance(r, StepRecord))
    assert warm_first.loss < 0.5 * cold_first.loss  # it starts where the trained model is
    list(warm)
    for w, b in zip(trained.weights, before):
        np.testing.assert_array_equal(w, b)  # the given model is not trained in place
    assert not np.array_equal(warm.result.model.weights[0], before[0])
    with pytest.raises(ValueError, match="^hidden: the starting network is 784-32-16-10 relu"):
        Trainer(replace(SMALL, hidden=(8,)), data, initial=trained)


def test_run_size_is_the_trainers_step_count():
    data = tiny_mnist()
    for cfg in (SMALL, replace(SMALL, limit=333, batch_size=64), replace(SMALL, val_size=0, epochs=3)):
        t = Trainer(cfg, data)
        size = run_size(cfg, len(data.train_labels))
        assert (size.n_train, size.n_val) == (len(t.train_labels), len(t.val_labels))
        assert (size.steps_per_epoch, size.total_steps) == (t.steps_per_epoch, t.total_steps)
        assert size.total_steps == len([r for r in t if isinstance(r, StepRecord)])


def test_a_training_set_all_held_out_for_validation_is_refused_naming_val_size():
    with pytest.raises(ValueError, match="^val_size: holding out 5000 digits .* none of the 1200"):
        Trainer(replace(SMALL, val_size=5000), tiny_mnist())


@pytest.mark.parametrize("text, sizes", [("256,128", (256, 128)), (" 256, 128 ", (256, 128)), ("4 x 4", (4, 4)),
                                         ("8×8", (8, 8)), ("512", (512,)), ("none", ()), ("None", ())])
def test_parse_hidden_reads_the_usual_ways_of_writing_sizes(text, sizes):
    assert parse_hidden(text) == sizes


@pytest.mark.parametrize("text", ["", "12,x", "1.5", "256,", "-3", "a", "１２"])
def test_parse_hidden_refuses_what_is_not_sizes(text):
    with pytest.raises(ValueError, match="256, 128"):
        parse_hidden(text)


def test_a_learning_rate_set_during_the_run_applies_from_the_next_step_and_is_recorded():
    t = Trainer(replace(SMALL, schedule="onecycle"), tiny_mnist())
    it = iter(t)
    first = [next(it) for _ in range(3)]
    assert all(r.change is None for r in first)
    t.set_lr(0.0123)
    after = [r for r in (next(it) for _ in range(8)) if isinstance(r, StepRecord)]
    assert after[0].step == 4 and after[0].lr == pytest.approx(0.0123)
    assert "learning rate" in after[0].change and "0.0123" in after[0].change
    assert all(r.lr == pytest.approx(0.0123) for r in after)  # it replaces the schedule from then on
    assert all(r.change is None for r in after[1:])
    with pytest.raises(ValueError, match="lr"):
        t.set_lr(-1.0)


def test_sgd_momentum_set_during_the_run_reaches_the_optimiser():
    t = Trainer(replace(SMALL, optimizer="sgd", momentum=0.9), tiny_mnist())
    it = iter(t)
    next(it)
    t.set_momentum(0.5)
    r = next(it)
    assert t._opt.momentum == 0.5 and "momentum 0.9 → 0.5" in r.change
    adam = Trainer(SMALL, tiny_mnist())
    with pytest.raises(ValueError, match="momentum: only SGD"):
        adam.set_momentum(0.5)

"""Training: a generator of frozen step records, with pause and stop at step boundaries.

``Trainer(config, mnist)`` is iterated by whoever drives it (the CLI's progress bar, the
app's worker thread): every step yields a ``StepRecord`` (loss, batch accuracy, learning
rate; every ``stats_every`` steps also per-layer activation and gradient statistics over
a fixed probe batch; every ``snapshot_every`` steps a copy of the weights), and every
epoch an ``EpochRecord`` (train and validation loss and accuracy). Not asking for the next
record pauses training; ``stop()`` ends it at the next step boundary. The arrays in a
record are copies, so the trainer can keep reusing its buffers. When iteration ends,
``trainer.result`` holds the best-validation model.

A non-finite loss or weight stops the run by itself: the last good weights come back and
the final record's ``message`` says what happened and what to try.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Iterator

import numpy as np

from digitpad.core.functional import HIDDEN_ACTIVATIONS, log_softmax
from digitpad.core.mlp import MLP, MLPConfig, Workspace, as_batch
from digitpad.core.optim import OPTIMIZERS, SCHEDULES, learning_rate, make_optimizer
from digitpad.core.threads import BlasThreads

GRAD_LOG_EDGES = np.linspace(-10.0, 0.0, 41)  # histogram of log10 |gradient|
ACT_EDGES = {
    "relu": np.linspace(0.0, 6.0, 41),
    "leaky_relu": np.linspace(-0.5, 6.0, 41),
    "tanh": np.linspace(-1.0, 1.0, 41),
    "sigmoid": np.linspace(0.0, 1.0, 41),
}
LOGIT_EDGES = np.linspace(-20.0, 20.0, 41)
SATURATION = 0.02  # a sigmoid/tanh unit closer than this to its bounds is saturated
CHANCE_LOSS = math.log(10)  # cross-entropy of a network that spreads its bets evenly
EXPLODED_LOSS = 3 * CHANCE_LOSS  # a smoothed loss above this means training has diverged
GOOD_LOSS = 1.5 * CHANCE_LOSS  # weights are kept as "last good" only while the smoothed loss is below this


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the same config and seed give the same run."""

    hidden: tuple[int, ...] = (256, 128)  # hidden layer sizes
    activation: str = "relu"  # relu | leaky_relu | tanh | sigmoid
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3  # peak learning rate
    schedule: str = "constant"  # constant | cosine | onecycle
    batch_size: int = 128
    epochs: int = 10
    weight_decay: float = 0.0  # L2 on weight matrices
    dropout: float = 0.0  # on hidden layers
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    augment: bool = False  # random affine + elastic distortions of training digits
    limit: int | None = None  # training samples used (after the validation split); None = all
    val_size: int = 5000  # held out from the 60,000 training digits, never the test set
    seed: int = 0
    stats_every: int = 25  # per-layer statistics every k steps (about 2 ms each); 0 = never
    snapshot_every: int = 20  # weight copy for live reading every k steps; 0 = never
    probe_size: int = 256  # fixed validation digits the statistics are measured on
    threads: int = 0  # matrix-product threads: 0 = chosen by timing; N = fixed (bit-for-bit repeatable)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value is not usable."""
        def bad(name, why):
            raise ValueError(f"{name}: {why}")

        if self.activation not in HIDDEN_ACTIVATIONS:
            bad("activation", f"unknown {self.activation!r}; choose one of {', '.join(HIDDEN_ACTIVATIONS)}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"unknown {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"unknown {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if any(h < 1 or h > 16384 for h in self.hidden):
            bad("hidden", f"layer sizes must be between 1 and 16384, got {self.hidden}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", f"must be a positive number, got {self.lr}")
        if not 1 <= self.batch_size <= 65536:
            bad("batch_size", f"must be between 1 and 65536, got {self.batch_size}")
        if not 1 <= self.epochs <= 10000:
            bad("epochs", f"must be between 1 and 10000, got {self.epochs}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", f"must be 0 or positive, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", f"must be at least 0 and below 1, got {self.dropout}")
        if not 0.0 <= self.momentum < 1.0:
            bad("momentum", f"must be at least 0 and below 1, got {self.momentum}")
        if self.limit is not None and self.limit < 1:
            bad("limit", f"must be at least 1, got {self.limit}")
        if not 0 <= self.val_size < 60000:
            bad("val_size", f"must be between 0 and 59999, got {self.val_size}")
        if self.stats_every < 0 or self.snapshot_every < 0:
            bad("stats_every", "must be 0 or positive")
        if not 0 <= self.threads <= 256:
            bad("threads", f"must be between 0 (automatic) and 256, got {self.threads}")
        if not 1 <= self.probe_size <= 10000:
            bad("probe_size", f"must be between 1 and 10000, got {self.probe_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a training setting")
        return cls(**d)

    def model_config(self) -> MLPConfig:
        return MLPConfig(hidden=self.hidden, activation=self.activation)


PRESETS: dict[str, TrainConfig] = {
    # a few seconds, about 98.4% on the test set (98.0% with epochs=3)
    "quick": TrainConfig(hidden=(512, 128), lr=5e-3, schedule="onecycle", batch_size=512, epochs=6),
    # a minute or so, >= 98.3%
    "standard": TrainConfig(hidden=(512, 256), lr=1e-3, schedule="cosine", batch_size=128, epochs=20,
                            dropout=0.1),
    # minutes: wide, distorted training digits, dropout; the shipped model
    "best": TrainConfig(hidden=(1024, 1024), lr=1.5e-3, schedule="onecycle", batch_size=256, epochs=40,
                        dropout=0.2, augment=True),
}
PRESET_NOTES = {
    "quick": "a few seconds; about 98.4% on the test set",
    "standard": "about a minute; a wider network with dropout",
    "best": "takes many minutes: a wide network on distorted digits (the shipped model)",
}


@dataclass(frozen=True)
class LayerStats:
    """One weight layer's health at one step (activations over the probe batch, gradients of the batch)."""

    act_mean: float
    act_std: float
    act_hist: np.ndarray  # counts over ACT_EDGES[activation] (LOGIT_EDGES for the output layer)
    dead_fraction: float  # ReLU: units that output 0 for every probe digit; sigmoid/tanh: saturated
    grad_norm: float  # L2 norm of dL/dW
    bias_grad_norm: float
    grad_hist: np.ndarray  # counts of log10|dL/dW| over GRAD_LOG_EDGES
    update_ratio: float  # ||delta W|| / ||W|| of this step's update


@dataclass(frozen=True)
class StepRecord:
    """What one training step did; ``layers`` and ``weights`` only every k steps."""

    step: int  # steps done so far, from 1
    total_steps: int
    epoch: int  # epoch in progress, from 0
    epoch_progress: float  # 0..1 within the epoch
    loss: float
    accuracy: float  # on this batch
    lr: float
    samples_per_second: float
    elapsed: float  # seconds since training started
    layers: tuple | None = None  # tuple[LayerStats, ...], one per weight layer
    weights: tuple | None = None  # copies of (weights, biases) lists for live reading
    message: str | None = None  # set when the run stopped by itself
    blas_threads: int = 1  # matrix-product threads in use (chosen by timing the steps)


@dataclass(frozen=True)
class EpochRecord:
    """End of an epoch: train (running, over the epoch's batches) and validation figures."""

    epoch: int  # epochs done, from 1
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float  # training time so far
    best: bool  # this epoch's weights are the best so far on validation


@dataclass
class TrainResult:
    """How a run ended and the model it produced (the best on validation)."""

    model: MLP
    config: TrainConfig
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    steps: int = 0
    epochs_done: int = 0
    seconds: float = 0.0
    stopped: bool = False  # stopped by the user before the last epoch
    diverged: bool = False
    message: str = ""
    history: list = field(default_factory=list)  # EpochRecords


LIVE_POINTS = 80  # statistics points a short run should still give the live panes


def live_config(config: TrainConfig, n_total: int) -> TrainConfig:
    """``config`` with layer statistics often enough that a short run still draws about
    ``LIVE_POINTS`` of them, never more often than every 5 steps (each costs a probe pass)."""
    if not config.stats_every:
        return config
    n_train = n_total - config.val_size
    if config.limit is not None:
        n_train = min(n_train, config.limit)
    steps = math.ceil(max(n_train, 1) / config.batch_size) * config.epochs
    every = min(config.stats_every, max(5, steps // LIVE_POINTS))
    return replace(config, stats_every=every)


def evaluate(model: MLP, images: np.ndarray, labels: np.ndarray, batch: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 or float images, in batches."""
    n = len(labels)
    if n == 0:
        return float("nan"), float("nan")
    loss = 0.0
    correct = 0
    for s in range(0, n, batch):
        logits = model.logits(images[s:s + batch])  # (b, 10)
        y = np.asarray(labels[s:s + batch], dtype=np.intp)
        logp = log_softmax(logits)
        loss += float(-logp[np.arange(len(y)), y].sum())
        correct += int((logits.argmax(1) == y).sum())
    return loss / n, correct / n


def _streams(seed: int) -> list[np.random.Generator]:
    """The run's independent random streams: split, init, shuffle, dropout, augmentation."""
    return np.random.default_rng(seed).spawn(5)


def split_indices(n_total: int, config: TrainConfig, rng: np.random.Generator | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the training set into (train, validation) indices, as the Trainer makes it."""
    if rng is None:
        rng = _streams(config.seed)[0]
    perm = rng.permutation(n_total)
    val = np.sort(perm[: config.val_size])
    train = perm[config.val_size:]
    if config.limit is not None:
        train = train[: config.limit]
    return np.sort(train), val


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts over fixed ``edges``, values outside folded into the end bins."""
    lo, hi = edges[0], edges[-1]
    n = len(edges) - 1
    idx = ((np.clip(values, lo, hi) - lo) * (n / (hi - lo))).astype(np.intp)
    np.minimum(idx, n - 1, out=idx)
    return np.bincount(idx.ravel(), minlength=n).astype(np.int32)


def _dead_fraction(activation: str, out: np.ndarray) -> float:
    """Fraction of units dead (ReLU kinds) or saturated (sigmoid, tanh) on every probe digit."""
    if activation in ("relu", "leaky_relu"):
        dead = (out <= 0).all(axis=0)
    elif activation == "sigmoid":
        dead = ((out < SATURATION) | (out > 1 - SATURATION)).all(axis=0)
    else:
        dead = (np.abs(out) > 1 - SATURATION).all(axis=0)
    return float(dead.mean())


def gradient_stats(grad_w, grad_b) -> list[tuple[float, float, np.ndarray]]:
    """Per layer: (norm of dL/dW, norm of dL/db, histogram of log10|dL/dW|), read before the update."""
    out = []
    for g, gb in zip(grad_w, grad_b):
        sample = g.ravel()[:: max(1, g.size // 65536)]  # at most ~64k values per histogram
        with np.errstate(divide="ignore"):
            logg = np.log10(np.abs(sample))
        logg[~np.isfinite(logg)] = GRAD_LOG_EDGES[0]
        out.append((float(np.linalg.norm(g)), float(np.linalg.norm(gb)), _hist(logg, GRAD_LOG_EDGES)))
    return out


def layer_stats(model: MLP, probe: np.ndarray, grads, updates=None) -> tuple:
    """Per-layer statistics: activations on ``probe``, gradients from ``gradient_stats``.

    ``updates[i]`` is the change this step made to ``weights[i]`` (the optimiser's own
    buffer, so nothing is copied), for the update-to-weight ratio.
    """
    trace = model.trace(probe)
    act = model.config.activation
    stats = []
    for i in range(model.n_layers):
        hidden = i < model.n_layers - 1
        out = trace.activations[i] if hidden else trace.logits  # (P, n_i)
        grad_norm, bias_grad_norm, grad_hist = grads[i]
        w_norm = float(np.linalg.norm(model.weights[i]))
        if updates is not None and w_norm > 0:
            ratio = float(np.linalg.norm(updates[i])) / w_norm
        else:
            ratio = float("nan")
        stats.append(LayerStats(
            act_mean=float(out.mean()),
            act_std=float(out.std()),
            act_hist=_hist(out, ACT_EDGES[act] if hidden else LOGIT_EDGES),
            dead_fraction=_dead_fraction(act, out) if hidden else 0.0,
            grad_norm=grad_norm,
            bias_grad_norm=bias_grad_norm,
            grad_hist=grad_hist,
            update_ratio=ratio,
        ))
    return tuple(stats)


class Trainer:
    """Iterate to train: yields ``StepRecord`` every step and ``EpochRecord`` every epoch.

    Parameters
    ----------
    config : TrainConfig
    mnist : MNIST-like
        ``train_images`` (N, 28, 28) uint8 and ``train_labels`` (N,); the test set is not used.
    """

    def __init__(self, config: TrainConfig, mnist, initial: MLP | None = None):
        config.validate()
        self.config = config
        self._rng_split, self._rng_init, self._rng_shuffle, self._rng_dropout, self._rng_augment = _streams(
            config.seed)
        images = np.asarray(mnist.train_images).reshape(len(mnist.train_images), -1)  # (N, 784) uint8
        labels = np.asarray(mnist.train_labels, dtype=np.intp)
        train_idx, val_idx = split_indices(len(labels), config, self._rng_split)
        if len(train_idx) == 0:
            raise ValueError("limit: no training digits left after the validation split")
        self.train_images = images[train_idx]  # (n_train, 784) uint8
        self.train_labels = labels[train_idx]
        self.val_images = images[val_idx]  # (n_val, 784) uint8
        self.val_labels = labels[val_idx]
        probe_src = self.val_images if len(val_idx) else self.train_images
        self.probe = as_batch(probe_src[: config.probe_size], 784)  # (P, 784) float32
        self.model = initial.copy() if initial is not None else MLP(config.model_config(), self._rng_init)
        self.steps_per_epoch = math.ceil(len(self.train_labels) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.result: TrainResult | None = None
        self._stop = False

    def stop(self) -> None:
        """Ask the run to end at the next step boundary (thread-safe: a flag)."""
        self._stop = True

    @property
    def stopping(self) -> bool:
        return self._stop

    def __iter__(self) -> Iterator:
        return self.run()

    def _batches(self, epoch_perm: np.ndarray):
        """(x (b, 784) float32, y (b,)) for one epoch; distorted when ``augment`` is on."""
        cfg = self.config
        bs = cfg.batch_size
        if cfg.augment:
            from digitpad.core.augment import distort

            rng = self._rng_augment
            for s in range(0, len(epoch_perm), bs):
                idx = epoch_perm[s:s + bs]
                x = distort(self.train_images[idx].reshape(-1, 28, 28), rng)  # (b, 28, 28)
                yield x.reshape(len(idx), -1), self.train_labels[idx]
            return
        ubuf = np.empty((bs, 784), np.uint8)
        xbuf = np.empty((bs, 784), np.float32)
        scale = np.float32(1 / 255)
        for s in range(0, len(epoch_perm), bs):
            idx = epoch_perm[s:s + bs]
            n = len(idx)
            np.take(self.train_images, idx, axis=0, out=ubuf[:n])
            np.multiply(ubuf[:n], scale, out=xbuf[:n])
            yield xbuf[:n], self.train_labels[idx]

    def run(self):
        threads = BlasThreads(fixed=self.config.threads)
        try:
            return (yield from self._run(threads))
        finally:
            threads.restore()

    def _run(self, threads: BlasThreads):
        cfg = self.config
        model = self.model
        params = list(model.pack_parameters())  # [all weights, all biases] as two flat vectors
        ws_full = Workspace.for_model(model, cfg.batch_size, dropout=cfg.dropout > 0)
        grads = [ws_full.grad_flat_w, ws_full.grad_flat_b]
        opt = make_optimizer(cfg.optimizer, params, cfg.weight_decay, cfg.momentum, cfg.nesterov,
                             decay=[True, False])
        result = TrainResult(model=model.copy(), config=cfg)
        self.result = result
        best_key = None
        good = [p.copy() for p in params]  # last weights known to be finite (flat copies)
        offsets = np.cumsum([0] + [w.size for w in model.weights])
        updates = [opt.last_update[0][a:b] for a, b in zip(offsets[:-1], offsets[1:])]  # per-layer views
        step = 0
        t0 = time.perf_counter()
        n_train = len(self.train_labels)
        message = None
        loss_ema = 0.0
        for epoch in range(cfg.epochs):
            perm = self._rng_shuffle.permutation(n_train)
            batches = self._batches(perm)
            if cfg.augment:
                from digitpad.core.augment import Prefetcher

                batches = Prefetcher(batches, depth=3)
            loss_sum = 0.0
            correct = 0
            seen = 0
            try:
                for k, (x, y) in enumerate(batches):
                    if self._stop:
                        break
                    n = len(y)
                    ws = ws_full.view(n)
                    lr = learning_rate(cfg.schedule, cfg.lr, step, self.total_steps)
                    threads.start_step()
                    with np.errstate(over="ignore", invalid="ignore"):  # divergence is handled below
                        probs = model.forward_train(x, ws, cfg.dropout, self._rng_dropout)  # (n, 10)
                        p_true = probs[ws.rows[:n], y]
                        loss = float(-np.log(np.maximum(p_true, 1e-30)).mean())
                    batch_correct = int((probs.argmax(1) == y).sum())
                    if not math.isfinite(loss):
                        threads.end_step()
                        message = self._diverged_message("loss", step + 1, lr)
                        break
                    # Adam's steps are bounded by lr, so a huge lr gives huge but finite weights
                    # whose loss sits far above guessing; that is divergence too
                    loss_ema = loss if step == 0 else 0.9 * loss_ema + 0.1 * loss
                    if step >= 20 and loss_ema > EXPLODED_LOSS:
                        threads.end_step()
                        message = self._exploded_message(loss_ema, step + 1)
                        break
                    with np.errstate(over="ignore", invalid="ignore"):
                        model.backward(x, y, ws, cfg.dropout)
                    want_stats = cfg.stats_every and (step % cfg.stats_every == 0)
                    # gradient statistics before the update: weight decay is added to the gradients in place
                    grad_layers = None
                    if want_stats:
                        with np.errstate(over="ignore", invalid="ignore"):  # a diverging step may overflow
                            grad_layers = gradient_stats(ws.grad_w, ws.grad_b)
                    if want_stats and loss_ema <= GOOD_LOSS:
                        # these weights just gave a sane loss: the ones to come back to if training blows up
                        for g, p in zip(good, params):
                            np.copyto(g, p)
                    with np.errstate(over="ignore", invalid="ignore"):
                        opt.update(params, grads, lr)
                    threads.end_step()
                    step += 1
                    loss_sum += loss * n
                    correct += batch_correct
                    seen += n
                    layers = None
                    if want_stats:
                        if not model.is_finite():
                            message = self._diverged_message("weights", step, lr)
                            break
                        with np.errstate(over="ignore", invalid="ignore"):
                            layers = layer_stats(model, self.probe, grad_layers, updates)
                    snap = None
                    if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                        snap = ([w.copy() for w in model.weights], [b.copy() for b in model.biases])
                    elapsed = time.perf_counter() - t0
                    yield StepRecord(
                        step=step, total_steps=self.total_steps, epoch=epoch,
                        epoch_progress=(k + 1) / self.steps_per_epoch, loss=loss,
                        accuracy=batch_correct / n, lr=lr,
                        samples_per_second=(epoch * n_train + seen) / max(elapsed, 1e-9),
                        elapsed=elapsed, layers=layers, weights=snap, blas_threads=threads.current,
                    )
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
            if message is None and not model.is_finite():
                message = self._diverged_message("weights", step, lr)
            if message is not None:
                break
            if self._stop and seen < n_train:
                break
            # end of a full epoch: validation decides the best weights
            val_loss, val_acc = evaluate(model, self.val_images, self.val_labels)
            key = (val_acc, -val_loss) if len(self.val_labels) else (epoch, 0)
            is_best = best_key is None or key > best_key
            if is_best:
                best_key = key
                result.model = model.copy()
                result.best_epoch = epoch + 1
                result.best_val_accuracy = val_acc
            if val_loss <= GOOD_LOSS or (not len(self.val_labels) and loss_ema <= GOOD_LOSS):
                for g, p in zip(good, params):
                    np.copyto(g, p)
            record = EpochRecord(
                epoch=epoch + 1, step=step, train_loss=loss_sum / max(seen, 1),
                train_accuracy=correct / max(seen, 1), val_loss=val_loss, val_accuracy=val_acc,
                seconds=time.perf_counter() - t0, best=is_best,
            )
            result.history.append(record)
            result.epochs_done = epoch + 1
            yield record
            if self._stop:
                break
        if message is not None:
            # diverged: bring back the last finite weights
            for g, p in zip(good, params):
                np.copyto(p, g)  # the model's weights are views of params
            result.diverged = True
            result.message = message
            # the restored weights may beat the best epoch so far (when that epoch was already exploding)
            self._keep_if_better(model, result, best_key)
            yield StepRecord(
                step=step, total_steps=self.total_steps, epoch=result.epochs_done,
                epoch_progress=0.0, loss=float("nan"), accuracy=float("nan"), lr=lr,
                samples_per_second=0.0, elapsed=time.perf_counter() - t0, message=message,
            )
        elif best_key is None or (self._stop and result.epochs_done < cfg.epochs):
            # stopped before an epoch ended (or between epochs): the current weights may be the best
            self._keep_if_better(model, result, best_key)
        result.stopped = self._stop and message is None and result.epochs_done < cfg.epochs
        result.steps = step
        result.seconds = time.perf_counter() - t0
        if result.stopped and not result.message:
            result.message = f"stopped by request after {step} steps"
        return result

    def _keep_if_better(self, model: MLP, result: TrainResult, best_key) -> None:
        """Make the current weights the run's result if validation ranks them above the best epoch's."""
        if len(self.val_labels):
            val_loss, val_acc = evaluate(model, self.val_images, self.val_labels)
            if best_key is None or (val_acc, -val_loss) > best_key:
                result.model = model.copy()
                result.best_val_accuracy = val_acc
        elif best_key is None:
            result.model = model.copy()

    def _exploded_message(self, loss: float, step: int) -> str:
        lr0 = self.config.lr
        return (
            f"loss exploded to {loss:.1f} at step {step} (guessing scores {CHANCE_LOSS:.2f}); the learning "
            f"rate {lr0:g} is probably too high (try {lr0 / 10:g}). The last good weights were restored."
        )

    def _diverged_message(self, what: str, step: int, lr: float) -> str:
        lr0 = self.config.lr
        return (
            f"{what} became NaN or infinite at step {step}; the learning rate {lr0:g} is probably "
            f"too high (try {lr0 / 10:g}). The last good weights were restored."
        )


def train(config: TrainConfig, mnist, initial: MLP | None = None) -> TrainResult:
    """Run ``config`` to the end without looking at the records; return the result."""
    trainer = Trainer(config, mnist, initial)
    for _ in trainer:
        pass
    return trainer.result


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` with the given fields changed (None values ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})

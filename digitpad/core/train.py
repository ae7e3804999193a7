"""Training: a generator of frozen step records, with pause and stop at step boundaries.

``Trainer(config, mnist)`` is iterated by whoever drives it (the CLI's progress bar, the
app's worker thread): every step yields a ``StepRecord`` (loss, batch accuracy, learning
rate; every ``stats_every`` steps also per-layer activation and gradient statistics over
a fixed probe batch, see ``core.stats``; every ``snapshot_every`` steps a copy of the
weights), and every epoch an ``EpochRecord`` (train and validation loss and accuracy). Not
asking for the next record pauses training; ``stop()`` ends it at the next step boundary.
``set_lr`` / ``set_momentum`` change a setting while it trains (from any thread): the new
value applies from the next step, and that step's record says what changed (``change``).
The arrays in a record are copies, so the trainer can keep reusing its buffers. When
iteration ends, ``trainer.result`` holds the best-validation model.

The loop is three methods: ``_step`` (one batch), ``_end_epoch`` (validation, best epoch)
and ``_finish`` (which weights the run hands back). A non-finite or exploded loss, or
non-finite weights, raise ``Diverged`` from the first two; ``_finish`` then brings back the
last good weights and the final record's ``message`` says what happened and what to try.

This module also owns the settings-side helpers every front end shares: ``parse_hidden``
(layer sizes from text) and ``run_size`` (training digits and step counts of a config).
"""

from __future__ import annotations

import math
import re
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Iterator

import numpy as np

from digitpad.core import kernels
from digitpad.core.functional import HIDDEN_ACTIVATIONS, cross_entropy
from digitpad.core.mlp import MAX_PARAMS, MLP, MLPConfig, Workspace, as_batch
from digitpad.core.optim import OPTIMIZERS, SCHEDULES, learning_rate, make_optimizer
from digitpad.core.stats import (  # noqa: F401  (edges re-exported for the live panes)
    ACT_EDGES,
    GRAD_LOG_EDGES,
    LOGIT_EDGES,
    LayerStats,
    gradient_stats,
    layer_stats,
)
from digitpad.core.threads import BlasThreads

MNIST_TRAIN_SIZE = 60000  # digits in MNIST's training file (validation digits are taken from these)
CHANCE_LOSS = math.log(10)  # cross-entropy of a network that spreads its bets evenly
EXPLODED_LOSS = 3 * CHANCE_LOSS  # a smoothed loss above this means training has diverged
GOOD_LOSS = 1.5 * CHANCE_LOSS  # weights are kept as "last good" only while the smoothed loss is below this
MAX_SEED = 2**63 - 1


class Diverged(Exception):
    """Training blew up (NaN, infinite or exploded loss or weights); the text says what to try."""


def parse_hidden(text: str) -> tuple[int, ...]:
    """Hidden layer sizes from text: ``"256,128"``, ``"256, 128"`` or ``"4 x 4"``; ``"none"`` for no hidden layer.

    Raises ``ValueError`` saying what is wrong; the sizes' range is checked by ``TrainConfig``.
    """
    text = text.strip()
    if text.lower() == "none":
        return ()
    if not text:
        raise ValueError("give layer sizes like 256, 128 (or none for no hidden layer)")
    parts = re.split(r"\s*[,x×]\s*|\s+", text)
    for p in parts:
        if not (p.isascii() and p.isdigit()):
            what = f"{p!r} is not a whole number" if p else "a size is missing"
            raise ValueError(f"{what} in {text!r}; write sizes like 256, 128")
    return tuple(int(p) for p in parts)


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
        n_params = self.model_config().n_params
        if n_params > MAX_PARAMS:
            bad("hidden", f"{', '.join(map(str, self.hidden))} gives a network of {n_params:,} parameters, "
                          f"more than a digitpad model may have ({MAX_PARAMS:,})")
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
        if not 0 <= self.val_size < MNIST_TRAIN_SIZE:
            bad("val_size", f"must be between 0 and {MNIST_TRAIN_SIZE - 1}, got {self.val_size}")
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed <= MAX_SEED):
            bad("seed", f"must be a whole number from 0 to {MAX_SEED}, got {self.seed}")
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
    # about two seconds, about 98% on the test set (large batches: fewer steps, each nearer the
    # matrix-product rate; the one-cycle schedule lets the high rate they need settle by the end)
    "quick": TrainConfig(hidden=(256, 128), lr=8e-3, schedule="onecycle", batch_size=512, epochs=5),
    # a minute or so, >= 98.3%
    "standard": TrainConfig(hidden=(512, 256), lr=1e-3, schedule="cosine", batch_size=128, epochs=20,
                            dropout=0.1),
    # minutes: wide, distorted training digits, dropout; the shipped model
    "best": TrainConfig(hidden=(1024, 1024), lr=1.5e-3, schedule="onecycle", batch_size=256, epochs=40,
                        dropout=0.2, augment=True),
}
PRESET_NOTES = {
    "quick": "about two seconds; about 98% on the test set",
    "standard": "about a minute; a wider network with dropout",
    "best": "takes many minutes: a wide network on distorted digits (the shipped model)",
}


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
    change: str | None = None  # a setting changed during the run that this step is the first to use


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
    best_epoch: int = 0  # the epoch whose end gave ``model``; 0 when it comes from within an epoch
    best_step: int = 0  # steps done when ``model``'s weights were taken
    best_val_accuracy: float = float("nan")
    steps: int = 0
    epochs_done: int = 0
    seconds: float = 0.0
    stopped: bool = False  # stopped by the user before the last epoch
    diverged: bool = False
    message: str = ""
    history: list = field(default_factory=list)  # EpochRecords


@dataclass(frozen=True)
class RunSize:
    """How much work a config is on a training set of a given size."""

    n_train: int  # digits trained on per epoch
    n_val: int  # digits held out for validation
    steps_per_epoch: int
    total_steps: int


def run_size(config: TrainConfig, n_total: int = MNIST_TRAIN_SIZE) -> RunSize:
    """Training digits and step counts of ``config`` on a training set of ``n_total`` digits,
    as the Trainer splits it (validation first, then ``limit``)."""
    n_val = min(config.val_size, n_total)
    n_train = n_total - n_val
    if config.limit is not None:
        n_train = min(n_train, config.limit)
    per_epoch = math.ceil(n_train / config.batch_size)
    return RunSize(n_train=n_train, n_val=n_val, steps_per_epoch=per_epoch, total_steps=per_epoch * config.epochs)


LIVE_POINTS = 80  # statistics points a short run should still give the live panes


def live_config(config: TrainConfig, n_total: int) -> TrainConfig:
    """``config`` with layer statistics often enough that a short run still draws about
    ``LIVE_POINTS`` of them, never more often than every 5 steps (each costs a probe pass)."""
    if not config.stats_every:
        return config
    steps = run_size(config, n_total).total_steps
    every = min(config.stats_every, max(5, steps // LIVE_POINTS))
    return replace(config, stats_every=every)


def evaluate(model: MLP, images: np.ndarray, labels: np.ndarray, batch: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 or float images, in batches (NaN, NaN for none)."""
    n = len(labels)
    if n == 0:
        return float("nan"), float("nan")
    loss = 0.0
    correct = 0
    for s in range(0, n, batch):
        logits = model.logits(images[s:s + batch])  # (b, 10)
        y = np.asarray(labels[s:s + batch], dtype=np.intp)
        loss += cross_entropy(logits, y, reduction="sum")
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


@dataclass
class _Tally:
    """Running train loss and accuracy over the batches of one epoch."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    def add(self, loss: float, correct: int, n: int) -> None:
        self.loss_sum += loss * n
        self.correct += correct
        self.seen += n


class Trainer:
    """Iterate to train: yields ``StepRecord`` every step and ``EpochRecord`` every epoch.

    Parameters
    ----------
    config : TrainConfig
    mnist : MNIST-like
        ``train_images`` (N, 28, 28) uint8 and ``train_labels`` (N,); the test set is not used.
    initial : MLP, optional
        Start from these weights (a copy; the given model is never changed) instead of a
        fresh initialisation. Its shape must match ``config``.
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
            raise ValueError(f"val_size: holding out {config.val_size} digits for validation leaves none of "
                             f"the {len(labels)} training digits to train on")
        if initial is not None and initial.config != config.model_config():
            wanted = config.model_config()
            raise ValueError(f"hidden: the starting network is {initial.describe()}, the settings ask for "
                             f"{'-'.join(map(str, wanted.layer_sizes))} {wanted.activation}")
        self.train_images = images[train_idx]  # (n_train, 784) uint8
        self.train_labels = labels[train_idx]
        self.val_images = images[val_idx]  # (n_val, 784) uint8
        self.val_labels = labels[val_idx]
        probe_src, probe_labels = (self.val_images, self.val_labels) if len(val_idx) else (
            self.train_images, self.train_labels)
        self.probe = as_batch(probe_src[: config.probe_size], 784)  # (P, 784) float32
        self.probe_labels = probe_labels[: config.probe_size]  # (P,)
        self.model = initial.copy() if initial is not None else MLP(config.model_config(), self._rng_init)
        size = run_size(config, len(labels))
        self.steps_per_epoch = size.steps_per_epoch
        self.total_steps = size.total_steps
        self.result: TrainResult | None = None
        self._stop = False
        self._lr_fixed: float | None = None  # set during the run: replaces the schedule from then on
        self._pending: dict = {}  # settings changed during the run, applied at the next step
        self._pending_lock = threading.Lock()

    def stop(self) -> None:
        """Ask the run to end at the next step boundary (thread-safe: a flag)."""
        self._stop = True

    def set_lr(self, lr: float) -> None:
        """Train with learning rate ``lr`` from the next step on, in place of the schedule (thread-safe)."""
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: must be a positive number, got {lr}")
        with self._pending_lock:
            self._pending["lr"] = lr

    def set_momentum(self, momentum: float) -> None:
        """SGD's momentum from the next step on (thread-safe); Adam has none to change."""
        momentum = float(momentum)
        if self.config.optimizer != "sgd":
            raise ValueError(f"momentum: only SGD has a momentum to change, this run uses {self.config.optimizer}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: must be at least 0 and below 1, got {momentum}")
        with self._pending_lock:
            self._pending["momentum"] = momentum

    def _apply_pending(self) -> str | None:
        """Settings changed since the last step take effect now; a line saying what changed, or None."""
        if not self._pending:
            return None
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        said = []
        if "lr" in pending:
            was = self._lr_fixed if self._lr_fixed is not None else learning_rate(
                self.config.schedule, self.config.lr, self._steps, self.total_steps)
            said.append(f"learning rate {was:.3g} → {pending['lr']:.3g}")
            self._lr_fixed = pending["lr"]
        if "momentum" in pending:
            said.append(f"momentum {self._opt.momentum:.3g} → {pending['momentum']:.3g}")
            self._opt.momentum = pending["momentum"]
        return ", ".join(said)

    @property
    def stopping(self) -> bool:
        return self._stop

    def __iter__(self) -> Iterator:
        return self.run()

    def _batches(self, epoch_perm: np.ndarray):
        """(x (b, 784) float32, y (b,)) for one epoch; distorted in a background thread when ``augment`` is on."""
        cfg = self.config
        bs = cfg.batch_size
        if cfg.augment:
            from digitpad.core.augment import Prefetcher, augmented_batches

            chunks = (epoch_perm[s:s + bs] for s in range(0, len(epoch_perm), bs))
            images = self.train_images.reshape(-1, 28, 28)  # (n_train, 28, 28)
            return Prefetcher(augmented_batches(images, self.train_labels, chunks, self._rng_augment), depth=3)
        return self._plain_batches(epoch_perm)

    def _plain_batches(self, epoch_perm: np.ndarray):
        """The epoch's batches scaled to [0, 1] in one buffer reused for every batch."""
        bs = self.config.batch_size
        xbuf = np.empty((bs, 784), np.float32)
        for s in range(0, len(epoch_perm), bs):
            idx = epoch_perm[s:s + bs]
            n = len(idx)
            kernels.gather_scaled(self.train_images, idx, xbuf[:n])  # (n, 784), the rows / 255
            yield xbuf[:n], self.train_labels[idx]

    def run(self):
        threads = BlasThreads(fixed=self.config.threads)
        try:
            return (yield from self._run(threads))
        finally:
            threads.restore()

    def _run(self, threads: BlasThreads):
        """The loop: epochs of steps, then the finish; stops at step boundaries."""
        self._start(threads)
        n_train = len(self.train_labels)
        diverged = None
        try:
            for epoch in range(self.config.epochs):
                tally = _Tally()
                with closing(self._batches(self._rng_shuffle.permutation(n_train))) as batches:
                    for k, (x, y) in enumerate(batches):
                        if self._stop:
                            break
                        yield self._step(x, y, epoch, k, tally)
                if not self.model.is_finite():
                    raise Diverged(self._diverged_message("weights", self._steps))
                if self._stop and tally.seen < n_train:
                    break  # stopped within the epoch: no validation of a partial epoch
                yield self._end_epoch(epoch, tally)
                if self._stop:
                    break
        except Diverged as e:
            diverged = e
        last = self._finish(diverged)
        if last is not None:
            yield last
        return self.result

    def _start(self, threads: BlasThreads) -> None:
        """Buffers, optimiser and bookkeeping of one run, allocated once."""
        cfg = self.config
        model = self.model
        self._threads = threads
        self._params = list(model.pack_parameters())  # [all weights, all biases] as two flat vectors
        self._ws = Workspace.for_model(model, cfg.batch_size, dropout=cfg.dropout > 0)
        self._probe_ws = Workspace.for_model(model, len(self.probe)) if cfg.stats_every else None
        self._grads = [self._ws.grad_flat_w, self._ws.grad_flat_b]
        self._opt = make_optimizer(cfg.optimizer, self._params, cfg.weight_decay, cfg.momentum, cfg.nesterov,
                                   decay=[True, False])
        offsets = np.cumsum([0] + [w.size for w in model.weights])
        self._updates = [self._opt.last_update[0][a:b] for a, b in zip(offsets[:-1], offsets[1:])]  # per layer
        self._good = [p.copy() for p in self._params]  # last weights whose loss was measured sane
        self._good_step = 0
        self._best_key = None  # (val accuracy, -val loss) of the best epoch so far
        self._steps = 0
        self._lr = cfg.lr
        self._loss_ema = 0.0
        kernels.prepare()  # compiled once per process (or loaded from the cache), before the clock starts
        self._t0 = time.perf_counter()
        self.result = TrainResult(model=model.copy(), config=cfg)

    def _step(self, x: np.ndarray, y: np.ndarray, epoch: int, k: int, tally: _Tally) -> StepRecord:
        """One batch: forward, loss, backward, update; raises ``Diverged`` when training blew up."""
        cfg = self.config
        model = self.model
        n = len(y)
        ws = self._ws.view(n)
        change = self._apply_pending()
        lr = self._lr = (self._lr_fixed if self._lr_fixed is not None
                         else learning_rate(cfg.schedule, cfg.lr, self._steps, self.total_steps))
        want_stats = cfg.stats_every and self._steps % cfg.stats_every == 0
        # divergence is read from the values (loss, finite weights), so overflow warnings are noise
        with np.errstate(over="ignore", invalid="ignore"):
            self._threads.start_step()
            try:
                model.forward_train(x, ws, cfg.dropout, self._rng_dropout)
                loss, batch_correct = model.loss_step(y, ws)  # the logits become dL/dlogits
                self._check_loss(loss)
                model.backward(x, ws, cfg.dropout)
                # gradient statistics before the update: weight decay is added to the gradients in place
                grad_layers = gradient_stats(ws.grad_w, ws.grad_b) if want_stats else None
                if want_stats and self._loss_ema <= GOOD_LOSS:
                    self._remember_good()  # these weights just gave a sane loss
                self._opt.update(self._params, self._grads, lr)
            finally:
                self._threads.end_step()
            self._steps += 1
            tally.add(loss, batch_correct, n)
            layers = None
            if want_stats:
                if not model.is_finite():
                    raise Diverged(self._diverged_message("weights", self._steps))
                layers = layer_stats(model, self.probe, grad_layers, self._updates, self._probe_ws)
        snap = None
        if cfg.snapshot_every and self._steps % cfg.snapshot_every == 0:
            snap = ([w.copy() for w in model.weights], [b.copy() for b in model.biases])
        elapsed = time.perf_counter() - self._t0
        return StepRecord(
            step=self._steps, total_steps=self.total_steps, epoch=epoch,
            epoch_progress=(k + 1) / self.steps_per_epoch, loss=loss, accuracy=batch_correct / n, lr=lr,
            samples_per_second=(epoch * len(self.train_labels) + tally.seen) / max(elapsed, 1e-9),
            elapsed=elapsed, layers=layers, weights=snap, blas_threads=self._threads.current, change=change,
        )

    def _check_loss(self, loss: float) -> None:
        """Raise ``Diverged`` for a non-finite loss, or a smoothed loss far above guessing."""
        step = self._steps + 1
        if not math.isfinite(loss):
            raise Diverged(self._diverged_message("loss", step))
        # Adam's steps are bounded by lr, so a huge lr gives huge but finite weights
        # whose loss sits far above guessing; that is divergence too
        self._loss_ema = loss if self._steps == 0 else 0.9 * self._loss_ema + 0.1 * loss
        if self._steps >= 20 and self._loss_ema > EXPLODED_LOSS:
            raise Diverged(self._exploded_message(f"loss exploded to {self._loss_ema:.3g} at step {step}"))

    def _end_epoch(self, epoch: int, tally: _Tally) -> EpochRecord:
        """Validation after a full epoch: decides the best weights; raises ``Diverged`` if they exploded."""
        model = self.model
        result = self.result
        has_val = len(self.val_labels) > 0
        with np.errstate(over="ignore", invalid="ignore"):
            val_loss, val_acc = evaluate(model, self.val_images, self.val_labels)
            # a run too short for the smoothed loss to notice (a few steps) is caught here
            sane_loss = val_loss if has_val else evaluate(model, self.probe, self.probe_labels)[0]
        if not sane_loss <= EXPLODED_LOSS:  # also NaN
            where = "validation" if has_val else "training"
            raise Diverged(self._exploded_message(f"{where} loss exploded to {sane_loss:.3g} after epoch {epoch + 1}"))
        key = (val_acc, -val_loss) if has_val else (epoch, 0)
        is_best = self._best_key is None or key > self._best_key
        if is_best:
            self._best_key = key
            self._take_result(best_epoch=epoch + 1, val_accuracy=val_acc)
        if val_loss <= GOOD_LOSS or (not has_val and self._loss_ema <= GOOD_LOSS):
            self._remember_good()
        record = EpochRecord(
            epoch=epoch + 1, step=self._steps, train_loss=tally.loss_sum / max(tally.seen, 1),
            train_accuracy=tally.correct / max(tally.seen, 1), val_loss=val_loss, val_accuracy=val_acc,
            seconds=time.perf_counter() - self._t0, best=is_best,
        )
        result.history.append(record)
        result.epochs_done = epoch + 1
        return record

    def _finish(self, diverged: Diverged | None) -> StepRecord | None:
        """Decide the weights the run hands back and fill in ``result``; the final record after a divergence."""
        cfg = self.config
        result = self.result
        record = None
        if diverged is not None:
            for g, p in zip(self._good, self._params):
                np.copyto(p, g)  # the model's weights are views of params
            result.diverged = True
            result.message = str(diverged)
            # the restored weights may beat the best epoch so far (when that epoch was already exploding)
            self._keep_if_better(self._good_step)
        elif self._best_key is None or (self._stop and result.epochs_done < cfg.epochs):
            # stopped before an epoch ended (or between epochs): the current weights may be the best
            self._keep_if_better(self._steps)
        result.stopped = self._stop and diverged is None and result.epochs_done < cfg.epochs
        result.steps = self._steps
        result.seconds = time.perf_counter() - self._t0
        if result.stopped and not result.message:
            result.message = f"stopped by request after {self._steps} steps"
        if diverged is not None:
            record = StepRecord(
                step=self._steps, total_steps=self.total_steps, epoch=result.epochs_done,
                epoch_progress=0.0, loss=float("nan"), accuracy=float("nan"), lr=self._lr,
                samples_per_second=0.0, elapsed=result.seconds, message=result.message,
            )
        return record

    def _remember_good(self) -> None:
        for g, p in zip(self._good, self._params):
            np.copyto(g, p)
        self._good_step = self._steps

    def _take_result(self, best_epoch: int, val_accuracy: float, step: int | None = None) -> None:
        """The current weights become the run's model, taken at the end of ``best_epoch`` (0: within one)."""
        result = self.result
        result.model = self.model.copy()
        result.best_epoch = best_epoch
        result.best_step = self._steps if step is None else step
        result.best_val_accuracy = val_accuracy

    def _keep_if_better(self, step: int) -> None:
        """Make the current weights (taken after ``step`` steps) the run's model if validation ranks
        them above the best epoch's; they are no epoch's end, so ``best_epoch`` becomes 0."""
        if len(self.val_labels):
            val_loss, val_acc = evaluate(self.model, self.val_images, self.val_labels)
            if self._best_key is None or (val_acc, -val_loss) > self._best_key:
                self._take_result(best_epoch=0, val_accuracy=val_acc, step=step)
        elif self._best_key is None:
            self._take_result(best_epoch=0, val_accuracy=float("nan"), step=step)

    def _exploded_message(self, what: str) -> str:
        return self._advice(f"{what} (guessing scores {CHANCE_LOSS:.2f})")

    def _diverged_message(self, what: str, step: int) -> str:
        return self._advice(f"{what} became NaN or infinite at step {step}")

    def _advice(self, what: str) -> str:
        lr0 = self.config.lr
        return (f"{what}; the learning rate {lr0:g} is probably too high (try {lr0 / 10:g}). "
                "The last good weights were restored.")


def train(config: TrainConfig, mnist, initial: MLP | None = None) -> TrainResult:
    """Run ``config`` to the end without looking at the records; return the result."""
    trainer = Trainer(config, mnist, initial)
    for _ in trainer:
        pass
    return trainer.result


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` with the given fields changed (None values ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})

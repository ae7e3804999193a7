"""Fine-tuning on the user's own digits without forgetting MNIST.

Owns the recipe: the user's pictures go through ``preprocess`` into 28x28, are repeated
and distorted (the trainer's affine + elastic augmentation) and mixed with replayed MNIST
training digits, and the current model is trained further on that mix by the ordinary
``Trainer`` with a warm start (``Trainer(config, data, initial=model)``), at a learning
rate low enough that what it knew stays.

``FineTuner`` is driven like the ``Trainer``: iterate it for the trainer's records (then
``FoldRecord``s while the held-out figure is measured), ``stop()`` ends it at the next
step, and ``result`` holds a ``FineTuneResult`` with the figures before and after: on the
MNIST test set, and on the user's digits *held out* (k-fold cross-validation: each fold
is read by a model fine-tuned without it, from the same starting model).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from digitpad.core.mlp import MLP
from digitpad.core.samples import DIGITS, SampleError, scan_folder
from digitpad.core.train import TrainConfig, TrainResult, Trainer, evaluate

__all__ = ["FineTuneConfig", "SampleSet", "FoldRecord", "FineTuneResult", "TooFewSamples", "FineTuner",
           "read_samples", "to_input", "shortfall", "check_samples", "fine_tune"]


@dataclass(frozen=True)
class FineTuneConfig:
    """The fine-tuning recipe (chosen by measuring with benchmarks/finetune.py)."""

    steps: int = 100  # optimiser steps of one fine-tune
    batch_size: int = 64
    lr: float = 5e-5  # peak; cosine decay to 0 (1e-4 forgot 0.2-0.3 points of MNIST)
    replay: float = 0.5  # share of the training mix that is replayed MNIST training digits
    augment: bool = True  # distort the mix as training distorts MNIST
    dropout: float = 0.0  # on hidden layers, as TrainConfig.dropout
    folds: int = 3  # at most this many cross-validation folds for the held-out figure (0: none)
    min_per_digit: int = 2  # fewer samples than this of a digit that has any is too few
    seed: int = 0
    threads: int = 0  # matrix-product threads, as TrainConfig.threads

    def __post_init__(self):
        if not 1 <= self.steps <= 100000:
            raise ValueError(f"steps: must be between 1 and 100000, got {self.steps}")
        if not 0.0 <= self.replay < 1.0:
            raise ValueError(f"replay: must be at least 0 and below 1, got {self.replay}")
        if self.folds < 0 or self.folds == 1:
            raise ValueError(f"folds: must be 0 (no held-out figure) or at least 2, got {self.folds}")
        if self.min_per_digit < 1:
            raise ValueError(f"min_per_digit: must be at least 1, got {self.min_per_digit}")

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self, model: MLP) -> TrainConfig:
        """The ``TrainConfig`` of one fine-tune of ``model``: one pass over a mix of ``steps`` batches."""
        return TrainConfig(
            hidden=model.config.hidden, activation=model.config.activation, optimizer="adam", lr=self.lr,
            schedule="cosine", batch_size=self.batch_size, epochs=1, augment=self.augment, dropout=self.dropout,
            val_size=0,
            seed=self.seed, threads=self.threads, stats_every=5, snapshot_every=10,
        )


class TooFewSamples(SampleError):
    """Too few samples of some digit to learn from; the message says how many more would help."""


@dataclass
class SampleSet:
    """Samples ready for the network: 28x28 inputs, labels, their files, and the files skipped."""

    images: np.ndarray  # (N, 28, 28) uint8, white ink on black
    labels: np.ndarray  # (N,) uint8
    paths: list = field(default_factory=list)  # (N,) where each came from
    skipped: list = field(default_factory=list)  # one line per unreadable file, with the reason

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FoldRecord:
    """One cross-validation fold done: its held-out digits were read by a model fine-tuned without them."""

    fold: int  # from 1
    folds: int
    correct: int
    n: int


@dataclass
class FineTuneResult:
    """The fine-tuned model and the figures before and after (samples ones held out)."""

    model: MLP
    samples: int
    seconds: float = 0.0
    mnist_accuracy_before: float = float("nan")
    mnist_accuracy_after: float = float("nan")
    samples_accuracy_before: float = float("nan")
    samples_accuracy_after: float = float("nan")  # pooled over the cross-validation folds
    folds: int = 0
    stopped: bool = False
    diverged: bool = False
    message: str = ""
    train: TrainResult | None = None

    def to_dict(self) -> dict:
        """The figures as plain JSON-able values (NaN as None)."""
        def number(x):
            return x if math.isfinite(x) else None

        return {
            "samples": self.samples, "seconds": round(self.seconds, 3),
            "mnist_accuracy_before": number(self.mnist_accuracy_before),
            "mnist_accuracy_after": number(self.mnist_accuracy_after),
            "samples_accuracy_before": number(self.samples_accuracy_before),
            "samples_accuracy_after": number(self.samples_accuracy_after),
            "folds": self.folds, "stopped": self.stopped,
        }


# ----------------------------------------------------------------------------- samples in


def to_input(picture) -> np.ndarray | None:
    """A picture as the network's (28, 28) uint8 input, or None when no digit is in it."""
    from digitpad.core.preprocess import preprocess

    pre = preprocess(picture)
    if pre.blank:
        return None
    return np.round(pre.image * 255).astype(np.uint8)  # (28, 28)


def read_samples(folder) -> SampleSet:
    """Read every picture of a ``DIR/<digit>/*`` folder into a ``SampleSet``.

    Unreadable files, blank pictures and entries outside the layout are listed in
    ``skipped`` (one line each, naming the file and the reason) and left out.

    Raises
    ------
    SampleError
        The folder is missing or not a folder.
    """
    from digitpad.imageio import ImageReadError, load_image

    files, skipped = scan_folder(folder)
    images, labels, paths = [], [], []
    for digit, path in files:
        try:
            x = to_input(load_image(path))
        except (ImageReadError, ValueError) as e:
            skipped.append(str(e) if str(path) in str(e) else f"{path}: {e}")
            continue
        if x is None:
            skipped.append(f"{path}: no digit in it (blank)")
            continue
        images.append(x)
        labels.append(digit)
        paths.append(Path(path))
    images = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
    return SampleSet(images, np.asarray(labels, np.uint8), paths, skipped)


def shortfall(labels, min_per_digit: int = 2) -> dict[int, int]:
    """For each digit that has samples but fewer than ``min_per_digit``: how many more would help."""
    counts = np.bincount(np.asarray(labels, np.intp), minlength=10)
    return {d: min_per_digit - int(counts[d]) for d in DIGITS if 0 < counts[d] < min_per_digit}


def check_samples(samples: SampleSet, min_per_digit: int = 2) -> None:
    """Raise ``SampleError`` when there are no samples, ``TooFewSamples`` (saying how many more
    of which digit would help) when a digit has some but fewer than ``min_per_digit``."""
    if len(samples) == 0:
        raise SampleError("no samples to learn from")
    missing = shortfall(samples.labels, min_per_digit)
    if missing:
        parts = [f"{n} more {d}" + ("s" if n > 1 else "") for d, n in missing.items()]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        raise TooFewSamples(f"too few samples: add {listed} (at least {min_per_digit} of each digit you "
                            "teach; digits without any are fine)")


# ----------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class _Mix:
    """What the Trainer reads: the user's digits repeated, then replayed MNIST digits."""

    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8


def _mix(images, labels, mnist, config: FineTuneConfig, rng: np.random.Generator) -> _Mix:
    """``steps * batch_size`` digits: ``1 - replay`` of them the user's (each repeated about as
    often as the others), the rest MNIST training digits drawn without replacement."""
    total = config.steps * config.batch_size
    n_replay = min(int(round(config.replay * total)), len(mnist.train_labels))
    n_user = total - n_replay
    order = np.concatenate([rng.permutation(len(labels)) for _ in range(-(-n_user // len(labels)))])[:n_user]
    replay = rng.choice(len(mnist.train_labels), n_replay, replace=False)
    x = np.concatenate([images[order], np.asarray(mnist.train_images)[replay]])  # (N, 28, 28)
    y = np.concatenate([labels[order], np.asarray(mnist.train_labels)[replay]])  # (N,)
    return _Mix(x, y.astype(np.uint8))


def _folds(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number (0..k-1) of each sample, each digit's samples dealt round the folds in random order."""
    fold = np.empty(len(labels), np.intp)
    start = 0
    for d in DIGITS:
        idx = rng.permutation(np.flatnonzero(labels == d))
        fold[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)  # so digits with one sample each do not all land in fold 0
    return fold


def _accuracy(model: MLP, images: np.ndarray, labels: np.ndarray) -> float:
    return evaluate(model, images, labels)[1] if len(labels) else float("nan")


class FineTuner:
    """Iterate to fine-tune: the trainer's records, then one ``FoldRecord`` per cross-validation fold.

    Parameters
    ----------
    model : MLP
        The current model; it is not changed (the trainer works on a copy).
    samples : SampleSet
        The user's digits (``images`` (N, 28, 28) uint8, ``labels``).
    mnist : MNIST-like
        ``train_images``/``train_labels`` for replay, ``test_images``/``test_labels`` for the
        before/after figure.
    config : FineTuneConfig, optional

    Raises
    ------
    SampleError
        No samples.
    TooFewSamples
        A digit has samples but fewer than ``config.min_per_digit``; says how many more.
    """

    def __init__(self, model: MLP, samples: SampleSet, mnist, config: FineTuneConfig = FineTuneConfig()):
        check_samples(samples, config.min_per_digit)
        self.model = model
        self.samples = samples
        self.mnist = mnist
        self.config = config
        counts = np.bincount(samples.labels, minlength=10)
        self.folds = min(config.folds, int(counts[counts > 0].min())) if config.folds else 0
        self.train_config = config.train_config(model)
        self.trainer: Trainer | None = None
        self.result: FineTuneResult | None = None
        self._stop = False

    def stop(self) -> None:
        """End at the next step boundary (thread-safe: a flag)."""
        self._stop = True
        if self.trainer is not None:
            self.trainer.stop()

    @property
    def stopping(self) -> bool:
        return self._stop

    def __iter__(self):
        return self.run()

    def _trainer(self, images, labels, seed_offset: int) -> Trainer:
        """A Trainer on a fresh mix; the cross-validation ones (``seed_offset`` > 0) take no statistics."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, seed_offset])
        data = _mix(images, labels.astype(np.uint8), self.mnist, cfg, rng)
        train_config = replace(self.train_config, seed=cfg.seed + seed_offset)
        if seed_offset:
            train_config = replace(train_config, stats_every=0, snapshot_every=0)
        trainer = Trainer(train_config, data, initial=self.model)
        self.trainer = trainer
        if self._stop:
            trainer.stop()
        return trainer

    def run(self):
        t0 = time.perf_counter()
        s, mnist = self.samples, self.mnist
        test_x, test_y = np.asarray(mnist.test_images), np.asarray(mnist.test_labels)
        result = FineTuneResult(model=self.model, samples=len(s), folds=self.folds)
        self.result = result
        result.mnist_accuracy_before = _accuracy(self.model, test_x, test_y)
        result.samples_accuracy_before = _accuracy(self.model, s.images, s.labels)

        trainer = self._trainer(s.images, s.labels, 0)
        yield from trainer
        train = trainer.result
        result.train = train
        result.model = train.model
        result.diverged = train.diverged
        result.message = train.message
        result.mnist_accuracy_after = _accuracy(train.model, test_x, test_y)

        if self.folds and not self._stop and not train.diverged:
            fold = _folds(s.labels, self.folds, np.random.default_rng([self.config.seed, 1]))
            correct = n = 0
            for k in range(self.folds):
                held = fold == k
                fold_trainer = self._trainer(s.images[~held], s.labels[~held], k + 1)
                for _ in fold_trainer:
                    pass
                if self._stop:
                    break
                right = int((fold_trainer.result.model.predict(s.images[held]) == s.labels[held]).sum())
                correct += right
                n += int(held.sum())
                yield FoldRecord(k + 1, self.folds, right, int(held.sum()))
            if not self._stop:
                result.samples_accuracy_after = correct / n
        result.stopped = self._stop
        if result.stopped and not result.message:
            result.message = "stopped by request"
        result.seconds = time.perf_counter() - t0
        return result


def fine_tune(model: MLP, samples: SampleSet, mnist, config: FineTuneConfig = FineTuneConfig()) -> FineTuneResult:
    """Run a ``FineTuner`` to the end without looking at the records; return its result."""
    tuner = FineTuner(model, samples, mnist, config)
    for _ in tuner:
        pass
    return tuner.result

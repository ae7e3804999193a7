"""Experiments: the lesson of sigmoid, ReLU and softmax as runs that differ in one thing.

Each experiment is a few *arms*, training runs with the same data, seed and layers that
change one setting. The arms are recorded in the run history like any other run, and
the experiment ends with one sentence that states the finding in the measured numbers.

- ``vanishing``: sigmoid against ReLU, five hidden layers, plain SGD (Adam would rescale
  each layer's step and hide the effect). The finding: how the first layer's gradient
  compares with the output layer's.
- ``dying-relu``: ReLU with a sensible and a too-high Adam learning rate; the finding:
  how many units of each hidden layer end up dead.
- ``vs-sklearn``: digitpad's engine next to scikit-learn's ``MLPClassifier`` with the same
  layers, optimiser, learning rate, batch size and epochs on the same digits: test
  accuracy after each epoch and seconds.

All three use the first ``limit`` of the shuffled training digits (20,000) so each
finishes well within a minute on a 2-core machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from digitpad.core.train import TrainConfig

SUBSET = 20000  # training digits per arm


@dataclass(frozen=True)
class Arm:
    """One run of an experiment: a name and its settings (``engine`` "sklearn" for scikit-learn's)."""

    name: str
    config: TrainConfig
    engine: str = "digitpad"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    question: str  # what the experiment shows, for menus and the CLI's help
    arms: tuple


@dataclass
class ArmResult:
    """What one arm measured."""

    arm: Arm
    test_accuracy: float
    seconds: float
    grad_ratio_first_last: float = float("nan")  # median over the first 200 steps
    dead_fraction: list = field(default_factory=list)  # per hidden layer, at the end
    epoch_accuracy: list = field(default_factory=list)  # test accuracy after each epoch
    epoch_seconds: list = field(default_factory=list)  # training seconds at the end of each epoch
    run_id: str | None = None

    def to_dict(self) -> dict:
        c = self.arm.config

        def num(x):
            return float(x) if np.isfinite(x) else None

        return {
            "name": self.arm.name, "engine": self.arm.engine, "activation": c.activation, "optimizer": c.optimizer,
            "lr": c.lr, "hidden": list(c.hidden), "test_accuracy": num(self.test_accuracy),
            "grad_ratio_first_last": num(self.grad_ratio_first_last),
            "dead_fraction": [num(d) for d in self.dead_fraction], "seconds": round(self.seconds, 3),
            "epoch_accuracy": [num(a) for a in self.epoch_accuracy],
            "epoch_seconds": [round(s, 3) for s in self.epoch_seconds], "run": self.run_id,
        }


_BASE = TrainConfig(hidden=(128,) * 5, batch_size=128, epochs=1, limit=SUBSET, seed=0, stats_every=1,
                    snapshot_every=20)

EXPERIMENTS: dict[str, Experiment] = {
    "vanishing": Experiment(
        "vanishing", "Vanishing gradients: sigmoid vs ReLU",
        "how much of the error reaches the first of five layers with sigmoid and with ReLU (plain SGD)",
        (Arm("sigmoid", replace(_BASE, activation="sigmoid", optimizer="sgd", lr=0.1, momentum=0.0)),
         Arm("relu", replace(_BASE, activation="relu", optimizer="sgd", lr=0.1, momentum=0.0))),
    ),
    "dying-relu": Experiment(
        "dying-relu", "Dying ReLU: a sensible and a too-high learning rate",
        "how many ReLU units die for good when the learning rate is too high (Adam, 3 layers)",
        (Arm("lr 0.001", replace(_BASE, hidden=(128,) * 3, optimizer="adam", lr=1e-3)),
         Arm("lr 0.03", replace(_BASE, hidden=(128,) * 3, optimizer="adam", lr=0.03))),
    ),
    "vs-sklearn": Experiment(
        "vs-sklearn", "digitpad next to scikit-learn",
        "the hand-written engine and scikit-learn's MLPClassifier on the same digits and settings",
        (Arm("digitpad", replace(_BASE, hidden=(256, 128), optimizer="adam", lr=1e-3, epochs=5, stats_every=25)),
         Arm("scikit-learn", replace(_BASE, hidden=(256, 128), optimizer="adam", lr=1e-3, epochs=5,
                                     stats_every=25), engine="sklearn")),
    ),
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"experiment: unknown {name!r}; choose one of {', '.join(EXPERIMENTS)}") from None


def _test_accuracy(model, mnist) -> float:
    from digitpad.core.train import evaluate

    return evaluate(model, mnist.test_images, mnist.test_labels)[1]


def run_digitpad_arm(experiment: Experiment, arm: Arm, mnist, record: bool = True, root=None,
                     on_record=None, should_stop=None) -> ArmResult:
    """Train one arm with digitpad's trainer, recording it as a run; return what it measured."""
    from digitpad.core.runs import NullRecorder, RunRecorder
    from digitpad.core.train import EpochRecord, Trainer

    trainer = Trainer(arm.config, mnist)
    recorder = RunRecorder(arm.config, source="experiment", name=f"{experiment.name}: {arm.name}", root=root,
                           extra={"experiment": experiment.name, "arm": arm.name}) if record else NullRecorder()
    epoch_acc, epoch_s = [], []
    grad_rows, dead_last = [], []
    with recorder:
        for rec in trainer:
            recorder.add(rec)
            if on_record is not None:
                on_record(rec)
            if should_stop is not None and should_stop():
                trainer.stop()
            if isinstance(rec, EpochRecord):
                epoch_s.append(rec.seconds)
                epoch_acc.append(_test_accuracy(trainer.model, mnist))
            elif rec.layers is not None:
                if rec.step <= 200:
                    grad_rows.append(rec.layers[0].grad_norm / max(rec.layers[-1].grad_norm, 1e-30))
                dead_last = [s.dead_fraction for s in rec.layers[:-1]]
        result = trainer.result
        acc = _test_accuracy(result.model, mnist)
        recorder.finish(result, test_accuracy=acc)
    ratio = float(np.median(grad_rows)) if grad_rows else float("nan")
    return ArmResult(arm, acc, result.seconds, ratio, dead_last, epoch_acc, epoch_s, recorder.id)


def run_sklearn_arm(experiment: Experiment, arm: Arm, mnist, record: bool = True, root=None,
                    on_record=None, should_stop=None) -> ArmResult:
    """The same settings with scikit-learn's ``MLPClassifier``, one ``partial_fit`` per epoch.

    Recorded as a run with one line per epoch (scikit-learn's training loss, validation
    accuracy on digitpad's validation split); it has no per-step curves.
    """
    import warnings

    from sklearn.neural_network import MLPClassifier

    from digitpad.core.runs import NullRecorder, RunRecorder
    from digitpad.core.train import EpochRecord, TrainResult, split_indices

    cfg = arm.config
    images = np.asarray(mnist.train_images).reshape(len(mnist.train_images), -1)  # (N, 784) uint8
    labels = np.asarray(mnist.train_labels)
    train_idx, val_idx = split_indices(len(labels), cfg)  # the same digits as digitpad's arm
    x, y = images[train_idx].astype(np.float32) / 255, labels[train_idx]  # (n, 784)
    xv, yv = images[val_idx].astype(np.float32) / 255, labels[val_idx]
    xt = mnist.test_images.reshape(len(mnist.test_images), -1).astype(np.float32) / 255
    activation = {"sigmoid": "logistic", "leaky_relu": "relu"}.get(cfg.activation, cfg.activation)
    clf = MLPClassifier(hidden_layer_sizes=cfg.hidden, activation=activation, solver=cfg.optimizer,
                        learning_rate_init=cfg.lr, batch_size=cfg.batch_size, alpha=cfg.weight_decay,
                        momentum=cfg.momentum, nesterovs_momentum=cfg.nesterov, random_state=cfg.seed,
                        shuffle=True)
    recorder = RunRecorder(cfg, source="experiment", name=f"{experiment.name}: {arm.name}", root=root,
                           extra={"experiment": experiment.name, "arm": arm.name, "engine": "sklearn"}
                           ) if record else NullRecorder()
    epoch_acc, epoch_s, seconds = [], [], 0.0
    classes = np.arange(10)
    steps_per_epoch = -(-len(y) // cfg.batch_size)
    with recorder:
        for epoch in range(cfg.epochs):
            if should_stop is not None and should_stop():
                break
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.partial_fit(x, y, classes=classes)
            seconds += time.perf_counter() - t0
            epoch_s.append(seconds)
            epoch_acc.append(float((clf.predict(xt) == mnist.test_labels).mean()))
            val_acc = float((clf.predict(xv) == yv).mean()) if len(yv) else float("nan")
            rec = EpochRecord(epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, train_loss=float(clf.loss_),
                              train_accuracy=float("nan"), val_loss=float("nan"), val_accuracy=val_acc,
                              seconds=seconds, best=False)
            recorder.add(rec)
            if on_record is not None:
                on_record(rec)
        acc = epoch_acc[-1] if epoch_acc else float("nan")
        recorder.finish(TrainResult(model=None, config=cfg, epochs_done=len(epoch_acc), seconds=seconds,
                                    steps=len(epoch_acc) * steps_per_epoch, stopped=len(epoch_acc) < cfg.epochs),
                        test_accuracy=acc)
    return ArmResult(arm, acc, seconds, epoch_accuracy=epoch_acc, epoch_seconds=epoch_s, run_id=recorder.id)


def conclusion(experiment: Experiment, results: list[ArmResult]) -> str:
    """One sentence with the measured numbers."""
    if len(results) < len(experiment.arms):
        return f"{experiment.title}: stopped after {len(results)} of {len(experiment.arms)} arms."
    a, b = results
    if experiment.name == "vanishing":
        times = b.grad_ratio_first_last / a.grad_ratio_first_last if a.grad_ratio_first_last > 0 else float("inf")
        return (f"With sigmoid the first layer's gradient is {a.grad_ratio_first_last:.2g}× the output layer's, "
                f"with ReLU {b.grad_ratio_first_last:.2g}× ({times:,.0f} times more of the error reaches the first "
                f"layer); after one epoch on {SUBSET:,} digits sigmoid reads {a.test_accuracy:.1%} of the test "
                f"digits and ReLU {b.test_accuracy:.1%}.")
    if experiment.name == "dying-relu":
        def worst(r):
            i = int(np.argmax(r.dead_fraction))
            return f"{r.dead_fraction[i]:.0%} of layer {i + 1}"
        return (f"At learning rate {b.arm.config.lr:g}, {worst(b)} is dead (test accuracy {b.test_accuracy:.1%}); "
                f"at {a.arm.config.lr:g} at most {worst(a)} (test accuracy {a.test_accuracy:.1%}).")
    ratio = a.seconds / b.seconds if b.seconds > 0 else float("nan")
    return (f"After {len(a.epoch_accuracy)} epochs on {SUBSET:,} digits digitpad reads {a.test_accuracy:.2%} of the "
            f"test digits in {a.seconds:.1f} s of training, scikit-learn {b.test_accuracy:.2%} in {b.seconds:.1f} s "
            f"(digitpad takes {ratio:.2f}× its time).")


def run_experiment(name: str, mnist, record: bool = True, root=None, on_arm=None, on_record=None,
                   should_stop=None) -> tuple[list[ArmResult], str]:
    """Run every arm of experiment ``name``; return the arms' results and the finding.

    ``on_arm(index, arm)`` is called before each arm, ``on_record(record)`` with each of
    digitpad's training records, and ``should_stop()`` is polled to end early.
    """
    experiment = get_experiment(name)
    results = []
    for i, arm in enumerate(experiment.arms):
        if should_stop is not None and should_stop():
            break
        if on_arm is not None:
            on_arm(i, arm)
        if arm.engine == "sklearn":
            results.append(run_sklearn_arm(experiment, arm, mnist, record, root, on_record, should_stop))
        else:
            results.append(run_digitpad_arm(experiment, arm, mnist, record, root, on_record, should_stop))
    return results, conclusion(experiment, results)

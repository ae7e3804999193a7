"""Work off the GUI thread: training runs and MNIST downloads, each a QObject living in a QThread.

``TrainWorker`` loads MNIST (unless given it), iterates the core ``Trainer`` and, at the
end, measures the new and the old model on the test set, all in its own thread. It never
emits a signal per step: every record is appended to a lock-protected list that the GUI
drains with ``take_records()`` from a timer, so thousands of steps a second cannot flood
the event loop and no ``EpochRecord`` is ever lost. Only the start, the end and a failure
are signals. Pause waits on a condition between records (every yield of the trainer is
a step boundary); stop asks the trainer to stop and wakes the wait.

``DownloadWorker`` runs ``download.download_mnist`` with progress and cancel.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, Signal, Slot

from digitpad.core import data as data_mod
from digitpad.core import download as download_mod
from digitpad.core.mlp import MLP
from digitpad.core.train import TrainConfig, TrainResult, Trainer, evaluate, live_config


@dataclass(frozen=True)
class RunInfo:
    """What the panes need before the first record: the run's shape."""

    config: TrainConfig
    total_steps: int
    steps_per_epoch: int
    n_train: int
    n_val: int
    layer_sizes: tuple


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the model it produced and the figures to weigh it against the old one."""

    config: TrainConfig
    model: MLP  # best weights on validation (or the last good ones after divergence)
    result: TrainResult
    test_accuracy: float
    old_test_accuracy: float | None  # None when there was no current model
    stopped: bool
    diverged: bool
    message: str


class TrainWorker(QObject):
    """Runs one training in the thread it is moved to; pause, resume and stop are thread-safe."""

    run_started = Signal(object)  # RunInfo
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)

    def __init__(self, config: TrainConfig, mnist=None, data_dir=None, old_model: MLP | None = None):
        super().__init__()
        self.config = config
        self._mnist = mnist
        self._data_dir = data_dir
        self._old_model = old_model
        self._records: list = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._paused = False
        self._stop = False
        self._abandon = False
        self._trainer: Trainer | None = None
        self.waiting = False  # True while paused between two steps

    # ---- called from the GUI thread ------------------------------------------------------

    def take_records(self) -> list:
        """All records since the last call, oldest first (StepRecord and EpochRecord)."""
        with self._lock:
            records, self._records = self._records, []
        return records

    def set_paused(self, paused: bool) -> None:
        with self._wake:
            self._paused = bool(paused)
            self._wake.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self) -> None:
        """End the run at the next step boundary; the result is still measured and reported."""
        with self._wake:
            self._stop = True
            if self._trainer is not None:
                self._trainer.stop()
            self._wake.notify_all()

    def abandon(self) -> None:
        """Stop as fast as possible and skip the test-set evaluation (the window is closing)."""
        self._abandon = True
        self.stop()

    # ---- runs in the worker thread -------------------------------------------------------

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported to the user, never raised into Qt
            traceback.print_exc()
            self.run_failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            QThread.currentThread().quit()

    def _run(self) -> None:
        mnist = self._mnist
        if mnist is None:
            mnist = data_mod.load_mnist(self._data_dir)
        self.config = live_config(self.config, len(mnist.train_labels))  # enough points for the panes
        trainer = Trainer(self.config, mnist, None)
        with self._lock:
            self._trainer = trainer
            if self._stop:
                trainer.stop()
        self.run_started.emit(RunInfo(
            config=self.config, total_steps=trainer.total_steps, steps_per_epoch=trainer.steps_per_epoch,
            n_train=len(trainer.train_labels), n_val=len(trainer.val_labels),
            layer_sizes=tuple(trainer.model.config.layer_sizes),
        ))
        for record in trainer:
            with self._wake:
                self._records.append(record)
                while self._paused and not self._stop:
                    self.waiting = True
                    self._wake.wait()
                self.waiting = False
        result = trainer.result
        if self._abandon:
            return
        test_acc = evaluate(result.model, mnist.test_images, mnist.test_labels)[1]
        old_acc = None
        if self._old_model is not None:
            try:
                old_acc = evaluate(self._old_model, mnist.test_images, mnist.test_labels)[1]
            except ValueError:  # a model with another input size cannot read MNIST digits
                old_acc = None
        self.run_finished.emit(RunOutcome(
            config=self.config, model=result.model, result=result, test_accuracy=test_acc,
            old_test_accuracy=old_acc, stopped=result.stopped, diverged=result.diverged,
            message=result.message,
        ))


class DownloadWorker(QObject):
    """Downloads MNIST into a folder in the thread it is moved to; cancel is thread-safe."""

    progress = Signal(str, int, int)  # file name, bytes done, bytes in total (-1 unknown)
    done = Signal(str)  # the folder that now holds the four files
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, dest=None, mirrors: tuple | None = None):
        super().__init__()
        self._dest = dest
        self._mirrors = mirrors
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        kwargs = {} if self._mirrors is None else {"mirrors": self._mirrors}
        try:
            folder = download_mod.download_mnist(
                self._dest, progress=lambda name, n, total: self.progress.emit(name, n, -1 if total is None else total),
                cancel=self._cancel.is_set, **kwargs,
            )
        except download_mod.DownloadCancelled:
            self.cancelled.emit()
        except Exception as exc:
            self.failed.emit(str(exc))
        else:
            self.done.emit(str(folder))
        finally:
            QThread.currentThread().quit()

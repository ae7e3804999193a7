"""The training run off the GUI thread: a QObject living in a QThread, and the threads left to end.

``TrainWorker`` loads MNIST (unless given it), iterates the core ``Trainer`` and, at the
end, measures the new and the old model on the test set, all in its own thread. It never
emits a signal per step: every record is appended to a lock-protected list that the GUI
drains with ``take_records()`` from a timer, so thousands of steps a second cannot flood
the event loop and no ``EpochRecord`` is ever lost. Only the start, the end and a failure
are signals. Pause waits on a condition between records (every yield of the trainer is
a step boundary); stop asks the trainer to stop and wakes the wait. Time spent paused is
taken out of each record's ``elapsed`` and speed, so speed and time left count training only.

A step cannot be cut short (one matrix product of a large network can take seconds), so a
window that closes mid-step does not wait for it: ``release_thread`` keeps the thread (and
its worker) alive until it has ended, and at interpreter exit waits for any still
running, so no ``QThread`` is ever destroyed while it runs. (One-shot jobs, evaluation and
downloads, use superqt's ``thread_worker`` instead; a run keeps this design because its GUI
side polls a record buffer.)
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QThread, Signal, Slot
from superqt.utils import WorkerBase, thread_worker  # with the app: on first use it held the GUI thread
#                                                      ~0.1 s (at Keep, or while a run went, if imported by it)

from digitpad.core import data as data_mod
from digitpad.core.mlp import MLP
from digitpad.core.runs import open_recorder
from digitpad.core.train import StepRecord, TrainConfig, TrainResult, Trainer, evaluate, live_config

log = logging.getLogger("digitpad")


@dataclass(frozen=True)
class RunInfo:
    """What the panes need before the first record: the run's shape."""

    config: TrainConfig
    total_steps: int
    steps_per_epoch: int
    n_train: int
    n_val: int
    layer_sizes: tuple
    initial_weights: tuple = ()  # copies of each layer's weights (n_in, n_out) before the first step


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
    run_folder: object = None  # the run's folder in the run history (None when it could not be recorded)
    details: object = None  # what a run of another kind measured besides (a fine-tune's before/after)


class TrainWorker(QObject):
    """Runs one training in the thread it is moved to; pause, resume and stop are thread-safe."""

    run_started = Signal(object)  # RunInfo
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)

    def __init__(self, config: TrainConfig, mnist=None, data_dir=None, old_model: MLP | None = None,
                 clock=time.perf_counter, make_trainer=None, source: str = "app"):
        super().__init__()
        self.config = config
        # (config, mnist) -> what to iterate: a Trainer, or anything shaped like one (``total_steps``,
        # ``steps_per_epoch``, ``train_labels``, ``val_labels``, ``model``, ``stop()``, ``result`` a
        # TrainResult, optional ``details``); called in the worker thread. None: a Trainer on ``config``.
        self._make_trainer = make_trainer
        self._source = source  # the run history's name for where the run came from
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
        self._clock = clock  # the trainer's clock: its records' ``elapsed`` is measured with it
        self._paused_at: float | None = None
        self.paused_seconds = 0.0  # time spent paused so far, ended pauses only

    # ---- called from the GUI thread ------------------------------------------------------

    def take_records(self) -> list:
        """All records since the last call, oldest first (StepRecord and EpochRecord)."""
        with self._lock:
            records, self._records = self._records, []
        return records

    def set_paused(self, paused: bool) -> None:
        with self._wake:
            paused = bool(paused)
            if paused and self._paused_at is None:
                self._paused_at = self._clock()
            elif not paused and self._paused_at is not None:
                self.paused_seconds += self._clock() - self._paused_at
                self._paused_at = None
            self._paused = paused
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

    def change_settings(self, lr: float | None = None, momentum: float | None = None) -> None:
        """Change the learning rate or SGD's momentum from the next step on; ``ValueError`` names a bad value."""
        trainer = self._trainer
        if trainer is None:
            raise ValueError("the run has not started training yet")
        if lr is not None:
            trainer.set_lr(lr)
        if momentum is not None:
            trainer.set_momentum(momentum)

    def abandon(self) -> None:
        """Stop as fast as possible and skip the test-set evaluation (the window is closing)."""
        self._abandon = True
        self.stop()

    def _without_pauses(self, record):
        """``record`` with the time spent paused taken out of its elapsed time and speed."""
        paused = self.paused_seconds
        if not paused or not isinstance(record, StepRecord) or record.elapsed <= 0:
            return record
        elapsed = max(record.elapsed - paused, 1e-9)
        return replace(record, elapsed=elapsed, samples_per_second=record.samples_per_second * record.elapsed / elapsed)

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
        if self._make_trainer is None:
            self.config = live_config(self.config, len(mnist.train_labels))  # enough points for the panes
            trainer = Trainer(self.config, mnist, None)
        else:
            trainer = self._make_trainer(self.config, mnist)
        with self._lock:
            self._trainer = trainer
            if self._stop:
                trainer.stop()
        self.run_started.emit(RunInfo(
            config=self.config, total_steps=trainer.total_steps, steps_per_epoch=trainer.steps_per_epoch,
            n_train=len(trainer.train_labels), n_val=len(trainer.val_labels),
            layer_sizes=tuple(trainer.model.config.layer_sizes),
            initial_weights=tuple(w.copy() for w in trainer.model.weights),
        ))
        recorder, problem = open_recorder(self.config, self._source)
        if problem:
            log.warning(problem)
        with recorder:  # written here, in the worker thread; a run cut short reads as interrupted
            for record in trainer:
                recorder.add(record)
                with self._wake:
                    self._records.append(self._without_pauses(record))
                    while self._paused and not self._stop:
                        self.waiting = True
                        self._wake.wait()
                    self.waiting = False
            result = trainer.result
            if self._abandon:
                return
            test_acc = evaluate(result.model, mnist.test_images, mnist.test_labels)[1]
            recorder.finish(result, test_accuracy=test_acc)
        old_acc = None
        if self._old_model is not None:
            try:
                old_acc = evaluate(self._old_model, mnist.test_images, mnist.test_labels)[1]
            except ValueError:  # a model with another input size cannot read MNIST digits
                old_acc = None
        self.run_finished.emit(RunOutcome(
            config=self.config, model=result.model, result=result, test_accuracy=test_acc,
            old_test_accuracy=old_acc, stopped=result.stopped, diverged=result.diverged,
            message=result.message, run_folder=recorder.folder, details=getattr(trainer, "details", None),
        ))


class _Progress(QObject):
    """Carries a job's progress calls from its thread to a callback in the GUI thread (where it lives)."""

    changed = Signal(object)  # the progress call's arguments

    def __init__(self, callback=None):
        super().__init__()
        self._callback = callback
        self.changed.connect(self._relay)  # queued when emitted from the job's thread

    @Slot(object)
    def _relay(self, args) -> None:
        if self._callback is not None:
            self._callback(*args)


class Job:
    """A one-shot ``fn(progress, cancel)`` in superqt's thread pool, with progress and a thread-safe cancel.

    ``on_done(result)`` or ``on_failed(message)`` run in the GUI thread, then ``on_finished()``;
    neither of the first two runs when the job was cancelled (``cancelled_by`` names the
    exceptions that mean "cancelled"; ``expected`` those whose message is told as it is).
    """

    def __init__(self, fn, on_done, on_failed, on_progress=None, on_finished=None, cancelled_by: tuple = (),
                 expected: tuple = ()):
        self.finished = False
        self._on_finished = on_finished
        self._cancel = threading.Event()
        self._progress = _Progress(on_progress)
        emit = self._progress.changed.emit
        self.worker = thread_worker(fn, start_thread=False, ignore_errors=True)(  # errors go to _errored
            lambda *args: emit(args), self._cancel.is_set)
        self._cancelled_by, self._expected = cancelled_by, expected
        self._on_done, self._on_failed = on_done, on_failed
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(self._ended)
        self.worker.start()

    def _ended(self) -> None:
        self.finished = True
        if self._on_finished is not None:
            self._on_finished()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _returned(self, result) -> None:
        if not self._cancel.is_set():
            self._on_done(result)

    def _errored(self, exc) -> None:
        if isinstance(exc, self._cancelled_by) or self._cancel.is_set():
            return
        if not isinstance(exc, self._expected):
            traceback.print_exception(type(exc), exc, exc.__traceback__)
            self._on_failed(f"{type(exc).__name__}: {exc}")
        else:
            self._on_failed(str(exc))

    @staticmethod
    def wait_all(msecs: int = 10000) -> None:
        """Wait for every job in the pool to end (the window is closing; cancel them first)."""
        try:
            WorkerBase.await_workers(msecs)
        except RuntimeError:  # still blocked (a stalled read, say): it ends on its own, the window does not wait
            pass


class _Keeper(QObject):
    """Holds threads whose owner is gone until they have ended (lives in the GUI thread)."""

    def __init__(self):
        super().__init__()
        self.held: dict = {}  # thread -> worker

    def hold(self, thread: QThread, worker: QObject) -> None:
        self.held[thread] = worker
        thread.finished.connect(self._ended)  # queued: runs here, after the thread has ended

    @Slot()
    def _ended(self) -> None:
        for thread in [t for t in self.held if t.isFinished()]:
            thread.wait()
            del self.held[thread]

    def wait_all(self) -> None:
        for thread in list(self.held):
            thread.wait()
        self.held.clear()


_keeper: _Keeper | None = None


def release_thread(thread: QThread, worker: QObject) -> None:
    """Keep ``thread`` and ``worker`` alive until the thread has ended; the caller may go away at once."""
    global _keeper
    if thread is None or not thread.isRunning():
        return
    if _keeper is None:
        _keeper = _Keeper()
        atexit.register(_wait_for_released)
    _keeper.hold(thread, worker)


def _wait_for_released() -> None:
    """At exit: a thread still in its last step is waited for, never destroyed while it runs."""
    if _keeper is not None:
        _keeper.wait_all()

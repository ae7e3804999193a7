"""Train ▸ Experiments: the lessons as side-by-side runs, compared on the Runs page.

Each experiment (``core.experiments``: vanishing gradients, dying ReLU, digitpad next to
scikit-learn) trains its arms one after the other in a background job, with a progress
window that can cancel it. The arms are recorded in the run history; at the end the Runs
page opens with them ticked and the finding, a sentence with the measured numbers, above
the plots.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QProgressDialog

from digitpad.core import data as data_mod
from digitpad.core.experiments import EXPERIMENTS, run_experiment
from digitpad.qt.worker import Job

PROGRESS_EVERY = 10  # steps between two progress updates (each crosses to the GUI thread)


class ExperimentController(QObject):
    """Runs one experiment at a time from the Train menu and shows its arms on the Runs page."""

    experiment_finished = Signal(str, list, str)  # name, run ids, the finding
    experiment_failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.job: Job | None = None
        self.dialog: QProgressDialog | None = None
        self.menu = QMenu("E&xperiments", window)
        self.menu.setObjectName("menu_experiments")
        self.actions = {}
        for name, exp in EXPERIMENTS.items():
            act = QAction(f"{exp.title}…", window)
            act.setObjectName(f"action_experiment_{name.replace('-', '_')}")
            act.setStatusTip(f"Shows {exp.question}")
            act.setToolTip(exp.question)
            act.triggered.connect(lambda checked=False, n=name: self.run(n))
            self.menu.addAction(act)
            self.actions[name] = act

    @property
    def is_running(self) -> bool:
        return self.job is not None and not self.job.finished

    def run(self, name: str, mnist=None) -> bool:
        """Start experiment ``name`` (``mnist``: data to use instead of loading it); False when it cannot start."""
        w = self.window
        if self.is_running:
            w.show_status("An experiment is already running", 5000)
            return False
        if w.retrain.is_running:
            w.show_status("A training run is going: experiments start when it has ended", 6000)
            return False
        folder = None
        if mnist is None:
            folder = w.retrain.locate_data()
            if folder is None:
                w.show_page(w.train_page)
                w.train_page.data_panel.show()
                w.show_status("Experiments need MNIST: download it or choose a folder that has it", 8000)
                return False
        exp = EXPERIMENTS[name]
        steps = [_arm_steps(arm) for arm in exp.arms]
        dialog = QProgressDialog(f"{exp.title}: starting…", "Cancel", 0, sum(steps), w)
        dialog.setObjectName("experiment_progress")
        dialog.setWindowTitle("Experiment")
        dialog.setWindowModality(Qt.NonModal)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setMinimumWidth(460)
        dialog.setValue(0)
        dialog.show()
        self.dialog = dialog
        offsets = [sum(steps[:i]) for i in range(len(steps))]

        def work(progress, cancel):
            data = mnist if mnist is not None else data_mod.load_mnist(folder)
            current = {"arm": 0}

            def on_arm(i, arm):
                current["arm"] = i
                progress(offsets[i], f"arm {i + 1} of {len(exp.arms)}: {arm.name}")

            def on_record(rec):
                step = getattr(rec, "step", 0)
                if getattr(rec, "layers", None) is not None or step % PROGRESS_EVERY == 0:
                    i = current["arm"]
                    progress(offsets[i] + min(step, steps[i]),
                             f"arm {i + 1} of {len(exp.arms)}: {exp.arms[i].name} · step {step:,} of {steps[i]:,}")

            return run_experiment(name, data, on_arm=on_arm, on_record=on_record, should_stop=cancel)

        def on_progress(value, text):
            if self.dialog is not None:
                self.dialog.setValue(int(value))
                self.dialog.setLabelText(f"{exp.title}\n{text}")

        self.job = Job(work, lambda result: self._done(name, result), self._failed, on_progress=on_progress,
                       on_finished=self._close_dialog, expected=(data_mod.DataError,))
        dialog.canceled.connect(self.cancel)
        w.show_status(f"{exp.title}: running", 0)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.window.show_status("Experiment cancelled; the arms that finished are in the run history", 6000)

    def _done(self, name: str, result) -> None:
        results, finding = result
        ids = [r.run_id for r in results if r.run_id]
        page = self.window.runs_page
        page.select_runs(ids)
        page.set_finding(f"<b>{EXPERIMENTS[name].title}.</b> {finding}")
        self.window.show_page(page)
        self.window.show_status(finding, 0)
        self.experiment_finished.emit(name, ids, finding)

    def _failed(self, message: str) -> None:
        self.window.show_status(f"The experiment failed: {message}", 0)
        self.experiment_failed.emit(message)

    def _close_dialog(self) -> None:
        if self.job is not None and self.job.cancelled:  # the stopped arm is recorded by now
            self.window.runs_page.refresh()
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self.cancel)
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def shutdown(self) -> None:
        """The window is closing: stop at the next step (the arm in progress is recorded as stopped)."""
        if self.job is not None:
            self.job.cancel()
        self._close_dialog()


def _arm_steps(arm) -> int:
    """Steps an arm takes (for the progress bar); scikit-learn's arm counts its epochs' steps too."""
    from digitpad.core.train import run_size

    return run_size(arm.config).total_steps

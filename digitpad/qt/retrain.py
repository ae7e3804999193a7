"""Train ▸ Retrain…: the menu and toolbar actions, the worker thread, the live panes, keep or revert.

``RetrainController(window)`` plugs into the main window through a few names only
(``menu_train``, ``toolbar``, ``addDockWidget``, ``current_model``, ``set_model``,
``set_reading_model``; ``menu_view`` and ``settings`` when present). A run goes:
dialog -> ``TrainConfig`` -> MNIST located (or downloaded) -> ``TrainWorker`` in a
``QThread`` -> records drained by a GUI timer into a ``TrainingHistory`` -> panes
redrawn, canvas read with the newest weights -> test accuracy measured in the worker ->
Keep (saved atomically in the user's models folder, becomes the current model) or Revert.

The training dock's home is the bottom of the window, where it would squeeze the canvas
and its own heatmaps. While a run goes (and until its Keep or Revert) it is tabbed with
the "Inside the network" dock instead, given most of the window's width with the canvas
column still wide enough to draw in; Keep, Revert, closing the dock or closing the window
put the user's layout back exactly as it was (so the remembered window state is never the
training one). A training dock the user placed somewhere else is left where it is.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QObject, QSettings, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDockWidget

from digitpad.core import data as data_mod
from digitpad.core import model_io
from digitpad.core.mlp import MLP
from digitpad.qt.panes import DEFAULT_THEME, THEMES
from digitpad.qt.panes.training import TrainingHistory, TrainingPanes
from digitpad.qt.train_dialog import DataDialog, TrainDialog
from digitpad.qt.worker import RunInfo, RunOutcome, TrainWorker

DATA_DIR_KEY = "data/dir"
REFRESH_MS = 50  # panes redraw pace (20 Hz), whatever the step rate
READING_MS = 250  # the canvas is re-read with new weights at most this often
SHUTDOWN_WAIT_MS = 10000
CANVAS_SHARE = 0.36  # of the window's width left to the canvas column while the training panes are beside it
MIN_CANVAS_COLUMN = 460  # pixels: the canvas column never gets narrower than this for the training panes
PROBABILITIES_HEIGHT = 190  # pixels for the probabilities row above the training panes


class RetrainController(QObject):
    """Owns a run from the Retrain dialog to Keep / Revert; one run at a time."""

    run_started = Signal(object)  # RunInfo
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)
    paused_changed = Signal(bool)
    kept = Signal(str)  # path of the saved model
    reverted = Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        settings = getattr(window, "settings", None)
        self.settings = settings if isinstance(settings, QSettings) else QSettings()
        self.history: TrainingHistory | None = None
        self.outcome: RunOutcome | None = None  # waiting for Keep or Revert
        self.thread: QThread | None = None  # the last run's thread (kept to be joined)
        self._worker: TrainWorker | None = None
        self._running = False
        self._closing = False
        self._reading_version = 0
        self._reading_time = 0.0
        self._drew_last_tick = False
        self._config = None
        self._user_layout: QByteArray | None = None  # the window's state before a run rearranged it
        self._training_area = None  # the dock area the training dock was moved into for the run
        self._restoring = False

        self.action_retrain = QAction("&Retrain…", self)
        self.action_retrain.setObjectName("action_retrain")
        self.action_retrain.setShortcut(QKeySequence("Ctrl+R"))
        self.action_retrain.setStatusTip("Train a new network on MNIST and watch it learn")
        self.action_retrain.triggered.connect(self.open_dialog)
        self.action_pause = QAction("&Pause training", self)
        self.action_pause.setObjectName("action_pause")
        self.action_pause.setShortcut(QKeySequence("Ctrl+P"))
        self.action_pause.setCheckable(True)
        self.action_pause.setEnabled(False)
        self.action_pause.toggled.connect(self.set_paused)
        self.action_stop = QAction("&Stop training", self)
        self.action_stop.setObjectName("action_stop")
        self.action_stop.setShortcut(QKeySequence("Ctrl+."))
        self.action_stop.setStatusTip("Stop now; the best weights so far are offered to keep")
        self.action_stop.setEnabled(False)
        self.action_stop.triggered.connect(self.stop)
        actions = (self.action_retrain, self.action_pause, self.action_stop)
        menu = getattr(window, "menu_train", None)
        if menu is not None:
            menu.addActions(actions)
        toolbar = getattr(window, "toolbar", None)
        if toolbar is not None:
            toolbar.addSeparator()
            toolbar.addActions(actions)

        self.panes = TrainingPanes(theme=getattr(window, "theme", THEMES[DEFAULT_THEME]))
        self.panes.result_panel.keep_requested.connect(self.keep)
        self.panes.result_panel.revert_requested.connect(self.revert)
        self.dock = QDockWidget("Training", window)
        self.dock.setObjectName("training_dock")
        self.dock.setWidget(self.panes)
        window.addDockWidget(Qt.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock.toggleViewAction().toggled.connect(self._on_dock_toggled)
        view = getattr(window, "menu_view", None)
        if view is not None:
            view.addAction(self.dock.toggleViewAction())

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        theme_changed = getattr(window, "theme_changed", None)
        if theme_changed is not None:
            theme_changed.connect(self._on_theme_changed)

    # ---- state -----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_paused(self) -> bool:
        return self._worker is not None and self._worker.paused

    def _status(self, text: str, ms: int = 0) -> None:
        bar = getattr(self.window, "statusBar", None)
        if callable(bar):
            bar().showMessage(text, ms)

    @Slot(str)
    def _on_theme_changed(self, name: str) -> None:
        """Recolour the training panes at once, during a run or not."""
        self.panes.apply_theme(THEMES.get(name, THEMES[DEFAULT_THEME]))

    # ---- starting ----------------------------------------------------------------------------

    @Slot()
    def open_dialog(self) -> None:
        """Train ▸ Retrain…: ask for the settings, then start."""
        if self._running:
            return
        dialog = TrainDialog(self.window, self.settings, pending_model=self.outcome is not None)
        accepted = dialog.exec() == QDialog.Accepted
        # keyboard focus back to the window, so Ctrl+P / Ctrl+. work at once (not every desktop does this)
        self.window.activateWindow()
        if accepted:
            self.start(dialog.config())

    def locate_data(self) -> Path | None:
        """A folder with MNIST: remembered, found, or got from the user (download or choose)."""
        remembered = self.settings.value(DATA_DIR_KEY) or None
        folder = data_mod.find_data_dir(remembered)
        if folder is not None:
            return folder
        dialog = DataDialog(self.window)
        if dialog.exec() != QDialog.Accepted or dialog.folder is None:
            return None
        self.settings.setValue(DATA_DIR_KEY, str(dialog.folder))
        return dialog.folder

    def start(self, config, mnist=None, data_dir=None) -> bool:
        """Start training ``config`` in a worker thread; ``mnist`` (any object with the four arrays) skips loading.

        Returns False when a run is already going or no MNIST could be found.
        """
        if self._running or self._closing:
            return False
        if mnist is None and data_dir is None:
            data_dir = self.locate_data()
            if data_dir is None:
                return False
        if self.outcome is not None:
            self.revert(restore_layout=False)  # the next run keeps the training layout
        self._join_thread()
        self._config = config
        self.history = None
        self._reading_version = 0
        worker = TrainWorker(config, mnist=mnist, data_dir=data_dir,
                             old_model=getattr(self.window, "current_model", None))
        thread = QThread()
        thread.setObjectName("digitpad-training")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.run_started.connect(self._on_started)
        worker.run_finished.connect(self._on_finished)
        worker.run_failed.connect(self._on_failed)
        self._worker, self.thread = worker, thread
        self._running = True
        self.action_retrain.setEnabled(False)
        self.action_pause.setEnabled(True)
        self.action_stop.setEnabled(True)
        theme = getattr(self.window, "theme", None)
        if theme is not None and theme is not self.panes.theme:
            self.panes.apply_theme(theme)  # a window without theme_changed: catch up at the start of a run
        self.panes.prepare(config)  # lay out (and first paint) the plots while the data loads
        self.panes.progress.setRange(0, 0)
        self.panes.progress.setFormat("loading MNIST…" if mnist is None else "starting…")
        self.panes.status.setText("")
        self._arrange_for_training()
        self._status("Training: loading MNIST…" if mnist is None else "Training…")
        thread.start()
        return True

    # ---- room for the panes ------------------------------------------------------------------

    def _arrange_for_training(self) -> None:
        """Show the training dock beside the canvas, tabbed with "Inside the network", and widen it.

        Only when the dock is at home (docked at the bottom): a dock the user moved or floated
        stays where it is. The window's state is kept to be put back when the run is dealt with.
        """
        w, dock = self.window, self.dock
        if self._user_layout is None and not dock.isFloating() and hasattr(w, "saveState") \
                and w.dockWidgetArea(dock) == Qt.BottomDockWidgetArea:
            side = (Qt.RightDockWidgetArea, Qt.LeftDockWidgetArea)

            def usable(d):
                return d is not None and d.isVisible() and not d.isFloating() and w.dockWidgetArea(d) in side

            network = getattr(w, "network_dock", None)
            probabilities = getattr(w, "probabilities_dock", None)
            self._user_layout = w.saveState()
            self._restoring = True  # moving the dock hides and shows it: not the user closing it
            try:
                if usable(network):
                    w.tabifyDockWidget(network, dock)
                elif usable(probabilities):
                    w.splitDockWidget(probabilities, dock, Qt.Vertical)
                else:
                    w.addDockWidget(Qt.RightDockWidgetArea, dock)
                dock.show()
            finally:
                self._restoring = False
            self._training_area = w.dockWidgetArea(dock)
            QTimer.singleShot(0, self._size_for_training)
        dock.show()
        dock.raise_()

    def _size_for_training(self) -> None:
        """Most of the width to the training panes, a thin probabilities row above them."""
        w, dock = self.window, self.dock
        if self._user_layout is None or not dock.isVisible() or dock.isFloating():
            return
        width = w.width()
        w.resizeDocks([dock], [width - max(MIN_CANVAS_COLUMN, int(width * CANVAS_SHARE))], Qt.Horizontal)
        probabilities = getattr(w, "probabilities_dock", None)
        if probabilities is not None and probabilities.isVisible() and not probabilities.isFloating() \
                and w.dockWidgetArea(probabilities) == self._training_area:
            w.resizeDocks([probabilities, dock], [PROBABILITIES_HEIGHT, w.height()], Qt.Vertical)

    def _restore_user_layout(self) -> None:
        """Put back the layout from before the run, unless the user has since moved the training dock."""
        state, self._user_layout = self._user_layout, None
        if state is None:
            return
        if self.dock.isFloating() or self.window.dockWidgetArea(self.dock) != self._training_area:
            return  # moved during the run: where the user put it is where it stays
        w = self.window
        size = w.size()
        self._restoring = True
        try:
            self.dock.hide()  # restoring around the visible panes' tab can make the window grow
            w.restoreState(state)
        finally:
            self._restoring = False
        if w.size() != size and not (w.windowState() & (Qt.WindowMaximized | Qt.WindowFullScreen)):
            w.resize(size)  # the layout put back, not a bigger window

    @Slot(bool)
    def _on_dock_toggled(self, shown: bool) -> None:
        if not shown and not self._restoring and self._user_layout is not None:
            self._restore_user_layout()  # closed by the user: the rest of the layout goes back too
            self.dock.hide()

    # ---- worker signals (queued into the GUI thread) -------------------------------------------

    @Slot(object)
    def _on_started(self, info: RunInfo) -> None:
        if self.sender() is not self._worker:
            return
        self.history = TrainingHistory(info)
        self.panes.configure(info)
        self.timer.start()
        self._status(f"Training {'-'.join(map(str, info.layer_sizes))} {info.config.activation}: "
                     f"{info.total_steps:,} steps")
        self.run_started.emit(info)

    @Slot(object)
    def _on_finished(self, outcome: RunOutcome) -> None:
        if self.sender() is not self._worker or self._closing:
            return
        self.refresh()  # every record was queued before this signal: none is lost
        if self.history is not None:
            self.panes.refresh(self.history, everything=True)
        self._end_run()
        self.outcome = outcome
        self.window.set_reading_model(outcome.model)
        self.panes.result_panel.show_outcome(outcome)
        if outcome.diverged:
            self.panes.status.setText("diverged")
            self._status("Training stopped by itself: " + outcome.message)
        else:
            self._status(f"Training done: test accuracy {outcome.test_accuracy:.2%}. Keep or revert?")
        self.run_finished.emit(outcome)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self.sender() is not self._worker:
            return
        self.refresh()
        if self.history is not None:
            self.panes.refresh(self.history, everything=True)
        self._end_run()
        self.window.set_reading_model(None)
        self.panes.progress.setRange(0, 1)
        self.panes.progress.setValue(0)
        self.panes.progress.setFormat("training failed")
        self.panes.status.setText(message)
        self._status("Training failed: " + message)
        self.run_failed.emit(message)

    def _end_run(self) -> None:
        self.timer.stop()
        self._running = False
        self.action_retrain.setEnabled(True)
        self.action_pause.blockSignals(True)
        self.action_pause.setChecked(False)
        self.action_pause.setText("&Pause training")
        self.action_pause.blockSignals(False)
        self.action_pause.setEnabled(False)
        self.action_stop.setEnabled(False)
        self.panes.status.setText("")
        self._join_thread()
        self._worker = None

    def _join_thread(self) -> None:
        if self.thread is not None and self.thread.isRunning():
            self.thread.wait(SHUTDOWN_WAIT_MS)

    # ---- every timer tick -------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        """Drain the worker's records into the history; redraw the panes or re-read the canvas.

        A tick does one of the two, never both, so no single tick keeps the GUI thread busy long.
        """
        worker = self._worker
        if worker is None or self.history is None:
            return
        records = worker.take_records()
        if records:
            self.history.add(records)
        h = self.history
        now = time.monotonic()
        reading_due = (h.weights_version != self._reading_version
                       and now - self._reading_time >= READING_MS / 1000)
        if reading_due and self._drew_last_tick:
            weights, biases = h.latest_weights
            self.window.set_reading_model(MLP.from_arrays(self._config.model_config(), weights, biases))
            self._reading_version = h.weights_version
            self._reading_time = now
            self._drew_last_tick = False
        else:
            self.panes.refresh(h)
            self._drew_last_tick = True

    # ---- pause, resume, stop ----------------------------------------------------------------

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        if self._worker is None:
            return
        self._worker.set_paused(paused)
        self.action_pause.blockSignals(True)
        self.action_pause.setChecked(paused)
        self.action_pause.blockSignals(False)
        self.action_pause.setText("&Resume training" if paused else "&Pause training")
        self.panes.status.setText("paused" if paused else "")
        self._status("Training paused" if paused else "Training resumed", 3000)
        self.paused_changed.emit(paused)

    @Slot()
    def stop(self) -> None:
        """End the run at the next step; the best weights so far are offered to keep."""
        if self._worker is None:
            return
        self._worker.stop()
        self.action_stop.setEnabled(False)
        self.action_pause.setEnabled(False)
        self.panes.status.setText("stopping…")

    # ---- the end ----------------------------------------------------------------------------

    def _model_path(self) -> Path:
        return model_io.free_path(model_io.user_models_dir(), f"digitpad-{time.strftime('%Y%m%d-%H%M%S')}")

    @Slot()
    def keep(self) -> Path | None:
        """Save the new model in the user's models folder and make it the current model."""
        o = self.outcome
        if o is None:
            return None
        res = o.result
        metrics = {"test_accuracy": o.test_accuracy, "val_accuracy": res.best_val_accuracy,
                   "best_epoch": res.best_epoch, "epochs_done": res.epochs_done, "steps": res.steps,
                   "train_seconds": round(res.seconds, 2)}
        metadata = model_io.build_metadata(o.model, train_config=o.config.to_dict(), seed=o.config.seed,
                                           metrics=metrics, stopped=o.stopped, diverged=o.diverged)
        try:
            path = model_io.save_model(self._model_path(), o.model, metadata)
        except (OSError, model_io.ModelFileError) as e:
            self.panes.result_panel.label.setText(f'<b style="color:#ef4444">Could not save the model:</b> {e}')
            return None
        self.outcome = None
        self.panes.result_panel.hide()
        self.window.set_model(o.model, metadata, path)
        self.window.set_reading_model(None)
        self._restore_user_layout()
        self._status(f"New model kept: {path}", 8000)
        self.kept.emit(str(path))
        return path

    @Slot()
    def revert(self, restore_layout: bool = True) -> None:
        """Throw the new model away; the canvas is read with the current model again."""
        if self.outcome is None:
            return
        self.outcome = None
        self.panes.result_panel.hide()
        self.window.set_reading_model(None)
        if restore_layout:
            self._restore_user_layout()
        self._status("Reverted to the current model", 5000)
        self.reverted.emit()

    def shutdown(self) -> None:
        """The window is closing: stop the worker, wait for its thread; nothing is saved half-way."""
        self._closing = True
        self.timer.stop()
        self._restore_user_layout()  # before the window remembers its state
        if self._worker is not None:
            self._worker.abandon()
        if self.thread is not None:
            self.thread.wait(SHUTDOWN_WAIT_MS)
        self._running = False
        self._worker = None

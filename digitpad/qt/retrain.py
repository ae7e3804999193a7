"""The Train page and its controller: settings inline, a live dashboard, your drawing read as it learns.

``TrainPage`` is a fixed composition: the settings (``TrainSettings``, the MNIST panel when
the data is missing, Start / Pause / Stop, the learning rate and momentum to change while it
trains, and at the end the result with Keep / Revert) on the left, the dashboard in the
middle (two tabs: ``TrainingPanes``, rebuilt for each run's number of layers, and the
``WeightsPane``; only the tab shown is redrawn), and on the right the shared drawing canvas
with its probability bars, so the user watches their own digit's probabilities sharpen
while the network learns.

``TrainController(window)`` owns a run: settings -> ``TrainConfig`` -> MNIST located ->
``TrainWorker`` in a ``QThread`` -> records drained by a GUI timer into a ``TrainingHistory``
-> dashboard redrawn, canvas read with the newest weights, the mode bar's progress moved ->
test accuracy measured in the worker -> Keep (saved atomically in the user's models folder by
a background job, then the current model) or Revert. A run goes on whichever page is shown.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStyle,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import data as data_mod
from digitpad.core import model_io, runs
from digitpad.core.mlp import MLP
from digitpad.qt.panes import Theme
from digitpad.qt.panes.inference import ProbabilitiesPane
from digitpad.qt.panes.training import ResultPanel, TrainingHistory, TrainingPanes
from digitpad.qt.panes.weights import WeightsPane
from digitpad.qt.train_dialog import DataPanel, TrainSettings
from digitpad.qt.worker import Job, RunInfo, RunOutcome, TrainWorker, release_thread

DATA_DIR_KEY = "data/dir"
REFRESH_MS = 80  # fastest redraw pace (two or three plots each time: the curves every other tick), whatever the step rate
SLOWEST_MS = 240  # slowest pace, on a machine where drawing is dear
REST_MS = 20  # at the end of a run, the plots' last data come a group per this pause (each painted on its own)
BUSY_SHARE = 0.10  # the pace slows when the window's thread was busier than this share of the last interval
READING_MS = 250  # the canvas is re-read with new weights at most this often
SHUTDOWN_WAIT_MS = 2000  # a closing window waits this long for the last step, then leaves the thread to end
SETTINGS_WIDTH = 370  # pixels: the settings column's default width
LIVE_WIDTH = 250  # pixels: the live drawing column's default width

log = logging.getLogger("digitpad")


class TrainPage(QWidget):
    """The Train page: settings and run controls | live dashboard | the drawing and its probabilities."""

    def __init__(self, theme: Theme, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("page_train")

        self.settings_form = TrainSettings(settings=settings)
        self.data_panel = DataPanel()
        self.data_panel.hide()
        self.start_button = QPushButton("&Start")
        self.start_button.setObjectName("train_start")
        self.start_button.setAutoDefault(True)  # Enter on the focused button starts: Ctrl+R, Enter
        self.start_button.setToolTip("Train a new network with these settings (Enter)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("train_pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setEnabled(False)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("train_stop")
        self.stop_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        self.live_box = LiveSettings()
        self.pending_note = QLabel("The network from the last run has not been kept; Start discards it.")
        self.pending_note.setObjectName("train_pending_note")
        self.pending_note.setWordWrap(True)
        self.pending_note.hide()
        self.result_panel = ResultPanel()
        self.result_panel.hide()
        line = QFrame()
        line.setFrameShape(QFrame.HLine)

        column = QWidget()
        column.setObjectName("train_settings_column")
        col = QVBoxLayout(column)
        col.setContentsMargins(8, 8, 8, 8)
        col.addWidget(self.settings_form)
        col.addWidget(self.data_panel)
        col.addLayout(buttons)
        col.addWidget(self.live_box)
        col.addWidget(self.pending_note)
        col.addWidget(line)
        col.addWidget(self.result_panel)
        col.addStretch(1)
        self.settings_scroll = QScrollArea()
        self.settings_scroll.setObjectName("train_settings_scroll")
        self.settings_scroll.setWidget(column)
        self.settings_scroll.setWidgetResizable(True)
        self.settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.settings_scroll.setFrameShape(QFrame.NoFrame)
        bar = self.settings_scroll.style().pixelMetric(QStyle.PM_ScrollBarExtent)
        self.settings_scroll.setMinimumWidth(column.minimumSizeHint().width() + bar)  # never cut off at the side

        self.panes = TrainingPanes(theme=theme)
        self.weights = WeightsPane(theme=theme)
        self.dashboard = QTabWidget()
        self.dashboard.setObjectName("train_dashboard")
        self.dashboard.setDocumentMode(True)
        self.dashboard.addTab(self.panes, "Curves and layers")
        self.dashboard.addTab(self.weights, "Weights")
        self.dashboard.setTabToolTip(1, "Each layer's weights now against at initialisation, "
                                        "and what the first layer's units look for")

        live = QWidget()
        live.setObjectName("train_live")
        lv = QVBoxLayout(live)
        lv.setContentsMargins(4, 8, 8, 8)
        caption = QLabel("Your drawing, read by the network as it learns")
        caption.setObjectName("train_live_caption")
        caption.setWordWrap(True)
        lv.addWidget(caption)
        self.canvas_slot = QVBoxLayout()  # the window's one canvas sits here while this page is shown
        self.canvas_slot.setContentsMargins(0, 0, 0, 0)
        lv.addLayout(self.canvas_slot, 3)
        self.probabilities = ProbabilitiesPane(theme=theme)
        self.probabilities.setObjectName("train_probabilities")
        self.probabilities.setMinimumSize(200, 130)
        lv.addWidget(self.probabilities, 2)
        live.setMinimumWidth(220)
        live.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("train_splitter")
        self.splitter.addWidget(self.settings_scroll)
        self.splitter.addWidget(self.dashboard)
        self.splitter.addWidget(live)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(1, 3)  # a narrower window takes most from the dashboard, some from the
        self.splitter.setStretchFactor(2, 1)  # drawing, none from the settings (already at their minimum)
        self.splitters = (self.splitter,)
        self.default_sizes(1200)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.splitter)

    def default_sizes(self, width: int) -> None:
        """Settings and the live drawing at their default widths, the dashboard the rest."""
        self.splitter.setSizes([SETTINGS_WIDTH, max(width - SETTINGS_WIDTH - LIVE_WIDTH, 300), LIVE_WIDTH])

    def apply_theme(self, theme: Theme) -> None:
        self.panes.apply_theme(theme)
        self.weights.apply_theme(theme)
        self.probabilities.apply_theme(theme)


class LiveSettings(QGroupBox):
    """The settings a run takes while it trains: learning rate, and momentum for SGD."""

    def __init__(self, parent=None):
        super().__init__("While it trains", parent)
        self.setObjectName("train_live_settings")
        self.lr = QLineEdit()
        self.lr.setObjectName("train_live_lr")
        self.lr.setToolTip("A new learning rate from the next step on, in place of the schedule")
        self.momentum = QLineEdit()
        self.momentum.setObjectName("train_live_momentum")
        self.momentum.setToolTip("SGD's momentum from the next step on (Adam has none)")
        self.apply_button = QPushButton("&Apply")
        self.apply_button.setObjectName("train_live_apply")
        self.apply_button.setToolTip("Change the settings of the run now; the change is marked on the plots")
        self.note = QLabel()
        self.note.setObjectName("train_live_note")
        self.note.setWordWrap(True)
        form = QFormLayout(self)
        form.setContentsMargins(6, 4, 6, 4)
        form.addRow("Learning rate", self.lr)
        form.addRow("Momentum", self.momentum)
        form.addRow(self.apply_button)
        form.addRow(self.note)
        self.lr.returnPressed.connect(self.apply_button.click)
        self.momentum.returnPressed.connect(self.apply_button.click)
        self.set_run(None)

    def set_run(self, config) -> None:
        """Enabled for a run of ``config`` (a TrainConfig), disabled with None."""
        running = config is not None
        for w in (self.lr, self.apply_button):
            w.setEnabled(running)
        sgd = running and config.optimizer == "sgd"
        self.momentum.setEnabled(sgd)
        self._applied = {"lr": config.lr, "momentum": config.momentum} if running else {}
        if running:
            self.lr.setText(f"{config.lr:g}")
            self.momentum.setText(f"{config.momentum:g}" if sgd else "")
            self.momentum.setPlaceholderText("" if sgd else "SGD only")
            self.note.setText("")

    def changes(self) -> dict:
        """The values typed that differ from the run's, as ``{"lr": …, "momentum": …}``; ``ValueError``
        names a field that is not a number."""
        out = {}
        for name, field, label in (("lr", self.lr, "learning rate"), ("momentum", self.momentum, "momentum")):
            text = field.text().strip()
            if not field.isEnabled() or not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{label}: {text!r} is not a number") from None
            if value != self._applied.get(name):
                out[name] = value
        return out

    def applied(self, changes: dict) -> None:
        """``changes`` reached the run."""
        self._applied.update(changes)
        self.note.setText("Changed from the next step: " + ", ".join(
            f"{'learning rate' if k == 'lr' else k} {v:g}" for k, v in changes.items()))


class TrainController(QObject):
    """Owns a run from Start to Keep / Revert; one run at a time."""

    run_started = Signal(object)  # RunInfo
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)
    paused_changed = Signal(bool)
    kept = Signal(str)  # path of the saved model
    reverted = Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.settings: QSettings = window.settings
        self.page: TrainPage = window.train_page
        self.panes = self.page.panes
        self.history: TrainingHistory | None = None
        self.outcome: RunOutcome | None = None  # waiting for Keep or Revert
        self.thread: QThread | None = None  # the last run's thread (kept to be joined)
        self._worker: TrainWorker | None = None
        self._running = False
        self._closing = False
        self._reading_version = 0
        self._reading_time = 0.0
        self._drew_last_tick = False
        self._pace_at = (time.monotonic(), time.thread_time())  # (wall, GUI-thread CPU) at the last tick
        self.redraw_pending = False  # the end of a run's last plots are still being fed, a group per turn
        self._config = None
        self._weights_info = None  # the run the Weights tab still has to be made ready for (RunInfo), or None
        self._waiting_config = None  # (config, start's hooks): asked to start while MNIST was missing
        self._then_close = False  # "Keep and quit": keep (when the run ends), then close once it is saved
        self.saving = False  # Keep was asked for and the model file is still being written
        self._save_job: Job | None = None  # that save (kept until its thread has ended)

        self.action_retrain = QAction("&Retrain…", self)
        self.action_retrain.setObjectName("action_retrain")
        self.action_retrain.setShortcut(QKeySequence("Ctrl+R"))
        self.action_retrain.setStatusTip("Train a new network on MNIST and watch it learn (then Enter)")
        self.action_retrain.triggered.connect(self.open_page)
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
        self.actions = (self.action_retrain, self.action_pause, self.action_stop)
        for action in self.actions:
            window.addAction(action)

        p = self.page
        p.start_button.clicked.connect(self.start_from_page)
        p.pause_button.toggled.connect(self.set_paused)
        p.live_box.apply_button.clicked.connect(self.change_settings)
        p.stop_button.clicked.connect(self.stop)
        p.result_panel.keep_requested.connect(self.keep)
        p.result_panel.revert_requested.connect(self.revert)
        p.data_panel.found.connect(self._on_data_found)
        p.dashboard.currentChanged.connect(self._configure_weights)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self._rest_timer = QTimer(self)  # the end of a run: the next group of plots fed after a pause
        self._rest_timer.setSingleShot(True)
        self._rest_timer.setInterval(REST_MS)
        self._rest_timer.timeout.connect(self._redraw_rest)
        self.panes.prepare(self.page.settings_form.config())  # axes and heatmaps ready before the first run

    # ---- state -----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._running

    def needs_decision(self) -> bool:
        """A run is going, or a finished one is neither kept nor reverted: quitting must ask."""
        return self._running or self.outcome is not None

    def _status(self, text: str, ms: int = 0) -> None:
        self.window.show_status(text, ms)

    # ---- starting ----------------------------------------------------------------------------

    @Slot()
    def open_page(self) -> None:
        """Train ▸ Retrain…: the Train page, Quick selected, Start focused (so Enter trains)."""
        self.window.show_page(self.page)
        if not self._running:
            self.page.settings_form.select_preset("quick")
        self.check_data()
        self.page.start_button.setFocus(Qt.ShortcutFocusReason)

    def check_data(self) -> Path | None:
        """The MNIST folder, or None with the panel that gets it shown on the page."""
        folder = data_mod.find_data_dir(self.settings.value(DATA_DIR_KEY) or None)
        self.page.data_panel.setVisible(folder is None and not self._running)
        return folder

    @Slot()
    def start_from_page(self) -> bool:
        config = self.page.settings_form.try_config()
        if config is None:
            return False
        self.page.settings_form.remember(config)
        return self.start(config)

    @Slot(object)
    def _on_data_found(self, folder: Path) -> None:
        self.settings.setValue(DATA_DIR_KEY, str(folder))
        self.page.data_panel.hide()
        waiting, self._waiting_config = self._waiting_config, None
        if waiting is not None:
            config, hooks = waiting
            self.start(config, **hooks)

    def locate_data(self) -> Path | None:
        """A folder with MNIST (remembered or found), or None."""
        return data_mod.find_data_dir(self.settings.value(DATA_DIR_KEY) or None)

    def start(self, config, mnist=None, data_dir=None, make_trainer=None, source: str = "app") -> bool:
        """Start training ``config`` in a worker thread; ``mnist`` (any object with the four arrays) skips loading.

        ``make_trainer(config, mnist)`` gives another record generator to drive the run (a
        fine-tune: a warm start on other data), ``source`` its name in the run history; the
        dashboard, the live reading and Keep / Revert are the same.

        Returns False when a run is already going or MNIST is missing (the page then shows
        how to get it, and the run starts once it is there).
        """
        if self._running or self._closing or self.saving:
            return False
        if mnist is None and data_dir is None:
            data_dir = self.locate_data()
            if data_dir is None:
                self._waiting_config = (config, {"make_trainer": make_trainer, "source": source})
                self.window.show_page(self.page)
                self.page.data_panel.show()
                self._status("Training needs MNIST: download it or choose a folder that has it")
                return False
        if self.outcome is not None:
            self.revert()
        self._join_thread()
        self._config = config
        self._rest_timer.stop()  # the last run's plots still being fed: the new run empties them anyway
        self.redraw_pending = False
        self.history = None
        self._reading_version = 0
        worker = TrainWorker(config, mnist=mnist, data_dir=data_dir, old_model=self.window.current_model,
                             make_trainer=make_trainer, source=source)
        thread = QThread()
        thread.setObjectName("digitpad-training")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.run_started.connect(self._on_started)
        worker.run_finished.connect(self._on_finished)
        worker.run_failed.connect(self._on_failed)
        self._worker, self.thread = worker, thread
        self._set_running(True)
        self.page.result_panel.hide()
        self.page.data_panel.hide()
        self.panes.prepare(config)  # lay out (and first paint) the plots while the data loads
        self.panes.progress.setRange(0, 0)
        self.panes.set_progress_text("loading MNIST…" if mnist is None else "starting…")
        self.panes.status.setText("")
        self.window.mode_bar.set_progress(None, "training: loading MNIST…")
        self._status("Training: loading MNIST…" if mnist is None else "Training…")
        thread.start()
        return True

    def _set_running(self, running: bool) -> None:
        self._running = running
        p = self.page
        for w in (p.start_button, self.action_retrain):
            w.setEnabled(not running)
        for w in (p.pause_button, p.stop_button, self.action_pause, self.action_stop):
            w.setEnabled(running)
        p.settings_form.setEnabled(not running)
        p.pending_note.setVisible(False)
        if not running:
            for w in (self.action_pause, p.pause_button):
                w.blockSignals(True)
                w.setChecked(False)
                w.blockSignals(False)
            self.action_pause.setText("&Pause training")
            p.pause_button.setText("Pause")

    # ---- worker signals (queued into the GUI thread) -------------------------------------------

    @Slot(object)
    def _on_started(self, info: RunInfo) -> None:
        if self.sender() is not self._worker:
            return
        self.history = TrainingHistory(info)
        self.panes.configure(info)
        self._weights_info = info  # the Weights tab is built for the run when it is first shown (~0.1 s of widgets)
        self._configure_weights()
        self.page.live_box.set_run(info.config)
        self.timer.setInterval(REFRESH_MS)
        self._pace_at = (time.monotonic(), time.thread_time())
        self.timer.start()
        self._status(f"Training {'-'.join(map(str, info.layer_sizes))} {info.config.activation}: "
                     f"{info.total_steps:,} steps")
        self.run_started.emit(info)

    @Slot(object)
    def _on_finished(self, outcome: RunOutcome) -> None:
        if self.sender() is not self._worker or self._closing:
            return
        self._drain()  # every record was queued before this signal: none is lost
        self.redraw_pending = True  # the plots take their last data a group at a time, after this turn
        self._rest_timer.start()
        self._end_run()
        self.outcome = outcome
        self.window.set_reading_model(outcome.model)
        self.page.result_panel.show_outcome(outcome)
        self.page.pending_note.show()
        QTimer.singleShot(0, lambda: self.page.settings_scroll.ensureWidgetVisible(self.page.result_panel))
        self.window.mode_bar.set_progress(1.0, "training finished: keep or revert the new network")
        if outcome.diverged:
            self.panes.status.setText("diverged")
            self._status("Training stopped by itself: " + outcome.message)
        elif outcome.stopped:
            self._status(f"Training stopped after {outcome.result.steps:,} steps: test accuracy "
                         f"{outcome.test_accuracy:.2%}. Keep or revert?")
        else:
            self._status(f"Training done: test accuracy {outcome.test_accuracy:.2%}. Keep or revert?")
        self.run_finished.emit(outcome)
        if self._then_close and not self.keep():
            self._then_close = False

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self.sender() is not self._worker:
            return
        self.refresh()
        self._redraw_rest()
        self._end_run()
        self._then_close = False
        self.window.set_reading_model(None)
        self.window.mode_bar.set_progress(None)
        self.panes.progress.setRange(0, 1)
        self.panes.progress.setValue(0)
        self.panes.set_progress_text("training failed")
        self.panes.status.setText(message)
        self._status("Training failed: " + message)
        self.run_failed.emit(message)

    def _end_run(self) -> None:
        self.timer.stop()
        self.page.live_box.set_run(None)
        self._set_running(False)
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
        self._pace(time.monotonic(), time.thread_time())
        self._drain()
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
            self._redraw_visible(h)
            self._drew_last_tick = True
            if h.latest is not None:
                r = h.latest
                self.window.mode_bar.set_progress(r.step / max(r.total_steps, 1),
                                                  f"training: step {r.step:,} of {r.total_steps:,}")

    def _drain(self) -> None:
        """Move the worker's new records into the history."""
        records = self._worker.take_records() if self._worker is not None else None
        if records:
            self.history.add(records)

    def _pace(self, wall: float, cpu: float) -> None:
        """Slow the redraws down when the window's thread was busy (drawing, painting, reading the
        canvas) more than ``BUSY_SHARE`` of the last interval, and speed them up again when it was
        not: on a slow machine the run keeps its cores and the window stays free for the user.
        ``wall`` and ``cpu`` are now's monotonic clock and the GUI thread's CPU time (seconds)."""
        then_wall, then_cpu = self._pace_at
        self._pace_at = (wall, cpu)
        if wall - then_wall <= 0:
            return
        share = (cpu - then_cpu) / (wall - then_wall)
        now = self.timer.interval()
        wanted = now * share / BUSY_SHARE  # the interval at which the same work would be BUSY_SHARE
        self.timer.setInterval(int(min(max(0.5 * now + 0.5 * wanted, REFRESH_MS), SLOWEST_MS)))

    def _redraw_visible(self, h: TrainingHistory, everything: bool = False) -> bool:
        """Feed the dashboard tab that is shown (none while another page is; they catch up when shown), or
        with ``everything`` one more group of plots of both tabs; True while a group is still due."""
        page = self.page
        if not (everything or page.isVisible()):
            return False
        more = False
        if everything or page.dashboard.currentWidget() is self.panes:
            more = self.panes.refresh(h)
        if page.dashboard.currentWidget() is page.weights or (everything and self._weights_info is None):
            self._show_weights(h)
        return more

    def _show_weights(self, h: TrainingHistory) -> None:
        weights = self.page.weights
        if self._weights_info is None and h.latest_weights is not None and weights.step != h.latest_weights_step:
            weights.show_weights(h.latest_weights[0], h.latest_weights_step)

    @Slot()
    def _configure_weights(self) -> None:
        """Build the Weights tab for the run once it is shown (a hidden tab costs nothing at the start)."""
        page = self.page
        if self._weights_info is None or page.dashboard.currentWidget() is not page.weights:
            return
        page.weights.configure(self._weights_info)
        self._weights_info = None
        if self.history is not None:
            self._show_weights(self.history)

    def _redraw_rest(self) -> None:
        """The end of a run: every plot fed its last data, a group per turn of the event loop (never one long stall)."""
        h = self.history
        self.redraw_pending = h is not None and self._redraw_visible(h, everything=True)
        if self.redraw_pending:  # after a pause: the group's paint, and the window's other events, come first
            self._rest_timer.start()

    # ---- settings changed while it trains -----------------------------------------------------

    @Slot()
    def change_settings(self) -> bool:
        """Hand the learning rate (and SGD's momentum) typed on the page to the run; False with a note if not."""
        box = self.page.live_box
        if self._worker is None:
            return False
        try:
            changes = box.changes()
            if changes:
                self._worker.change_settings(**changes)
        except ValueError as e:
            box.note.setText(str(e))
            self._status(f"Not changed: {e}", 5000)
            return False
        if changes:
            box.applied(changes)
            self._status(box.note.text(), 5000)
        return True

    # ---- pause, resume, stop ----------------------------------------------------------------

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        if self._worker is None:
            return
        self._worker.set_paused(paused)
        for w in (self.action_pause, self.page.pause_button):
            w.blockSignals(True)
            w.setChecked(paused)
            w.blockSignals(False)
        self.action_pause.setText("&Resume training" if paused else "&Pause training")
        self.page.pause_button.setText("Resume" if paused else "Pause")
        self.panes.status.setText("paused" if paused else "")
        self._status("Training paused" if paused else "Training resumed", 3000)
        self.paused_changed.emit(paused)

    @Slot()
    def stop(self) -> None:
        """End the run at the next step; the best weights so far are offered to keep."""
        if self._worker is None:
            return
        self._worker.stop()
        for w in (self.action_stop, self.action_pause, self.page.stop_button, self.page.pause_button):
            w.setEnabled(False)
        self.panes.status.setText("stopping…")

    # ---- the end ----------------------------------------------------------------------------

    def _model_path(self) -> Path:
        return model_io.free_path(model_io.user_models_dir(), f"digitpad-{time.strftime('%Y%m%d-%H%M%S')}")

    @Slot()
    def keep(self) -> bool:
        """Save the new model in the user's models folder, in the background; once saved it becomes the
        current model and ``kept`` carries its path. False when there is nothing to keep or it is being saved.

        Compressing and writing the file takes ~0.1 s, too long for the GUI thread. Until it is
        done the new model stays offered (Keep and Revert wait); a save that fails says so on the
        page and leaves the current model as it was.
        """
        o = self.outcome
        if o is None or self.saving:
            return False
        res = o.result
        metrics = {"test_accuracy": o.test_accuracy, "val_accuracy": res.best_val_accuracy,
                   "best_epoch": res.best_epoch, "epochs_done": res.epochs_done, "steps": res.steps,
                   "train_seconds": round(res.seconds, 2)}
        metadata = model_io.build_metadata(o.model, train_config=o.config.to_dict(), seed=o.config.seed,
                                           metrics=metrics, stopped=o.stopped, diverged=o.diverged)

        def save(progress, cancelled) -> Path:  # in a worker thread
            path = model_io.save_model(self._model_path(), o.model, metadata)
            if o.run_folder is not None:
                try:
                    runs.set_kept(o.run_folder, path)
                except (OSError, ValueError) as e:  # the model is kept all the same
                    log.warning("the run history could not note the kept model: %s", e)
            return path

        panel = self.page.result_panel
        panel.keep_button.setEnabled(False)
        panel.revert_button.setEnabled(False)
        self._status("Saving the new model…")
        self.saving = True
        self._save_job = Job(save, lambda path: self._kept(o, metadata, path), self._keep_failed,
                             on_finished=self._save_ended, expected=(OSError, model_io.ModelFileError))
        return True

    def _save_ended(self) -> None:
        if self._save_job is not None and self._save_job.finished:
            self._save_job = None

    def _kept(self, o: RunOutcome, metadata: dict, path: Path) -> None:
        self.saving = False
        self.outcome = None
        self.page.result_panel.hide()
        self.page.pending_note.hide()
        self.window.mode_bar.set_progress(None)
        self.window.set_model(o.model, metadata, path)
        self.window.set_reading_model(None)
        self._status(f"New model kept: {path}", 8000)
        self.kept.emit(str(path))
        if self._then_close:
            self._then_close = False
            self.window.close()

    def _keep_failed(self, message: str) -> None:
        self.saving = False
        self._then_close = False  # quitting would lose the new model: the window stays
        panel = self.page.result_panel
        panel.label.setText(f'<b style="color:#ef4444">Could not save the model:</b> {html.escape(message)}')
        panel.keep_button.setEnabled(self.outcome is not None and self.outcome.model.is_finite())
        panel.revert_button.setEnabled(True)
        self._status(f"The new model was not saved: {message}", 8000)

    @Slot()
    def revert(self) -> None:
        """Throw the new model away; the canvas is read with the current model again (not while Keep saves it)."""
        if self.outcome is None or self.saving:
            return
        self.outcome = None
        self.page.result_panel.hide()
        self.page.pending_note.hide()
        self.window.mode_bar.set_progress(None)
        self.window.set_reading_model(None)
        self._status("Reverted to the current model", 5000)
        self.reverted.emit()

    def keep_and_close(self) -> None:
        """Quitting with "Keep and quit": keep the finished run now, or stop the run and keep it when it ends."""
        self._then_close = True  # closed once the model is saved (or left open if the save fails)
        if self._running:
            self.stop()
            self._status("Stopping the run to keep it, then quitting…")
        elif not self.keep() and not self.saving:
            self._then_close = False

    def shutdown(self) -> None:
        """The window is closing: abandon the run without saving; never destroy a thread that still runs.

        The thread gets a moment to end at its next step; a step that takes longer (a large
        network) is left to finish on its own (``worker.release_thread``), so closing is never
        held up by it and never aborts the app.
        """
        self._closing = True
        self._then_close = False
        self.timer.stop()
        if self._save_job is not None:  # a model being kept is written out before the window goes
            Job.wait_all()
        self.page.data_panel.shutdown()
        if self._worker is not None:
            self._worker.abandon()
        if self.thread is not None and not self.thread.wait(SHUTDOWN_WAIT_MS):
            release_thread(self.thread, self._worker)
        self._running = False
        self._worker = None

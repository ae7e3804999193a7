"""The main window: a mode bar and its pages, menus, model handling, remembered settings.

The window wires the canvas to the network: a stroke update schedules a read on a
single-shot timer at the display rate (so reads coalesce while the pen moves), the end
of a stroke reads at once. A read is bitmap -> ``preprocess`` -> ``MLP.trace`` -> a
``Reading``, which the label and panes show and ``reading_changed`` carries.

Each page is a fixed composition of layouts and splitters (Draw, Train, Evaluate, Runs,
My digits, Explore: one module each), registered in one table in ``_build_pages``; the
mode bar on the left and Ctrl+<number> switch between them. The one canvas sits on
whichever of Draw and Train is shown, so both show the same drawing, its undo history and
its reading. The controllers (training, evaluation, why this answer, experiments,
explore, robustness, samples) are created here and given the window. Splitter sizes, the
page and the panes shown are saved under a layout version; a state from another version,
or one that does not restore, gives the default layout.

It is the longest module because it is where the pages, the menus and toolbar, the
current model and the remembered settings meet; every page and controller has a module of
its own, and what is left here is their wiring.
"""

from __future__ import annotations

import html
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QRect, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QHBoxLayout,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import model_io
from digitpad.core.mlp import MLP
from digitpad.core.reading import DEFAULT_THRESHOLD, Reading, blank_reading, read_image, read_input, reread
from digitpad.qt.canvas import BITMAP_SIZE, DEFAULT_PEN_WIDTH, PEN_WIDTH_RANGE, Canvas
from digitpad.qt.draw import DrawPage
from digitpad.qt.evaluate import EvaluateController, EvaluatePage
from digitpad.qt.experiments import ExperimentController
from digitpad.qt.explore_page import ExploreController, ExplorePage
from digitpad.qt.robustness import RobustnessController
from digitpad.qt.panes import DEFAULT_THEME, THEMES, Theme
from digitpad.qt.retrain import TrainController, TrainPage
from digitpad.qt.runs_page import RunsPage
from digitpad.qt.samples_page import SamplesController, SamplesPage
from digitpad.qt.why import WhyController
from digitpad.qt.worker import Job

log = logging.getLogger("digitpad")

SETTINGS_VERSION = 2  # of the saved layout; 1 was the dock layout
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.pgm *.ppm *.tif *.tiff *.webp);;All files (*)"
MODEL_FILTER = "digitpad models (*.npz);;All files (*)"
MODEL_SUFFIXES = (".npz",)
DEFAULT_SIZE = (1280, 800)
MODE_BAR_WIDTH = 84  # pixels
SCREEN_SHARE = 0.92  # the first window takes at most this share of the screen's free area

# what no menu action says: the rest of F1's table is generated from the window's actions
SHORTCUTS_WITHOUT_ACTIONS = [
    ("Draw", "left mouse button, pen or finger on the canvas"),
    ("Cancel the stroke being drawn", "right mouse button"),
    ("Open an image or load a model", "drop the file on the window"),
    ("Start training on the Train page", "Enter (after Ctrl+R)"),
]


def _settings_float(settings: QSettings, key: str, default: float) -> float:
    try:
        value = float(settings.value(key, default))
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) else default


def gray_to_rgba(image: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] or uint8 -> (H, W, 4) uint8 grey, opaque."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    rgba = np.empty((*image.shape, 4), np.uint8)
    rgba[..., :3] = image[..., None]
    rgba[..., 3] = 255
    return rgba


class ModeBar(QFrame):
    """The slim bar on the left that switches pages; a thin bar under Train shows a run's progress."""

    page_chosen = Signal(int)  # index of the page

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("mode_bar")
        self.setFrameShape(QFrame.NoFrame)
        self.setFixedWidth(MODE_BAR_WIDTH)  # showing the progress bar must not narrow the page (and the canvas)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.group.idClicked.connect(self.page_chosen)
        self.buttons: list[QToolButton] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 8, 4, 8)
        self._layout.setSpacing(4)
        self._layout.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setObjectName("mode_train_progress")
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(5)
        self.progress.setRange(0, 1000)
        self.progress.hide()

    def add_page(self, title: str, name: str, tip: str) -> QToolButton:
        button = QToolButton()
        button.setObjectName(f"mode_{name}")
        button.setText(title)
        button.setToolTip(tip)
        button.setCheckable(True)
        button.setAutoRaise(True)
        button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        button.setFixedSize(MODE_BAR_WIDTH - 8, 44)
        button.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.group.addButton(button, len(self.buttons))
        self._layout.insertWidget(self._layout.count() - 1, button)
        if name == "train":
            self._layout.insertWidget(self._layout.count() - 1, self.progress)
        self.buttons.append(button)
        return button

    def set_current(self, index: int) -> None:
        self.buttons[index].setChecked(True)

    def set_progress(self, fraction: float | None, text: str = "") -> None:
        """A run's progress under Train: ``fraction`` in [0, 1], None while it is unknown; no ``text`` hides it."""
        if not text and fraction is None:
            self.progress.hide()
            return
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        self.progress.setToolTip(text)
        self.progress.show()


class MainWindow(QMainWindow):
    """The digitpad window: a mode bar and the Draw, Train and Evaluate pages."""

    reading_changed = Signal(object)  # Reading, after every read
    model_changed = Signal(object)  # the new current MLP (None when there is none)
    theme_changed = Signal(str)  # the theme's name, after the window itself is recoloured
    page_changed = Signal(object)  # the page now shown

    def __init__(self, model_path: str | Path | None = None, settings: QSettings | None = None):
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("digitpad")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("digitpad", "digitpad")
        self.current_model: MLP | None = None
        self.current_metadata: dict = {}
        self.current_model_path: Path | None = None
        self._reading_override: MLP | None = None
        self._external_input: tuple | None = None  # (image28, label) shown by show_input
        self._placing_input = False  # show_input is putting its picture on the canvas: no read of that
        self.reading: Reading = blank_reading(None)
        self.last_message: QMessageBox | None = None
        self.quit_question: QMessageBox | None = None
        self._quit_decided = False
        self.drop_highlight = False  # a file is held over the window
        self.threshold = DEFAULT_THRESHOLD
        self.theme: Theme = THEMES[DEFAULT_THEME]
        self.retrain: TrainController | None = None  # set once the pages exist
        self._training_prepared = None  # the job loading the training step's compiled loops, once

        self._build_pages()
        self._build_actions()
        self.retrain = TrainController(self)
        self.my_digits = SamplesController(self)
        self.evaluation = EvaluateController(self)
        self.why = WhyController(self)
        self.experiments = ExperimentController(self)
        self.explore = ExploreController(self)
        self.robustness = RobustnessController(self)
        self.controllers = (self.retrain, self.evaluation, self.experiments, self.explore, self.robustness)
        self.runs_page.model_requested.connect(self._load_run_model)
        self.runs_page.status.connect(lambda text: self.show_status(text, 6000))
        self.page_changed.connect(lambda page: self.runs_page.refresh() if page is self.runs_page else None)
        self.theme_changed.connect(lambda name: self.runs_page.apply_theme(THEMES.get(name, self.theme)))
        self._build_menus_and_toolbar()
        self._build_status_bar()

        # reads while a stroke grows: at most one per display frame, the first at once
        self._read_timer = QTimer(self)
        self._read_timer.setSingleShot(True)
        self._read_timer.setTimerType(Qt.PreciseTimer)
        self._read_timer.timeout.connect(self.read_now)
        self._frame_s = 1.0 / 60.0
        self._last_read = -1.0
        self.canvas.stroke_changed.connect(self._on_stroke_changed)
        self.canvas.drawing_changed.connect(self._on_drawing_changed)
        self.canvas.history_changed.connect(self._update_edit_actions)
        self.canvas.pen_width_changed.connect(self._on_pen_width_changed)

        self._restore_settings()
        self._update_status()
        self._load_initial_model(model_path)
        self._update_banner_buttons()
        self._update_edit_actions()
        self.read_now()

    # ---- construction --------------------------------------------------------------------------

    def _build_pages(self) -> None:
        th = self.theme
        self.canvas = Canvas()
        self.draw_page = DrawPage(th)
        self.train_page = TrainPage(th, settings=self.settings)
        self.evaluate_page = EvaluatePage(th)
        self.runs_page = RunsPage(theme=th)
        self.samples_page = SamplesPage()
        self.explore_page = ExplorePage(th)
        self._canvas_slots = {self.draw_page: self.draw_page.canvas_slot,
                              self.train_page: self.train_page.canvas_slot}
        # the panes each page shows a reading in: only the page on screen is fed at once,
        # the others when they are shown (a reading costs the GUI thread a few ms per pane)
        self._reading_panes = {self.draw_page: self.draw_page.panes,
                               self.train_page: (self.train_page.probabilities,)}
        self._stale_pages: set = set()
        d = self.draw_page
        self.banner, self.reading_label, self.hint = d.banner, d.reading_label, d.hint
        self.probabilities, self.network_input = d.probabilities, d.network_input
        self.activations, self.logits = d.activations, d.logits
        self.panes = d.panes
        self.banner.load_button.clicked.connect(self.choose_model)
        self.banner.shipped_button.clicked.connect(self.use_shipped_model)

        self.stack = QStackedWidget()
        self.stack.setObjectName("pages")
        self.mode_bar = ModeBar()
        self.pages: list[QWidget] = []
        for page, title, tip in (
                (self.draw_page, "Draw", "Draw a digit and see the network read it"),
                (self.train_page, "Train", "Train a new network and watch it learn"),
                (self.evaluate_page, "Evaluate", "How good the model is on the test set"),
                (self.runs_page, "Runs", "Every training run, side by side"),
                (self.samples_page, "My digits", "Your own digits: teach the network your handwriting"),
                (self.explore_page, "Explore", "The data, the network's map of the digits, a lab")):
            self._add_page(page, title, tip)
        self.mode_bar.page_chosen.connect(lambda i: self.show_page(self.pages[i]))
        central = QWidget()
        central.setObjectName("central")
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.mode_bar)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.show_page(self.draw_page)

    def _add_page(self, page: QWidget, title: str, tip: str) -> None:
        """Put ``page`` in the stack and on the mode bar (Ctrl+<its number> shows it)."""
        page.setProperty("page_title", title)
        self.pages.append(page)
        self.stack.addWidget(page)
        self.mode_bar.add_page(title, page.objectName().removeprefix("page_"), f"{tip} (Ctrl+{len(self.pages)})")

    def current_page(self) -> QWidget:
        return self.stack.currentWidget()

    def show_page(self, page: QWidget) -> None:
        """Show ``page``; the canvas goes with Draw and Train (one drawing, read the same way on both)."""
        slot = self._canvas_slots.get(page)
        if slot is not None and slot.indexOf(self.canvas) < 0:
            slot.addWidget(self.canvas)
            self.canvas.show()
        self.stack.setCurrentWidget(page)
        self.mode_bar.set_current(self.pages.index(page))
        if page in self._stale_pages:
            self._stale_pages.discard(page)
            for pane in self._reading_panes[page]:
                pane.set_reading(self.reading)
        if page is self.train_page and self.retrain is not None:
            self.retrain.check_data()
        if page in (self.train_page, self.samples_page):
            self._prepare_training()
        self.page_changed.emit(page)

    def _prepare_training(self) -> None:
        """Load the training step's compiled loops in the background when a page that trains is first shown.

        Importing numba and loading the loops takes about half a second, some of it holding
        the GIL; done before Start, a run neither waits for it nor stalls the window with it.
        """
        if self._training_prepared is None:
            from digitpad.core import kernels

            self._training_prepared = Job(lambda progress, cancel: kernels.prepare(),
                                          on_done=lambda compiled: None, on_failed=lambda message: None)

    def _action(self, text: str, name: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when the toolbar is hidden
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.action_open_image = a("&Open image…", "action_open_image", self.choose_image, QKeySequence.Open,
                                   "Read a digit from a picture")
        self.action_save_drawing = a("&Save drawing as PNG…", "action_save_drawing", self.choose_save_drawing,
                                     QKeySequence.Save, "Save the canvas as a PNG image")
        self.action_load_model = a("&Load model…", "action_load_model", self.choose_model, "Ctrl+L",
                                   "Read with another model file")
        self.action_save_model = a("Save model &as…", "action_save_model", self.choose_save_model,
                                   "Ctrl+Shift+S", "Save the current model to a file")
        self.action_shipped_model = a("Use the &shipped model", "action_shipped_model", self.use_shipped_model,
                                      tip="Go back to the model that comes with digitpad")
        self.action_quit = a("&Quit", "action_quit", self.close, QKeySequence.Quit)
        self.action_undo = a("&Undo stroke", "action_undo", self.canvas.undo, QKeySequence.Undo,
                             "Undo the last stroke (Ctrl+Z)")
        self.action_redo = a("&Redo stroke", "action_redo", self.canvas.redo, ["Ctrl+Shift+Z", "Ctrl+Y"],
                             "Redo (Ctrl+Shift+Z)")
        self.action_clear = a("&Clear", "action_clear", self.canvas.clear, [Qt.Key_Escape, Qt.Key_Delete],
                              "Clear the canvas (Esc)")
        self.action_thinner = a("&Thinner pen", "action_thinner", lambda: self._nudge_pen(-2.0), "[")
        self.action_wider = a("&Wider pen", "action_wider", lambda: self._nudge_pen(2.0), "]")
        self.action_shortcuts = a("&Keyboard shortcuts", "action_shortcuts", self.show_shortcuts,
                                  QKeySequence.HelpContents)
        self.action_about = a("&About digitpad", "action_about", self.show_about)
        self.action_reset_layout = a("&Reset layout", "action_reset_layout", self.reset_layout)
        self.page_actions = [
            a(f"&{title}", f"action_page_{page.objectName().removeprefix('page_')}",
              lambda checked=False, p=page: self.show_page(p), f"Ctrl+{i + 1}", f"Show the {title} page")
            for i, (title, page) in enumerate((p.property("page_title"), p) for p in self.pages)]
        self.pane_actions = {}
        d = self.draw_page
        for key, label, box in (("probabilities", "&Probabilities", d.probabilities_box),
                                ("network_input", "&What the network sees", d.network_input_box),
                                ("network", "&Inside the network", d.network_box)):
            act = QAction(label, self, checkable=True, checked=True)
            act.setObjectName(f"action_show_{key}")
            act.toggled.connect(box.setVisible)
            self.pane_actions[key] = act
        self.theme_group = QActionGroup(self)
        self.theme_actions = {}
        for name, label in (("dark", "&Dark theme"), ("light", "&Light theme")):
            act = QAction(label, self, checkable=True)
            act.setObjectName(f"action_theme_{name}")
            act.triggered.connect(lambda checked, n=name: self.set_theme(n))
            self.theme_group.addAction(act)
            self.theme_actions[name] = act

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        self.menu_file = mb.addMenu("&File")
        self.menu_file.setObjectName("menu_file")
        for act in (self.action_open_image, self.action_save_drawing, None, self.action_load_model,
                    self.action_save_model, None, self.action_quit):
            self.menu_file.addSeparator() if act is None else self.menu_file.addAction(act)
        self.menu_edit = mb.addMenu("&Edit")
        self.menu_edit.setObjectName("menu_edit")
        for act in (self.action_undo, self.action_redo, self.action_clear, None, self.action_thinner,
                    self.action_wider):
            self.menu_edit.addSeparator() if act is None else self.menu_edit.addAction(act)
        self.menu_model = mb.addMenu("&Model")
        self.menu_model.setObjectName("menu_model")
        for act in (self.action_load_model, self.action_save_model, self.action_shipped_model, None,
                    self.evaluation.action_evaluate):
            self.menu_model.addSeparator() if act is None else self.menu_model.addAction(act)
        self.menu_train = mb.addMenu("&Train")
        self.menu_train.setObjectName("menu_train")
        self.menu_train.addActions(self.retrain.actions)
        self.menu_train.addSeparator()
        self.menu_train.addMenu(self.experiments.menu)
        self.menu_train.addAction(self.my_digits.action_finetune)
        self.menu_edit.addSeparator()
        self.menu_save_sample = self.menu_edit.addMenu("Save the drawing as my &digit")
        self.menu_save_sample.setObjectName("menu_save_sample")
        self.menu_save_sample.addActions(self.my_digits.save_actions)
        self.menu_view = mb.addMenu("&View")
        self.menu_view.setObjectName("menu_view")
        self.menu_view.addActions(self.page_actions)
        self.menu_view.addSeparator()
        self.menu_view.addActions(list(self.pane_actions.values()))
        self.menu_view.addAction(self.why.action_why)
        self.menu_view.addAction(self.action_reset_layout)
        self.menu_view.addSeparator()
        self.menu_theme = self.menu_view.addMenu("T&heme")
        self.menu_theme.setObjectName("menu_theme")
        for act in self.theme_actions.values():
            self.menu_theme.addAction(act)
        self.menu_help = mb.addMenu("&Help")
        self.menu_help.setObjectName("menu_help")
        self.menu_help.addAction(self.action_shortcuts)
        self.menu_help.addAction(self.action_about)
        self.banner.retrain_button.clicked.connect(self.retrain.action_retrain.trigger)

        tb = QToolBar("Tools", self)
        tb.setObjectName("toolbar")
        tb.setMovable(False)
        tb.setFloatable(False)
        tb.toggleViewAction().setEnabled(False)  # no way to lose it
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.toolbar = tb
        self.addToolBar(Qt.TopToolBarArea, tb)
        tb.addAction(self.action_undo)
        tb.addAction(self.action_redo)
        tb.addAction(self.action_clear)
        tb.addSeparator()
        tb.addWidget(QLabel(" Pen "))
        self.pen_width_slider = QSlider(Qt.Horizontal)
        self.pen_width_slider.setObjectName("pen_width")
        self.pen_width_slider.setAccessibleName("Pen width")
        self.pen_width_slider.setRange(int(PEN_WIDTH_RANGE[0]), int(PEN_WIDTH_RANGE[1]))
        self.pen_width_slider.setValue(int(DEFAULT_PEN_WIDTH))
        self.pen_width_slider.setFixedWidth(120)
        self.pen_width_slider.setToolTip(f"Pen width in pixels of the {BITMAP_SIZE}×{BITMAP_SIZE} drawing ([ and ])")
        self.pen_width_slider.valueChanged.connect(lambda v: self.canvas.set_pen_width(float(v)))
        tb.addWidget(self.pen_width_slider)
        self.pen_width_value = QLabel()
        self.pen_width_value.setMinimumWidth(28)
        tb.addWidget(self.pen_width_value)
        tb.addSeparator()
        tb.addWidget(QLabel(" Sure above "))
        self.threshold_box = QDoubleSpinBox()
        self.threshold_box.setObjectName("threshold")
        self.threshold_box.setAccessibleName("Confidence threshold")
        self.threshold_box.setRange(0.0, 100.0)
        self.threshold_box.setDecimals(0)
        self.threshold_box.setSingleStep(5.0)
        self.threshold_box.setSuffix(" %")
        self.threshold_box.setValue(DEFAULT_THRESHOLD * 100)
        self.threshold_box.setToolTip("Below this confidence the window says it is not sure and shows the top two")
        self.threshold_box.valueChanged.connect(lambda v: self.set_threshold(v / 100.0))
        tb.addWidget(self.threshold_box)

    def _build_status_bar(self) -> None:
        self.status_model = QLabel()
        self.status_model.setObjectName("status_model")
        self.statusBar().addPermanentWidget(self.status_model)

    def show_status(self, text: str, ms: int = 0) -> None:
        """A status-bar message, cut to the room left of the model label (so it never runs under it)."""
        bar = self.statusBar()
        room = bar.width() - self.status_model.width() - 40
        line = text.splitlines()[0] if text else ""
        bar.showMessage(bar.fontMetrics().elidedText(line, Qt.ElideRight, max(room, 80)), ms)
        bar.setToolTip(text if line != text or bar.currentMessage() != line else "")

    # ---- settings ------------------------------------------------------------------------------

    def _splitters(self) -> list:
        return [s for page in self.pages for s in page.splitters]

    def _restore_settings(self) -> None:
        s = self.settings
        self.canvas.set_pen_width(_settings_float(s, "canvas/pen_width", DEFAULT_PEN_WIDTH))
        self.pen_width_slider.setValue(int(round(self.canvas.pen_width)))
        self._on_pen_width_changed(self.canvas.pen_width)
        self.threshold_box.setValue(100.0 * min(max(_settings_float(s, "reading/threshold", DEFAULT_THRESHOLD),
                                                    0.0), 1.0))
        theme = str(s.value("view/theme", DEFAULT_THEME))
        self.set_theme(theme if theme in THEMES else DEFAULT_THEME)
        geometry = s.value("window/geometry")
        if not (isinstance(geometry, QByteArray) and not geometry.isEmpty() and self.restoreGeometry(geometry)):
            self._default_geometry()
        self._layout_pending = not self._restore_layout()

    def _restore_layout(self) -> bool:
        """The saved page, panes shown and splitter sizes; False (and the defaults) unless all of it restores."""
        s = self.settings
        try:
            version = int(s.value("layout/version", 0))
        except (TypeError, ValueError):
            version = 0
        if version != SETTINGS_VERSION:
            return False
        states = [s.value(f"layout/{sp.objectName()}") for sp in self._splitters()]
        if not all(isinstance(b, QByteArray) and not b.isEmpty() for b in states) \
                or not all(sp.restoreState(b) for sp, b in zip(self._splitters(), states)):
            self._default_layout()
            return False
        for key, act in self.pane_actions.items():
            act.setChecked(str(s.value(f"layout/show_{key}", "true")).lower() != "false")
        names = [p.objectName() for p in self.pages]
        page = str(s.value("layout/page", "page_draw"))
        self.show_page(self.pages[names.index(page)] if page in names else self.draw_page)
        return True

    def _default_geometry(self) -> None:
        """1280x800, or less on a smaller screen so the whole window, status bar included, is on it."""
        w, h = DEFAULT_SIZE
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            self.resize(w, h)
            return
        free = screen.availableGeometry()
        frame = QRect(0, 0, min(w, int(free.width() * SCREEN_SHARE)), min(h, int(free.height() * SCREEN_SHARE)))
        frame.moveCenter(free.center())
        self.setGeometry(frame)

    def _default_layout(self) -> None:
        """Every splitter at its default sizes for the window's size, every pane shown, the Draw page."""
        w, h = self.width(), self.height()
        self.draw_page.default_sizes(w - MODE_BAR_WIDTH, h)
        self.train_page.default_sizes(w - MODE_BAR_WIDTH)
        self.evaluate_page.body.setSizes([int(w * 0.4), int(w * 0.6)])
        for act in self.pane_actions.values():
            act.setChecked(True)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.remove("window/state")  # the dock layout of version 1
        s.setValue("layout/version", SETTINGS_VERSION)
        for sp in self._splitters():
            s.setValue(f"layout/{sp.objectName()}", sp.saveState())
        for key, act in self.pane_actions.items():
            s.setValue(f"layout/show_{key}", act.isChecked())
        s.setValue("layout/page", self.current_page().objectName())
        s.setValue("canvas/pen_width", float(self.canvas.pen_width))
        s.setValue("reading/threshold", float(self.threshold))
        s.setValue("view/theme", self.theme.name)
        if self.current_model_path is not None:
            s.setValue("model/last", str(self.current_model_path))
        s.sync()

    def reset_layout(self) -> None:
        self._default_layout()

    # ---- models --------------------------------------------------------------------------------

    def _load_initial_model(self, model_path) -> None:
        shipped = model_io.shipped_model_path()
        if model_path is not None:
            self.load_model(model_path)  # an explicit choice: say so when it fails
            return
        last = self.settings.value("model/last")
        if last and Path(str(last)) != shipped:
            problem = self._try_model(str(last))
            if problem is None:
                return
            self.settings.remove("model/last")  # reported once, here; the next start uses the shipped one
            self.load_model(shipped, quiet=True)
            self._model_problem(problem, "It was the model used last; reading with the shipped model instead.")
            return
        self.load_model(shipped)

    def _load_run_model(self, path: str) -> None:
        """A kept run's model, asked for on the Runs page: read with it on the Draw page."""
        if self.load_model(path):
            self.show_page(self.draw_page)

    def load_model(self, path, quiet: bool = False) -> bool:
        """Make the model in ``path`` the current one; on failure keep the old one and say why."""
        problem = self._try_model(path)
        if problem is not None and not quiet:
            self._model_problem(problem)
        return problem is None

    def _try_model(self, path) -> str | None:
        """Open ``path`` and make it the current model; return what was wrong (the model is kept) or None."""
        path = Path(os.path.abspath(Path(path).expanduser()))  # remembered as a full path
        notes = []
        try:
            model, metadata = model_io.open_model(path, notes)
        except (model_io.ModelFileError, OSError) as e:
            log.warning("could not load a model: %s", e)
            return str(e)
        for note in notes:
            log.warning("%s", note)
        self.set_model(model, metadata, path)
        if notes:
            self.statusBar().showMessage(f"Note: {notes[0]}", 10000)
        return None

    def _model_problem(self, text: str, outcome: str = "Still reading with the current model.") -> None:
        if self.current_model is None:
            message = (f"<b>No model to read with.</b> {html.escape(text)}<br>"
                       "Load another model file, use the shipped one, or retrain.")
            self.banner.set_message(message)
            self.statusBar().showMessage("No model loaded", 10000)
        else:
            self.banner.set_message(f"<b>Could not load the model.</b> {html.escape(text)}<br>{outcome}")
        self._update_banner_buttons()

    def _update_banner_buttons(self) -> None:
        shipped = model_io.shipped_model_path()
        self.banner.shipped_button.setVisible(shipped.is_file() and self.current_model_path != shipped)
        self.banner.retrain_button.setEnabled(self.retrain is not None and self.retrain.action_retrain.isEnabled())
        self.action_shipped_model.setEnabled(shipped.is_file())
        self.action_save_model.setEnabled(self.current_model is not None)

    def set_model(self, model: MLP, metadata: dict | None = None, path: str | Path | None = None) -> None:
        """Make ``model`` the current model: status bar, About and the reading follow it.

        It is remembered for the next start (``model/last``) only once all of that is done.
        """
        self.current_model = model
        self.current_metadata, _ = model_io.normalise_metadata(metadata or {})
        self.current_model_path = Path(path) if path is not None else None
        self.banner.hide()
        self._update_status()
        self._update_banner_buttons()
        self._sync_layers()
        self.draw_page.temperature.set_model_temperature(model_io.model_temperature(self.current_metadata))
        self.model_changed.emit(model)
        self.read_now()
        if path is not None:
            self.settings.setValue("model/last", str(self.current_model_path))

    def set_reading_model(self, model: MLP | None) -> None:
        """Read the canvas with ``model`` (e.g. the network being trained); None goes back to the current model.

        The drawing has not changed, so its preprocessed input is read again as it is (a network
        that is learning is re-read a few times a second); with a read still due it is read anew.
        """
        self._reading_override = model
        self._sync_layers()
        if self._read_timer.isActive() or self.reading.preprocessed is None:
            self.read_now()
            return
        self._last_read = time.perf_counter()
        self._show_reading(reread(self.reading_model, self.reading, self._reading_temperature()))

    @property
    def reading_model(self) -> MLP | None:
        return self._reading_override if self._reading_override is not None else self.current_model

    def _sync_layers(self) -> None:
        m = self.reading_model
        if m is not None:
            self.activations.set_layers(m.config.hidden, m.config.activation)

    def _update_status(self) -> None:
        m, meta = self.current_model, self.current_metadata
        if m is None:
            self.status_model.setText("No model")
            return
        name = self.current_model_path.name if self.current_model_path else "unsaved model"
        if self.current_model_path is not None and self.current_model_path == model_io.shipped_model_path():
            name += " (shipped)"
        acc = (meta.get("metrics") or {}).get("test_accuracy")
        acc_text = f"test accuracy {float(acc):.2%}" if isinstance(acc, (int, float)) else "test accuracy unknown"
        self.status_model.setText(f"Model: {name} · {m.describe()} · {acc_text}")
        self.status_model.setToolTip(str(self.current_model_path or ""))

    def use_shipped_model(self) -> None:
        self.load_model(model_io.shipped_model_path())

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", self._model_dir(), MODEL_FILTER)
        if path:
            self.load_model(path)

    def choose_save_model(self) -> None:
        if self.current_model is None:
            return
        start = str(Path(self._model_dir()) / "digitpad-model.npz")
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", start, MODEL_FILTER)
        if path:
            self.save_model(path)

    def save_model(self, path) -> Path | None:
        try:
            saved = model_io.save_model(path, self.current_model, self.current_metadata)
        except (model_io.ModelFileError, OSError) as e:
            self.message("warning", "Save model", f"Could not save the model to {path}:\n{e}")
            return None
        self.current_model_path = saved
        self.settings.setValue("model/last", str(saved))
        self._update_status()
        self.statusBar().showMessage(f"Saved model to {saved}", 5000)
        return saved

    def _model_dir(self) -> str:
        if self.current_model_path is not None and self.current_model_path.parent.is_dir():
            return str(self.current_model_path.parent)
        try:
            return str(model_io.user_models_dir())
        except OSError:
            return str(Path.home())

    # ---- reading -------------------------------------------------------------------------------

    def _on_stroke_changed(self) -> None:
        self._external_input = None
        if self._read_timer.isActive():
            return  # a read is already due this frame and will see this point too
        wait = self._last_read + self._frame_s - time.perf_counter()
        if wait <= 0.0:
            self.read_now()
        else:
            self._read_timer.start(max(1, int(wait * 1000.0 + 0.5)))

    def _on_drawing_changed(self) -> None:
        if self._placing_input:
            return  # show_input reads the 28x28 input itself, not the picture made from it
        self._external_input = None
        self._read_timer.stop()
        self.read_now()

    def read_now(self) -> Reading:
        """Read the canvas (or the input shown by ``show_input``) with the reading model and show it."""
        self._read_timer.stop()
        self._last_read = time.perf_counter()
        model = self.reading_model
        temperature = self._reading_temperature()
        if self._external_input is not None:
            image28, label = self._external_input
            reading = read_input(model, image28, temperature, label=label)
        elif self.canvas.picture is not None:
            reading = read_image(model, self.canvas.picture, temperature)
        elif self.canvas.is_empty():
            reading = blank_reading(model)
        else:
            reading = read_image(model, self.canvas.bitmap(), temperature)
        self._show_reading(reading)
        return reading

    def _reading_temperature(self) -> float:
        return model_io.model_temperature(self.current_metadata) if self._reading_override is None else 1.0

    def show_input(self, image28: np.ndarray, label: str = "") -> Reading:
        """Show an MNIST-style 28x28 digit as if it had been drawn, and read it."""
        image28 = np.asarray(image28, dtype=np.float32).reshape(28, 28)
        self._placing_input = True
        try:
            self.canvas.set_picture(gray_to_rgba(image28))
        finally:
            self._placing_input = False
        self._external_input = (image28, label)
        return self.read_now()

    def _show_reading(self, reading: Reading) -> None:
        self.reading = reading
        self._update_reading_label()
        shown = self.current_page()
        for page, panes in self._reading_panes.items():
            if page is shown:
                for pane in panes:
                    pane.set_reading(reading)
            else:
                self._stale_pages.add(page)
        self.reading_changed.emit(reading)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self._update_reading_label()

    def displayed_digit(self) -> int | None:
        """The digit the label states with confidence, or None (blank, no model, or not sure)."""
        r = self.reading
        return r.digit if r.is_sure(self.threshold) else None

    def _update_reading_label(self) -> None:
        r, th = self.reading, self.theme
        big = "font-size: 54pt; font-weight: 600;"
        small = f"font-size: 15pt; color: {th.muted};"
        source = f"<br><span style='font-size: 10pt; color: {th.muted};'>{html.escape(r.label)}</span>" \
            if r.label else ""
        if self.reading_model is None:
            text = f"<span style='{small}'>No model loaded</span>"
        elif r.digit is None:
            text = f"<span style='{small}'>Draw a digit</span>"
        elif r.is_sure(self.threshold):
            text = (f"<span style='{big} color: {th.accent};'>{r.digit}</span>"
                    f"<span style='{small}'>&nbsp;&nbsp;{r.confidence:.1%} sure</span>{source}")
        else:
            (a, pa), (b, pb) = r.top(2)
            text = (f"<span style='{big} color: {th.foreground};'>{a}</span>"
                    f"<span style='font-size: 22pt; color: {th.muted};'>&nbsp;or&nbsp;</span>"
                    f"<span style='{big} color: {th.foreground};'>{b}</span>"
                    f"<span style='{small}'>&nbsp;&nbsp;not sure: {a} {pa:.0%}, {b} {pb:.0%}</span>{source}")
        self.reading_label.setText(text)
        acc = r.top(2)
        self.reading_label.setAccessibleDescription(
            "blank" if r.digit is None else f"{acc[0][0]} with {acc[0][1]:.0%}, then {acc[1][0]} with {acc[1][1]:.0%}")

    # ---- canvas controls -----------------------------------------------------------------------

    def _on_pen_width_changed(self, width: float) -> None:
        self.pen_width_value.setText(f"{width:.0f}")
        if self.pen_width_slider.value() != int(round(width)):
            self.pen_width_slider.setValue(int(round(width)))

    def _nudge_pen(self, delta: float) -> None:
        self.canvas.set_pen_width(self.canvas.pen_width + delta)

    def _update_edit_actions(self) -> None:
        self.action_undo.setEnabled(self.canvas.can_undo())
        self.action_redo.setEnabled(self.canvas.can_redo())

    # ---- files ---------------------------------------------------------------------------------

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self._image_dir(), IMAGE_FILTER)
        if path:
            self.open_image(path)

    def _image_dir(self) -> str:
        return str(self.settings.value("files/image_dir", str(Path.home())))

    def open_image(self, path) -> bool:
        """Show the picture in ``path`` on the canvas and read it; a bad file gets a message naming it."""
        from digitpad.imageio import ImageReadError, load_image

        path = Path(path)
        try:
            rgba = load_image(path)
        except (ImageReadError, OSError, ValueError) as e:
            text = str(e) if str(path) in str(e) or path.name in str(e) else f"{path}: {e}"
            self.message("warning", "Open image", f"Could not read the image:\n{text}")
            return False
        self.settings.setValue("files/image_dir", str(path.parent))
        self.canvas.set_picture(rgba)
        self.statusBar().showMessage(f"Reading {path.name}", 5000)
        return True

    def choose_save_drawing(self) -> None:
        start = str(Path(self._image_dir()) / "digit.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save drawing as PNG", start, "PNG images (*.png)")
        if path:
            self.save_drawing(path)

    def save_drawing(self, path) -> Path | None:
        """Save what the canvas shows: the drawing (white on black) or the opened picture."""
        from digitpad.imageio import save_png

        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")
        picture = self.canvas.picture
        image = picture if picture is not None else self.canvas.bitmap()  # (H, W) white on black
        try:
            save_png(path, image)
        except (OSError, ValueError) as e:
            self.message("warning", "Save drawing", f"Could not save the drawing to {path}:\n{e}")
            return None
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return path

    def dragEnterEvent(self, event):
        if self._dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
            self._set_drop_highlight(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        if self._dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event):
        self._set_drop_highlight(False)
        super().dragLeaveEvent(event)

    def _set_drop_highlight(self, on: bool) -> None:
        """While a file is held over the window the canvas frame takes the accent colour: it can be dropped."""
        self.drop_highlight = on
        self.canvas.frame_color = QColor(self.theme.accent if on else self.theme.muted)
        self.canvas.update()

    def dropEvent(self, event):
        self._set_drop_highlight(False)
        path = self._dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        if path.suffix.lower() in MODEL_SUFFIXES:
            self.load_model(path)
        else:
            self.open_image(path)

    @staticmethod
    def _dropped_path(mime) -> Path | None:
        if mime is None or not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                return Path(url.toLocalFile())
        return None

    # ---- messages and dialogs ------------------------------------------------------------------

    def message(self, kind: str, title: str, text: str, name: str | None = None) -> QMessageBox:
        """A window-modal message that does not block the caller; kept in ``last_message``."""
        icon = {"warning": QMessageBox.Warning, "error": QMessageBox.Critical}.get(kind, QMessageBox.Information)
        box = QMessageBox(icon, title, text, QMessageBox.Ok, self)
        box.setObjectName(name or f"message_{kind}")
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.last_message = box
        box.destroyed.connect(lambda *_: setattr(self, "last_message", None) if self.last_message is box else None)
        box.open()
        if kind in ("warning", "error"):
            self.show_status(text.splitlines()[-1], 10000)
        return box

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(what, keys) for every action of the window that has a shortcut, then what no action says."""
        rows = []
        for action in self.actions():
            keys = [k.toString(QKeySequence.NativeText) for k in action.shortcuts() if not k.isEmpty()]
            if keys:
                rows.append((action.text().replace("&", "").rstrip("…"), " or ".join(keys)))
        return rows + SHORTCUTS_WITHOUT_ACTIONS

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(what)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
                       for what, keys in self.shortcut_rows())
        self.message("info", "Keyboard shortcuts", f"<table>{rows}</table>", name="shortcuts_dialog")

    def about_text(self) -> str:
        import pyqtgraph
        import PySide6
        from PySide6.QtCore import qVersion

        from digitpad import __version__

        m, meta = self.current_model, self.current_metadata
        lines = [f"<h3>digitpad {__version__}</h3>",
                 "<p>Draw a digit; a small neural network written in NumPy reads it as you draw.</p>"]
        if m is None:
            lines.append("<p><b>No model loaded.</b></p>")
        else:
            metrics = meta.get("metrics") or {}
            acc = metrics.get("test_accuracy")
            tc = meta.get("train_config") or {}
            rows = [
                ("Model file", str(self.current_model_path or "not saved")),
                ("Architecture", f"{m.describe()} ({m.n_params:,} parameters)"),
                ("Test accuracy", f"{float(acc):.2%}" if isinstance(acc, (int, float)) else "unknown"),
                ("Trained", describe_date(meta.get("created"))),
            ]
            if tc:
                rows.append(("Training", describe_training(tc)))
            if "temperature" in meta:
                rows.append(("Calibration temperature", f"{model_io.model_temperature(meta):.3f}"))
            lines.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>&nbsp;&nbsp;{html.escape(v)}</td></tr>"
                                             for k, v in rows) + "</table>")
        lines.append(f"<p style='color: gray'>Python {platform.python_version()} · NumPy {np.__version__} · "
                     f"PySide6 {PySide6.__version__} (Qt {qVersion()}) · pyqtgraph {pyqtgraph.__version__}</p>")
        return "".join(lines)

    def show_about(self) -> None:
        self.message("info", "About digitpad", self.about_text(), name="about_dialog")

    # ---- theme ---------------------------------------------------------------------------------
    # ---- theme ---------------------------------------------------------------------------------

    def set_theme(self, name: str) -> None:
        """Switch between the light and dark themes: window palette, canvas frame and every page.

        ``theme_changed`` then tells the controllers to follow.
        """
        theme = THEMES.get(name, THEMES[DEFAULT_THEME])
        self.theme = theme
        self.theme_actions[theme.name].setChecked(True)
        app = QApplication.instance()
        if app is not None:
            app.setPalette(make_palette(theme))
        self.canvas.frame_color = QColor(theme.muted)
        self.canvas.update()
        self.draw_page.apply_theme(theme, self.reading)
        self.train_page.apply_theme(theme)
        self.train_page.probabilities.set_reading(self.reading)
        self.evaluate_page.apply_theme(theme)
        self._update_reading_label()
        self.theme_changed.emit(theme.name)

    def showEvent(self, event):
        super().showEvent(event)
        if self._layout_pending:
            self._layout_pending = False
            self._default_layout()
        screen = self.screen()
        rate = screen.refreshRate() if screen is not None else 60.0
        self._frame_s = 1.0 / min(max(rate if rate > 0 else 60.0, 30.0), 240.0)

    # ---- closing -------------------------------------------------------------------------------

    def closeEvent(self, event):
        """Close at once; with a run going or a new network not kept, first ask Keep and quit / Discard / Cancel."""
        if self.retrain.needs_decision() and not self._quit_decided:
            event.ignore()
            self.ask_before_quit()
            return
        self._quit_decided = False
        self.save_settings()
        self.hide()  # gone from the screen now, whatever the controllers still have to end
        for controller in self.controllers:
            try:
                controller.shutdown()
            except Exception:
                log.exception("shutting down %s", type(controller).__name__)
        super().closeEvent(event)

    def ask_before_quit(self) -> QMessageBox:
        """The question before quitting with unkept training (window-modal, does not block the caller)."""
        if self.quit_question is not None:
            self.quit_question.raise_()
            return self.quit_question
        running = self.retrain.is_running
        text = ("A network is being trained." if running else "The network from the last run has not been kept.")
        box = QMessageBox(QMessageBox.Question, "Quit digitpad", text, QMessageBox.NoButton, self)
        box.setObjectName("quit_question")
        box.setInformativeText("Keep it (the run is stopped and its best weights saved) before quitting?"
                               if running else "Keep it before quitting?")
        keep = box.addButton("&Keep and quit", QMessageBox.AcceptRole)
        keep.setObjectName("quit_keep")
        discard = box.addButton("&Discard", QMessageBox.DestructiveRole)
        discard.setObjectName("quit_discard")
        cancel = box.addButton(QMessageBox.Cancel)
        cancel.setObjectName("quit_cancel")
        box.setDefaultButton(keep)
        box.setAttribute(Qt.WA_DeleteOnClose)

        def answered(button):
            self.quit_question = None
            if button is keep:
                self.retrain.keep_and_close()
            elif button is discard:
                self._quit_decided = True
                self.close()

        box.buttonClicked.connect(answered)
        box.finished.connect(lambda *_: setattr(self, "quit_question", None))
        self.quit_question = box
        box.open()
        return box


def describe_training(tc: dict) -> str:
    """A training config as one readable line: 'adam, lr 0.003, 5 epochs, batch 256, dropout 0.2'."""
    parts = []
    if "optimizer" in tc:
        parts.append(str(tc["optimizer"]))
    for key, fmt in (("lr", "lr {}"), ("schedule", "{} schedule"), ("epochs", "{} epochs"),
                     ("batch_size", "batch {}")):
        if key in tc:
            parts.append(fmt.format(tc[key]))
    if tc.get("dropout"):
        parts.append(f"dropout {tc['dropout']}")
    if tc.get("augment"):
        parts.append("distorted training digits")
    return ", ".join(parts)


def describe_date(value) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM UTC' (or as given when it is not one)."""
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return "unknown" if value is None else str(value)
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M")


def make_palette(theme: Theme) -> QPalette:
    """A Fusion palette for ``theme``."""
    p = QPalette()
    window, base, text = QColor(theme.window), QColor(theme.base), QColor(theme.foreground)
    button, muted, accent = QColor(theme.button), QColor(theme.muted), QColor(theme.accent)
    for role, color in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                        (QPalette.AlternateBase, button), (QPalette.Text, text), (QPalette.Button, button),
                        (QPalette.ButtonText, text), (QPalette.ToolTipBase, base), (QPalette.ToolTipText, text),
                        (QPalette.PlaceholderText, muted), (QPalette.Highlight, accent),
                        (QPalette.HighlightedText, QColor("#000000")), (QPalette.Link, accent),
                        (QPalette.BrightText, QColor("#ff5555"))):
        p.setColor(role, color)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, muted)
    return p

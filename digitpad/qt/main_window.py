"""The main window: canvas, live reading, panes, menus, model handling and remembered settings.

The window wires the canvas to the network: a stroke update schedules a read on a
single-shot timer at the display rate (so reads coalesce while the pen moves), the end
of a stroke reads at once. A read is bitmap -> ``preprocess`` -> ``MLP.trace`` -> a
``Reading``, which the label and panes show and ``reading_changed`` carries. Other
controllers (retraining, evaluation) plug into its menus, toolbar and
``set_reading_model``.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import model_io
from digitpad.core.mlp import MLP
from digitpad.core.reading import DEFAULT_THRESHOLD, Reading, blank_reading, read_image, read_input
from digitpad.qt.canvas import BITMAP_SIZE, DEFAULT_PEN_WIDTH, PEN_WIDTH_RANGE, Canvas
from digitpad.qt.panes import DEFAULT_THEME, THEMES, Theme
from digitpad.qt.panes.inference import ActivationsPane, LogitsPane, NetworkInputPane, ProbabilitiesPane

log = logging.getLogger("digitpad")

SETTINGS_VERSION = 1
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.pgm *.ppm *.tif *.tiff *.webp);;All files (*)"
MODEL_FILTER = "digitpad models (*.npz);;All files (*)"
MODEL_SUFFIXES = (".npz",)

SHORTCUTS = [
    ("Draw", "left mouse button, pen or finger on the canvas"),
    ("Cancel the stroke being drawn", "right mouse button"),
    ("Undo the last stroke", "Ctrl+Z"),
    ("Redo", "Ctrl+Shift+Z"),
    ("Clear the canvas", "Esc or Delete"),
    ("Thinner / wider pen", "[ / ]"),
    ("Open an image", "Ctrl+O (or drop a file on the window)"),
    ("Save the drawing as PNG", "Ctrl+S"),
    ("Load a model", "Ctrl+L (or drop a .npz file)"),
    ("Save the model as", "Ctrl+Shift+S"),
    ("Keyboard shortcuts", "F1"),
    ("Quit", "Ctrl+Q"),
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


class ModelBanner(QFrame):
    """A bar above the canvas saying what is wrong with the model, with ways out."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("model_banner")
        self.setFrameShape(QFrame.StyledPanel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.text = QLabel()
        self.text.setObjectName("model_banner_text")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.text.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        lay.addWidget(self.text, 1)
        self.load_button = QPushButton("Load model…")
        self.retrain_button = QPushButton("Retrain…")
        self.shipped_button = QPushButton("Use shipped model")
        self.close_button = QPushButton("✕")
        self.close_button.setToolTip("Hide this message")
        self.close_button.setFixedWidth(28)
        self.close_button.setFlat(True)
        for b in (self.load_button, self.retrain_button, self.shipped_button, self.close_button):
            lay.addWidget(b, 0, Qt.AlignTop)
        self.close_button.clicked.connect(self.hide)
        self.hide()

    def set_message(self, text: str) -> None:
        self.text.setText(text)
        self.show()


class MainWindow(QMainWindow):
    """The digitpad window: draw on the left, read the network's answer and its insides on the right."""

    reading_changed = Signal(object)  # Reading, after every read
    model_changed = Signal(object)  # the new current MLP (None when there is none)
    theme_changed = Signal(str)  # the theme's name, after the window itself is recoloured

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
        self.threshold = DEFAULT_THRESHOLD
        self.theme: Theme = THEMES[DEFAULT_THEME]
        self.controllers: list = []

        self._build_central()
        self._build_panes()
        self._build_actions()
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
        self._attach_controllers()
        self._update_edit_actions()
        self.read_now()

    # ---- construction --------------------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        central.setObjectName("central")
        lay = QVBoxLayout(central)
        lay.setContentsMargins(10, 8, 6, 8)
        lay.setSpacing(6)
        self.banner = ModelBanner()
        self.banner.load_button.clicked.connect(self.choose_model)
        self.banner.shipped_button.clicked.connect(self.use_shipped_model)
        self.banner.retrain_button.clicked.connect(self._start_retrain)
        lay.addWidget(self.banner)
        self.reading_label = QLabel()
        self.reading_label.setObjectName("reading_label")
        self.reading_label.setAccessibleName("What the network reads")
        self.reading_label.setAlignment(Qt.AlignHCenter | Qt.AlignVCenter)
        self.reading_label.setTextFormat(Qt.RichText)
        self.reading_label.setMinimumHeight(86)
        self.reading_label.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        lay.addWidget(self.reading_label)
        self.canvas = Canvas()
        lay.addWidget(self.canvas, 1)
        self.hint = QLabel("Draw a digit · Ctrl+Z undo · Esc clear · drop an image to read it")
        self.hint.setObjectName("canvas_hint")
        self.hint.setAlignment(Qt.AlignHCenter)
        lay.addWidget(self.hint)
        self.setCentralWidget(central)

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        return dock

    def _build_panes(self) -> None:
        th = self.theme
        self.probabilities = ProbabilitiesPane(theme=th)
        self.network_input = NetworkInputPane(theme=th)
        self.activations = ActivationsPane(theme=th)
        self.logits = LogitsPane(theme=th)
        inside = QSplitter(Qt.Vertical)
        inside.setObjectName("inside_splitter")
        inside.addWidget(self.logits)
        inside.addWidget(self.activations)
        inside.setChildrenCollapsible(False)
        inside.setSizes([200, 260])
        self.panes = (self.probabilities, self.network_input, self.activations, self.logits)
        self.probabilities_dock = self._dock("Probabilities", "probabilities_dock", self.probabilities)
        self.network_input_dock = self._dock("What the network sees", "network_input_dock", self.network_input)
        self.network_dock = self._dock("Inside the network for this drawing", "network_dock", inside)
        self.addDockWidget(Qt.RightDockWidgetArea, self.probabilities_dock)
        self.addDockWidget(Qt.RightDockWidgetArea, self.network_dock)
        self.splitDockWidget(self.probabilities_dock, self.network_input_dock, Qt.Horizontal)
        self.docks = (self.probabilities_dock, self.network_input_dock, self.network_dock)
        self._default_state = None

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
        for act in (self.action_load_model, self.action_save_model, self.action_shipped_model):
            self.menu_model.addAction(act)
        self.menu_train = mb.addMenu("&Train")
        self.menu_train.setObjectName("menu_train")
        self.menu_view = mb.addMenu("&View")
        self.menu_view.setObjectName("menu_view")
        for dock in self.docks:
            toggle = dock.toggleViewAction()
            toggle.setObjectName(f"action_show_{dock.objectName()}")
            self.menu_view.addAction(toggle)
        self.menu_view.addAction(self.action_reset_layout)
        self.menu_view.addSeparator()
        self.menu_theme = self.menu_view.addMenu("T&heme")
        self.menu_theme.setObjectName("menu_theme")
        for act in self.theme_actions.values():
            self.menu_theme.addAction(act)
        self.menu_view.addSeparator()
        self.menu_help = mb.addMenu("&Help")
        self.menu_help.setObjectName("menu_help")
        self.menu_help.addAction(self.action_shortcuts)
        self.menu_help.addAction(self.action_about)

        tb = QToolBar("Tools", self)
        tb.setObjectName("toolbar")
        tb.setMovable(False)
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
        tb.addSeparator()

    def _build_status_bar(self) -> None:
        self.status_model = QLabel()
        self.status_model.setObjectName("status_model")
        self.statusBar().addPermanentWidget(self.status_model)

    def _attach_controllers(self) -> None:
        """Plug in the retraining and evaluation controllers when they are installed."""
        for module, cls, attr in (("digitpad.qt.retrain", "RetrainController", "retrain"),
                                  ("digitpad.qt.evaluate", "EvaluateController", "evaluation")):
            setattr(self, attr, None)
            if importlib.util.find_spec(module) is None:
                continue
            try:
                controller = getattr(importlib.import_module(module), cls)(self)
            except Exception:  # a broken plug-in must not stop the window from opening
                log.exception("could not start %s.%s", module, cls)
                self.statusBar().showMessage(f"{cls} could not start; see the log", 10000)
                continue
            setattr(self, attr, controller)
            self.controllers.append(controller)
        if self.retrain is None:
            for text, name in (("Retrain…", "action_retrain"), ("Stop training", "action_stop")):
                act = QAction(text, self)
                act.setObjectName(name)
                act.setEnabled(False)
                act.setToolTip("Retraining is not available in this installation")
                self.menu_train.addAction(act)
        self._update_banner_buttons()

    # ---- settings ------------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = self.settings
        self._default_state = self.saveState(SETTINGS_VERSION)
        self.canvas.set_pen_width(_settings_float(s, "canvas/pen_width", DEFAULT_PEN_WIDTH))
        self.pen_width_slider.setValue(int(round(self.canvas.pen_width)))
        self._on_pen_width_changed(self.canvas.pen_width)
        self.threshold_box.setValue(100.0 * min(max(_settings_float(s, "reading/threshold", DEFAULT_THRESHOLD),
                                                    0.0), 1.0))
        theme = str(s.value("view/theme", DEFAULT_THEME))
        self.set_theme(theme if theme in THEMES else DEFAULT_THEME)
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = s.value("window/state")
        self._layout_pending = not (isinstance(state, QByteArray) and not state.isEmpty()
                                    and self.restoreState(state, SETTINGS_VERSION))

    def _default_layout(self) -> None:
        """Share the window between canvas and panes: about half each, the input pane square-ish."""
        w, h = self.width(), self.height()
        right = max(520, int(w * 0.5))
        top = max(200, int(h * 0.32))
        self.resizeDocks([self.probabilities_dock, self.network_dock], [top, h - top], Qt.Vertical)
        self.resizeDocks([self.probabilities_dock, self.network_input_dock], [right - top, top], Qt.Horizontal)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(SETTINGS_VERSION))
        s.setValue("canvas/pen_width", float(self.canvas.pen_width))
        s.setValue("reading/threshold", float(self.threshold))
        s.setValue("view/theme", self.theme.name)
        if self.current_model_path is not None:
            s.setValue("model/last", str(self.current_model_path))
        s.sync()

    def reset_layout(self) -> None:
        if self._default_state is not None:
            self.restoreState(self._default_state, SETTINGS_VERSION)
        for dock in self.docks:
            dock.show()
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
        retrain = self.findChild(QAction, "action_retrain")
        self.banner.retrain_button.setEnabled(retrain is not None and retrain.isEnabled())
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
        self.model_changed.emit(model)
        self.read_now()
        if path is not None:
            self.settings.setValue("model/last", str(self.current_model_path))

    def set_reading_model(self, model: MLP | None) -> None:
        """Read the canvas with ``model`` (e.g. the network being trained); None goes back to the current model."""
        self._reading_override = model
        self._sync_layers()
        self.read_now()

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

    def _start_retrain(self) -> None:
        act = self.findChild(QAction, "action_retrain")
        if act is not None and act.isEnabled():
            act.trigger()

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
        temperature = model_io.model_temperature(self.current_metadata) if self._reading_override is None else 1.0
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
        for pane in self.panes:
            pane.set_reading(reading)
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
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        self.dragEnterEvent(event)

    def dropEvent(self, event):
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
            self.statusBar().showMessage(text.splitlines()[-1], 10000)
        return box

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(what)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
                       for what, keys in SHORTCUTS)
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

    def set_theme(self, name: str) -> None:
        """Switch between the light and dark themes: window palette, canvas frame and panes.

        ``theme_changed`` then tells the controllers' panes (training, evaluation) to follow.
        """
        theme = THEMES.get(name, THEMES[DEFAULT_THEME])
        self.theme = theme
        self.theme_actions[theme.name].setChecked(True)
        app = QApplication.instance()
        if app is not None:
            app.setPalette(make_palette(theme))
        self.canvas.frame_color = QColor(theme.muted)
        self.canvas.update()
        self.hint.setStyleSheet(f"color: {theme.muted};")
        self.banner.setStyleSheet(f"#model_banner {{ background: {'#4a2b22' if theme.name == 'dark' else '#fde6d8'};"
                                  f" border: 1px solid {theme.negative}; border-radius: 4px; }}")
        for pane in self.panes:
            pane.apply_theme(theme)
            pane.set_reading(self.reading)
        self._update_reading_label()
        self.theme_changed.emit(theme.name)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        QTimer.singleShot(0, self._give_spare_width_to_panes)

    def _give_spare_width_to_panes(self) -> None:
        """The canvas is square: when the window grows wider than that needs, widen the panes instead."""
        dock = self.network_dock
        if not self.isVisible() or not dock.isVisible() or dock.isFloating() \
                or self.dockWidgetArea(dock) != Qt.RightDockWidgetArea:
            return
        spare = self.canvas.width() - self.canvas.height()
        if spare > 40 and self.canvas.height() >= 240:
            width = min(dock.width() + spare - 20, int(0.62 * self.width()))
            if width > dock.width():
                self.resizeDocks([dock], [width], Qt.Horizontal)

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
        for controller in self.controllers:
            shutdown = getattr(controller, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("shutting down %s", type(controller).__name__)
        self.save_settings()
        super().closeEvent(event)


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

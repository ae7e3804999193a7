"""The Explore page: the data, the network's map of the digits, and a lab to switch units off.

Owns ``ExplorePage`` (three columns: the data | the map | the lab) and ``ExploreController``
(the jobs and the window's signals). The numbers come from ``digitpad.core.explore``;
everything that reads MNIST or the test set runs as a ``worker.Job``. The lab reads the
drawing with an edited copy of the current model (``window.set_reading_model``); units
are chosen by clicking the grids of "inside the network" (here and on the Draw page) or
by the buttons, and switched-off units are crossed out in those grids.

Its length is the page's three views (the data, the map, the lab) and the one controller
that feeds them from background jobs and keeps them in step with the window's model.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import shiboken6
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import data as data_mod
from digitpad.core import explore, model_io
from digitpad.core.mlp import MLP
from digitpad.qt.evaluate import DATA_DIR_KEY, digit_pixmap
from digitpad.qt.panes import THEMES, Theme, quiet_plot, style_plot
from digitpad.qt.panes.inference import ActivationsPane
from digitpad.qt.worker import Job

GRID_DIGITS = 24  # random digits shown for one class
MAP_POINTS = 3000  # test digits on the map
# one colour per class (Tableau 10: told apart on dark and light backgrounds)
CLASS_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
NO_DATA = ("MNIST is not on this computer, so there is nothing to explore yet. Get it on the "
           "<b>Train</b> page (Download MNIST, or choose a folder with the four files), or start "
           "digitpad with <code>--data-dir</code> or <code>DIGITPAD_DATA_DIR</code> set to that folder.")


def tiles(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, 28, 28) digits in [0, 1] laid out in rows of ``cols`` with a 2-pixel gap, (H, W) float32."""
    n = len(images)
    rows = -(-n // cols)
    out = np.zeros((rows * 30, cols * 30), np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = im
    return out


class ImageLabel(QLabel):
    """A grey picture scaled to fit, pixels kept sharp, aspect kept."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self.setAlignment(Qt.AlignCenter)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.setMinimumSize(120, 60)
        self._image: QImage | None = None

    def set_array(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray((np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
        h, w = a.shape
        self._image = QImage(a.data, w, h, w, QImage.Format_Grayscale8).copy()
        self._rescale()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image is not None and self.width() > 0 and self.height() > 0:
            self.setPixmap(QPixmap.fromImage(self._image.scaled(self.size(), Qt.KeepAspectRatio,
                                                                Qt.FastTransformation)))


class CountsPlot(pg.PlotWidget):
    """Digits of each class in the training and the test set, side by side."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("class_counts")
        self.setAccessibleName("How many digits of each class in training and test")
        self.setMinimumSize(160, 100)
        pi = self.getPlotItem()
        quiet_plot(pi)
        pi.getAxis("bottom").setTicks([[(i, str(i)) for i in range(10)]])
        pi.setXRange(-0.6, 9.6, padding=0)
        self.train = pg.BarGraphItem(x=np.arange(10) - 0.2, height=np.zeros(10), width=0.38, brush="#4e79a7")
        self.test = pg.BarGraphItem(x=np.arange(10) + 0.2, height=np.zeros(10), width=0.38, brush="#f28e2b")
        pi.addItem(self.train)
        pi.addItem(self.test)
        self.legend = pi.addLegend(offset=(4, 2), labelTextSize="8pt", colCount=2)
        self.legend.addItem(self.train, "training ÷ 6")
        self.legend.addItem(self.test, "test")
        self.counts = (np.zeros(10, int), np.zeros(10, int))
        self.apply_theme(theme)

    def set_counts(self, train: np.ndarray, test: np.ndarray) -> None:
        """Training counts are shown divided by 6 so both sets share one axis (60,000 vs 10,000)."""
        self.counts = (np.asarray(train), np.asarray(test))
        self.train.setOpts(height=np.asarray(train) / 6.0)
        self.test.setOpts(height=np.asarray(test))
        self.getPlotItem().setYRange(0, max(float(np.max(test)), float(np.max(train)) / 6.0, 1.0) * 1.25,
                                     padding=0)
        self.setToolTip("<br>".join(f"{k}: {int(a):,} training · {int(b):,} test" for k, (a, b)
                                    in enumerate(zip(train, test))))

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)


class DigitMapPlot(pg.PlotWidget):
    """The test digits as points, one colour per class, misread ones crossed, the drawing as a star.

    Hovering shows the digit under the mouse; a click emits ``point_clicked(row)``.
    """

    point_clicked = Signal(int)  # row in the map

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("digit_map")
        self.setAccessibleName("The network's map of the test digits")
        self.setMinimumSize(200, 200)
        pi = self.getPlotItem()
        pi.setMenuEnabled(False)
        pi.hideButtons()
        pi.hideAxis("left")
        pi.hideAxis("bottom")
        self.map: explore.DigitMap | None = None
        self.images: np.ndarray | None = None  # (N_test, 28, 28) uint8, for the hover picture
        self.legend = pi.addLegend(offset=(4, 4), labelTextSize="8pt", colCount=6, brush="#202020c0")
        self.classes = []
        for k, colour in enumerate(CLASS_COLOURS):
            item = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(colour), name=str(k))
            pi.addItem(item)
            self.classes.append(item)
        self.misread = pg.ScatterPlotItem(size=8, symbol="x", pen=pg.mkPen("#ff4040", width=1.2), brush=None,
                                          name="misread")
        pi.addItem(self.misread)
        self.drawing = pg.ScatterPlotItem(size=20, symbol="star", pen=pg.mkPen("#000000", width=1.5),
                                          brush=pg.mkBrush("#ffffff"), name="your drawing")
        self.drawing.setZValue(10)
        pi.addItem(self.drawing)
        self.hover = QLabel(self)
        self.hover.setObjectName("map_hover")
        self.hover.setStyleSheet("background: #202020; color: #f0f0f0; border: 1px solid #808080; padding: 2px;")
        self.hover.hide()
        self.hovered: int | None = None
        self.scene().sigMouseMoved.connect(self._on_move)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.apply_theme(theme)

    def set_map(self, m: explore.DigitMap, images: np.ndarray) -> None:
        self.map, self.images = m, images
        for k, item in enumerate(self.classes):
            rows = np.flatnonzero(m.labels == k)
            item.setData(x=m.coords[rows, 0], y=m.coords[rows, 1], data=rows)
        bad = np.flatnonzero(m.misread)
        self.misread.setData(x=m.coords[bad, 0], y=m.coords[bad, 1])
        lo, hi = m.coords.min(axis=0), m.coords.max(axis=0)  # (2,) each
        span = np.maximum(hi - lo, 1e-9)
        self.getPlotItem().vb.setRange(xRange=(lo[0] - 0.03 * span[0], hi[0] + 0.03 * span[0]),
                                       yRange=(lo[1] - 0.03 * span[1], hi[1] + 0.22 * span[1]),
                                       padding=0)  # room at the top for the legend

    def points_per_class(self) -> list[int]:
        return [len(item.data) for item in self.classes]

    def set_drawing(self, xy) -> None:
        """Place the drawing's star at ``xy`` (None hides it)."""
        if xy is None:
            self.drawing.setData(x=[], y=[])
        else:
            self.drawing.setData(x=[float(xy[0])], y=[float(xy[1])])

    def row_at(self, scene_pos) -> int | None:
        """The map row of the point under a scene position (within 6 px), or None."""
        if self.map is None or not len(self.map.coords):
            return None
        vb = self.getPlotItem().vb
        p = vb.mapSceneToView(scene_pos)
        px = vb.viewPixelSize()  # (map units per pixel in x, in y)
        scale = np.array([1.0 / max(px[0], 1e-12), 1.0 / max(px[1], 1e-12)])
        d = (((self.map.coords - (p.x(), p.y())) * scale) ** 2).sum(axis=1)  # squared pixels
        i = int(np.argmin(d))
        return i if d[i] <= 36.0 else None

    def _on_move(self, scene_pos) -> None:
        row = self.row_at(scene_pos)
        self.hovered = row
        if row is None or self.images is None:
            self.hover.hide()
            return
        m = self.map
        label, read = int(m.labels[row]), int(m.predictions[row])
        text = f"test #{int(m.indices[row])}: {label}" + ("" if label == read else f", read {read}")
        pm = digit_pixmap(self.images[m.indices[row]], 56)
        self.hover.setText("")
        self.hover.setPixmap(pm)
        self.hover.setToolTip(text)
        self.hover.setAccessibleName(text)
        self.hover.adjustSize()
        pos = self.mapFromScene(scene_pos)
        x = min(pos.x() + 14, self.width() - self.hover.width() - 2)
        y = min(pos.y() + 14, self.height() - self.hover.height() - 2)
        self.hover.move(QPoint(max(int(x), 0), max(int(y), 0)))
        self.hover.show()
        self.hover.raise_()
        self.setToolTip(text)

    def leaveEvent(self, event):
        self.hover.hide()
        self.hovered = None
        super().leaveEvent(event)

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        row = self.row_at(event.scenePos())
        if row is not None:
            self.point_clicked.emit(row)

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)


class ExplorePage(QWidget):
    """The Explore page: the data | the network's map of the digits | the lab."""

    def __init__(self, theme: Theme = THEMES["dark"], parent=None):
        super().__init__(parent)
        self.setObjectName("page_explore")

        # ---- the data
        data_box = QGroupBox("The data")
        data_box.setObjectName("explore_data")
        dl = QVBoxLayout(data_box)
        self.note = QLabel(NO_DATA)
        self.note.setObjectName("explore_note")
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.RichText)
        self.note.hide()
        dl.addWidget(self.note)
        self.get_data_button = QPushButton("Get MNIST on the Train page")
        self.get_data_button.setObjectName("explore_get_data")
        self.get_data_button.hide()
        dl.addWidget(self.get_data_button)
        dl.addWidget(QLabel("Average digit of each class"))
        self.averages = ImageLabel("class_averages")
        dl.addWidget(self.averages, 2)
        self.counts = CountsPlot(theme)
        dl.addWidget(self.counts, 2)
        row = QHBoxLayout()
        row.addWidget(QLabel("Digits of"))
        self.class_choice = QComboBox()
        self.class_choice.setObjectName("explore_class")
        self.class_choice.addItems([str(k) for k in range(10)])
        row.addWidget(self.class_choice)
        self.shuffle_button = QPushButton("Others")
        self.shuffle_button.setObjectName("explore_shuffle")
        self.shuffle_button.setToolTip("Show other random digits of this class")
        row.addWidget(self.shuffle_button)
        row.addStretch(1)
        dl.addLayout(row)
        self.grid = QListWidget()
        self.grid.setObjectName("digit_grid")
        self.grid.setViewMode(QListView.IconMode)
        self.grid.setIconSize(QSize(40, 40))
        self.grid.setResizeMode(QListView.Adjust)
        self.grid.setMovement(QListView.Static)
        self.grid.setSpacing(2)
        self.grid.setMinimumSize(160, 90)
        self.grid.setToolTip("Click a digit to put it on the canvas")
        dl.addWidget(self.grid, 3)
        self.random_button = QPushButton("Random test digit (E)")
        self.random_button.setObjectName("explore_random_digit")
        self.random_button.setToolTip("Put a random MNIST test digit on the canvas and read it")
        dl.addWidget(self.random_button)

        # ---- the map
        map_box = QGroupBox("The network's map of the digits")
        map_box.setObjectName("explore_map")
        ml = QVBoxLayout(map_box)
        bar = QHBoxLayout()
        self.pca_button = QPushButton("PCA")
        self.pca_button.setObjectName("map_pca")
        self.pca_button.setToolTip("Project the last hidden layer's outputs with PCA (at once)")
        self.tsne_button = QPushButton("t-SNE")
        self.tsne_button.setObjectName("map_tsne")
        self.tsne_button.setToolTip("Project with t-SNE: clusters come out clearer; takes a while")
        self.map_cancel = QPushButton("Cancel")
        self.map_cancel.setObjectName("map_cancel")
        self.map_cancel.hide()
        self.map_progress = QProgressBar()
        self.map_progress.setObjectName("map_progress")
        self.map_progress.setRange(0, 0)  # busy: t-SNE tells no progress
        self.map_progress.setMaximumWidth(120)
        self.map_progress.hide()
        for w in (self.pca_button, self.tsne_button, self.map_progress, self.map_cancel):
            bar.addWidget(w)
        bar.addStretch(1)
        ml.addLayout(bar)
        self.map_caption = QLabel("")
        self.map_caption.setObjectName("map_caption")
        self.map_caption.setWordWrap(True)
        self.map_caption.setMinimumHeight(2 * self.map_caption.fontMetrics().lineSpacing() + 4)
        ml.addWidget(self.map_caption)
        self.map = DigitMapPlot(theme)
        ml.addWidget(self.map, 1)

        # ---- the lab
        lab_box = QGroupBox("Lab: switch hidden units off")
        lab_box.setObjectName("explore_lab")
        ll = QVBoxLayout(lab_box)
        intro = QLabel("Click units below (or on the Draw page) to switch them off in a copy of the model; "
                       "the drawing is read with that copy.")
        intro.setWordWrap(True)
        ll.addWidget(intro)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer"))
        self.lab_layer = QComboBox()
        self.lab_layer.setObjectName("lab_layer")
        row.addWidget(self.lab_layer, 1)
        self.lab_count = QSpinBox()
        self.lab_count.setObjectName("lab_count")
        self.lab_count.setRange(1, 4096)
        self.lab_count.setValue(10)
        self.lab_count.setSuffix(" units")
        row.addWidget(self.lab_count)
        ll.addLayout(row)
        row = QHBoxLayout()
        self.least_button = QPushButton("Least active")
        self.least_button.setObjectName("lab_least")
        self.least_button.setToolTip("Switch off the N units with the smallest mean output on test digits")
        self.most_button = QPushButton("Most active")
        self.most_button.setObjectName("lab_most")
        self.most_button.setToolTip("Switch off the N units with the largest mean output on test digits")
        self.lab_fraction = QSpinBox()
        self.lab_fraction.setObjectName("lab_fraction")
        self.lab_fraction.setRange(1, 100)
        self.lab_fraction.setValue(40)
        self.lab_fraction.setSuffix(" %")
        self.random_units_button = QPushButton("At random")
        self.random_units_button.setObjectName("lab_random")
        self.random_units_button.setToolTip("Switch off this share of the layer's units, chosen at random")
        for w in (self.least_button, self.most_button):
            row.addWidget(w)
        ll.addLayout(row)
        row = QHBoxLayout()
        for w in (self.lab_fraction, self.random_units_button):
            row.addWidget(w)
        row.addStretch(1)
        ll.addLayout(row)
        self.lab_activations = ActivationsPane(theme=theme, legend=False, stacked=True)
        self.lab_activations.setObjectName("lab_activations")
        ll.addWidget(self.lab_activations, 1)
        self.lab_summary = QLabel("All units on.")
        self.lab_summary.setObjectName("lab_summary")
        self.lab_summary.setWordWrap(True)
        self.lab_summary.setTextFormat(Qt.RichText)
        self.lab_summary.setMinimumHeight(60)
        self.lab_summary.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        ll.addWidget(self.lab_summary)
        row = QHBoxLayout()
        self.reset_button = QPushButton("Reset")
        self.reset_button.setObjectName("lab_reset")
        self.save_button = QPushButton("Save as model…")
        self.save_button.setObjectName("lab_save")
        row.addWidget(self.reset_button)
        row.addWidget(self.save_button)
        row.addStretch(1)
        ll.addLayout(row)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("explore_splitter")
        for box in (data_box, map_box, lab_box):
            self.splitter.addWidget(box)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([280, 500, 420])
        self.splitters = (self.splitter,)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.splitter)
        self.theme = theme

    def set_no_data(self, missing: bool) -> None:
        self.note.setVisible(missing)
        self.get_data_button.setVisible(missing)

    def set_map_busy(self, text: str | None) -> None:
        """Show the map as being computed (``text``) or idle (None)."""
        busy = text is not None
        self.map_progress.setVisible(busy)
        self.map_cancel.setVisible(busy)
        self.pca_button.setEnabled(not busy)
        self.tsne_button.setEnabled(not busy)
        if busy:
            self.map_caption.setText(text)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.counts.apply_theme(theme)
        self.map.apply_theme(theme)
        self.lab_activations.apply_theme(theme)


class ExploreController(QObject):
    """The Explore page's jobs and its ties to the window: the data, the map, the lab."""

    map_ready = Signal(object)  # DigitMap
    lab_accuracy_ready = Signal(float)  # test accuracy of the edited copy

    def __init__(self, window, mnist=None):
        super().__init__(window)
        self.window = window
        self.page: ExplorePage = window.explore_page
        self.mnist = mnist  # loaded on first use, then kept
        self.rng = np.random.default_rng()
        self.summaries = None  # (train ClassSummary, test ClassSummary)
        self.digit_map: explore.DigitMap | None = None
        self.map_model: MLP | None = None
        self.map_stale = True
        self._layers_stale = False  # the model changed while the page was hidden: its lab rebuilds when shown
        self._reading_stale = False  # a reading came while hidden: the map and the lab catch up when shown
        self.off: dict[int, set[int]] = {}
        self.edited: MLP | None = None
        self.lab_accuracy: float | None = None
        self.base_accuracy: float | None = None
        self._jobs: dict[str, Job] = {}  # the newest job of each kind
        self._alive: list[Job] = []  # every job not finished yet
        self._closed = False  # the window is closing: results go nowhere

        p = self.page
        self.action_random_digit = QAction("Random &test digit", window)
        self.action_random_digit.setObjectName("action_random_test_digit")
        self.action_random_digit.setShortcut("E")
        self.action_random_digit.setToolTip("Put a random MNIST test digit on the canvas and read it (E)")
        self.action_random_digit.triggered.connect(self.random_test_digit)
        window.addAction(self.action_random_digit)
        p.random_button.clicked.connect(self.random_test_digit)
        p.get_data_button.clicked.connect(self._get_data)
        p.class_choice.currentIndexChanged.connect(lambda _: self.show_class_digits())
        p.shuffle_button.clicked.connect(self.show_class_digits)
        p.grid.itemClicked.connect(lambda item: self.show_test_digit(int(item.data(Qt.UserRole))))
        p.pca_button.clicked.connect(lambda: self.compute_map("pca"))
        p.tsne_button.clicked.connect(lambda: self.compute_map("tsne"))
        p.map_cancel.clicked.connect(self.cancel_map)
        p.map.point_clicked.connect(lambda row: self.show_test_digit(int(self.digit_map.indices[row])))
        p.least_button.clicked.connect(lambda: self.switch_off_by_activity("least"))
        p.most_button.clicked.connect(lambda: self.switch_off_by_activity("most"))
        p.random_units_button.clicked.connect(self.switch_off_random)
        p.reset_button.clicked.connect(self.reset)
        p.save_button.clicked.connect(self.choose_save)
        p.lab_activations.unit_clicked.connect(self.toggle_unit)
        window.activations.unit_clicked.connect(self.toggle_unit)
        window.activations.setToolTip("Click a unit to switch it off (or on again) in the Explore page's lab")
        window.reading_changed.connect(self._on_reading)
        window.model_changed.connect(self._on_model_changed)
        window.page_changed.connect(lambda page: self.open() if page is self.page else None)
        window.theme_changed.connect(lambda name: p.apply_theme(THEMES.get(name, p.theme)))
        self._sync_layers()
        self._update_lab()

    # ---- data ------------------------------------------------------------------------------------

    def _loader(self):
        """A function returning MNIST for a job, or None (the page then says how to get it)."""
        load = mnist_loader(self.mnist, self.window.settings)
        self.page.set_no_data(load is None)
        if load is None:
            self.window.show_status("MNIST is not on this computer: get it on the Train page (Download MNIST).",
                                    8000)
        return load

    def _run(self, key: str, fn, on_done, on_progress=None) -> Job | None:
        """Start ``fn(mnist, progress, cancel)`` as the job ``key`` (a running one of that key is cancelled)."""
        load = self._loader()
        if load is None:
            return None
        old = self._jobs.get(key)
        if old is not None and not old.finished:
            old.cancel()

        def done(result):
            if self._gone():
                return
            self.mnist = result[0]
            on_done(result[1])

        job = Job(lambda progress, cancel: _with_data(load, fn, progress, cancel), done, self._on_failed,
                  on_progress=on_progress, on_finished=lambda: self._ended(key),
                  cancelled_by=(explore.Cancelled,), expected=(data_mod.DataError,))
        self._jobs[key] = job
        self._alive.append(job)  # a replaced job still runs: Qt's connections do not keep it alive
        return job

    def _ended(self, key: str) -> None:
        if self._gone():
            return
        self._alive = [j for j in self._alive if not j.finished]
        if key == "map" and key not in self._running():
            self.page.set_map_busy(None)

    def _on_failed(self, text: str) -> None:
        if self._gone():
            return
        self.page.set_map_busy(None)
        self.window.show_status(f"Explore: {text}", 8000)
        self.page.map_caption.setText(html.escape(text))

    def _get_data(self) -> None:
        self.window.show_page(self.window.train_page)

    def open(self) -> None:
        """The page is shown: fill in what is missing (the data view, a map of the current model), and
        catch up with the model and the drawing it did not follow while hidden."""
        if self._layers_stale:
            self._sync_layers()
            self._mark()
            self._reading_stale = True  # the rebuilt layers are empty
        if self._reading_stale:
            self._on_reading(self.window.reading)
        if self.summaries is None:
            self._run("data", lambda mnist, pr, ca: (explore.class_summary(mnist.train_images, mnist.train_labels),
                                                     explore.class_summary(mnist.test_images, mnist.test_labels)),
                      self._on_summaries)
        if self.map_stale and "map" not in self._running():
            self.compute_map("pca")

    def _running(self) -> set[str]:
        return {k for k, j in self._jobs.items() if not j.finished}

    def _on_summaries(self, summaries) -> None:
        self.summaries = summaries
        train, test = summaries
        self.page.averages.set_array(tiles(test.means, 5))
        self.page.counts.set_counts(train.counts, test.counts)
        self.show_class_digits()

    def show_class_digits(self) -> None:
        """Fill the grid with random test digits of the chosen class."""
        if self.mnist is None:
            return
        k = self.page.class_choice.currentIndex()
        idx = explore.random_digits(self.mnist.test_labels, k, GRID_DIGITS, self.rng)
        grid = self.page.grid
        grid.clear()
        for i in idx:
            item = QListWidgetItem(QIcon(digit_pixmap(self.mnist.test_images[i], 40)), "")
            item.setData(Qt.UserRole, int(i))
            item.setToolTip(f"test digit #{int(i)}")
            grid.addItem(item)

    def show_test_digit(self, index: int) -> None:
        """Put test digit ``index`` on the canvas (the Draw page) and read it."""
        if self.mnist is None:
            return
        image = self.mnist.test_images[index].astype(np.float32) * np.float32(1 / 255)  # (28, 28)
        self.window.show_input(image, f"test digit #{index}: label {int(self.mnist.test_labels[index])}")
        self.window.show_page(self.window.draw_page)

    def random_test_digit(self) -> None:
        """A random MNIST test digit on the canvas (E); loads MNIST first when needed."""
        if self.mnist is not None:
            self.show_test_digit(int(self.rng.integers(len(self.mnist.test_labels))))
            return
        self._run("random", lambda mnist, pr, ca: None, lambda _: self.random_test_digit())

    # ---- the map ---------------------------------------------------------------------------------

    def compute_map(self, method: str = "pca") -> bool:
        model = self.window.current_model
        if model is None:
            self.page.map_caption.setText("There is no model: load one or train one first.")
            return False
        n = MAP_POINTS

        def work(mnist, progress, cancel):
            return model, explore.digit_map(model, mnist.test_images, mnist.test_labels, method, n=n, cancel=cancel)

        job = self._run("map", work, self._on_map)
        if job is None:
            return False
        self.page.set_map_busy("t-SNE: placing 3,000 test digits (this takes a while)…" if method == "tsne"
                               else "PCA: placing 3,000 test digits…")
        self.map_stale = False
        return True

    def cancel_map(self) -> None:
        job = self._jobs.get("map")
        if job is not None:
            job.cancel()
        self.page.set_map_busy(None)
        self.page.map_caption.setText("Stopped; the map shown is the last one finished.")

    def _on_map(self, result) -> None:
        model, m = result
        self.map_model, self.digit_map = model, m
        self.page.set_map_busy(None)
        self.page.map.set_map(m, self.mnist.test_images)
        name = "PCA" if m.method == "pca" else "t-SNE"
        self.page.map_caption.setText(
            f"{name} of the last hidden layer, {len(m.labels):,} test digits · {int(m.misread.sum())} misread (✕) · "
            f"★ your drawing. Hover a point to see its digit, click to read it.")
        self._on_reading(self.window.reading)
        self.map_ready.emit(m)

    def _shown(self) -> bool:
        return self.window.current_page() is self.page

    def _on_reading(self, reading) -> None:
        self._reading_stale = not self._shown()  # hidden: the map and the lab follow when the page is shown
        if self._reading_stale:
            return
        m = self.digit_map
        if m is None or reading.blank or not reading.activations:
            self.page.map.set_drawing(None)
        elif len(reading.activations[-1]) == m.features.shape[1]:
            self.page.map.set_drawing(m.place(reading.activations[-1]))
        self.page.lab_activations.set_reading(reading)
        self._update_lab()

    def _on_model_changed(self, model) -> None:
        if self.edited is not None and self.window.reading_model is self.edited:
            self.window.set_reading_model(None)  # the lab's copy was of the model just replaced
        self.off.clear()
        self.edited = None
        self.base_accuracy = self.lab_accuracy = None
        self._sync_layers(grids=self._shown())  # hidden: the grids are rebuilt when the page is shown
        self._mark()
        self.map_stale = True
        if self._shown():
            self.compute_map(self.digit_map.method if self.digit_map is not None else "pca")

    # ---- the lab ---------------------------------------------------------------------------------

    def _sync_layers(self, grids: bool = True) -> None:
        """The lab's layer choice follows the current model, and with ``grids`` its activation grids
        (rebuilding those is the costly part, left for when the page is shown)."""
        m = self.window.current_model
        sizes = m.config.hidden if m is not None else ()
        self._layers_stale = not grids
        if grids:
            self.page.lab_activations.set_layers(sizes, m.config.activation if m is not None else "relu")
        layer = self.page.lab_layer
        layer.clear()
        layer.addItems([f"{i + 1} ({n} units)" for i, n in enumerate(sizes)])

    def toggle_unit(self, layer: int, unit: int) -> None:
        """Switch unit ``unit`` of hidden layer ``layer`` off, or back on when it is off."""
        units = self.off.setdefault(layer, set())
        units.symmetric_difference_update({unit})
        self._apply()

    def switch_off(self, layer: int, units) -> None:
        self.off.setdefault(layer, set()).update(int(u) for u in units)
        self._apply()

    def switch_off_random(self) -> None:
        m, layer = self.window.current_model, self.page.lab_layer.currentIndex()
        if m is None or layer < 0:
            return
        n = m.config.hidden[layer]
        count = int(round(n * self.page.lab_fraction.value() / 100))
        self.switch_off(layer, explore.choose_units(np.zeros(n), count, "random", self.rng))

    def switch_off_by_activity(self, mode: str) -> None:
        """Switch off the N least or most active units of the chosen layer (activity measured in a job)."""
        model, layer = self.window.current_model, self.page.lab_layer.currentIndex()
        if model is None or layer < 0:
            return
        count = self.page.lab_count.value()

        def work(mnist, progress, cancel):
            return explore.unit_activity(model, mnist.test_images[:2000])[layer]

        self._run("activity", work, lambda activity: self.switch_off(layer, explore.choose_units(activity, count,
                                                                                                  mode)))

    def reset(self) -> None:
        self.off.clear()
        self._apply()

    def _apply(self) -> None:
        """Read with the edited copy (or the model itself when nothing is off) and measure it in a job."""
        self.off = {k: v for k, v in self.off.items() if v}
        model = self.window.current_model
        self.edited = None if model is None or not self.off else explore.switch_off(
            model, {k: np.array(sorted(v)) for k, v in self.off.items()})
        self.lab_accuracy = None
        self._mark()
        self.window.set_reading_model(self.edited)
        if model is not None:
            self._measure(model, self.edited)

    def _mark(self) -> None:
        for pane in (self.page.lab_activations, self.window.activations):
            pane.set_switched_off(self.off)

    def _measure(self, model: MLP, edited: MLP | None) -> None:
        base = self.base_accuracy

        def work(mnist, progress, cancel):
            x, y = mnist.test_images, mnist.test_labels
            b = base if base is not None else float((model.predict(x) == y).mean())
            e = float((edited.predict(x) == y).mean()) if edited is not None else b
            return b, e

        def done(result):
            if edited is self.edited:
                self.base_accuracy, self.lab_accuracy = result
                self._update_lab()
                self.lab_accuracy_ready.emit(self.lab_accuracy)

        self._run("accuracy", work, done)
        self._update_lab()

    def _update_lab(self) -> None:
        p = self.page
        n_off = sum(len(v) for v in self.off.values())
        p.reset_button.setEnabled(n_off > 0)
        p.save_button.setEnabled(self.edited is not None)
        m = self.window.current_model
        if m is None:
            p.lab_summary.setText("There is no model to experiment on.")
            return
        parts = [", ".join(f"layer {k + 1}: {len(v)} of {m.config.hidden[k]} off" for k, v in sorted(self.off.items()))
                 if n_off else "All units on."]
        r = self.window.reading
        if not r.blank and r.digit is not None:
            parts.append(f"This drawing reads <b>{r.digit}</b> ({r.confidence:.0%})"
                         + (" with the edited copy." if self.edited is not None else "."))
        if self.base_accuracy is not None:
            acc = (f"test accuracy {self.base_accuracy:.2%}" if self.edited is None else
                   f"test accuracy {self.lab_accuracy:.2%} (all units on: {self.base_accuracy:.2%})"
                   if self.lab_accuracy is not None else "test accuracy: measuring…")
            parts.append(acc)
        elif self.off:
            parts.append("test accuracy: measuring…")
        p.lab_summary.setText("<br>".join(parts))

    def choose_save(self) -> None:
        if self.edited is None:
            return
        start = str(Path(self.window._model_dir()) / "digitpad-model-edited.npz")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save the edited model as", start,
                                              "digitpad model (*.npz)")
        if path:
            self.save_edited(path)

    def save_edited(self, path) -> Path | None:
        """Save the edited copy as a new model file (the current model stays as it is)."""
        if self.edited is None:
            return None
        meta = dict(self.window.current_metadata)
        meta["switched_off"] = {str(k + 1): sorted(int(u) for u in v) for k, v in self.off.items()}
        if self.lab_accuracy is not None:
            meta["metrics"] = {"test_accuracy": self.lab_accuracy}
        else:
            meta.pop("metrics", None)
        try:
            saved = model_io.save_model(path, self.edited, meta)
        except (model_io.ModelFileError, OSError) as e:
            self.window.message("warning", "Save model", f"Could not save the edited model to {path}:\n{e}")
            return None
        self.window.show_status(f"Saved the edited model to {saved}", 6000)
        return saved

    def _gone(self) -> bool:
        """The window is closing or already deleted: a job's result goes nowhere."""
        return self._closed or not shiboken6.isValid(self.page)

    def shutdown(self) -> None:
        self._closed = True
        for job in self._alive:
            job.cancel()


def mnist_loader(kept, settings):
    """A function for a job returning MNIST (``kept``, or read from the folder found now), or None without one."""
    if kept is not None:
        return lambda: kept
    folder = data_mod.find_data_dir(settings.value(DATA_DIR_KEY) or None)
    if folder is None:
        return None
    return lambda: data_mod.load_mnist(folder)


def _with_data(load, fn, progress, cancel):
    """Load MNIST, then run ``fn(mnist, progress, cancel)``; returns both."""
    mnist = load()
    return mnist, fn(mnist, progress, cancel)

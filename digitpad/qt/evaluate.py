"""Model ▸ Evaluate and View ▸ Why this answer: how good the model is, where it fails, and why one reading.

Owns ``EvaluateController`` (the menu actions, the jobs, saving a fitted temperature),
``EvaluationWindow`` (accuracy with its 95% interval, per-class bars, the confusion
matrix, the mistakes gallery and the calibration panel), ``WhyPane`` (the saliency of
the answer and the first hidden layer's most active units) and the canvas overlay that
paints the saliency back onto the drawing. The numbers come from ``digitpad.core.evaluate``;
the test-set evaluation and the temperature fit run in a worker thread.
"""

from __future__ import annotations

import html
import logging
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import data as data_mod
from digitpad.core import model_io
from digitpad.core.evaluate import (
    ECE_BINS,
    Evaluation,
    EvaluationCancelled,
    compute_logits,
    evaluate_logits,
    evaluate_model,
    fit_temperature,
    map_to_input,
    saliency,
    top_units,
    validation_split,
)
from digitpad.core.mlp import MLP
from digitpad.qt.panes import THEMES, Theme, bar_labels, quiet_plot, style_plot

log = logging.getLogger(__name__)

DATA_DIR_KEY = "data/dir"  # where the Retrain part remembers the MNIST folder
WHY_KEY = "view/why_this_answer"
GALLERY_LIMIT = 600  # digits listed for one confusion cell
OVERLAY_SIZE = 140  # overlay side in pixels (the canvas scales it smoothly)
N_UNITS = 8  # top hidden units shown
DIGIT_TICKS = [[(i, str(i)) for i in range(10)]]
POSITIVE = np.array([255, 150, 30], np.float32)  # pushed the answer up
NEGATIVE = np.array([70, 150, 255], np.float32)  # pushed it down


# ---- plain helpers ---------------------------------------------------------------------------------


def diverging_lut(background: str) -> np.ndarray:
    """(256, 4) uint8 lookup table: blue (negative) - background (zero) - orange (positive)."""
    bg = np.array(QColor(background).getRgb()[:3], np.float32)
    t = np.linspace(-1.0, 1.0, 256)[:, None]  # (256, 1)
    rgb = np.where(t < 0, bg + (NEGATIVE - bg) * -t, bg + (POSITIVE - bg) * t)  # (256, 3)
    return np.concatenate([rgb, np.full((256, 1), 255.0)], axis=1).astype(np.uint8)


def saliency_rgba(values: np.ndarray, scale: float, max_alpha: int = 215) -> np.ndarray:
    """(H, W) signed map -> (H, W, 4) uint8: orange where positive, blue where negative, clear at 0."""
    v = np.clip(np.asarray(values, np.float32) / max(scale, 1e-12), -1.0, 1.0)  # (H, W)
    rgba = np.zeros((*v.shape, 4), np.uint8)
    pos = v > 0
    rgba[pos, :3] = POSITIVE.astype(np.uint8)
    rgba[~pos, :3] = NEGATIVE.astype(np.uint8)
    rgba[..., 3] = (np.abs(v) ** 0.7 * max_alpha).astype(np.uint8)
    return rgba


def digit_pixmap(image28: np.ndarray, side: int) -> QPixmap:
    """A 28x28 digit (uint8 or float in [0, 1]) as a ``side`` px pixmap, pixels kept sharp."""
    a = np.asarray(image28)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    a = np.ascontiguousarray(a.reshape(28, 28))
    img = QImage(a.data, 28, 28, 28, QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(img.scaled(side, side, Qt.IgnoreAspectRatio, Qt.FastTransformation))


def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.2%}"


@dataclass(frozen=True)
class EvalOutcome:
    """A finished test-set evaluation: which model, at which temperature, and what it measured."""

    model: MLP
    evaluation: Evaluation  # at the model's temperature
    uncalibrated: Evaluation  # at temperature 1 (the same object when the temperature is 1)
    test_images: np.ndarray  # (N, 28, 28) uint8, for the gallery
    mnist: object


@dataclass(frozen=True)
class FitOutcome:
    """A temperature fitted on the validation split."""

    model: MLP
    temperature: float
    n_validation: int
    mnist: object


# ---- work off the GUI thread -----------------------------------------------------------------------


class Job(QObject):
    """Runs ``fn(progress, cancel)`` once in the thread it is moved to; cancel is thread-safe."""

    progress = Signal(int, int)  # done, total
    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn):
        super().__init__()
        self._fn = fn
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(lambda d, t: self.progress.emit(int(d), int(t)), self._cancel.is_set)
        except EvaluationCancelled:
            pass
        except data_mod.DataError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # reported to the user, never raised into Qt
            traceback.print_exc()
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            if not self._cancel.is_set():
                self.done.emit(result)
        finally:
            QThread.currentThread().quit()


# ---- the evaluation window's pieces --------------------------------------------------------------


class PerClassPlot(pg.PlotWidget):
    """Accuracy per true digit as bars, the overall accuracy as a line."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("per_class")
        self.setAccessibleName("Test accuracy for each digit")
        self.setMinimumHeight(150)
        pi = self.getPlotItem()
        quiet_plot(pi)
        pi.setTitle("Accuracy per digit (%)", size="9pt")
        pi.getAxis("bottom").setTicks(DIGIT_TICKS)
        pi.setXRange(-0.6, 9.6, padding=0)
        pi.showGrid(y=True, alpha=0.15)
        self.bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.7, brush=theme.bar,
                                    pen=pg.mkPen(None))
        pi.addItem(self.bars)
        self.mean_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(theme.accent, width=1, style=Qt.DashLine))
        pi.addItem(self.mean_line)
        self.values = bar_labels(pi, theme)
        self.apply_theme(theme)

    def set_evaluation(self, ev: Evaluation) -> None:
        acc = np.nan_to_num(np.asarray(ev.per_class, np.float64), nan=0.0) * 100.0  # (10,)
        low = max(0.0, np.floor(acc.min() - 3.0))
        self.bars.setOpts(height=acc - low, y0=low)
        worst = int(np.argmin(acc))
        self.bars.setOpts(brushes=[self._theme.negative if i == worst else self._theme.bar for i in range(10)])
        self.mean_line.setValue(ev.accuracy * 100.0)
        for i, t in enumerate(self.values):
            t.setText(f"{acc[i]:.1f}")
            t.setPos(i, acc[i])
        self.getPlotItem().setYRange(low, 100.0 + (100.0 - low) * 0.12, padding=0)

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)
        for t in self.values:
            t.setColor(theme.foreground)


class ConfusionPlot(pg.PlotWidget):
    """The 10x10 confusion matrix (rows: true label, columns: answer) with counts; click a cell."""

    cell_clicked = Signal(int, int)  # true label, answer

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("confusion")
        self.setAccessibleName("Confusion matrix: true label against the model's answer; click a cell")
        self.setMinimumSize(300, 300)
        pi = self.getPlotItem()
        quiet_plot(pi)
        pi.setTitle("Confusion: true label ↓, answer →  (click a cell)", size="9pt")
        pi.invertY(True)
        pi.setAspectLocked(True)
        for name in ("bottom", "left"):
            pi.getAxis(name).setTicks(DIGIT_TICKS)
        pi.setLabel("bottom", "the model's answer")
        pi.setLabel("left", "true label")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setImage(np.zeros((10, 10), np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.image.setRect(QRectF(-0.5, -0.5, 10, 10))
        self.image.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
        pi.addItem(self.image)
        self.counts = np.zeros((10, 10), np.int64)
        self.texts = []
        font = pg.QtGui.QFont()
        font.setPointSizeF(7.5)
        for r in range(10):
            row = []
            for c in range(10):
                t = pg.TextItem("", anchor=(0.5, 0.5))
                t.setFont(font)
                t.setPos(c, r)
                pi.addItem(t)
                row.append(t)
            self.texts.append(row)
        self.selection = pg.QtWidgets.QGraphicsRectItem(QRectF(-0.5, -0.5, 1, 1))
        self.selection.setPen(pg.mkPen(theme.accent, width=2.5))
        self.selection.setVisible(False)
        pi.addItem(self.selection)
        pi.setRange(QRectF(-0.5, -0.5, 10, 10), padding=0)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.apply_theme(theme)

    def set_evaluation(self, ev: Evaluation) -> None:
        self.counts = np.asarray(ev.confusion)
        shade = np.log1p(self.counts) / np.log1p(max(int(self.counts.max()), 1))  # (10, 10) in [0, 1]
        self.image.setImage(shade.astype(np.float32), autoLevels=False, levels=(0.0, 1.0))
        for r in range(10):
            for c in range(10):
                n = int(self.counts[r, c])
                self.texts[r][c].setText(str(n) if n else "")
                self.texts[r][c].setColor("#101010" if shade[r, c] > 0.62 else "#f0f0f0")
                self.texts[r][c].setToolTip(f"label {r} read as {c}: {n}")

    def select(self, true: int | None, predicted: int | None = None) -> None:
        """Outline one cell (None hides the outline)."""
        if true is None:
            self.selection.setVisible(False)
            return
        self.selection.setRect(QRectF(predicted - 0.5, true - 0.5, 1, 1))
        self.selection.setVisible(True)

    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        p = self.getPlotItem().vb.mapSceneToView(scene_pos)
        r, c = int(np.floor(p.y() + 0.5)), int(np.floor(p.x() + 0.5))
        return (r, c) if 0 <= r < 10 and 0 <= c < 10 else None

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            event.accept()
            self.cell_clicked.emit(*cell)

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)
        self.selection.setPen(pg.mkPen(theme.accent, width=2.5))


class ReliabilityPlot(pg.PlotWidget):
    """Reliability: per confidence bin, how often the model was right; the diagonal is perfect calibration."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("reliability")
        self.setAccessibleName("Reliability plot: accuracy against confidence")
        self.setMinimumSize(220, 200)
        pi = self.getPlotItem()
        quiet_plot(pi)
        pi.setLabel("bottom", "confidence")
        pi.setLabel("left", "right answers")
        pi.setXRange(0, 1, padding=0.02)
        pi.setYRange(0, 1, padding=0.02)
        pi.showGrid(x=True, y=True, alpha=0.12)
        self.legend = pi.addLegend(offset=(10, 10), labelTextSize="8pt")  # top left: the curves stay low there
        self.ideal = pi.plot([0, 1], [0, 1], pen=pg.mkPen(theme.muted, style=Qt.DashLine), name="ideal")
        self.raw = pi.plot([], [], pen=pg.mkPen(theme.bar, width=1.5), symbol="o", symbolSize=5,
                           symbolBrush=theme.bar, symbolPen=None, connect="finite", name="T = 1")
        self.calibrated = pi.plot([], [], pen=pg.mkPen(theme.accent, width=2), symbol="o", symbolSize=6,
                                  symbolBrush=theme.accent, symbolPen=None, connect="finite")
        self.calibrated.setVisible(False)
        self.apply_theme(theme)

    def set_curves(self, raw: Evaluation, calibrated: Evaluation | None) -> None:
        r = raw.reliability
        self.raw.setData(r.confidence, r.accuracy)
        self.legend.removeItem(self.calibrated)
        if calibrated is None or calibrated is raw:
            self.calibrated.setData([], [])
            self.calibrated.setVisible(False)
        else:
            c = calibrated.reliability
            self.calibrated.setData(c.confidence, c.accuracy)
            self.calibrated.setVisible(True)
            self.legend.addItem(self.calibrated, f"T = {calibrated.temperature:.3g} (ECE {calibrated.ece:.2%})")
        self.legend.getLabel(self.raw).setText(f"T = 1 (ECE {raw.ece:.2%})")

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)
        self.ideal.setPen(pg.mkPen(theme.muted, style=Qt.DashLine))
        self.legend.setLabelTextColor(theme.foreground)


class MistakesGallery(QListWidget):
    """Test digits as small images with their label and the model's answer; click one to read it."""

    digit_chosen = Signal(int)  # index into the test set

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("mistakes")
        self.setAccessibleName("Misread test digits, most confident first")
        self.setViewMode(QListView.IconMode)
        self.setIconSize(QSize(56, 56))
        self.setGridSize(QSize(74, 98))
        self.setResizeMode(QListView.Adjust)
        self.setMovement(QListView.Static)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setSpacing(2)
        self.indices = np.empty(0, np.intp)
        self.itemClicked.connect(self._on_item)
        self.currentItemChanged.connect(lambda cur, prev: self._on_item(cur))

    def set_digits(self, indices: np.ndarray, images: np.ndarray, ev: Evaluation) -> None:
        self.blockSignals(True)
        self.clear()
        self.indices = np.asarray(indices, np.intp)
        for i in self.indices:
            label, answer, conf = int(ev.labels[i]), int(ev.predictions[i]), float(ev.confidences[i])
            item = QListWidgetItem(QIcon(digit_pixmap(images[i], 56)), f"{label}→{answer}\n{conf:.0%}")
            item.setData(Qt.UserRole, int(i))
            item.setToolTip(f"test digit #{i}: label {label}, read as {answer} with {conf:.1%} confidence")
            item.setTextAlignment(Qt.AlignHCenter)
            self.addItem(item)
        self.blockSignals(False)

    def _on_item(self, item) -> None:
        if item is not None:
            self.digit_chosen.emit(int(item.data(Qt.UserRole)))


class EvaluationWindow(QDialog):
    """Model ▸ Evaluate: accuracy ± interval, per-class bars, confusion, mistakes and calibration."""

    evaluate_requested = Signal()
    fit_requested = Signal()

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("evaluation_dialog")
        self.setWindowTitle("Evaluate the model on the MNIST test set")
        self.setWindowFlag(Qt.Window, True)
        self.setModal(False)
        self.resize(1180, 720)
        self.outcome: EvalOutcome | None = None
        self.cell: tuple[int, int] | None = None

        top = QHBoxLayout()
        self.summary = QLabel("Not evaluated yet.")
        self.summary.setObjectName("evaluation_summary")
        self.summary.setTextFormat(Qt.RichText)
        self.summary.setWordWrap(True)
        self.summary.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        top.addWidget(self.summary, 1)
        self.progress = QProgressBar()
        self.progress.setObjectName("evaluation_progress")
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(200)
        self.progress.setFormat("reading the test set… %p%")
        self.progress.setVisible(False)
        top.addWidget(self.progress)
        self.again = QPushButton("Evaluate again")
        self.again.setObjectName("evaluate_again")
        self.again.clicked.connect(self.evaluate_requested)
        top.addWidget(self.again)

        self.per_class = PerClassPlot(theme)
        self.confusion = ConfusionPlot(theme)
        left = QSplitter(Qt.Vertical)
        left.addWidget(self.per_class)
        left.addWidget(self.confusion)
        left.setSizes([190, 470])
        left.setChildrenCollapsible(False)

        gallery_box = QWidget()
        gl = QVBoxLayout(gallery_box)
        gl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.gallery_caption = QLabel("")
        self.gallery_caption.setObjectName("gallery_caption")
        self.gallery_caption.setWordWrap(True)
        head.addWidget(self.gallery_caption, 1)
        self.show_all = QPushButton("Show all mistakes")
        self.show_all.setObjectName("show_all_mistakes")
        self.show_all.setVisible(False)
        self.show_all.clicked.connect(self.show_mistakes)
        head.addWidget(self.show_all)
        gl.addLayout(head)
        self.gallery = MistakesGallery()
        gl.addWidget(self.gallery, 1)

        calib = QGroupBox("Confidence you can trust")
        calib.setObjectName("calibration")
        cl = QHBoxLayout(calib)
        self.reliability = ReliabilityPlot(theme)
        cl.addWidget(self.reliability, 3)
        side = QVBoxLayout()
        self.calibration_summary = QLabel("")
        self.calibration_summary.setObjectName("calibration_summary")
        self.calibration_summary.setTextFormat(Qt.RichText)
        self.calibration_summary.setWordWrap(True)
        self.calibration_summary.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        side.addWidget(self.calibration_summary, 1)
        self.fit_button = QPushButton("Fit temperature on validation")
        self.fit_button.setObjectName("fit_temperature")
        self.fit_button.setToolTip("Find the softmax temperature that makes the probabilities honest on the "
                                   "validation digits the model was trained without, and keep it with the model")
        self.fit_button.clicked.connect(self.fit_requested)
        self.fit_button.setEnabled(False)
        side.addWidget(self.fit_button)
        cl.addLayout(side, 2)

        right = QSplitter(Qt.Vertical)
        right.addWidget(gallery_box)
        right.addWidget(calib)
        right.setSizes([400, 260])
        right.setChildrenCollapsible(False)

        body = QSplitter(Qt.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setSizes([470, 690])
        body.setChildrenCollapsible(False)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(body, 1)
        self.confusion.cell_clicked.connect(self.show_cell)
        self.apply_theme(theme)

    # ---- filling in ------------------------------------------------------------------------------

    def set_running(self, text: str) -> None:
        self.progress.setFormat(text + " %p%")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.again.setEnabled(False)
        self.fit_button.setEnabled(False)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(round(100 * done / max(total, 1))))

    def set_idle(self) -> None:
        self.progress.setVisible(False)
        self.again.setEnabled(True)
        self.fit_button.setEnabled(self.outcome is not None)

    def set_failed(self, text: str) -> None:
        self.set_idle()
        self.summary.setText(f"<b>Could not evaluate.</b> {html.escape(text)}")

    def set_outcome(self, outcome: EvalOutcome, model_name: str) -> None:
        self.outcome = outcome
        ev = outcome.evaluation
        lo, hi = ev.accuracy_ci95
        n_wrong = len(ev.mistakes)
        self.summary.setText(
            f"<span style='font-size:15pt'><b>Test accuracy {ev.accuracy:.2%}</b></span> "
            f"&nbsp;95% interval {lo:.2%} – {hi:.2%} &nbsp;·&nbsp; {ev.n:,} test digits, {n_wrong:,} misread"
            f"<br><span style='color:{self._theme.muted}'>{html.escape(model_name)}</span>")
        self.per_class.set_evaluation(ev)
        self.confusion.set_evaluation(ev)
        self.show_mistakes()
        self.update_calibration()
        self.set_idle()

    def update_calibration(self) -> None:
        o = self.outcome
        if o is None:
            return
        ev, raw = o.evaluation, o.uncalibrated
        self.reliability.set_curves(raw, ev)
        r = ev.reliability
        b = min(int(np.ceil(0.9 * ECE_BINS)) - 1, ECE_BINS - 1)  # the bin holding 90%
        lo, hi = r.edges[b], r.edges[b + 1]
        lines = [f"Calibration error (ECE, {ECE_BINS} bins): <b>{ev.ece:.2%}</b>"
                 + (f" at temperature {ev.temperature:.3g} (without it: {raw.ece:.2%})"
                    if ev is not raw else " at temperature 1")]
        if r.counts[b]:
            lines.append(f"Answers given with {lo:.0%}–{hi:.0%} confidence were right "
                         f"<b>{r.accuracy[b]:.0%}</b> of the time ({int(r.counts[b])} digits).")
        top = ECE_BINS - 1
        if r.counts[top]:
            lines.append(f"Above {r.edges[top]:.0%}: right {r.accuracy[top]:.1%}, {r.confidence[top]:.1%} sure "
                         f"on average ({int(r.counts[top]):,} digits). Log-loss {ev.nll:.4f}.")
        if ev is raw:
            lines.append("<i>No temperature yet: fit one so that “90% sure” means right about 90% of the time.</i>")
        self.calibration_summary.setText("<br>".join(lines))

    def show_mistakes(self) -> None:
        o = self.outcome
        if o is None:
            return
        ev = o.evaluation
        self.cell = None
        self.confusion.select(None)
        self.gallery.set_digits(ev.mistakes, o.test_images, ev)
        self.gallery_caption.setText(f"<b>Mistakes</b>: all {len(ev.mistakes):,} misread test digits, the most "
                                     "confident first (label→answer, confidence). Click one to read it.")
        self.show_all.setVisible(False)

    def show_cell(self, true: int, predicted: int) -> None:
        """List the test digits labelled ``true`` that the model read as ``predicted``."""
        o = self.outcome
        if o is None:
            return
        ev = o.evaluation
        idx = ev.cell(true, predicted)
        order = np.argsort(ev.confidences[idx], kind="stable")
        if true != predicted:
            order = order[::-1]  # most confident mistakes first; least confident right answers first
        idx = idx[order]
        shown = idx[:GALLERY_LIMIT]
        self.cell = (true, predicted)
        self.confusion.select(true, predicted)
        self.gallery.set_digits(shown, o.test_images, ev)
        more = f" (the first {len(shown)})" if len(shown) < len(idx) else ""
        if true == predicted:
            text = f"<b>{len(idx):,}</b> digits labelled {true} and read as {true}{more}, the least sure first."
        else:
            text = f"<b>{len(idx):,}</b> digits labelled {true} but read as {predicted}{more}, the most sure first."
        self.gallery_caption.setText(text)
        self.show_all.setVisible(True)

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        for w in (self.per_class, self.confusion, self.reliability):
            w.apply_theme(theme)


class WhyPane(pg.GraphicsLayoutWidget):
    """Why this answer: the saliency of the top class at 28x28 and the most active first-layer units' weights."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("why")
        self.setAccessibleName("Why this answer: pixels that pushed the answer up or down, and the most active units")
        self.setMinimumSize(300, 170)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self.title = self.addLabel("", row=0, col=0, colspan=1 + N_UNITS // 2, size="9pt")
        self.saliency_view = self.addViewBox(row=1, col=0, rowspan=2, lockAspect=True, invertY=True,
                                             enableMouse=False, enableMenu=False)
        self.saliency_view.setDefaultPadding(0.02)
        self.saliency_image = pg.ImageItem(axisOrder="row-major")
        self.saliency_image.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
        self.saliency_view.addItem(self.saliency_image)
        self.saliency_view.setRange(QRectF(0, 0, 28, 28), padding=0.02)
        self.ci.layout.setColumnStretchFactor(0, 3)
        self.unit_views, self.unit_images, self.unit_labels = [], [], []
        cols = N_UNITS // 2
        for k in range(N_UNITS):
            r, c = 1 + k // cols, 1 + k % cols
            sub = self.addLayout(row=r, col=c)
            sub.setContentsMargins(0, 0, 0, 0)
            label = sub.addLabel("", row=0, col=0, size="7pt")
            view = sub.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
            view.setDefaultPadding(0.02)
            img = pg.ImageItem(axisOrder="row-major")
            img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
            view.addItem(img)
            view.setRange(QRectF(0, 0, 28, 28), padding=0.02)
            self.unit_views.append(view)
            self.unit_images.append(img)
            self.unit_labels.append(label)
        for c in range(1, cols + 1):
            self.ci.layout.setColumnStretchFactor(c, 1)
        self.saliency_map = np.zeros((28, 28), np.float32)
        self.units = np.empty(0, np.intp)
        self.apply_theme(theme)

    def show_nothing(self, why: str = "Draw a digit to see why the network answers what it does.") -> None:
        self.saliency_map = np.zeros((28, 28), np.float32)
        self.saliency_image.setImage(self.saliency_map, autoLevels=False, levels=(-1.0, 1.0))
        self.units = np.empty(0, np.intp)
        for img, label in zip(self.unit_images, self.unit_labels):
            img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
            label.setText("")
        self.title.setText(why)

    def show_why(self, digit: int, sal: np.ndarray, units: np.ndarray, weights: np.ndarray,
                 activations: np.ndarray) -> None:
        self.saliency_map = sal
        m = float(np.abs(sal).max()) or 1.0
        self.saliency_image.setImage(sal, autoLevels=False, levels=(-m, m))
        self.units = units
        for k, (img, label) in enumerate(zip(self.unit_images, self.unit_labels)):
            if k < len(units):
                w = weights[k]
                s = float(np.abs(w).max()) or 1.0
                img.setImage(w, autoLevels=False, levels=(-s, s))
                label.setText(f"unit {int(units[k])}: {float(activations[k]):.2f}")
            else:
                img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
                label.setText("")
        tail = ("first hidden layer's most active units (their weights)" if len(units)
                else "no hidden layer: the saliency is the weights times the input")
        self.title.setText(f"Pixels that pushed <b>{digit}</b> up (orange) or down (blue) · {tail}")

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        lut = diverging_lut(theme.background)
        self.saliency_image.setLookupTable(lut)
        for img in self.unit_images:
            img.setLookupTable(lut)
        self.title.setAttr("color", theme.foreground)
        for label in self.unit_labels:
            label.setAttr("color", theme.muted)


class _WhyDock(QDockWidget):
    """The Why this answer dock; says when the user closes it."""

    closed = Signal()

    def closeEvent(self, event):
        super().closeEvent(event)
        self.closed.emit()


# ---- the controller ---------------------------------------------------------------------------------


class EvaluateController(QObject):
    """Model ▸ Evaluate… and View ▸ Why this answer, plugged into the main window."""

    evaluation_finished = Signal(object)  # EvalOutcome
    evaluation_failed = Signal(str)
    temperature_fitted = Signal(float)
    overlay_changed = Signal(object)  # (H, W, 4) uint8 overlay, or None

    def __init__(self, window, mnist=None):
        super().__init__(window)
        self.window = window
        self.mnist = mnist  # loaded on first use, then kept
        self.outcome: EvalOutcome | None = None
        self.overlay: np.ndarray | None = None
        self.dialog: EvaluationWindow | None = None
        self._job: Job | None = None  # the job running now, if any
        self._threads: list = []  # (thread, job) not finished yet: a done job's thread may still be ending
        theme = getattr(window, "theme", THEMES["dark"])

        self.action_evaluate = QAction("&Evaluate…", window)
        self.action_evaluate.setObjectName("action_evaluate")
        self.action_evaluate.setShortcut("Ctrl+E")
        self.action_evaluate.setToolTip("Test accuracy, confusion matrix, mistakes and calibration on the MNIST test set")
        self.action_evaluate.triggered.connect(self.evaluate)
        window.menu_model.addSeparator()
        window.menu_model.addAction(self.action_evaluate)
        window.addAction(self.action_evaluate)

        self.action_why = QAction("&Why this answer", window, checkable=True)
        self.action_why.setObjectName("action_why")
        self.action_why.setShortcut("Ctrl+Shift+W")
        self.action_why.setToolTip("Colour the pixels that pushed the answer up or down, and show the most active units")
        self.action_why.toggled.connect(self.set_why_visible)
        window.menu_view.addSeparator()
        window.menu_view.addAction(self.action_why)
        window.addAction(self.action_why)

        self.why = WhyPane(theme)
        self.why.show_nothing()
        self.why_dock = _WhyDock("Why this answer", window)
        self.why_dock.setObjectName("why_dock")
        self.why_dock.setWidget(self.why)
        self.why_dock.closed.connect(lambda: self.action_why.setChecked(False))
        window.addDockWidget(Qt.RightDockWidgetArea, self.why_dock)
        self.why_dock.hide()

        window.reading_changed.connect(self._on_reading)
        if hasattr(window, "model_changed"):
            window.model_changed.connect(self._on_model_changed)
        if hasattr(window, "theme_changed"):
            window.theme_changed.connect(self._apply_theme)
        settings = getattr(window, "settings", None)
        if settings is not None and str(settings.value(WHY_KEY, "false")).lower() == "true":
            self.action_why.setChecked(True)

    # ---- evaluation ------------------------------------------------------------------------------

    def _ensure_dialog(self) -> EvaluationWindow:
        if self.dialog is None:
            self.dialog = EvaluationWindow(getattr(self.window, "theme", THEMES["dark"]), self.window)
            self.dialog.evaluate_requested.connect(self.evaluate)
            self.dialog.fit_requested.connect(self.fit_temperature)
            self.dialog.gallery.digit_chosen.connect(self.show_test_digit)
        return self.dialog

    @property
    def is_running(self) -> bool:
        return self._job is not None

    def _model_name(self) -> str:
        w = self.window
        path = getattr(w, "current_model_path", None)
        name = Path(path).name if path else "unsaved model"
        model = w.current_model
        t = self._temperature()
        extra = f" · softmax temperature {t:.3g}" if t != 1.0 else ""
        return f"{name} · {model.describe()}{extra}" if model is not None else name

    def _temperature(self) -> float:
        return model_io.model_temperature(getattr(self.window, "current_metadata", None))

    def _data_loader(self):
        """A function for the worker returning MNIST: the kept copy, or read from the folder found now."""
        mnist = self.mnist
        if mnist is not None:
            return lambda: mnist
        settings = getattr(self.window, "settings", None)
        remembered = settings.value(DATA_DIR_KEY) if settings is not None else None
        folder = data_mod.find_data_dir(remembered or None)
        return lambda: data_mod.load_mnist(folder)  # raises DataNotFoundError saying what to do

    def evaluate(self) -> bool:
        """Open the evaluation window and measure the current model on the test set in a worker thread."""
        dialog = self._ensure_dialog()
        dialog.show()
        dialog.raise_()
        model = self.window.current_model
        if model is None:
            dialog.set_failed("there is no model: load one or retrain first.")
            return False
        if self.is_running:
            return False
        temperature = self._temperature()
        load = self._data_loader()

        def work(progress, cancel):
            mnist = load()
            ev = evaluate_model(model, mnist.test_images, mnist.test_labels, temperature, progress, cancel)
            raw = ev if temperature == 1.0 else evaluate_logits(ev.logits, ev.labels, 1.0)
            return EvalOutcome(model=model, evaluation=ev, uncalibrated=raw, test_images=mnist.test_images,
                               mnist=mnist)

        dialog.set_running("reading the test set…")
        self._start(work, self._on_evaluated)
        return True

    def _start(self, fn, on_done) -> None:
        job = Job(fn)
        thread = QThread(self)
        job.moveToThread(thread)
        thread.started.connect(job.run)
        job.progress.connect(self._on_progress)
        job.done.connect(self._on_job_ended)
        job.failed.connect(self._on_job_ended)
        job.done.connect(on_done)
        job.failed.connect(self._on_failed)
        thread.finished.connect(self._on_thread_finished)  # queued: runs in the GUI thread
        self._job = job
        self._threads.append((thread, job))
        thread.start()

    def _on_job_ended(self, *_) -> None:
        self._job = None

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        if self.dialog is not None:
            self.dialog.set_progress(done, total)

    @Slot()
    def _on_thread_finished(self) -> None:
        ended = [(t, j) for t, j in self._threads if t is self.sender() or t.isFinished()]
        for thread, job in ended:
            self._threads.remove((thread, job))
            self._forget(thread, job)

    def _forget(self, thread: QThread, job: Job) -> None:
        if self._job is job:  # cancelled: it ended without a result
            self._job = None
        job.deleteLater()
        thread.deleteLater()
        if self._job is None and self.dialog is not None and self.dialog.progress.isVisible():
            self.dialog.set_idle()

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        if self.dialog is not None:
            self.dialog.set_failed(text)
        self.evaluation_failed.emit(text)

    @Slot(object)
    def _on_evaluated(self, outcome: EvalOutcome) -> None:
        self.mnist = outcome.mnist
        self.outcome = outcome
        dialog = self._ensure_dialog()
        dialog.set_outcome(outcome, self._model_name())
        self.evaluation_finished.emit(outcome)

    def show_test_digit(self, index: int) -> None:
        """Load test digit ``index`` into the window's panes as if it had been drawn."""
        o = self.outcome
        if o is None:
            return
        ev = o.evaluation
        image = o.test_images[index].astype(np.float32) * np.float32(1 / 255)  # (28, 28)
        label = (f"test digit #{index}: label {int(ev.labels[index])}, read {int(ev.predictions[index])} "
                 f"({float(ev.confidences[index]):.0%})")
        self.window.show_input(image, label)

    # ---- temperature -----------------------------------------------------------------------------

    def fit_temperature(self) -> bool:
        """Fit the softmax temperature on the current model's validation split (worker thread), then keep it."""
        model = self.window.current_model
        if model is None or self.is_running:
            return False
        train_config = (getattr(self.window, "current_metadata", None) or {}).get("train_config")
        dialog = self._ensure_dialog()
        load = self._data_loader()

        def work(progress, cancel):
            mnist = load()
            images, labels = validation_split(mnist, train_config)
            logits = compute_logits(model, images, progress=progress, cancel=cancel)
            return FitOutcome(model=model, temperature=fit_temperature(logits, labels), n_validation=len(labels),
                              mnist=mnist)

        dialog.set_running("fitting the temperature…")
        self._start(work, self._on_fitted)
        return True

    @Slot(object)
    def _on_fitted(self, fit: FitOutcome) -> None:
        self.mnist = fit.mnist
        w = self.window
        if fit.model is not w.current_model:
            return  # the model changed meanwhile: the temperature belongs to another one
        meta = dict(getattr(w, "current_metadata", None) or {})
        meta["temperature"] = round(fit.temperature, 5)
        meta["calibration"] = {"method": "temperature", "fitted_on": "validation split",
                               "n_validation": int(fit.n_validation)}
        if self.outcome is not None and self.outcome.model is fit.model:
            metrics = dict(meta.get("metrics") or {})
            metrics["test_ece_uncalibrated"] = self.outcome.uncalibrated.ece
            metrics["test_ece"] = evaluate_logits(self.outcome.uncalibrated.logits, self.outcome.uncalibrated.labels,
                                                  fit.temperature).ece
            meta["metrics"] = metrics
        path, note = self._store(fit.model, meta)
        w.set_model(fit.model, meta, path)  # the window re-reads with the calibrated probabilities
        if self.dialog is not None:
            self.dialog.set_idle()
            extra = f"Saved with the model in {path.name}." if path is not None else "The model is not saved yet."
            self.dialog.calibration_summary.setText(
                self.dialog.calibration_summary.text()
                + f"<br>Temperature <b>{fit.temperature:.3f}</b> fitted on {fit.n_validation:,} validation "
                f"digits. {html.escape(note or extra)}")
            self.dialog.calibration_summary.setToolTip(str(path) if path is not None else "")
        status = getattr(w, "statusBar", None)
        if status is not None:
            status().showMessage(f"Calibration temperature {fit.temperature:.3f} " + (
                f"saved in {path}" if path is not None else "kept with the unsaved model"), 8000)
        self.temperature_fitted.emit(fit.temperature)

    def _store(self, model: MLP, meta: dict) -> tuple[Path | None, str]:
        """Save the temperature with the model: in place inside the user's models folder, else as a copy there.

        Returns (path the model now lives in, or None when it stays unsaved; a note for the user).
        """
        current = getattr(self.window, "current_model_path", None)
        if current is None:
            return None, ""
        current = Path(current)
        try:
            user_dir = model_io.user_models_dir().resolve()
            shipped = model_io.shipped_model_path().resolve()
            resolved = current.resolve()
            if resolved != shipped and resolved.is_relative_to(user_dir):
                target = current
            else:
                target = model_io.free_path(user_dir, current.stem + "-calibrated")
            saved = model_io.save_model(target, model, meta)
        except (model_io.ModelFileError, OSError) as e:
            return None, f"Could not save it ({e}); it is kept with the model until you save it."
        note = "" if saved == current else f"Saved as a copy, {saved.name}, in your models folder; the original is unchanged."
        return saved, note

    def _on_model_changed(self, model) -> None:
        o = self.outcome
        if o is not None and model is o.model:
            t = self._temperature()
            if t != o.evaluation.temperature:  # same weights, new temperature: no need to read the test set again
                ev = o.uncalibrated if t == 1.0 else evaluate_logits(o.uncalibrated.logits, o.uncalibrated.labels, t)
                self.outcome = EvalOutcome(model=o.model, evaluation=ev, uncalibrated=o.uncalibrated,
                                           test_images=o.test_images, mnist=o.mnist)
                if self.dialog is not None:
                    self.dialog.set_outcome(self.outcome, self._model_name())
            return
        self.outcome = None
        if self.dialog is not None and self.dialog.isVisible() and model is not None:
            QTimer.singleShot(0, self.evaluate)  # a new model (e.g. kept after retraining): measure it

    # ---- why this answer -------------------------------------------------------------------------

    def set_why_visible(self, on: bool) -> None:
        settings = getattr(self.window, "settings", None)
        if settings is not None:
            settings.setValue(WHY_KEY, bool(on))
        if on:
            self.why_dock.show()
            self.why_dock.raise_()
            self._on_reading(getattr(self.window, "reading", None))
        else:
            self.why_dock.hide()
            self._set_overlay(None)

    def _set_overlay(self, rgba) -> None:
        self.overlay = rgba
        self.window.canvas.set_overlay(rgba)
        self.overlay_changed.emit(rgba)

    @Slot(object)
    def _on_reading(self, reading) -> None:
        if not self.action_why.isChecked():
            return
        model = getattr(self.window, "reading_model", None) or self.window.current_model
        if reading is None or model is None or reading.blank or reading.digit is None:
            self.why.show_nothing()
            self._set_overlay(None)
            return
        image28 = np.asarray(reading.image28, np.float32)  # (28, 28)
        digit, trace = int(reading.digit), reading.trace  # the reading's own forward pass: none here
        sal = saliency(model, image28, digit, trace)  # (28, 28)
        units, weights = top_units(model, image28, N_UNITS, trace)
        acts = trace.activations[0][0][units] if len(units) else np.empty(0)
        self.why.show_why(digit, sal, units, weights, acts)
        pre = reading.preprocessed
        if pre is None or pre.blank:
            self._set_overlay(None)
            return
        values = map_to_input(sal, pre, OVERLAY_SIZE)  # (S, S)
        self._set_overlay(saliency_rgba(values, float(np.abs(sal).max())))

    # ---- theme and closing -----------------------------------------------------------------------

    @Slot(str)
    def _apply_theme(self, name: str) -> None:
        theme = THEMES.get(name, THEMES["dark"])
        self.why.apply_theme(theme)
        if self.dialog is not None:
            self.dialog.apply_theme(theme)

    def shutdown(self) -> None:
        """Stop a running job and wait for its thread (the window is closing)."""
        if self._job is not None:
            self._job.cancel()
        for thread, _job in list(self._threads):
            thread.quit()
            thread.wait(10000)
        if self.dialog is not None:
            self.dialog.close()

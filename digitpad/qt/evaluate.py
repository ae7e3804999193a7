"""The Evaluate page: how good the model is on the MNIST test set, where it fails, how far to trust it.

Owns ``EvaluatePage`` (accuracy with its 95% interval, per-class bars, the confusion
matrix, the mistakes gallery and the calibration panel; a progress state while the test
set is read) and ``EvaluateController`` (Model ▸ Evaluate, the jobs, a fitted temperature
kept only when it makes calibration better or the user asks for it). The numbers come from
``digitpad.core.evaluate``; the evaluation and the temperature fit run as ``worker.Job`` objects.
Why one reading gets its answer is ``digitpad.qt.why``.

Its length is the page's five views (summary, per-class bars, confusion matrix, mistakes,
calibration) and the controller that feeds them from one background job; they share the
outcome of one evaluation, so they are kept together.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
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
    validation_split,
)
from digitpad.core.mlp import MLP
from digitpad.qt.panes import THEMES, Theme, bar_labels, quiet_plot, style_plot
from digitpad.qt.worker import Job

log = logging.getLogger(__name__)

DATA_DIR_KEY = "data/dir"  # where the Train page remembers the MNIST folder
GALLERY_LIMIT = 600  # digits listed for one confusion cell
ECE_NOISE = 1e-4  # calibration errors closer than this (0.01 points) are the same
DIGIT_TICKS = [[(i, str(i)) for i in range(10)]]


# ---- plain helpers ---------------------------------------------------------------------------------


def digit_pixmap(image28: np.ndarray, side: int) -> QPixmap:
    """A 28x28 digit (uint8 or float in [0, 1]) as a ``side`` px pixmap, pixels kept sharp."""
    a = np.asarray(image28)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    a = np.ascontiguousarray(a.reshape(28, 28))
    img = QImage(a.data, 28, 28, 28, QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(img.scaled(side, side, Qt.IgnoreAspectRatio, Qt.FastTransformation))


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
    """A temperature fitted on the validation split, and the calibration error before and after it."""

    model: MLP
    temperature: float
    n_validation: int
    mnist: object
    ece_before: float  # at the model's temperature until now
    ece_after: float  # at the fitted one
    measured_on: str  # "validation" here; "test" once the page's test-set figures replace them


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
        self.setMinimumSize(240, 240)
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
        self.setMinimumSize(180, 160)
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


class EvaluatePage(QWidget):
    """The Evaluate page: accuracy ± interval, per-class bars, confusion, mistakes and calibration.

    Until a result is in, a state view (not evaluated yet / reading the test set / could not
    evaluate) stands where the plots go, so no empty axes are ever shown.
    """

    evaluate_requested = Signal()
    fit_requested = Signal()
    use_fit_requested = Signal()

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("page_evaluate")
        self.outcome: EvalOutcome | None = None
        self.cell: tuple[int, int] | None = None

        top = QHBoxLayout()
        self.top_bar = top  # the robustness view adds its button here
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
        self.again = QPushButton("Evaluate")
        self.again.setObjectName("evaluate_again")
        self.again.clicked.connect(self.evaluate_requested)
        top.addWidget(self.again)

        self.per_class = PerClassPlot(theme)
        self.confusion = ConfusionPlot(theme)
        left = QSplitter(Qt.Vertical)
        left.setObjectName("evaluate_left_splitter")
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
        summary_scroll = QScrollArea()  # a long note scrolls instead of being cut off
        summary_scroll.setWidget(self.calibration_summary)
        summary_scroll.setWidgetResizable(True)
        summary_scroll.setFrameShape(QFrame.NoFrame)
        summary_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        side.addWidget(summary_scroll, 1)
        self.fit_button = QPushButton("Fit temperature on validation")
        self.fit_button.setObjectName("fit_temperature")
        self.fit_button.setToolTip("Find the softmax temperature that makes the probabilities honest on the "
                                   "validation digits the model was trained without, and keep it with the model")
        self.fit_button.clicked.connect(self.fit_requested)
        self.fit_button.setEnabled(False)
        side.addWidget(self.fit_button)
        self.use_fit_button = QPushButton("Use this temperature anyway")
        self.use_fit_button.setObjectName("fit_use_anyway")
        self.use_fit_button.setToolTip("Keep the fitted temperature with the model although it calibrates worse")
        self.use_fit_button.clicked.connect(self.use_fit_requested)
        self.use_fit_button.hide()
        side.addWidget(self.use_fit_button)
        cl.addLayout(side, 2)

        right = QSplitter(Qt.Vertical)
        right.setObjectName("evaluate_right_splitter")
        right.addWidget(gallery_box)
        right.addWidget(calib)
        right.setSizes([400, 260])
        right.setChildrenCollapsible(False)

        body = QSplitter(Qt.Horizontal)
        body.setObjectName("evaluate_splitter")
        body.addWidget(left)
        body.addWidget(right)
        body.setSizes([470, 690])
        body.setChildrenCollapsible(False)
        self.body = body
        self.splitters = (body, left, right)

        self.state = QLabel("Not evaluated yet. <b>Evaluate</b> (Ctrl+E) reads the 10,000 MNIST test digits "
                            "with the current model.")
        self.state.setObjectName("evaluation_state")
        self.state.setTextFormat(Qt.RichText)
        self.state.setWordWrap(True)
        self.state.setAlignment(Qt.AlignCenter)
        self.views = QStackedWidget()
        self.views.setObjectName("evaluation_views")
        self.views.addWidget(self.state)
        self.views.addWidget(body)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(top)
        lay.addWidget(self.views, 1)
        self.confusion.cell_clicked.connect(self.show_cell)
        self.apply_theme(theme)

    # ---- filling in ------------------------------------------------------------------------------

    def set_running(self, text: str, cover: bool = True) -> None:
        """Show progress; ``cover`` puts the state view in place of the plots (a new evaluation)."""
        self.progress.setFormat(text + " %p%")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.again.setEnabled(False)
        self.fit_button.setEnabled(False)
        self.use_fit_button.hide()
        if cover:
            self.outcome = None
            self.summary.setText(html.escape(text.capitalize()))
            self.state.setText(f"<span style='font-size:13pt'>{html.escape(text.capitalize())}</span>")
            self.views.setCurrentWidget(self.state)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(round(100 * done / max(total, 1))))

    def set_idle(self) -> None:
        self.progress.setVisible(False)
        self.again.setEnabled(True)
        self.fit_button.setEnabled(self.outcome is not None)

    def set_stale(self) -> None:
        """The model changed: the figures shown belong to another one."""
        self.outcome = None
        self.summary.setText("The model changed since the last evaluation.")
        self.state.setText("The model changed. <b>Evaluate</b> (Ctrl+E) measures the new one.")
        self.views.setCurrentWidget(self.state)
        self.fit_button.setEnabled(False)
        self.use_fit_button.hide()

    def set_failed(self, text: str) -> None:
        self.set_idle()
        self.summary.setText(f"<b>Could not evaluate.</b> {html.escape(text)}")
        if self.outcome is None:
            self.state.setText(f"<b>Could not evaluate.</b><br>{html.escape(text)}")
            self.views.setCurrentWidget(self.state)

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
        self.views.setCurrentWidget(self.body)

    def update_calibration(self, note: str = "") -> None:
        """The calibration figures; ``note`` (what a temperature fit did) in place of the hint to fit one."""
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
        if note:
            lines.append(note)
        elif ev is raw:
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

    def show_fit(self, fit: FitOutcome, applied: bool, note: str = "") -> None:
        """Say what fitting the temperature did: kept (calibration better) or not (worse, unless asked)."""
        where = "test digits" if fit.measured_on == "test" else f"{fit.n_validation:,} validation digits"
        change = f"calibration error {fit.ece_before:.2%} → {fit.ece_after:.2%} on the {where}"
        if applied:
            text = f"Temperature <b>{fit.temperature:.3f}</b> fitted on {fit.n_validation:,} validation digits " \
                   f"({change}). {html.escape(note)}"
        else:
            text = (f"<b style='color:{self._theme.negative}'>Temperature {fit.temperature:.3f} would make "
                    f"calibration worse</b> ({change}); the model is unchanged.")
        self.update_calibration(note=text)
        self.use_fit_button.setVisible(not applied)

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        for w in (self.per_class, self.confusion, self.reliability):
            w.apply_theme(theme)


# ---- the controller ---------------------------------------------------------------------------------


class EvaluateController(QObject):
    """Model ▸ Evaluate and the Evaluate page: jobs, results, the mistakes shown on the Draw page, temperature."""

    evaluation_finished = Signal(object)  # EvalOutcome
    evaluation_failed = Signal(str)
    temperature_fitted = Signal(float)  # a fitted temperature now kept with the model
    temperature_refused = Signal(float)  # a fitted temperature that would calibrate worse: not kept

    def __init__(self, window, mnist=None):
        super().__init__(window)
        self.window = window
        self.page: EvaluatePage = window.evaluate_page
        self.mnist = mnist  # loaded on first use, then kept
        self.outcome: EvalOutcome | None = None
        self.pending_fit: FitOutcome | None = None  # fitted but not kept (it calibrates worse)
        self._job: Job | None = None  # the job running now, if any

        self.action_evaluate = QAction("&Evaluate…", window)
        self.action_evaluate.setObjectName("action_evaluate")
        self.action_evaluate.setShortcut("Ctrl+E")
        self.action_evaluate.setToolTip("Test accuracy, confusion matrix, mistakes and calibration on the MNIST test set")
        self.action_evaluate.triggered.connect(self.evaluate)
        window.addAction(self.action_evaluate)

        self.page.evaluate_requested.connect(self.evaluate)
        self.page.fit_requested.connect(self.fit_temperature)
        self.page.use_fit_requested.connect(self.use_pending_fit)
        self.page.gallery.digit_chosen.connect(self.show_test_digit)
        window.model_changed.connect(self._on_model_changed)
        window.theme_changed.connect(self._apply_theme)

    @property
    def is_running(self) -> bool:
        return self._job is not None

    def _model_name(self) -> str:
        w = self.window
        name = Path(w.current_model_path).name if w.current_model_path else "unsaved model"
        t = self._temperature()
        extra = f" · softmax temperature {t:.3g}" if t != 1.0 else ""
        return f"{name} · {w.current_model.describe()}{extra}" if w.current_model is not None else name

    def _temperature(self) -> float:
        return model_io.model_temperature(self.window.current_metadata)

    def _data_loader(self):
        """A function for the job returning MNIST: the kept copy, or read from the folder found now."""
        mnist = self.mnist
        if mnist is not None:
            return lambda: mnist
        remembered = self.window.settings.value(DATA_DIR_KEY)
        folder = data_mod.find_data_dir(remembered or None)
        return lambda: data_mod.load_mnist(folder)  # raises DataNotFoundError saying what to do

    def evaluate(self) -> bool:
        """Show the Evaluate page and measure the current model on the test set in a job."""
        self.window.show_page(self.page)
        model = self.window.current_model
        if model is None:
            self.page.set_failed("there is no model: load one or retrain first.")
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

        self.page.set_running("reading the test set…")
        self._start(work, self._on_evaluated)
        return True

    def _start(self, fn, on_done) -> None:
        self._job = Job(fn, on_done, self._on_failed, on_progress=self.page.set_progress,
                        on_finished=self._on_job_finished, cancelled_by=(EvaluationCancelled,),
                        expected=(data_mod.DataError,))

    def _on_job_finished(self) -> None:
        if self._job is not None and self._job.finished:
            self._job = None
        if self.page.progress.isVisible():
            self.page.set_idle()

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        self.page.set_failed(text)
        self.evaluation_failed.emit(text)

    @Slot(object)
    def _on_evaluated(self, outcome: EvalOutcome) -> None:
        self.mnist = outcome.mnist
        self.outcome = outcome
        self.page.set_outcome(outcome, self._model_name())
        self.evaluation_finished.emit(outcome)

    def show_test_digit(self, index: int) -> None:
        """Show test digit ``index`` on the Draw page as if it had been drawn (switching to it)."""
        o = self.outcome
        if o is None:
            return
        ev = o.evaluation
        image = o.test_images[index].astype(np.float32) * np.float32(1 / 255)  # (28, 28)
        label = (f"test digit #{index}: label {int(ev.labels[index])}, read {int(ev.predictions[index])} "
                 f"({float(ev.confidences[index]):.0%})")
        self.window.show_input(image, label)
        self.window.show_page(self.window.draw_page)

    # ---- temperature -----------------------------------------------------------------------------

    def fit_temperature(self) -> bool:
        """Fit the softmax temperature on the current model's validation split (a job); keep it if it helps."""
        model = self.window.current_model
        if model is None or self.is_running:
            return False
        train_config = (self.window.current_metadata or {}).get("train_config")
        before = self._temperature()
        load = self._data_loader()

        def work(progress, cancel):
            mnist = load()
            images, labels = validation_split(mnist, train_config)
            logits = compute_logits(model, images, progress=progress, cancel=cancel)
            t = fit_temperature(logits, labels)
            return FitOutcome(model=model, temperature=t, n_validation=len(labels), mnist=mnist,
                              ece_before=evaluate_logits(logits, labels, before).ece,
                              ece_after=evaluate_logits(logits, labels, t).ece, measured_on="validation")

        self.pending_fit = None
        self.page.set_running("fitting the temperature…", cover=False)
        self._start(work, self._on_fitted)
        return True

    @Slot(object)
    def _on_fitted(self, fit: FitOutcome) -> None:
        self.mnist = fit.mnist
        if fit.model is not self.window.current_model:
            return  # the model changed meanwhile: the temperature belongs to another one
        o = self.outcome
        if o is not None and o.model is fit.model:  # judge it on what the page shows: the test set
            raw = o.uncalibrated
            fit = replace(fit, measured_on="test", ece_before=o.evaluation.ece,
                          ece_after=evaluate_logits(raw.logits, raw.labels, fit.temperature).ece)
        if fit.ece_after > fit.ece_before + ECE_NOISE:
            self.pending_fit = fit
            self.page.show_fit(fit, applied=False)
            self.window.statusBar().showMessage(
                f"Temperature {fit.temperature:.3f} would make calibration worse; the model is unchanged", 8000)
            self.temperature_refused.emit(fit.temperature)
            return
        self.apply_fit(fit)

    def use_pending_fit(self) -> None:
        """Keep the fitted temperature that calibrates worse, because the user asked for it."""
        fit, self.pending_fit = self.pending_fit, None
        if fit is not None and fit.model is self.window.current_model:
            self.apply_fit(fit)

    def apply_fit(self, fit: FitOutcome) -> None:
        """Keep ``fit``'s temperature with the model (saved beside it) and read with it from now on."""
        w = self.window
        meta = dict(w.current_metadata or {})
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
        self.page.set_idle()
        extra = f"Saved with the model in {path.name}." if path is not None else "The model is not saved yet."
        self.page.show_fit(fit, applied=True, note=note or extra)
        self.page.calibration_summary.setToolTip(str(path) if path is not None else "")
        w.statusBar().showMessage(f"Calibration temperature {fit.temperature:.3f} " + (
            f"saved in {path}" if path is not None else "kept with the unsaved model"), 8000)
        self.temperature_fitted.emit(fit.temperature)

    def _store(self, model: MLP, meta: dict) -> tuple[Path | None, str]:
        """Save the temperature with the model: in place inside the user's models folder, else as a copy there.

        Returns (path the model now lives in, or None when it stays unsaved; a note for the user).
        """
        current = self.window.current_model_path
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
                self.page.set_outcome(self.outcome, self._model_name())
            return
        had_figures = self.outcome is not None
        self.outcome = None
        self.pending_fit = None
        if self.window.current_page() is self.page and model is not None:
            QTimer.singleShot(0, self.evaluate)  # a new model (e.g. kept after retraining): measure it
        elif had_figures:
            self.page.set_stale()

    # ---- theme and closing -----------------------------------------------------------------------

    @Slot(str)
    def _apply_theme(self, name: str) -> None:
        self.page.apply_theme(THEMES.get(name, THEMES["dark"]))

    def shutdown(self) -> None:
        """Cancel a running job and wait for it to end (the window is closing)."""
        if self._job is not None:
            self._job.cancel()
            Job.wait_all()

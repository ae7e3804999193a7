"""Live training panes: loss, accuracy, per-layer activations and gradients, progress, and the end-of-run choice.

``TrainingHistory`` (NumPy only) turns the records a run produced into plottable series;
``TrainingPanes`` shows them. Every pyqtgraph item is created once per run (the number of
layers fixes how many there are) and afterwards only fed with ``setData`` /
``setImage(autoLevels=False)``; ``refresh()`` is called by the controller's timer, at display
rate, whatever the step rate, and touches only what changed since the last call.

Time runs left to right in epochs everywhere, so a spike in the loss lines up with what
the layers were doing at that moment.

Its length is one plot group per thing a run shows (loss, accuracy, dead units, gradient
norms, update ratios, two heatmaps per layer) sharing one history and one redraw pace;
splitting them would split that pace.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from digitpad.core.train import ACT_EDGES, GRAD_LOG_EDGES, LOGIT_EDGES, EpochRecord, StepRecord
from digitpad.qt.panes import DEFAULT_THEME, THEMES, Theme, quiet_plot, style_plot

HIST_FLOOR = 1e-4  # share of values below which a histogram cell shows black
HIST_LEVELS = (-3.5, -0.3)  # log10(share) mapped onto the colour map
UPDATE_RATIO_GUIDE = 1e-3  # the usual healthy size of an update relative to its weights
WIDE_PANES = 1100  # pixels: from this width (and twice the height) the summary plots go in one row
_LAYER_ANCHORS = [(66, 135, 245), (45, 200, 160), (250, 204, 21), (245, 130, 50), (239, 68, 68)]


def layer_colors(n: int) -> list[tuple[int, int, int]]:
    """One colour per weight layer, from blue (input side) to red (output)."""
    anchors = np.array(_LAYER_ANCHORS, float)
    pos = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, n) if n > 1 else np.array([0.0])
    return [tuple(int(round(np.interp(x, pos, anchors[:, c]))) for c in range(3)) for x in t]


def layer_name(i: int, n_layers: int) -> str:
    """``layer 1 (input side)`` … ``layer n (output)``, counting weight layers from 1."""
    if i == 0 and n_layers > 1:
        return "layer 1 (input side)"
    if i == n_layers - 1:
        return f"layer {i + 1} (output)"
    return f"layer {i + 1}"


def _hist_display(counts: np.ndarray) -> np.ndarray:
    """Counts -> log10 of each bin's share of the values, floored at ``HIST_FLOOR``."""
    total = max(int(counts.sum()), 1)
    return np.log10(counts / total + HIST_FLOOR).astype(np.float32)


def heat_lut() -> np.ndarray:
    """(256, 4) uint8 RGBA: entry 0 transparent (a moment not yet trained), 1..255 the inferno colour map."""
    colours = pg.colormap.get("inferno").getLookupTable(nPts=255, alpha=True)  # (255, 4)
    return np.vstack([np.zeros((1, 4), np.uint8), colours.astype(np.uint8)])


def heat_index(values: np.ndarray) -> np.ndarray:
    """Histogram display values (log10 shares) -> uint8 entries 1..255 of ``heat_lut`` over ``HIST_LEVELS``."""
    lo, hi = HIST_LEVELS
    x = np.clip((np.asarray(values, np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return (1 + np.rint(x * 254)).astype(np.uint8)


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for at least ``n`` rows along axis -1 or 0 (whichever is the time axis: see callers)."""
    if a.shape[0] >= n:
        return a
    new = np.full((max(n, 2 * a.shape[0]),) + a.shape[1:], np.nan, a.dtype)
    new[: a.shape[0]] = a
    return new


class TrainingHistory:
    """The series the panes plot, accumulated from records in arrival order (no Qt)."""

    def __init__(self, info):
        self.info = info
        cfg = info.config
        self.n_layers = len(info.layer_sizes) - 1
        self.activation = cfg.activation
        self.steps_per_epoch = max(info.steps_per_epoch, 1)
        L = self.n_layers
        n = max(info.total_steps, 1)
        self.step_t = np.zeros(n)  # time of each step, in epochs
        self.loss = np.zeros(n)  # batch loss
        self.loss_smooth = np.zeros(n)
        self.acc_smooth = np.zeros(n)
        self.n_steps = 0
        beta_steps = min(50.0, max(5.0, self.steps_per_epoch / 10))
        self._beta = 1.0 - 1.0 / beta_steps
        self._ema_loss = self._ema_acc = 0.0
        self._ema_k = 0
        cap = n // cfg.stats_every + 2 if cfg.stats_every else 1
        self.stats_dt = (cfg.stats_every or 1) / self.steps_per_epoch
        self.stat_t = np.zeros(cap)  # (S,)
        self.act_hist = np.zeros((cap, L, len(ACT_EDGES[cfg.activation]) - 1), np.float32)  # (S, L, bins)
        self.grad_hist = np.zeros((cap, L, len(GRAD_LOG_EDGES) - 1), np.float32)  # (S, L, bins)
        self.act_mean = np.zeros((cap, L))
        self.act_std = np.zeros((cap, L))
        self.dead_fraction = np.zeros((cap, max(L - 1, 1)))
        self.grad_norm = np.zeros((cap, L))
        self.update_ratio = np.zeros((cap, L))
        self.n_stats = 0
        self.epochs: list[EpochRecord] = []
        self.latest: StepRecord | None = None
        self.latest_weights = None  # (weights, biases) of the newest snapshot
        self.latest_weights_step = 0  # the step it was taken after
        self.weights_version = 0
        self.message: str | None = None  # why the run stopped by itself
        self.events: list[tuple[float, str]] = []  # (time in epochs, what changed) for settings changed mid-run
        self.version = 0  # bumped on any change
        self.steps_version = self.stats_version = self.epochs_version = 0

    def act_edges(self, i: int) -> np.ndarray:
        return LOGIT_EDGES if i == self.n_layers - 1 else ACT_EDGES[self.activation]

    def add(self, records) -> None:
        """Take records in the order the trainer produced them."""
        if not records:
            return
        for r in records:
            if isinstance(r, EpochRecord):
                self.epochs.append(r)
                self.epochs_version += 1
                continue
            if r.message is not None:
                self.message = r.message
                continue
            self._add_step(r)
        self.version += 1

    def _add_step(self, r: StepRecord) -> None:
        k = self.n_steps
        if k >= len(self.loss):
            for name in ("step_t", "loss", "loss_smooth", "acc_smooth"):
                setattr(self, name, _grow(getattr(self, name), k + 1))
        t = r.step / self.steps_per_epoch
        self.step_t[k] = t
        self.loss[k] = r.loss
        b = self._beta
        self._ema_k += 1
        self._ema_loss = b * self._ema_loss + (1 - b) * r.loss
        self._ema_acc = b * self._ema_acc + (1 - b) * r.accuracy
        debias = 1.0 - b ** self._ema_k
        self.loss_smooth[k] = self._ema_loss / debias
        self.acc_smooth[k] = self._ema_acc / debias
        self.n_steps = k + 1
        self.latest = r
        self.steps_version += 1
        if r.change is not None:
            self.events.append((t, r.change))
        if r.weights is not None:
            self.latest_weights = r.weights
            self.latest_weights_step = r.step
            self.weights_version += 1
        if r.layers is not None:
            self._add_stats(t, r.layers)

    def _add_stats(self, t: float, layers) -> None:
        j = self.n_stats
        if j >= len(self.stat_t):
            for name in ("stat_t", "act_hist", "grad_hist", "act_mean", "act_std", "dead_fraction",
                         "grad_norm", "update_ratio"):
                setattr(self, name, _grow(getattr(self, name), j + 1))
        self.stat_t[j] = t
        for i, s in enumerate(layers[: self.n_layers]):
            self.act_hist[j, i] = _hist_display(s.act_hist)
            self.grad_hist[j, i] = _hist_display(s.grad_hist)
            self.act_mean[j, i] = s.act_mean
            self.act_std[j, i] = s.act_std
            self.grad_norm[j, i] = s.grad_norm if s.grad_norm > 0 else np.nan
            self.update_ratio[j, i] = s.update_ratio if s.update_ratio > 0 else np.nan
            if i < self.n_layers - 1:
                self.dead_fraction[j, i] = s.dead_fraction
        self.n_stats = j + 1
        self.stats_version += 1

    def time_left(self) -> float | None:
        """Seconds until the last step at the pace so far (None before the first step)."""
        r = self.latest
        if r is None or r.step == 0:
            return None
        return r.elapsed / r.step * max(r.total_steps - r.step, 0)


def _fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def x_span(t: float, epochs: int) -> float:
    """How many epochs the time axes show at time ``t``: ``epochs / 2**k``, the smallest that holds ``t``.

    The axes grow by doubling, so they change a handful of times per run instead of every
    redraw (re-laying out tick labels is what a redraw costs most).
    """
    span = float(epochs)
    while span / 2 >= t and span / 2 >= 1 / 64:
        span /= 2
    return span


def decades(*arrays, floor: float = 1e-12) -> tuple[int, int] | None:
    """(lowest, highest) whole powers of ten enclosing the finite positive values, or None."""
    lo, hi = math.inf, -math.inf
    for a in arrays:
        a = np.asarray(a, float)
        a = a[np.isfinite(a) & (a > floor)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    if not math.isfinite(lo):
        return None
    low, high = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return low, max(high, low + 1)


def _plot(name: str, title: str, theme: Theme, log_y: bool = False) -> pg.PlotWidget:
    """A display plot: no mouse zoom or menu, ranges set by the pane, no SI-prefix relabelling."""
    w = pg.PlotWidget()
    w.setObjectName(name)
    w.setMinimumSize(60, 64)  # narrow enough for five layers beside the settings at 1024 px
    w.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
    item = w.getPlotItem()
    quiet_plot(item)
    item.disableAutoRange()
    item.setLogMode(y=log_y)
    for axis in ("left", "bottom"):
        item.getAxis(axis).enableAutoSIPrefix(False)
    item.getAxis("left").setWidth(34)
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    w.title_text = title
    w.title_long = w.title_short = w.title_tiny = title  # the heatmaps get shorter forms for narrow columns
    w.title_color = None
    w.ranges = {}
    item.setTitle(title, size="9pt")
    return w


def _decade_label(k: int) -> str:
    return f"{10.0 ** k:g}" if -3 <= k <= 3 else f"1e{k}"


def decade_ticks(lo: float, hi: float) -> list:
    """Ticks for a log axis spanning 10**lo .. 10**hi: labelled powers of ten, unlabelled 2..9 between."""
    major = [(float(k), _decade_label(k)) for k in range(math.ceil(lo), math.floor(hi) + 1)]
    minor = [(math.log10(m) + k, "") for k in range(math.floor(lo), math.ceil(hi) + 1) for m in range(2, 10)
             if lo <= math.log10(m) + k <= hi]
    return [major, minor]


def _set_range(w: pg.PlotWidget, x: tuple | None = None, y: tuple | None = None) -> None:
    """Set the view range only when it differs from the last one set (log axes get decade ticks)."""
    item = w.getPlotItem()
    if x is not None and w.ranges.get("x") != x:
        item.setXRange(*x, padding=0)
        w.ranges["x"] = x
    if y is not None and w.ranges.get("y") != y:
        item.setYRange(*y, padding=0)
        w.ranges["y"] = y
        if item.ctrl.logYCheck.isChecked():
            item.getAxis("left").setTicks(decade_ticks(*y))


def _layout_of(config) -> tuple | None:
    """What of a TrainConfig the panes' layout depends on: the network's shape, activation and epochs."""
    return None if config is None else (config.model_config(), config.epochs)


class ResultPanel(QWidget):
    """End of a run, on the Train page: the new model's test accuracy beside the old one's, and Keep / Revert."""

    keep_requested = Signal()
    revert_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("train_result")
        self.label = QLabel()
        self.label.setObjectName("train_result_text")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.RichText)
        self.keep_button = QPushButton("&Keep the new model")
        self.keep_button.setObjectName("train_keep")
        self.keep_button.setToolTip("Use the new network from now on and save it in your models folder")
        self.revert_button = QPushButton("Re&vert")
        self.revert_button.setObjectName("train_revert")
        self.revert_button.setToolTip("Throw the new network away; the current one comes back")
        self.keep_button.clicked.connect(self.keep_requested)
        self.revert_button.clicked.connect(self.revert_requested)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 4, 0, 4)
        col.addWidget(self.label)
        row = QHBoxLayout()
        row.addWidget(self.keep_button)
        row.addWidget(self.revert_button)
        row.addStretch(1)
        col.addLayout(row)

    def show_outcome(self, outcome) -> None:
        """Describe ``outcome`` (a worker.RunOutcome) and offer the choice."""
        new = "–" if math.isnan(outcome.test_accuracy) else f"{outcome.test_accuracy:.2%}"
        old = "–" if outcome.old_test_accuracy is None else f"{outcome.old_test_accuracy:.2%}"
        res = outcome.result
        if outcome.diverged:
            head = f'<b style="color:#ef4444">Training stopped by itself.</b> {html.escape(outcome.message)}'
        elif outcome.stopped:
            when = f"end of epoch {res.best_epoch}" if res.best_epoch else f"step {res.best_step:,}"
            head = f"<b>Stopped</b> after {res.steps:,} steps; the best weights so far ({when}) are offered."
        else:
            head = f"<b>Finished</b> {res.epochs_done} epochs in {_fmt_seconds(res.seconds)}."
        better = ""
        if outcome.old_test_accuracy is not None and not math.isnan(outcome.test_accuracy):
            better = f" ({(outcome.test_accuracy - outcome.old_test_accuracy) * 100:+.2f} points)"
        self.label.setText(
            f"{head}<br>Test accuracy: new <b>{new}</b>{better} · current {old}. "
            "Try the new network on the canvas, then keep it or revert."
        )
        self.keep_button.setEnabled(outcome.model.is_finite())
        self.show()


class TrainingPanes(QWidget):
    """All live plots of one run and its progress bar; ``refresh(history)`` redraws what changed."""

    def __init__(self, parent=None, theme: Theme = THEMES[DEFAULT_THEME]):
        super().__init__(parent)
        self.setObjectName("training_panes")
        self.theme = theme
        # the text sits beside a thin bar, never on its fill where part of it would be unreadable
        self.progress = QProgressBar()
        self.progress.setObjectName("train_progress")
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress.setValue(0)
        self.progress_text = QLabel()
        self.progress_text.setObjectName("train_progress_text")
        self.progress_text.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # never widens the page
        self.set_progress_text("no training yet")
        self.status = QLabel()
        self.status.setObjectName("train_status")

        # the train / validation key once, above the plots, so narrow plots keep whole titles
        self.curve_key = QLabel('<span style="color:#4287f5">━ train</span> &nbsp;'
                                '<span style="color:#4287f5">╌ epoch mean</span> &nbsp;'
                                '<span style="color:#facc15">■ validation</span>')
        self.curve_key.setToolTip("Loss and accuracy: each step's batch (grey), smoothed (blue), the mean over "
                                  "each epoch (dashed), and on the validation digits at each epoch's end")
        self.curve_key.setObjectName("train_curve_key")
        self.curve_key.setTextFormat(Qt.RichText)
        self.curve_key.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.loss_plot = _plot("train_loss", "loss (log)", theme, log_y=True)
        self.accuracy_plot = _plot("train_accuracy", "accuracy", theme)
        self.grad_norm_plot = _plot("grad_norm", "gradient norm ‖∂L/∂W‖ (log)", theme, log_y=True)
        self.update_ratio_plot = _plot("update_ratio", "update ‖ΔW‖/‖W‖", theme, log_y=True)
        self.update_ratio_plot.setToolTip("How much each step changes a layer's weights, relative to their size; "
                                          "the dotted line marks 1e-3, the usual healthy size")
        self.dead_plot = _plot("dead_fraction", "dead units", theme)
        self.time_plots = [self.loss_plot, self.accuracy_plot, self.grad_norm_plot, self.update_ratio_plot,
                           self.dead_plot]
        _set_range(self.dead_plot, y=(0.0, 1.0))
        self.grad_hint = QLabel()
        self.grad_hint.setObjectName("grad_hint")
        self.grad_hint.setWordWrap(True)
        self.grad_hint.setTextFormat(Qt.RichText)

        step_pen = pg.mkPen((130, 130, 150), width=1)
        train_color, val_color = (66, 135, 245), (250, 204, 21)
        self.loss_raw = self.loss_plot.plot(pen=step_pen, name="each step", skipFiniteCheck=True)
        self.loss_smooth = self.loss_plot.plot(pen=pg.mkPen(train_color, width=2), name="train (smoothed)",
                                               skipFiniteCheck=True)
        epoch_pen = pg.mkPen(train_color, width=2, style=Qt.DashLine)  # a mean over an epoch: a dash across it
        self.loss_epoch_train = self.loss_plot.plot(pen=epoch_pen, connect="finite", name="train, epoch mean")
        self.loss_epoch_val = self.loss_plot.plot(pen=pg.mkPen(val_color, width=2), symbol="s", symbolSize=6,
                                                  symbolPen=None, symbolBrush=val_color, name="validation")
        self.acc_smooth = self.accuracy_plot.plot(pen=pg.mkPen(train_color, width=2), name="train (smoothed)",
                                                  skipFiniteCheck=True)
        self.acc_epoch_train = self.accuracy_plot.plot(pen=epoch_pen, connect="finite", name="train, epoch mean")
        self.acc_epoch_val = self.accuracy_plot.plot(pen=pg.mkPen(val_color, width=2), symbol="s", symbolSize=6,
                                                     symbolPen=None, symbolBrush=val_color, name="validation")
        self.grad_key = QLabel()  # the legend, outside the plot so it never hides a line
        self.grad_key.setObjectName("grad_norm_key")
        self.grad_key.setTextFormat(Qt.RichText)
        self.grad_key.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)  # never widens the dashboard
        guide = pg.InfiniteLine(pos=math.log10(UPDATE_RATIO_GUIDE), angle=0,
                                pen=pg.mkPen((200, 200, 200, 110), style=Qt.DotLine))
        self.update_ratio_plot.addItem(guide)  # ~1e-3 is the usual healthy update size

        top = QVBoxLayout()  # progress text and state, the bar, the gradient sentence, the curves' key
        top.setSpacing(2)
        line = QHBoxLayout()
        line.addWidget(self.progress_text, 1)
        line.addWidget(self.status)
        top.addLayout(line)
        top.addWidget(self.progress)
        top.addWidget(self.grad_hint)
        top.addWidget(self.curve_key)
        self.grad_box = QWidget()  # the gradient-norm plot under its key
        grad_box = QVBoxLayout(self.grad_box)
        grad_box.setContentsMargins(0, 0, 0, 0)
        grad_box.setSpacing(0)
        grad_box.addWidget(self.grad_key)
        grad_box.addWidget(self.grad_norm_plot, 1)
        self.summary_grid = QGridLayout()
        self.summary_grid.setSpacing(2)
        self.summary_rows = 0  # 1 when wide, 2 when narrow; set by _arrange_summary
        self._title_font = QFont(self.font())
        self._title_font.setPointSizeF(9.0)  # the plots' titles are set at 9pt
        self._arrange_summary(wide=False)
        self.layer_box = QWidget()  # the per-layer heatmaps; replaced whenever the number of layers changes
        self.layer_grid = QGridLayout(self.layer_box)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.setSpacing(2)
        outer.addLayout(top)
        outer.addLayout(self.summary_grid, 1)
        outer.addWidget(self.layer_box, 1)
        self._outer = outer

        self.act_plots: list[pg.PlotWidget] = []
        self.act_images: list[pg.ImageItem] = []
        self.act_mean_curves: list = []
        self.act_band_curves: list = []
        self.grad_hist_plots: list[pg.PlotWidget] = []
        self.grad_images: list[pg.ImageItem] = []
        self.grad_norm_curves: list = []
        self.update_ratio_curves: list = []
        self.dead_curves: list = []
        self._epochs = 1
        self._turn = 0  # where the next refresh looks first for a group other than the curves
        self._curves_next = True  # the curves and the other groups alternate
        self._seen = {}  # group of plots -> the history's version it was last fed
        self.event_lines: list[tuple] = []  # (plot, InfiniteLine): settings changed during the run
        self._heat: dict = {}  # "act" / "grad" -> [pixels (L, bins, S) uint8, columns written per layer (L,)]
        # a wider time axis reaches the plots one per turn of the event loop: re-laying out the
        # axes of all eleven plots at once held the GUI thread for ~50 ms
        self._x_span: tuple | None = None
        self._x_due: list[pg.PlotWidget] = []  # plots still showing the previous span
        self._x_timer = QTimer(self)
        self._x_timer.setSingleShot(True)
        self._x_timer.setInterval(0)
        self._x_timer.timeout.connect(self._widen_next)
        self._empty_due: list = []  # groups of the last run's series still to empty (see prepare)
        self._empty_timer = QTimer(self)
        self._empty_timer.setSingleShot(True)
        self._empty_timer.setInterval(15)  # ms: each group's plots painted before the next is emptied
        self._empty_timer.timeout.connect(self._empty_next)
        self.apply_theme(theme)

    # ---- layout ------------------------------------------------------------------------

    def _arrange_summary(self, wide: bool) -> None:
        """The five summary plots in one row when the panes are wide and low, else in two rows.

        Wide (a very wide, low area): loss, accuracy, gradient norm (double width), update
        size, dead units. Otherwise (the Train page's dashboard): loss, accuracy, dead units above
        gradient norm (double width) and update size, so no title is cut off and no plot is a
        tall thin strip.
        """
        rows = 1 if wide else 2
        if rows == self.summary_rows:
            return
        grid = self.summary_grid
        cells = ((self.loss_plot, 0, 0, 1, 2), (self.accuracy_plot, 0, 2, 1, 2), (self.grad_box, 0, 4, 1, 4),
                 (self.update_ratio_plot, 0, 8, 1, 2), (self.dead_plot, 0, 10, 1, 2)) if wide else \
                ((self.loss_plot, 0, 0, 1, 1), (self.accuracy_plot, 0, 1, 1, 1), (self.dead_plot, 0, 2, 1, 1),
                 (self.grad_box, 1, 0, 1, 2), (self.update_ratio_plot, 1, 2, 1, 1))
        for widget, *_ in cells:
            grid.removeWidget(widget)
        for c in range(12):
            grid.setColumnStretch(c, 1 if (wide or c < 3) else 0)
        for r in range(2):
            grid.setRowStretch(r, 1 if r < rows else 0)
        for widget, *cell in cells:
            grid.addWidget(widget, *cell)
        self.summary_rows = rows

    def resizeEvent(self, event):
        super().resizeEvent(event)
        size = event.size()
        self._arrange_summary(wide=size.width() >= WIDE_PANES and size.width() >= 2 * size.height())
        self._fit_layer_titles()

    # ---- per run -----------------------------------------------------------------------

    def prepare(self, config) -> None:
        """Lay out the per-layer items for ``config`` (a TrainConfig) and clear every series.

        Called when a run is asked for, so the plots appear while MNIST loads; ``configure``
        then only sets what depends on the data (steps, digits).
        """
        sizes = tuple(config.model_config().layer_sizes)
        rebuilt = len(sizes) - 1 != len(self.act_plots)
        if rebuilt:
            self._build_layers(len(sizes) - 1)
        self._label_layers(sizes, config.activation)
        # the last run's series are emptied a group of plots per turn of the event loop (all at
        # once, the window repainted every plot in one go); ``configure`` empties what is left
        self._empty_due = [
            (self.loss_raw, self.loss_smooth, self.loss_epoch_train, self.loss_epoch_val,
             self.acc_smooth, self.acc_epoch_train, self.acc_epoch_val),
            (*self.act_images, *self.act_mean_curves, *[c for pair in self.act_band_curves for c in pair]),
            tuple(self.dead_curves),
            tuple(self.grad_images),
            (*self.grad_norm_curves, *self.update_ratio_curves),
        ]
        self._empty_next()
        self._heat = {}
        self._epochs = config.epochs
        # new plots take the first span at once; the last run's plots, emptied, a plot per turn
        self._set_x_span((0.0, x_span(0.0, self._epochs)), at_once=rebuilt)
        _set_range(self.loss_plot, y=(-2.0, 1.0))
        _set_range(self.accuracy_plot, y=(0.0, 1.0))
        _set_range(self.grad_norm_plot, y=(-4.0, 0.0))
        _set_range(self.update_ratio_plot, y=(-5.0, -1.0))
        self.grad_hint.setText("")
        for plot, line in self.event_lines:
            plot.removeItem(line)
        self.event_lines = []
        self._prepared = config
        self._seen = {}  # group of plots -> the history's version it was last fed

    def _empty_next(self, everything: bool = False) -> None:
        """Empty the next group of the last run's series (with ``everything``, all that are left)."""
        while self._empty_due:
            for item in self._empty_due.pop(0):
                if isinstance(item, pg.ImageItem):
                    if item.image is not None:
                        item.clear()
                elif item.xData is not None and len(item.xData):  # (an empty plot is not repainted for nothing)
                    item.setData([], [])
            if not everything:
                break
        if self._empty_due and not everything:
            self._empty_timer.start()

    def configure(self, info) -> None:
        """Ready the panes for the run ``info`` describes (a worker.RunInfo)."""
        self._empty_timer.stop()
        self._empty_next(everything=True)
        if _layout_of(getattr(self, "_prepared", None)) != _layout_of(info.config):
            self.prepare(info.config)  # (the run's own statistics pace alone changes nothing on screen)
        self._prepared = None
        self.progress.setRange(0, max(info.total_steps, 1))
        self.progress.setValue(0)
        self.set_progress_text(f"starting: {info.n_train:,} training digits, {info.total_steps:,} steps")
        self._seen = {}  # group of plots -> the history's version it was last fed

    def set_progress_text(self, text: str) -> None:
        """What the progress bar stands for, in the label above it (the bar's own format too, for readers)."""
        self.progress.setFormat(text)
        self.progress_text.setText(text)

    def _build_layers(self, n_layers: int) -> None:
        """Create the per-layer heatmaps and curves (only when the number of layers changes).

        The grid is a new one each time: a grid keeps the stretch of columns it once had, so
        reusing it after a deeper run would leave empty columns taking their share.
        """
        box = QWidget()
        self.layer_grid = QGridLayout(box)
        self.layer_grid.setContentsMargins(0, 0, 0, 0)
        self.layer_grid.setSpacing(2)
        self._outer.replaceWidget(self.layer_box, box)
        self.layer_box.setParent(None)
        self.layer_box.deleteLater()  # and the old heatmaps with it
        self.layer_box = box
        for plot, curves in ((self.grad_norm_plot, self.grad_norm_curves),
                             (self.update_ratio_plot, self.update_ratio_curves),
                             (self.dead_plot, self.dead_curves)):
            for curve in curves:
                plot.removeItem(curve)
        self.act_plots, self.act_images, self.act_mean_curves, self.act_band_curves = [], [], [], []
        self.grad_hist_plots, self.grad_images = [], []
        self.grad_norm_curves, self.update_ratio_curves, self.dead_curves = [], [], []
        colors = layer_colors(n_layers)
        lut = heat_lut()
        for i in range(n_layers):
            pen = pg.mkPen(colors[i], width=2)
            name = layer_name(i, n_layers)
            self.grad_norm_curves.append(self.grad_norm_plot.plot(pen=pen, name=name, connect="finite"))
            self.update_ratio_curves.append(self.update_ratio_plot.plot(pen=pen, connect="finite"))
            if i < n_layers - 1:
                self.dead_curves.append(self.dead_plot.plot(pen=pen))
            for row, store, images in ((0, self.act_plots, self.act_images),
                                       (1, self.grad_hist_plots, self.grad_images)):
                kind = "act_hist" if row == 0 else "grad_hist"
                w = _plot(f"{kind}_{i + 1}", "", self.theme)
                if row == 0:
                    w.getPlotItem().hideAxis("bottom")  # the gradient heatmap below has the same time axis
                w.title_color = colors[i]
                image = pg.ImageItem(axisOrder="row-major")  # (bins, moments): fed by _feed_heatmap
                image.setLookupTable(lut)
                w.addItem(image)
                w.setBackground(self.theme.background)
                style_plot(w.getPlotItem(), self.theme)
                self.layer_grid.addWidget(w, row, i)
                store.append(w)
                images.append(image)
            act = self.act_plots[-1]
            self.act_mean_curves.append(act.plot(pen=pg.mkPen((255, 255, 255), width=1)))
            dash = pg.mkPen((255, 255, 255, 150), width=1, style=Qt.DashLine)
            self.act_band_curves.append((act.plot(pen=dash), act.plot(pen=dash)))
        for c in range(n_layers):
            self.layer_grid.setColumnStretch(c, 1)
        # the first and last layers named, the ones between by number only: one short line for any depth
        names = [layer_name(i, n_layers) if i in (0, n_layers - 1) else str(i + 1) for i in range(n_layers)]
        self.grad_key.setText("&nbsp; ".join(
            f'<span style="color:rgb{tuple(colors[i])}">━&nbsp;{names[i].replace(" ", "&nbsp;")}</span>'
            for i in range(n_layers)))
        self.grad_key.setToolTip("One line per weight layer, from the input side to the output: "
                                 + ", ".join(layer_name(i, n_layers) for i in range(n_layers)))
        self._x_span = None  # the new plots take the span at once (prepare follows)

    def _label_layers(self, sizes: tuple, activation: str) -> None:
        n = len(sizes) - 1
        out_name = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "tanh": "tanh", "sigmoid": "sigmoid"}[activation]
        for i in range(n):
            hidden = i < n - 1
            side = " (input side)" if i == 0 else ""
            act = self.act_plots[i]
            act.title_long = f"layer {i + 1}{side}: {out_name} outputs" if hidden else f"layer {i + 1} (output): logits"
            act.title_short = f"layer {i + 1}: {out_name}" if hidden else f"layer {i + 1}: logits"
            act.title_tiny = f"{i + 1}: {out_name}" if hidden else f"{i + 1}: logits"
            self._title(act, act.title_long)
            grad = self.grad_hist_plots[i]
            grad.title_long, grad.title_short = f"layer {i + 1}: log₁₀|∂L/∂W|", f"layer {i + 1}: ∂L/∂W"
            grad.title_tiny = f"{i + 1}: ∂L/∂W"
            self._title(grad, grad.title_long)
            for w in (self.act_plots[i], self.grad_hist_plots[i]):
                w.setToolTip(f"{layer_name(i, n)}: {sizes[i]} → {sizes[i + 1]}; each column is a moment of "
                             "training, brightness the share of values in that band; white: mean ± spread")
            edges = ACT_EDGES[activation] if hidden else LOGIT_EDGES
            _set_range(self.act_plots[i], y=(float(edges[0]), float(edges[-1])))
            _set_range(self.grad_hist_plots[i], y=(float(GRAD_LOG_EDGES[0]), float(GRAD_LOG_EDGES[-1])))
        self._fit_layer_titles()
        dead = activation in ("relu", "leaky_relu")
        self._title(self.dead_plot, "dead units" if dead else "saturated units")
        self.dead_plot.setToolTip("Share of each hidden layer's units that never respond to the probe digits"
                                  if dead else f"Share of each hidden layer's units stuck at a limit of {activation}")

    def _fit_layer_titles(self) -> None:
        """Short heatmap titles ('layer 1: sigmoid') when the long ones would be cut off."""
        if not self.act_plots:
            return
        metrics = QFontMetrics(self._title_font)
        column = self.width() / len(self.act_plots) - 44  # the title spans its plot less the axis and a margin
        heatmaps = (*self.act_plots, *self.grad_hist_plots)
        for form in ("title_long", "title_short", "title_tiny"):  # the longest that fits everywhere
            if all(metrics.horizontalAdvance(getattr(w, form)) <= column for w in heatmaps):
                break
        for w in heatmaps:  # all in one form, so the rows read the same across
            text = getattr(w, form)
            if text and text != w.title_text:
                self._title(w, text)

    def _title(self, w: pg.PlotWidget, text: str) -> None:
        w.title_text = text
        color = w.title_color or self.theme.foreground
        if getattr(w, "title_shown", None) != (text, color):  # a title set again re-lays out its plot
            w.title_shown = (text, color)
            w.getPlotItem().setTitle(text, size="9pt", color=color)

    def apply_theme(self, theme: Theme) -> None:
        """Recolour backgrounds, axes and titles for ``theme`` (a digitpad.qt.panes.Theme)."""
        self.theme = theme
        for w in (*self.time_plots, *self.act_plots, *self.grad_hist_plots):
            w.setBackground(theme.background)
            style_plot(w.getPlotItem(), theme)
            self._title(w, w.title_text)
        self.grad_hint.setStyleSheet(f"color: {theme.foreground};")

    # ---- every timer tick ------------------------------------------------------------------

    def refresh(self, history: TrainingHistory) -> bool:
        """Feed one group of plots whose series changed since it was last fed; True when another
        group is still due.

        The groups are small (the loss and accuracy curves with the progress bar; one layer's
        activation and gradient heatmaps; the dead units with the gradient and update lines),
        so a timer tick repaints two or three plots and the GUI thread is never busy for long.
        The curves come every other call, the other groups take turns in between.
        """
        parts = self._parts(history)
        due = [p for p in parts if self._seen.get(p) != self._version(p, history)]
        if not due:
            return False
        if "curves" in due and (self._curves_next or len(due) == 1):
            part = "curves"
        else:
            others = [p for p in parts if p != "curves"]
            start = self._turn % max(len(others), 1)
            part = next(p for p in others[start:] + others[:start] if p in due)
            self._turn = others.index(part) + 1
        self._curves_next = part != "curves"
        self._feed(part, history)
        self._seen[part] = self._version(part, history)
        return len(due) > 1

    def _parts(self, h: TrainingHistory) -> list:
        layers = min(h.n_layers, len(self.act_images))
        return ["curves", *[("layer", i) for i in range(layers)], "lines"]

    @staticmethod
    def _version(part, h: TrainingHistory):
        return (h.steps_version, h.epochs_version, len(h.events)) if part == "curves" else h.stats_version

    def _feed(self, part, h: TrainingHistory) -> None:
        if part == "curves":
            steps, epochs, _ = self._seen.get("curves", (-1, -1, -1))
            if h.steps_version != steps:
                self._refresh_steps(h)
            if h.epochs_version != epochs:
                self._refresh_epochs(h)
            if len(h.events) * 2 != len(self.event_lines):
                self._mark_events(h)
            self._refresh_ranges(h)
        elif part == "lines":
            self._refresh_dead(h)
            self._refresh_gradient_lines(h)
        else:
            self._refresh_activations(h, part[1])
            self._refresh_gradients(h, part[1])

    def _refresh_steps(self, h: TrainingHistory) -> None:
        n = h.n_steps
        if n == 0:
            return
        t = h.step_t[:n]
        self.loss_raw.setData(t, h.loss[:n])
        self.loss_smooth.setData(t, h.loss_smooth[:n])
        self.acc_smooth.setData(t, h.acc_smooth[:n])
        r = h.latest
        epochs = h.info.config.epochs
        self.progress.setMaximum(max(r.total_steps, 1))
        self.progress.setValue(r.step)
        self.set_progress_text(
            f"epoch {min(r.epoch + 1, epochs)}/{epochs} · step {r.step:,}/{r.total_steps:,} · "
            f"{r.samples_per_second:,.0f} digits/s · {_fmt_seconds(h.time_left())} left"
        )

    def _mark_events(self, h: TrainingHistory) -> None:
        """A labelled vertical line on the loss and accuracy plots where a setting was changed."""
        pen = pg.mkPen((236, 72, 153), width=1, style=Qt.DashLine)
        for t, text in h.events[len(self.event_lines) // 2:]:
            for plot, label in ((self.loss_plot, text), (self.accuracy_plot, None)):
                line = pg.InfiniteLine(pos=t, angle=90, pen=pen, label=label,
                                       labelOpts={"position": 0.9, "color": (236, 72, 153),
                                                  "anchors": [(1, 0), (1, 0)]})
                line.setToolTip(f"epoch {t:.2f}: {text}")
                plot.addItem(line)
                self.event_lines.append((plot, line))

    def _refresh_epochs(self, h: TrainingHistory) -> None:
        e = h.epochs
        t = np.array([r.epoch for r in e], float)
        # train figures are running means over the epoch's batches: drawn as a dash across the
        # epoch, they read as an average (a dot at the epoch's end looked like an outlier)
        span = np.column_stack([t - 1.0, t, np.full_like(t, np.nan)]).ravel()  # (3E,)

        def across(values):
            return np.column_stack([values, values, np.full_like(t, np.nan)]).ravel()  # (3E,)

        self.loss_epoch_train.setData(span, across(np.array([r.train_loss for r in e], float)))
        self.loss_epoch_val.setData(t, np.array([r.val_loss for r in e]))
        self.acc_epoch_train.setData(span, across(np.array([r.train_accuracy for r in e], float)))
        self.acc_epoch_val.setData(t, np.array([r.val_accuracy for r in e]))

    def _set_x_span(self, span: tuple, at_once: bool = False) -> None:
        """Show ``span`` (epochs) on every time axis: at once, or a plot per turn of the event loop."""
        if span != self._x_span:
            self._x_span = span
            self._x_due = [*self.time_plots, *self.act_plots, *self.grad_hist_plots]
        if at_once:
            self._x_timer.stop()
            while self._x_due:
                _set_range(self._x_due.pop(0), x=span)
        elif self._x_due and not self._x_timer.isActive():
            self._x_timer.start()

    def _widen_next(self) -> None:
        if self._x_due:
            _set_range(self._x_due.pop(0), x=self._x_span)
        if self._x_due:
            self._x_timer.start()

    def _refresh_ranges(self, h: TrainingHistory) -> None:
        n = h.n_steps
        if n == 0:
            return
        self._set_x_span((0.0, x_span(float(h.step_t[n - 1]), self._epochs)))
        val_loss = [r.val_loss for r in h.epochs]
        d = decades(h.loss_smooth[:n], val_loss, floor=1e-4)
        if d is not None:
            _set_range(self.loss_plot, y=(float(d[0]), float(d[1])))
        recent = h.acc_smooth[n // 4:n]  # the first steps' near-chance accuracy would squash the rest
        lows = [float(recent.min())] if recent.size else []
        lows += [a for r in h.epochs for a in (r.train_accuracy, r.val_accuracy) if math.isfinite(a)]
        low = min(lows) if lows else 0.0
        low = max(0.0, math.floor(low * 10) / 10) if math.isfinite(low) else 0.0
        _set_range(self.accuracy_plot, y=(low, 1.0))

    def _feed_heatmap(self, kind: str, images: list, hist: np.ndarray, h: TrainingHistory, y_range,
                      layer: int) -> None:
        """Write layer ``layer``'s statistics new since its last call into its heatmap, a column per moment.

        The images hold every moment the run will have (the history's room for statistics),
        transparent until trained, and are placed once: each column spans ``stats_dt`` epochs
        ending at its moment. So a redraw colours a few new columns in place; nothing is
        rebuilt, resized or moved. ``y_range(i)`` is layer ``i``'s (low, high) bin edges.
        """
        n, layers = h.n_stats, min(h.n_layers, len(images))
        state = self._heat.get(kind)
        if state is None or state[0].shape[2] < n:  # a new run, or more moments than the room first made
            done = np.zeros(layers, int) if state is None else state[1]  # columns written, per layer
            pixels = np.zeros((layers, hist.shape[2], max(len(h.stat_t), n)), np.uint8)  # (L, bins, S)
            if state is not None:
                pixels[:, :, :state[0].shape[2]] = state[0]
            state = self._heat[kind] = [pixels, done]
            x0 = float(h.stat_t[0]) - h.stats_dt
            for i in range(layers):
                lo, hi = y_range(i)
                images[i].setImage(pixels[i], autoLevels=False, levels=None)
                images[i].setRect(QRectF(x0, lo, pixels.shape[2] * h.stats_dt, hi - lo))
        pixels, done = state
        if layer < layers and n > done[layer]:
            pixels[layer, :, done[layer]:n] = heat_index(hist[done[layer]:n, layer]).T  # (k, bins) -> (bins, k)
            done[layer] = n
            images[layer].updateImage()

    def _refresh_activations(self, h: TrainingHistory, i: int) -> None:
        """Layer ``i``'s activation heatmap with its mean and spread."""
        n = h.n_stats
        if n == 0:
            return
        t = h.stat_t[:n]
        self._feed_heatmap("act", self.act_images, h.act_hist, h,
                           lambda j: (float(h.act_edges(j)[0]), float(h.act_edges(j)[-1])), i)
        mean, std = h.act_mean[:n, i], h.act_std[:n, i]
        self.act_mean_curves[i].setData(t, mean)
        self.act_band_curves[i][0].setData(t, mean - std)
        self.act_band_curves[i][1].setData(t, mean + std)

    def _refresh_dead(self, h: TrainingHistory) -> None:
        n = h.n_stats
        if n == 0:
            return
        t = h.stat_t[:n]
        for i in range(min(h.n_layers - 1, len(self.dead_curves))):
            self.dead_curves[i].setData(t, h.dead_fraction[:n, i])

    def _refresh_gradients(self, h: TrainingHistory, i: int) -> None:
        """Layer ``i``'s gradient heatmap."""
        if h.n_stats == 0:
            return
        self._feed_heatmap("grad", self.grad_images, h.grad_hist, h,
                           lambda j: (float(GRAD_LOG_EDGES[0]), float(GRAD_LOG_EDGES[-1])), i)

    def _refresh_gradient_lines(self, h: TrainingHistory) -> None:
        """Every layer's gradient norm and update ratio, and the sentence comparing the layers."""
        n = h.n_stats
        if n == 0:
            return
        t = h.stat_t[:n]
        for i in range(min(h.n_layers, len(self.grad_norm_curves))):
            self.grad_norm_curves[i].setData(t, h.grad_norm[:n, i])
            self.update_ratio_curves[i].setData(t, h.update_ratio[:n, i])
        d = decades(h.grad_norm[:n])
        if d is not None:
            _set_range(self.grad_norm_plot, y=(float(d[0]), float(d[1])))
        d = decades(h.update_ratio[:n], [UPDATE_RATIO_GUIDE])
        if d is not None:
            _set_range(self.update_ratio_plot, y=(float(d[0]), float(d[1])))
        self.grad_hint.setText(self._grad_hint(h))

    @staticmethod
    def _grad_hint(h: TrainingHistory) -> str:
        """One sentence comparing the input-side layer's gradient with the output layer's, now."""
        n = h.n_stats
        if n == 0 or h.n_layers < 2:
            return ""
        lo = max(0, n - 5)
        with np.errstate(all="ignore"):
            first = np.nanmedian(h.grad_norm[lo:n, 0])
            last = np.nanmedian(h.grad_norm[lo:n, h.n_layers - 1])
        if not (first > 0 and last > 0):
            return ""
        ratio = first / last
        if ratio < 0.1:
            return (f"Layer 1 gets <b>{ratio:.0e}</b> × the output layer's gradient: it vanishes on the way "
                    "back, so the first layers barely learn.")
        text = f"Layer 1 gets {ratio:.2g} × the output layer's gradient: it flows back well."
        if h.activation in ("sigmoid", "tanh") and h.info.config.optimizer == "adam":
            text += (" (Adam rescales every layer's step, which hides the gap: Train ▸ Experiments ▸ Vanishing "
                     "gradients trains five sigmoid layers with plain SGD.)")
        return text

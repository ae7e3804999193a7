"""Panes that explain one reading: probabilities, the network's input, hidden activations, logits.

Each pane takes a ``Reading`` (plain arrays) in ``show`` and updates items it created
once. The activations pane rebuilds its items only when the network's shape changes
(a different model), never per reading.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from digitpad.core.functional import softmax
from digitpad.core.model_io import TEMPERATURE_RANGE
from digitpad.core.reading import Reading
from digitpad.qt.panes import THEMES, Theme, bar_labels, quiet_plot, style_plot

DIGITS = np.arange(10)
DIGIT_TICKS = [[(i, str(i)) for i in range(10)]]


def _bar_plot(plot_item, theme: Theme):
    quiet_plot(plot_item)
    plot_item.getAxis("bottom").setTicks(DIGIT_TICKS)
    plot_item.setXRange(-0.6, 9.6, padding=0)
    style_plot(plot_item, theme)


class ProbabilitiesPane(pg.PlotWidget):
    """Ten bars, one per digit, with their values; the winner highlighted; a click on a bar names its digit."""

    digit_clicked = Signal(int)  # a left click on a digit's bar, its column or its label under it

    def __init__(self, parent=None, theme: Theme = THEMES["dark"]):
        super().__init__(parent)
        self.setObjectName("probabilities")
        self.setAccessibleName("Probabilities of each digit")
        self.setMinimumSize(240, 150)
        self._theme = theme
        self._digit = None
        pi = self.getPlotItem()
        _bar_plot(pi, theme)
        pi.setYRange(0, 1.18, padding=0)
        pi.getAxis("left").setTicks([[(0, "0"), (0.5, "50%"), (1.0, "100%")]])
        pi.showGrid(y=True, alpha=0.15)
        self.bars = pg.BarGraphItem(x=DIGITS, height=np.zeros(10), width=0.72, brushes=[theme.bar] * 10,
                                    pen=pg.mkPen(None))
        pi.addItem(self.bars)
        self.values = bar_labels(pi, theme)
        self.probabilities = np.zeros(10, np.float32)
        self.apply_theme(theme)
        self.scene().sigMouseClicked.connect(self._on_click)

    def _on_click(self, event) -> None:
        pi = self.getPlotItem()
        if event.button() != Qt.LeftButton or not pi.sceneBoundingRect().contains(event.scenePos()):
            return
        digit = int(round(pi.getViewBox().mapSceneToView(event.scenePos()).x()))
        if 0 <= digit <= 9:
            event.accept()
            self.digit_clicked.emit(digit)

    def set_reading(self, reading: Reading) -> None:
        p = reading.probabilities
        self.probabilities = p
        self._digit = reading.digit
        self.bars.setOpts(height=p, brushes=self._brushes())
        th = self._theme
        for i, t in enumerate(self.values):
            t.setText("" if reading.blank else _percent(p[i]))
            t.setColor(th.foreground if i == self._digit else th.muted)
            t.setPos(i, float(p[i]) + 0.01)

    def _brushes(self):
        th = self._theme
        return [th.accent if i == self._digit else th.bar for i in range(10)]

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.setBackground(theme.background)
        style_plot(self.getPlotItem(), theme)
        self.bars.setOpts(brushes=self._brushes())
        for i, t in enumerate(self.values):
            t.setColor(theme.foreground if i == self._digit else theme.muted)


def _percent(p: float) -> str:
    if p >= 0.995:
        return "100%"
    if p >= 0.0995:
        return f"{p:.0%}"
    if p >= 0.001:
        return f"{p:.1%}"
    return "0"


class NetworkInputPane(pg.GraphicsLayoutWidget):
    """The 28x28 input after preprocessing, as the network sees it."""

    def __init__(self, parent=None, theme: Theme = THEMES["dark"]):
        super().__init__(parent)
        self.setObjectName("network_input")
        self.setAccessibleName("The 28 by 28 input the network sees")
        self.setMinimumSize(140, 140)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
        self.view.setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.view.addItem(self.image)
        self.frame = pg.QtWidgets.QGraphicsRectItem(QRectF(0, 0, 28, 28))
        self.view.addItem(self.frame)
        self.view.setRange(QRectF(-0.5, -0.5, 29, 29), padding=0)
        self.apply_theme(theme)

    def set_reading(self, reading: Reading) -> None:
        self.image.setImage(reading.image28, autoLevels=False, levels=(0.0, 1.0))

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        self.frame.setPen(pg.mkPen(theme.muted, width=0))


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns for showing ``n`` units as a grid about twice as wide as it is tall or square."""
    cols = 2 ** math.ceil(math.log2(max(math.sqrt(n), 1)))
    return math.ceil(n / cols), cols


ACTIVATION_LEVELS = {"relu": None, "leaky_relu": None, "sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
ACTIVATION_NAMES = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "sigmoid": "sigmoid", "tanh": "tanh"}


class ActivationsPane(pg.GraphicsLayoutWidget):
    """Each hidden layer's outputs for this drawing as a grid of units, coloured by value (silent = dark).

    A click on a unit emits ``unit_clicked(layer, unit)``; units switched off (``set_switched_off``)
    are crossed out.
    """

    unit_clicked = Signal(int, int)  # hidden layer, unit

    def __init__(self, parent=None, theme: Theme = THEMES["dark"], legend: bool = True, stacked: bool = False):
        super().__init__(parent)
        self.setObjectName("activations")
        self._with_legend = legend
        self._stacked = stacked  # layers one above the other instead of side by side
        self.setAccessibleName("Hidden layer activations")
        self.setMinimumSize(200, 120)
        self.ci.setContentsMargins(4, 2, 4, 2)
        self._theme = theme
        self._sizes: tuple = ()
        self._activation = "relu"
        self.titles: list = []
        self.images: list = []
        self.crosses: list = []  # per layer, the marks on switched-off units
        self.views: list = []
        self._off: dict = {}
        self.legend = None
        self.silent_fraction: list[float] = []
        self.cmap = pg.colormap.get("inferno")
        self.setBackground(theme.background)
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_layers(self, sizes: tuple, activation: str) -> None:
        """Build one grid per hidden layer; called when the network's shape changes."""
        sizes = tuple(int(s) for s in sizes)
        if sizes == self._sizes and activation == self._activation and self.images:
            return
        self.clear()
        self._sizes, self._activation = sizes, activation
        self.titles, self.images, self.crosses, self.views = [], [], [], []
        for i, n in enumerate(sizes):
            row, col = (2 * i, 0) if self._stacked else (0, i)
            title = self.addLabel("", row=row, col=col, color=self._theme.foreground, size="9pt")
            view = self.addViewBox(row=row + 1, col=col, lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
            view.setDefaultPadding(0.02)
            rows, cols = grid_shape(n)
            img = pg.ImageItem(axisOrder="row-major")
            img.setColorMap(self.cmap)
            img.setImage(np.full((rows, cols), np.nan, np.float32), autoLevels=False, levels=(0.0, 1.0))
            view.addItem(img)
            view.setRange(QRectF(0, 0, cols, rows), padding=0.02)
            # one cell wide, whatever the grid's size on screen
            cross = pg.ScatterPlotItem(symbol="x", size=0.9, pxMode=False, pen=pg.mkPen("#4fc3f7", width=1.2),
                                       brush=pg.mkBrush("#4fc3f7"))
            view.addItem(cross)
            self.titles.append(title)
            self.images.append(img)
            self.crosses.append(cross)
            self.views.append(view)
        if self._with_legend:
            self.legend = self.addLabel("", row=2 * len(sizes) if self._stacked else 2, col=0,
                                        colspan=1 if self._stacked else max(len(sizes), 1), size="8pt")
        self.silent_fraction = [0.0] * len(sizes)
        self._set_titles(None)
        self.set_switched_off(self._off)

    def set_switched_off(self, off: dict) -> None:
        """Cross out the units ``off[layer]`` (unit indices) in each layer's grid."""
        self._off = {int(k): sorted(int(u) for u in v) for k, v in off.items()}
        for layer, (cross, n) in enumerate(zip(self.crosses, self._sizes)):
            units = np.array([u for u in self._off.get(layer, ()) if u < n], dtype=np.intp)
            _, cols = grid_shape(n)
            cross.setData(x=units % cols + 0.5, y=units // cols + 0.5)

    def unit_at(self, scene_pos) -> tuple[int, int] | None:
        """The (layer, unit) under a scene position, or None."""
        for layer, (view, img, n) in enumerate(zip(self.views, self.images, self._sizes)):
            if not view.sceneBoundingRect().contains(scene_pos):
                continue
            p = img.mapFromScene(scene_pos)
            rows, cols = grid_shape(n)
            col, row = math.floor(p.x()), math.floor(p.y())
            if 0 <= col < cols and 0 <= row < rows and row * cols + col < n:
                return layer, row * cols + col
        return None

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        hit = self.unit_at(event.scenePos())
        if hit is not None:
            self.unit_clicked.emit(*hit)

    def set_reading(self, reading: Reading) -> None:
        fixed = ACTIVATION_LEVELS.get(self._activation)
        for i, (img, a) in enumerate(zip(self.images, reading.activations)):
            rows, cols = grid_shape(len(a))
            grid = np.full(rows * cols, np.nan, np.float32)
            grid[: len(a)] = a
            grid = grid.reshape(rows, cols)  # (rows, cols), unused cells NaN (transparent)
            if fixed is None:
                top = float(np.max(a)) if len(a) else 1.0
                levels = (0.0, top if top > 1e-6 else 1.0)
            else:
                levels = fixed
            img.setImage(grid, autoLevels=False, levels=levels)
            self.silent_fraction[i] = float(np.mean(a <= 0.0)) if len(a) else 0.0
        self._set_titles(None if reading.blank else self.silent_fraction)

    def _set_titles(self, silent) -> None:
        name = ACTIVATION_NAMES.get(self._activation, self._activation)
        if self.legend is not None:
            legend = ("one square per unit, brighter = larger output for this drawing; "
                      "black = silent (output 0)" if self._activation == "relu"
                      else "one square per unit, coloured by its output for this drawing")
            if legend != self.legend.text:
                self.legend.setText(legend, color=self._theme.muted)
        for i, (t, n) in enumerate(zip(self.titles, self._sizes)):
            text = f"layer {i + 1}: {n} {name} units"
            if silent is not None and self._activation in ("relu",):
                text += f" · {silent[i]:.0%} silent"
            if text != t.text or t.opts.get("color") != self._theme.foreground:
                t.setText(text, color=self._theme.foreground)

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.setBackground(theme.background)
        if self.legend is not None:
            self.legend.setText(self.legend.text, color=theme.muted)
        self._set_titles(None)


class TemperatureControl(QWidget):
    """A slider for the softmax temperature T (scores ÷ T) of the logits pane, log-scaled, with a reset."""

    changed = Signal(object)  # the temperature tried, or None for the model's own
    STEPS = 1000

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("softmax_temperature_box")
        self.own = 1.0  # the model's own temperature
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setObjectName("softmax_temperature")
        self.slider.setAccessibleName("Softmax temperature")
        self.slider.setRange(0, self.STEPS)
        self.slider.setToolTip("Divide the scores by T before the softmax: T below 1 makes a sure answer, "
                               "above 1 a spread of guesses")
        self.value = QLabel()
        self.value.setMinimumWidth(52)
        self.reset = QPushButton("Reset")
        self.reset.setObjectName("softmax_temperature_reset")
        self.reset.setToolTip("Back to the model's own temperature")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.addWidget(QLabel("softmax temperature T"))
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.value)
        lay.addWidget(self.reset)
        self.slider.valueChanged.connect(self._moved)
        self.reset.clicked.connect(self.set_own)
        self.set_own()

    def to_temperature(self, position: int) -> float:
        lo, hi = TEMPERATURE_RANGE
        return lo * (hi / lo) ** (position / self.STEPS)

    def to_position(self, temperature: float) -> int:
        lo, hi = TEMPERATURE_RANGE
        t = min(max(temperature, lo), hi)
        return int(round(self.STEPS * math.log(t / lo) / math.log(hi / lo)))

    def set_model_temperature(self, temperature: float) -> None:
        """A new model: its own temperature becomes the reset point, and the slider goes back to it."""
        self.own = float(temperature)
        self.set_own()

    def set_own(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self.to_position(self.own))
        self.slider.blockSignals(False)
        self.value.setText(f"{self.own:.2f}")
        self.reset.setEnabled(False)
        self.changed.emit(None)

    def _moved(self, position: int) -> None:
        t = self.to_temperature(position)
        self.value.setText(f"{t:.2f}")
        self.reset.setEnabled(True)
        self.changed.emit(t)


class LogitsPane(pg.GraphicsLayoutWidget):
    """The output layer's scores (logits) beside their softmax probabilities, which sum to 1."""

    def __init__(self, parent=None, theme: Theme = THEMES["dark"]):
        super().__init__(parent)
        self.setObjectName("logits")
        self.setAccessibleName("Output scores and their softmax probabilities")
        self.setMinimumSize(240, 140)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self._theme = theme
        self._digit = None
        self._logits = np.zeros(10, np.float32)
        self._reading: Reading | None = None
        self.temperature: float | None = None  # the softmax temperature being tried; None: the model's own
        self.scores_plot = self.addPlot(row=0, col=0, title="scores (logits) z")
        self.probs_plot = self.addPlot(row=0, col=1, title="softmax: e^z / Σ e^z")
        for pi in (self.scores_plot, self.probs_plot):
            _bar_plot(pi, theme)
        self.scores_plot.setYRange(-1, 1, padding=0)
        self.probs_plot.setYRange(0, 1.05, padding=0)
        self.probs_plot.getAxis("left").setTicks([[(0, "0"), (0.5, "0.5"), (1.0, "1")]])
        self.score_bars = pg.BarGraphItem(x=DIGITS, height=np.zeros(10), width=0.7, brushes=[theme.bar] * 10,
                                          pen=pg.mkPen(None))
        self.prob_bars = pg.BarGraphItem(x=DIGITS, height=np.zeros(10), width=0.7, brushes=[theme.bar] * 10,
                                         pen=pg.mkPen(None))
        self.scores_plot.addItem(self.score_bars)
        self.probs_plot.addItem(self.prob_bars)
        self.zero_line = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(theme.muted))
        self.scores_plot.addItem(self.zero_line)
        self.caption = self.addLabel("", row=1, col=0, colspan=2, size="9pt")
        self.apply_theme(theme)

    def set_reading(self, reading: Reading) -> None:
        self._reading = reading
        z = reading.logits
        self._digit, self._logits = reading.digit, z
        self.score_bars.setOpts(height=z, brushes=self._score_brushes())
        lo, hi = (-1.0, 1.0) if reading.blank else (float(min(z.min(), 0.0)), float(max(z.max(), 0.0)))
        pad = max(hi - lo, 1.0) * 0.08
        self.scores_plot.setYRange(lo - pad, hi + pad, padding=0)
        self._show_probabilities()

    def set_temperature(self, temperature: float | None) -> None:
        """Divide the scores by ``temperature`` before the softmax (None: the model's own); the bars follow at once."""
        self.temperature = temperature
        self._show_probabilities()

    def _probabilities(self) -> tuple[np.ndarray, float]:
        """The probabilities shown and the temperature they were computed at."""
        r = self._reading
        if r is None or r.blank:
            return np.zeros(10, np.float32), 1.0 if r is None else r.temperature
        if self.temperature is None:
            return r.probabilities, r.temperature
        return softmax(r.logits, self.temperature), self.temperature

    def _show_probabilities(self) -> None:
        p, _ = self._probabilities()
        self.prob_bars.setOpts(height=p, brushes=self._prob_brushes())
        self._set_caption(self._reading)

    def _set_caption(self, reading: Reading | None) -> None:
        th = self._theme
        if reading is None or reading.blank:
            text = "softmax turns scores into probabilities that sum to 1"
        else:
            d = reading.digit
            p, t = self._probabilities()
            if t == 1.0:
                text = (f"z<sub>{d}</sub> = {reading.logits[d]:.2f} is the highest score → p<sub>{d}</sub> = "
                        f"{p[d]:.3f};  Σ p = {float(p.sum()):.3f}")
            else:
                text = (f"p<sub>i</sub> = e<sup>z<sub>i</sub>/T</sup> / Σ e<sup>z/T</sup> with T = {t:.2f}: "
                        f"p<sub>{d}</sub> = {p[d]:.3f};  Σ p = {float(p.sum()):.3f}")
        self.caption.setText(text, color=th.foreground)

    def _score_brushes(self):
        th = self._theme
        return [th.accent if i == self._digit else (th.negative if self._logits[i] < 0 else th.bar)
                for i in range(10)]

    def _prob_brushes(self):
        th = self._theme
        return [th.accent if i == self._digit else th.bar for i in range(10)]

    def apply_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.setBackground(theme.background)
        for pi in (self.scores_plot, self.probs_plot):
            style_plot(pi, theme)
            pi.titleLabel.setText(pi.titleLabel.text, color=theme.foreground, size="9pt")
        self.zero_line.setPen(pg.mkPen(theme.muted))
        self.score_bars.setOpts(brushes=self._score_brushes())
        self.prob_bars.setOpts(brushes=self._prob_brushes())
        self._set_caption(self._reading)

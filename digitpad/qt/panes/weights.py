"""The Weights view of a run: each layer's weights now against at initialisation, and what
the first layer's units look for.

``WeightsPane.configure(info)`` takes a run's shape and its initial weights (a worker.RunInfo);
``show_weights(weights, step)`` is fed the newest snapshot the records carry. Per layer a
histogram of the weights at initialisation (grey) and now (the layer's colour), over a
range fixed for the run, so no axis re-lays out while it trains; the histograms are of a
fixed random sample of each layer's weights, so a feed costs the same whatever the
network's width. Beside them the first layer's first units as 28x28 images, one tile per
unit, each in its own symmetric range (red: this pixel's ink raises the unit; blue:
lowers it). Everything is created once per run and fed with ``setData`` / ``setImage``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from digitpad.qt.panes import DEFAULT_THEME, THEMES, Theme, quiet_plot, style_plot
from digitpad.qt.panes.training import layer_colors, layer_name

SAMPLE = 20000  # weights per layer the histograms count
BINS = 60
RANGE_SPREAD = 4.0  # the histograms span this many times the initial weights' standard deviation each way
TILES = 8  # the first layer's units shown as a TILES x TILES grid of 28x28 images


def unit_mosaic(w1: np.ndarray, tiles: int = TILES) -> np.ndarray:
    """The first ``tiles**2`` units of a first layer (784, H) as one image of 28x28 tiles, each scaled to [-1, 1].

    Returns a (tiles*29-1, tiles*29-1) float32 array, NaN between tiles (drawn as background).
    """
    n = min(tiles * tiles, w1.shape[1])
    units = w1[:, :n].T.reshape(n, 28, 28)  # (n, 28, 28)
    scale = np.abs(units).max(axis=(1, 2), keepdims=True)
    units = units / np.where(scale > 0, scale, 1)
    side = tiles * 29 - 1
    out = np.full((side, side), np.nan, np.float32)
    for k in range(n):
        r, c = divmod(k, tiles)
        out[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = units[k]
    return out


class WeightsPane(QWidget):
    """Per-layer weight histograms (initial vs now) and the first layer's units as images."""

    def __init__(self, parent=None, theme: Theme = THEMES[DEFAULT_THEME]):
        super().__init__(parent)
        self.setObjectName("weights_pane")
        self.theme = theme
        self.caption = QLabel("Start a run to see its weights.")
        self.caption.setObjectName("weights_caption")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.units_plot = pg.PlotWidget()
        self.units_plot.setObjectName("weights_units")
        item = self.units_plot.getPlotItem()
        quiet_plot(item)
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.setAspectLocked(True)
        item.getViewBox().invertY(True)
        item.setTitle("layer 1: what each unit looks for", size="9pt")
        self.units_image = pg.ImageItem(axisOrder="row-major")
        self.units_image.setColorMap(pg.colormap.get("CET-D1"))
        self.units_image.setLevels((-1.0, 1.0))
        item.addItem(self.units_image)
        self.units_plot.setMinimumSize(160, 160)
        self.units_plot.setToolTip("The first layer's first units, each as the 28x28 picture of its weights: "
                                   "red where ink raises the unit's input, blue where it lowers it")
        self.hist_box = QWidget()
        self.hist_grid = QGridLayout(self.hist_box)
        self.hist_grid.setContentsMargins(0, 0, 0, 0)
        self.hist_grid.setSpacing(2)
        self.hist_plots: list[pg.PlotWidget] = []
        self.init_curves: list = []
        self.now_curves: list = []
        self.step = 0  # the step of the weights shown (0: none yet)
        self._edges: list[np.ndarray] = []
        self._samples: list[np.ndarray] = []
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.hist_box, 3)
        row.addWidget(self.units_plot, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.caption)
        lay.addLayout(row, 1)
        self.apply_theme(theme)

    def configure(self, info) -> None:
        """Ready the histograms for the run ``info`` describes (sizes, initial weights) and show the start."""
        sizes = info.layer_sizes
        n = len(sizes) - 1
        if n != len(self.hist_plots):
            self._build(n)
        rng = np.random.default_rng(0)
        self._edges, self._samples = [], []
        for i, w in enumerate(info.initial_weights):
            sample = rng.choice(w.size, min(SAMPLE, w.size), replace=False) if w.size > SAMPLE else np.arange(w.size)
            spread = float(np.std(w)) or 0.1
            edges = np.linspace(-RANGE_SPREAD * spread, RANGE_SPREAD * spread, BINS + 1)
            self._samples.append(sample)
            self._edges.append(edges)
            self.init_curves[i].setData(edges, self._density(w, i), stepMode="center")
            self.now_curves[i].setData(edges, self._density(w, i), stepMode="center")
            plot = self.hist_plots[i]
            plot.getPlotItem().setXRange(edges[0], edges[-1], padding=0)
            plot.setToolTip(f"{layer_name(i, n)}: {sizes[i]} → {sizes[i + 1]} weights; grey: at initialisation, "
                            "colour: now (values beyond the range are counted at its ends)")
        self._ymax = [max(float(self.init_curves[i].yData.max()) * 1.6, 1e-9) for i in range(n)]
        for i in range(n):
            self.hist_plots[i].getPlotItem().setYRange(0, self._ymax[i], padding=0)
        if info.initial_weights:
            self.units_image.setImage(unit_mosaic(info.initial_weights[0]), autoLevels=False)
        self.step = 0
        self.caption.setText("Weights at initialisation; they change as it trains.")

    def _density(self, w: np.ndarray, i: int) -> np.ndarray:
        """Share of layer ``i``'s sampled weights in each bin (the ends take the values beyond them)."""
        edges = self._edges[i]
        v = np.clip(w.ravel()[self._samples[i]], edges[0], edges[-1])
        counts, _ = np.histogram(v, edges)
        return counts / max(len(v), 1)

    def show_weights(self, weights, step: int) -> None:
        """Feed the newest snapshot (a list of (n_in, n_out) arrays) taken after ``step`` steps."""
        if not self._edges:
            return
        for i, w in enumerate(weights[:len(self.now_curves)]):
            self.now_curves[i].setData(self._edges[i], self._density(w, i), stepMode="center")
        self.units_image.setImage(unit_mosaic(weights[0]), autoLevels=False)
        self.step = step
        self.caption.setText(f"Weights after step {step:,} (colour) against at initialisation (grey).")

    def _build(self, n: int) -> None:
        for plot in self.hist_plots:
            self.hist_grid.removeWidget(plot)
            plot.setParent(None)
            plot.deleteLater()
        self.hist_plots, self.init_curves, self.now_curves = [], [], []
        colors = layer_colors(n)
        cols = 1 if n <= 3 else 2
        for i in range(n):
            plot = pg.PlotWidget()
            plot.setObjectName(f"weights_hist_{i + 1}")
            plot.setMinimumSize(60, 50)
            item = plot.getPlotItem()
            quiet_plot(item)
            item.disableAutoRange()
            item.hideAxis("left")
            item.setTitle(f"{layer_name(i, n)}: weights", size="9pt", color=colors[i])
            plot.setBackground(self.theme.background)
            style_plot(item, self.theme)
            self.init_curves.append(item.plot(pen=pg.mkPen((150, 150, 160), width=1),
                                              fillLevel=0, brush=(150, 150, 160, 60)))
            self.now_curves.append(item.plot(pen=pg.mkPen(colors[i], width=2)))
            self.hist_grid.addWidget(plot, i // cols, i % cols)
            self.hist_plots.append(plot)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for w in (*self.hist_plots, self.units_plot):
            w.setBackground(theme.background)
            style_plot(w.getPlotItem(), theme)

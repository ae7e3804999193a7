"""Robustness curves on the Evaluate page: test accuracy as rotation, noise and stroke width grow.

Owns ``RobustnessView`` (three plots, a choice of a second model from the run history, a
progress bar) and ``RobustnessController`` (the job; the view's place on the Evaluate page,
behind a "Robustness" button beside Evaluate). The numbers come from
``digitpad.core.explore.robustness_curves``: every changed digit goes through the same
preprocessing as a drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shiboken6
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import data as data_mod
from digitpad.core import explore, model_io, runs
from digitpad.qt.explore_page import mnist_loader
from digitpad.qt.panes import THEMES, Theme, quiet_plot, style_plot
from digitpad.qt.worker import Job

KINDS = {"rotation": ("Rotation", "degrees"), "noise": ("Gaussian noise", "standard deviation (ink = 1)"),
         "stroke": ("Stroke width", "pixels added to the pen")}
SECOND_COLOUR = "#76b7b2"
DIGITS_PER_LEVEL = 500


class RobustnessView(QWidget):
    """Three plots of accuracy against how much each digit is changed, for one or two models."""

    compute_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, theme: Theme = THEMES["dark"], parent=None):
        super().__init__(parent)
        self.setObjectName("robustness")
        bar = QHBoxLayout()
        self.caption = QLabel("How accuracy falls as the test digits are rotated, made noisy or drawn bolder.")
        self.caption.setObjectName("robustness_caption")
        self.caption.setWordWrap(True)
        self.caption.setMinimumHeight(2 * self.caption.fontMetrics().lineSpacing() + 4)
        bar.addWidget(self.caption, 1)
        bar.addWidget(QLabel("Compare with"))
        self.second = QComboBox()
        self.second.setObjectName("robustness_second")
        self.second.setToolTip("A kept run's model from the run history, drawn as a second curve")
        self.second.setMinimumContentsLength(16)
        self.second.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        bar.addWidget(self.second)
        self.progress = QProgressBar()
        self.progress.setObjectName("robustness_progress")
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(160)
        self.progress.hide()
        bar.addWidget(self.progress)
        self.compute_button = QPushButton("Compute")
        self.compute_button.setObjectName("robustness_compute")
        self.compute_button.clicked.connect(self.compute_requested)
        bar.addWidget(self.compute_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("robustness_cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.cancel_button.hide()
        bar.addWidget(self.cancel_button)

        plots = QHBoxLayout()
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, list] = {}
        for kind, (title, unit) in KINDS.items():
            w = pg.PlotWidget()
            w.setObjectName(f"robustness_{kind}")
            w.setMinimumSize(200, 180)
            pi = w.getPlotItem()
            quiet_plot(pi)
            pi.setTitle(title, size="10pt")
            pi.setLabel("bottom", unit)
            pi.getAxis("bottom").enableAutoSIPrefix(False)
            pi.setLabel("left", "test accuracy %")
            pi.setYRange(0, 100, padding=0.02)
            pi.showGrid(x=True, y=True, alpha=0.15)
            pi.addLegend(offset=(-4, -4), labelTextSize="8pt")
            self.curves[kind] = [pi.plot([], [], symbol="o", symbolSize=6, name="current model"),
                                 pi.plot([], [], symbol="s", symbolSize=6, name="")]
            _rename_legend(pi.legend, self.curves[kind][:1], ["current model"])
            self.plots[kind] = w
            plots.addWidget(w)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addLayout(plots, 1)
        self.apply_theme(theme)

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.progress.setValue(0)
        self.cancel_button.setVisible(running)
        self.compute_button.setEnabled(not running)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(round(100 * done / max(total, 1))))

    def set_curves(self, curves: dict, names: list[str]) -> None:
        """``curves[kind]`` is (n_models, n_levels) accuracy; one line per model, one scale for all plots."""
        low = max(0.0, 100 * min(float(np.min(acc)) for acc in curves.values()) - 5.0)
        for kind, acc in curves.items():
            levels = np.asarray(explore.ROBUSTNESS_LEVELS[kind])
            pi = self.plots[kind].getPlotItem()
            for m, curve in enumerate(self.curves[kind]):
                if m < len(acc):
                    curve.setData(levels, 100 * np.asarray(acc[m]))
                else:
                    curve.setData([], [])
            _rename_legend(pi.legend, self.curves[kind][:len(acc)], names)
            pi.setYRange(low, 100.5, padding=0)
            pi.setXRange(float(levels[0]), float(levels[-1]), padding=0.05)

    def apply_theme(self, theme: Theme) -> None:
        for kind, w in self.plots.items():
            w.setBackground(theme.background)
            style_plot(w.getPlotItem(), theme)
            first, second = self.curves[kind]
            first.setPen(pg.mkPen(theme.accent, width=2))
            first.setSymbolBrush(theme.accent)
            second.setPen(pg.mkPen(SECOND_COLOUR, width=2))
            second.setSymbolBrush(SECOND_COLOUR)


def _rename_legend(legend, curves, names) -> None:
    """The legend lists the models drawn, by name."""
    legend.clear()
    for curve, name in zip(curves, names):
        legend.addItem(curve, name)


class RobustnessController(QObject):
    """Puts the robustness view on the Evaluate page and computes the curves in a job."""

    curves_ready = Signal(object)  # {kind: (n_models, n_levels)}

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.page = window.evaluate_page
        self.view = RobustnessView(window.theme)
        self.n = DIGITS_PER_LEVEL
        self.curves: dict | None = None
        self._job: Job | None = None
        self._return_to = None
        self._closed = False  # the window is closing: results go nowhere
        page = self.page
        page.views.addWidget(self.view)
        self.button = QPushButton("Robustness")
        self.button.setObjectName("show_robustness")
        self.button.setCheckable(True)
        self.button.setToolTip("Test accuracy as rotation, noise and stroke width grow")
        page.top_bar.insertWidget(page.top_bar.count() - 1, self.button)
        self.button.toggled.connect(self.show)
        page.views.currentChanged.connect(self._on_view_changed)
        self.view.compute_requested.connect(self.compute)
        self.view.cancel_requested.connect(self.cancel)
        window.page_changed.connect(lambda p: self.refresh_runs() if p is self.page else None)
        window.theme_changed.connect(lambda name: self.view.apply_theme(THEMES.get(name, window.theme)))
        self.refresh_runs()

    def show(self, on: bool = True) -> None:
        views = self.page.views
        if on and views.currentWidget() is not self.view:
            self._return_to = views.currentWidget()
            views.setCurrentWidget(self.view)
            self.refresh_runs()
        elif not on and views.currentWidget() is self.view:
            views.setCurrentWidget(self._return_to or self.page.state)

    def _on_view_changed(self, _index: int) -> None:
        self.button.blockSignals(True)
        self.button.setChecked(self.page.views.currentWidget() is self.view)
        self.button.blockSignals(False)

    def refresh_runs(self) -> None:
        """List the kept runs whose model file is still there."""
        combo = self.view.second
        chosen = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("no second model", None)
        listed, _ = runs.list_runs()
        for run in listed:
            path = run.info.get("model")
            if run.info.get("kept") and path and Path(path).is_file():
                acc = run.info.get("test_accuracy")
                extra = f" · {float(acc):.2%}" if isinstance(acc, (int, float)) else ""
                combo.addItem(f"{run.name}{extra}", str(path))
        index = combo.findData(chosen)
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)

    def compute(self) -> bool:
        model = self.window.current_model
        if model is None:
            self.view.caption.setText("There is no model: load one or train one first.")
            return False
        if self._job is not None and not self._job.finished:
            return False
        load = mnist_loader(None, self.window.settings)
        if load is None:
            self.view.caption.setText("MNIST is not on this computer: get it on the Train page (Download MNIST), "
                                      "or set DIGITPAD_DATA_DIR to a folder with the four files.")
            return False
        second_path = self.view.second.currentData()
        second_name = self.view.second.currentText().split(" · ")[0]
        n = self.n

        def work(progress, cancel):
            models, names = [model], ["current model"]
            if second_path:
                other, _ = model_io.load_model(second_path)
                models.append(other)
                names.append(second_name)
            mnist = load()
            return explore.robustness_curves(models, mnist.test_images, mnist.test_labels, n=n, progress=progress,
                                             cancel=cancel), names

        self.view.set_running(True)
        self.view.caption.setText(f"Reading {n} test digits at each of 15 levels of change…")
        self._job = Job(work, self._on_done, self._on_failed, on_progress=self.view.set_progress,
                        on_finished=self._on_finished, cancelled_by=(explore.Cancelled,),
                        expected=(data_mod.DataError, model_io.ModelFileError, OSError))
        return True

    def _on_finished(self) -> None:
        if not self._closed:
            self.view.set_running(False)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self.view.set_running(False)
        self.view.caption.setText("Stopped.")

    def _on_done(self, result) -> None:
        if self._gone():
            return
        curves, names = result
        self.curves = curves
        self.view.set_curves(curves, names)
        rot = curves["rotation"][0]
        self.view.caption.setText(f"{self.n} test digits per level, each through the drawing's preprocessing. "
                                  f"Rotated 45°: {rot[-1]:.0%} (upright {rot[0]:.0%}).")
        self.curves_ready.emit(curves)

    def _on_failed(self, text: str) -> None:
        if self._gone():
            return
        self.view.caption.setText(f"Could not compute the curves: {text}")

    def _gone(self) -> bool:
        """The window is closing or already deleted: a job's result goes nowhere."""
        return self._closed or not shiboken6.isValid(self.view)

    def shutdown(self) -> None:
        self._closed = True
        if self._job is not None:
            self._job.cancel()

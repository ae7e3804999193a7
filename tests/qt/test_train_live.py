"""The Train page while it trains: settings changed mid-run (marked on the plots, recorded in the run)
and the Weights tab (histograms now against at initialisation, the first layer's units as 28x28 images).

Runs on the tiny synthetic MNIST-like set of ``test_retrain``, in the real main window.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QPushButton

from digitpad.core.runs import find_run, load_curves
from tests.qt.test_retrain import LONG, data, models_dir, window  # noqa: F401  (fixtures)


def start_and_wait_for_steps(qtbot, c, config, data, steps=10):
    with qtbot.waitSignal(c.run_started, timeout=10000):
        assert c.start(config, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > steps, timeout=10000)


def test_a_learning_rate_changed_during_the_run_is_marked_on_the_plots_and_in_the_run(qtbot, window, data):
    c = window.retrain
    box = c.page.live_box
    assert not box.apply_button.isEnabled()  # nothing to change before a run
    start_and_wait_for_steps(qtbot, c, LONG, data)
    lr = window.findChild(QLineEdit, "train_live_lr")
    assert lr is box.lr and lr.isEnabled() and float(lr.text()) == LONG.lr
    assert not box.momentum.isEnabled()  # Adam has no momentum
    lr.setText("0.0002")
    qtbot.mouseClick(window.findChild(QPushButton, "train_live_apply"), Qt.LeftButton)
    qtbot.waitUntil(lambda: len(c.panes.event_lines) == 2, timeout=5000)
    (t, text), = c.history.events
    assert "learning rate 0.001 → 0.0002" == text
    plots = {plot for plot, _ in c.panes.event_lines}
    assert plots == {c.panes.loss_plot, c.panes.accuracy_plot}
    assert all(line.value() == t for _, line in c.panes.event_lines)
    n = c.history.n_steps
    qtbot.waitUntil(lambda: c.history.n_steps > n + 3, timeout=5000)
    assert c.history.latest.lr == 0.0002
    with qtbot.waitSignal(c.run_finished, timeout=5000) as finished:
        c.stop()
    assert not box.apply_button.isEnabled()
    curves = load_curves(find_run(finished.args[0].run_folder.name))
    assert [text for _, _, text in curves.events] == ["learning rate 0.001 → 0.0002"]


def test_a_value_that_is_not_a_number_is_refused_with_a_note(qtbot, window, data):
    c = window.retrain
    start_and_wait_for_steps(qtbot, c, replace(LONG, optimizer="sgd", lr=0.01), data)
    box = c.page.live_box
    assert box.momentum.isEnabled()
    box.momentum.setText("fast")
    assert not c.change_settings()
    assert box.note.text() == "momentum: 'fast' is not a number"
    box.momentum.setText("1.5")
    assert not c.change_settings()
    assert box.note.text().startswith("momentum: must be at least 0 and below 1")
    box.momentum.setText("0.5")
    assert c.change_settings()
    qtbot.waitUntil(lambda: len(c.history.events) == 1, timeout=5000)
    assert c.history.events[0][1] == "momentum 0.9 → 0.5"
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()


def test_the_weights_tab_shows_each_layer_and_the_first_layers_units_changing(qtbot, window, data):
    c = window.retrain
    page = c.page
    page.dashboard.setCurrentWidget(page.weights)
    start_and_wait_for_steps(qtbot, c, LONG, data, steps=2)
    w = page.weights
    n_layers = len(LONG.hidden) + 1
    assert len(w.hist_plots) == n_layers
    assert [p.objectName() for p in w.hist_plots] == [f"weights_hist_{i + 1}" for i in range(n_layers)]
    assert all(p.isVisible() for p in w.hist_plots) and w.units_plot.isVisible()
    first = w.units_image.image.copy()
    first_step = w.step
    assert first.shape == (8 * 29 - 1, 8 * 29 - 1)  # 8 x 8 tiles of 28 x 28
    init = [curve.yData.copy() for curve in w.init_curves]
    shown = [curve.yData.copy() for curve in w.now_curves]
    qtbot.waitUntil(lambda: w.step > first_step + 50, timeout=10000)
    assert not np.allclose(np.nan_to_num(w.units_image.image), np.nan_to_num(first))  # the units moved
    assert any(not np.allclose(curve.yData, y0) for curve, y0 in zip(w.now_curves, shown))
    for curve, y0 in zip(w.init_curves, init):  # the initial histogram stays as it was
        np.testing.assert_allclose(curve.yData, y0)
    assert window.findChild(pg.PlotWidget, "weights_units") is w.units_plot
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()

"""Training on the Train page: panes fed, pause/resume/stop, keep/revert, divergence, closing mid-run, live reading.

Runs on a tiny synthetic MNIST-like set (ten noisy templates), so a run takes a fraction
of a second; the real main window is used, with its settings in a temporary file and the
models folder in ``tmp_path``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QProgressBar, QPushButton

from digitpad.core import model_io
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.train import TrainConfig
from digitpad.qt.main_window import MainWindow

SMALL = TrainConfig(limit=2000, val_size=500, epochs=2, batch_size=64, hidden=(32, 16), stats_every=5,
                    snapshot_every=5)
LONG = TrainConfig(limit=2000, val_size=500, epochs=500, batch_size=16, hidden=(32, 16), stats_every=5,
                   snapshot_every=5)


def synthetic_mnist(n_train: int = 3000, n_test: int = 1000, seed: int = 0):
    """Ten fixed random 28x28 templates plus noise: learnable in a few steps, not instantly."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 28, 28))

    def split(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.clip(templates[labels] * 0.5 + rng.integers(0, 128, (n, 28, 28)), 0, 255).astype(np.uint8)
        return images, labels

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return SimpleNamespace(train_images=train_images, train_labels=train_labels,
                           test_images=test_images, test_labels=test_labels, templates=templates)


def series(curve):
    """The (x, y) a curve was fed with (getData() returns log10 values on a log axis)."""
    return curve.xData, curve.yData


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist()


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(model_io, "user_models_dir", lambda: folder)
    return folder


@pytest.fixture
def window(qtbot, settings, models_dir):
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.show_page(w.train_page)
    yield w
    w.retrain.shutdown()


def run_to_end(qtbot, controller, config, data, timeout=20000):
    """Start ``config`` and wait for run_started then run_finished, in that order; return the outcome."""
    outcomes = []
    controller.run_finished.connect(outcomes.append)
    try:
        with qtbot.waitSignals([controller.run_started, controller.run_finished], order="strict",
                               timeout=timeout):
            assert controller.start(config, mnist=data)
    finally:
        controller.run_finished.disconnect(outcomes.append)
    qtbot.waitUntil(lambda: not controller.redraw_pending, timeout=timeout)  # the last plots, a group per turn
    return outcomes[-1]


def test_controller_is_plugged_into_the_window(window):
    c = window.retrain
    assert c is not None
    names = {a.objectName() for a in window.menu_train.actions()}
    assert {"action_retrain", "action_pause", "action_stop"} <= names
    assert c.page is window.train_page and c.page.objectName() == "page_train"
    assert window.findChild(QPushButton, "train_start") is c.page.start_button
    assert c.action_stop.shortcut().toString() == "Ctrl+."
    assert not c.action_stop.isEnabled() and not c.action_pause.isEnabled()
    assert not c.page.stop_button.isEnabled() and not c.page.pause_button.isEnabled()


def test_short_run_feeds_every_pane(qtbot, window, data):
    c = window.retrain
    outcome = run_to_end(qtbot, c, SMALL, data)
    h = c.history
    assert h.n_steps == outcome.result.steps == 64
    assert h.n_stats == 13 and len(h.epochs) == 2
    loss = window.findChild(pg.PlotWidget, "train_loss")
    assert loss is c.panes.loss_plot
    x, y = series(c.panes.loss_smooth)
    assert len(x) == h.n_steps and np.all(np.isfinite(y))
    assert y[-1] < y[0]  # it learned
    ex, ey = series(c.panes.acc_epoch_val)
    assert list(ex) == [1.0, 2.0] and np.all((ey >= 0) & (ey <= 1))
    L = len(SMALL.hidden) + 1
    assert len(c.panes.grad_norm_curves) == L
    for i in range(L):
        gx, gy = series(c.panes.grad_norm_curves[i])
        assert len(gx) == h.n_stats and np.all(gy > 0)
        act = window.findChild(pg.PlotWidget, f"act_hist_{i + 1}")
        grad = window.findChild(pg.PlotWidget, f"grad_hist_{i + 1}")
        assert act is not None and grad is not None
        for image in (c.panes.act_images[i], c.panes.grad_images[i]):  # (bins, room for every moment)
            assert image.image.shape[0] == 40 and image.image.shape[1] >= h.n_stats
            assert (image.image[:, :h.n_stats] > 0).all() and (image.image[:, h.n_stats:] == 0).all()
        ux, uy = series(c.panes.update_ratio_curves[i])
        assert len(ux) == h.n_stats
    for curve in c.panes.dead_curves:
        dx, dy = series(curve)
        assert len(dx) == h.n_stats and np.all((dy >= 0) & (dy <= 1))
    for name in ("grad_norm", "update_ratio", "dead_fraction", "train_accuracy"):
        assert window.findChild(pg.PlotWidget, name) is not None
    names = [curve.name() for curve in c.panes.grad_norm_curves]
    assert names[0] == "layer 1 (input side)" and names[-1] == f"layer {L} (output)"
    key = c.panes.grad_key.text().replace("&nbsp;", " ")
    assert "layer 1 (input side)" in key and f"layer {L} (output)" in key
    progress = window.findChild(QProgressBar, "train_progress")
    assert progress.value() == progress.maximum() == h.info.total_steps
    assert "epoch 2/2" in progress.text() and "epoch 2/2" in c.panes.progress_text.text()
    assert not progress.isTextVisible()  # the text sits beside the bar, never on its fill
    assert c.page.result_panel.isVisible()
    assert not c.is_running and not c.thread.isRunning()


def test_pause_stops_steps_and_resume_restarts_them(qtbot, window, data):
    c = window.retrain
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 10, timeout=10000)
    with qtbot.waitSignal(c.paused_changed) as paused:
        c.action_pause.trigger()
    assert paused.args == [True] and c.action_pause.text() == "&Resume training"
    qtbot.waitUntil(lambda: c._worker.waiting, timeout=2000)
    c.refresh()
    frozen = c.history.n_steps
    for _ in range(4):  # four redraw ticks later nothing new has arrived
        with qtbot.waitSignal(c.timer.timeout, timeout=1000):
            pass
    c.refresh()
    assert c.history.n_steps == frozen
    with qtbot.waitSignal(c.paused_changed) as resumed:
        c.action_pause.trigger()
    assert resumed.args == [False]
    qtbot.waitUntil(lambda: c.history.n_steps > frozen + 5, timeout=5000)
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()


def test_stop_ends_within_a_second_and_offers_the_best_so_far(qtbot, window, data):
    c = window.retrain
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 20, timeout=10000)
    with qtbot.waitSignal(c.run_finished, timeout=1000) as finished:
        window.findChild(type(c.action_stop), "action_stop").trigger()
    outcome = finished.args[0]
    assert outcome.stopped and not outcome.diverged
    assert outcome.result.steps < LONG.epochs * 125
    assert c.page.result_panel.isVisible()
    assert "Stopped" in c.page.result_panel.label.text()
    assert window.findChild(QPushButton, "train_keep").isEnabled()
    assert window.reading_model is outcome.model
    assert not c.thread.isRunning()


def test_keep_saves_the_model_and_it_survives_a_restart(qtbot, window, data, settings, models_dir):
    c = window.retrain
    outcome = run_to_end(qtbot, c, SMALL, data)
    with qtbot.waitSignal(c.kept) as kept:
        qtbot.mouseClick(window.findChild(QPushButton, "train_keep"), Qt.LeftButton)
    path = models_dir / kept.args[0].split("/")[-1]
    assert path.is_file() and path.parent == models_dir
    assert [p.name for p in models_dir.iterdir()] == [path.name]  # no temporary file left
    model, meta = model_io.load_model(path)
    np.testing.assert_array_equal(model.weights[0], outcome.model.weights[0])
    assert meta["metrics"]["test_accuracy"] == pytest.approx(outcome.test_accuracy)
    assert meta["train_config"]["hidden"] == [32, 16] and meta["seed"] == SMALL.seed
    assert window.current_model is outcome.model and window.current_model_path == path
    assert window.reading_model is outcome.model
    assert not c.page.result_panel.isVisible()
    window.close()
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    assert again.current_model_path == path
    np.testing.assert_array_equal(again.current_model.weights[-1], outcome.model.weights[-1])
    again.retrain.shutdown()


def test_revert_brings_the_old_model_back(qtbot, window, data, models_dir):
    old = MLP(MLPConfig(hidden=(8,)), 3)
    window.set_model(old, {"metrics": {}}, None)
    c = window.retrain
    outcome = run_to_end(qtbot, c, SMALL, data)
    assert outcome.old_test_accuracy is not None
    assert window.reading_model is outcome.model
    with qtbot.waitSignal(c.reverted):
        qtbot.mouseClick(window.findChild(QPushButton, "train_revert"), Qt.LeftButton)
    assert window.current_model is old and window.reading_model is old
    assert list(models_dir.iterdir()) == []


def test_absurd_learning_rate_takes_the_divergence_path(qtbot, window, data):
    c = window.retrain
    bad = TrainConfig(limit=2000, val_size=500, epochs=2, batch_size=64, hidden=(32, 16), optimizer="sgd", lr=1e6)
    outcome = run_to_end(qtbot, c, bad, data)
    assert outcome.diverged and not outcome.stopped
    assert "learning rate" in outcome.message and "too high" in outcome.message
    assert outcome.model.is_finite()
    assert c.history.message == outcome.message
    text = c.page.result_panel.label.text()
    assert "stopped by itself" in text and "try" in text
    assert "stopped by itself" in window.statusBar().currentMessage()


def test_closing_mid_run_stops_the_thread_cleanly(qtbot, window, data, models_dir):
    c = window.retrain
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 10, timeout=10000)
    thread = c.thread
    assert thread.isRunning()
    window.close()  # asks first
    assert window.isVisible() and c.is_running
    window.quit_question.findChild(QPushButton, "quit_discard").click()
    assert not window.isVisible()
    assert not thread.isRunning() and thread.isFinished()
    assert not c.is_running
    assert list(models_dir.iterdir()) == []
    assert not c.start(SMALL, mnist=data)  # nothing starts once the window is closing


def test_the_canvas_reading_changes_while_training(qtbot, window, data):
    image = (data.templates[3] / 255.0).astype(np.float32)
    window.show_input(image, "template 3")
    c = window.retrain
    seen = []
    running = []
    window.reading_changed.connect(lambda r: running and seen.append(np.array(r.probabilities)))
    c.run_started.connect(lambda _: running.append(True))
    c.run_finished.connect(lambda _: running.clear())
    # long enough that the canvas is re-read several times however busy the machine is; stopped
    # once it has been, and once the network has had about six epochs to learn the digit
    slow = TrainConfig(limit=2000, val_size=500, epochs=200, batch_size=16, hidden=(32, 16), snapshot_every=5)
    with qtbot.waitSignal(c.run_started, timeout=10000):
        assert c.start(slow, mnist=data)
    qtbot.waitUntil(lambda: len({tuple(np.round(p, 4)) for p in seen}) >= 2 and c.history.n_steps >= 600,
                    timeout=120000)
    with qtbot.waitSignal(c.run_finished, timeout=20000):
        c.stop()
    assert seen[-1].argmax() == 3  # the kept-or-revert weights read the digit right


def test_second_run_reuses_the_panes_and_clears_them(qtbot, window, data):
    c = window.retrain
    run_to_end(qtbot, c, SMALL, data)
    plots = list(c.panes.act_plots)
    outcome = run_to_end(qtbot, c, TrainConfig(limit=500, val_size=100, epochs=1, batch_size=50, hidden=(12, 10),
                                               activation="sigmoid", stats_every=2), data)
    assert c.panes.act_plots == plots  # same number of layers: the same widgets
    assert c.history.n_steps == outcome.result.steps == 10
    assert len(series(c.panes.loss_raw)[0]) == 10
    assert "sigmoid" in c.panes.act_plots[0].getPlotItem().titleLabel.text


def test_theme_switch_recolours_the_training_panes_at_once(qtbot, window, data):
    from digitpad.qt.panes import THEMES

    dark, light = THEMES["dark"], THEMES["light"]
    c = window.retrain
    window.set_theme("dark")

    def backgrounds():
        return {w.backgroundBrush().color().name()
                for w in (c.panes.loss_plot, c.panes.dead_plot, *c.panes.act_plots, *c.panes.grad_hist_plots)}

    def axis_pen():
        return c.panes.loss_plot.getPlotItem().getAxis("left").pen().color().name()

    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 5, timeout=10000)
    assert backgrounds() == {dark.background} and axis_pen() == dark.muted
    with qtbot.waitSignal(window.theme_changed, timeout=1000) as changed:
        window.theme_actions["light"].trigger()
    assert changed.args == ["light"]
    assert c.is_running
    assert backgrounds() == {light.background} and axis_pen() == light.muted  # mid-run, no new run needed
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()
    window.set_theme("dark")  # after the run too
    assert backgrounds() == {dark.background} and axis_pen() == dark.muted


def test_summary_plots_take_one_row_only_in_a_wide_low_area(qtbot):
    from digitpad.qt.panes.training import TrainingPanes

    panes = TrainingPanes()
    qtbot.addWidget(panes)
    panes.prepare(SMALL)
    panes.resize(1600, 320)  # very wide and low
    panes.show()
    qtbot.waitUntil(lambda: panes.summary_rows == 1, timeout=1000)
    row = (panes.loss_plot, panes.accuracy_plot, panes.grad_box, panes.update_ratio_plot, panes.dead_plot)
    qtbot.waitUntil(lambda: len({p.mapTo(panes, p.rect().topLeft()).y() for p in row}) == 1,
                    timeout=1000)  # (the gradient key heads its box)
    panes.resize(820, 530)  # the Train page's dashboard
    qtbot.waitUntil(lambda: panes.summary_rows == 2, timeout=1000)
    qtbot.waitUntil(lambda: panes.grad_norm_plot.mapTo(panes, panes.grad_norm_plot.rect().topLeft()).y()
                    > panes.loss_plot.mapTo(panes, panes.loss_plot.rect().bottomLeft()).y(), timeout=1000)
    assert panes.dead_plot.mapTo(panes, panes.dead_plot.rect().topLeft()).y() \
        == panes.loss_plot.mapTo(panes, panes.loss_plot.rect().topLeft()).y()


def test_heatmap_titles_shorten_when_they_would_be_cut_off(qtbot):
    from digitpad.qt.panes.training import TrainingPanes

    panes = TrainingPanes()
    qtbot.addWidget(panes)
    panes.prepare(TrainConfig(hidden=(128, 128, 128, 128), activation="sigmoid"))
    panes.resize(820, 530)  # five columns on a wide Train page
    panes.show()
    qtbot.waitUntil(lambda: panes.act_plots[0].title_text == "layer 1: sigmoid", timeout=1000)
    assert panes.act_plots[-1].title_text == "layer 5: logits"
    assert "layer 1: sigmoid" in panes.act_plots[0].getPlotItem().titleLabel.text
    panes.resize(1900, 800)
    qtbot.waitUntil(lambda: panes.act_plots[0].title_text == "layer 1 (input side): sigmoid outputs", timeout=1000)
    assert panes.act_plots[-1].title_text == "layer 5 (output): logits"


def test_every_run_of_the_app_is_recorded_and_keep_marks_it_kept(qtbot, window, data, models_dir):
    from digitpad.core.runs import find_run, list_runs, load_curves

    c = window.retrain
    before = {r.id for r in list_runs()[0]}
    outcome = run_to_end(qtbot, c, SMALL, data)
    run = find_run(outcome.run_folder.name)
    assert run.id not in before and run.info["source"] == "app" and run.status == "finished"
    assert run.info["test_accuracy"] == pytest.approx(outcome.test_accuracy, rel=1e-5) and not run.info["kept"]
    curves = load_curves(run)
    assert len(curves.steps["step"]) == outcome.result.steps and len(curves.epochs["epoch"]) == 2
    assert curves.stats["grad_norm"].shape[1] == 3  # statistics of every weight layer
    with qtbot.waitSignal(c.kept) as kept:
        qtbot.mouseClick(window.findChild(QPushButton, "train_keep"), Qt.LeftButton)
    run = find_run(run.id)
    assert run.info["kept"] is True and run.info["model"] == kept.args[0]


def test_a_run_cut_short_by_closing_reads_as_interrupted(qtbot, window, data, models_dir):
    from digitpad.core.runs import list_runs

    c = window.retrain
    before = {r.id for r in list_runs()[0]}
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 10, timeout=10000)
    thread = c.thread
    c.shutdown()
    qtbot.waitUntil(lambda: thread.isFinished(), timeout=10000)
    new = [r for r in list_runs()[0] if r.id not in before]
    assert [r.status for r in new] == ["interrupted"]

"""A run that never holds the GUI thread long: Keep saved in the background, the Weights tab built
when shown, a wider time axis handed to the plots one at a time, heatmaps written in place, the
canvas re-read with new weights without preprocessing it again.

Behaviour only; how long anything takes is measured by ``benchmarks/gui_training.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QPushButton

from digitpad.core import model_io
from tests.qt.test_retrain import LONG, SMALL, data, models_dir, run_to_end, window  # noqa: F401 (fixtures)


def test_keep_saves_in_the_background_and_the_choice_waits_for_it(qtbot, window, data, models_dir):
    c = window.retrain
    old_model = window.current_model
    outcome = run_to_end(qtbot, c, SMALL, data)
    panel = c.page.result_panel
    with qtbot.waitSignal(c.kept, timeout=10000) as kept:
        assert c.keep()
        # until the file is written the new model stays offered and nothing else can happen to it
        assert c.saving and not panel.keep_button.isEnabled() and not panel.revert_button.isEnabled()
        assert not c.keep()
        c.revert()
        assert c.outcome is outcome and window.current_model is old_model
        assert not c.start(SMALL, mnist=data)
    path = models_dir / kept.args[0].split("/")[-1]
    assert path.is_file() and [p.name for p in models_dir.iterdir()] == [path.name]
    assert window.current_model is outcome.model and window.current_model_path == path
    assert not c.saving and c.outcome is None and not panel.isVisible()


def test_a_failed_background_save_says_so_and_keeps_the_previous_model(qtbot, window, data, models_dir,
                                                                       monkeypatch):
    c = window.retrain
    old_model, old_path = window.current_model, window.current_model_path

    save_model = model_io.save_model

    def full(path, model, metadata=None):
        raise OSError(f"{path}: No space left on device")

    monkeypatch.setattr(model_io, "save_model", full)
    outcome = run_to_end(qtbot, c, SMALL, data)
    kept = []
    c.kept.connect(kept.append)
    assert c.keep()
    panel = c.page.result_panel
    qtbot.waitUntil(lambda: not c.saving, timeout=10000)
    assert "Could not save the model" in panel.label.text() and "No space left on device" in panel.label.text()
    assert window.current_model is old_model and window.current_model_path == old_path
    assert c.outcome is outcome and panel.keep_button.isEnabled() and panel.revert_button.isEnabled()
    assert kept == [] and list(models_dir.iterdir()) == []
    monkeypatch.setattr(model_io, "save_model", save_model)  # the disk has room again: Keep works
    with qtbot.waitSignal(c.kept, timeout=10000):
        assert c.keep()
    assert len(list(models_dir.iterdir())) == 1


def test_keep_and_quit_closes_only_once_the_model_is_saved(qtbot, window, data, models_dir):
    c = window.retrain
    run_to_end(qtbot, c, SMALL, data)
    seen = []
    c.kept.connect(lambda path: seen.append((window.isVisible(), list(models_dir.iterdir()))))
    window.close()  # asks: Keep and quit
    window.quit_question.findChild(QPushButton, "quit_keep").click()
    assert window.isVisible() or seen  # (a save finished at once may already have closed it)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10000)
    assert len(seen) == 1
    visible_when_kept, files = seen[0]
    assert visible_when_kept and len(files) == 1 and files[0].is_file()


def test_keep_and_quit_with_a_failed_save_leaves_the_window_open(qtbot, window, data, models_dir, monkeypatch):
    c = window.retrain

    def broken(path, model, metadata=None):
        raise model_io.ModelFileError(f"{path}: cannot be written")

    monkeypatch.setattr(model_io, "save_model", broken)
    outcome = run_to_end(qtbot, c, SMALL, data)
    window.close()
    window.quit_question.findChild(QPushButton, "quit_keep").click()
    qtbot.waitUntil(lambda: not c.saving, timeout=10000)
    assert window.isVisible() and c.outcome is outcome
    assert "cannot be written" in c.page.result_panel.label.text()


def test_the_weights_tab_is_built_for_a_run_when_it_is_shown(qtbot, window, data):
    c = window.retrain
    page = c.page
    page.dashboard.setCurrentWidget(page.panes)
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.latest_weights is not None, timeout=10000)
    assert page.weights.step == 0 and page.weights.hist_plots == []  # hidden: nothing built yet
    page.dashboard.setCurrentWidget(page.weights)
    assert len(page.weights.hist_plots) == len(LONG.hidden) + 1
    assert page.weights.step > 0  # the newest snapshot at once, not the state at initialisation
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()


def test_a_wider_time_axis_reaches_every_plot_one_turn_at_a_time(qtbot, window):
    panes = window.retrain.panes
    panes.prepare(SMALL)
    plots = [*panes.time_plots, *panes.act_plots, *panes.grad_hist_plots]
    first = plots[0].ranges["x"]
    qtbot.waitUntil(lambda: all(w.ranges["x"] == first for w in plots), timeout=2000)
    panes._set_x_span((0.0, 2.0))
    assert any(w.ranges["x"] == first for w in plots)  # not all in this turn of the event loop
    qtbot.waitUntil(lambda: all(w.ranges["x"] == (0.0, 2.0) for w in plots), timeout=2000)
    for w in plots:
        lo, hi = w.getPlotItem().getViewBox().viewRange()[0]
        assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(2.0)
    panes._set_x_span((0.0, 1.0), at_once=True)  # a new run: every plot at once
    assert all(w.ranges["x"] == (0.0, 1.0) for w in plots)


def test_new_weights_reread_the_drawing_without_preprocessing_it_again(qtbot, window, monkeypatch):
    from digitpad.core import preprocess as preprocess_mod
    from digitpad.core.mlp import MLP, MLPConfig
    from digitpad.core.reading import read_image

    c = window.canvas
    c.begin_stroke(80, 60)
    for x, y in zip(np.linspace(80, 200, 20), np.linspace(60, 230, 20)):
        c.extend_stroke(x, y)
    c.end_stroke()
    before = window.read_now()
    calls = []
    preprocess = preprocess_mod.preprocess
    monkeypatch.setattr(preprocess_mod, "preprocess", lambda *a, **k: calls.append(1) or preprocess(*a, **k))
    learning = MLP(MLPConfig(hidden=(16,)), 5)
    window.set_reading_model(learning)
    assert calls == []
    after = window.reading
    assert after.preprocessed is before.preprocessed and not after.blank
    fresh = read_image(learning, c.bitmap())
    np.testing.assert_allclose(after.probabilities, fresh.probabilities, rtol=1e-5, atol=1e-6)
    assert len(after.activations) == 1 and after.activations[0].shape == (16,)
    calls.clear()
    c.begin_stroke(60, 200)  # the drawing changes: read through preprocessing again
    c.extend_stroke(220, 200)
    c.end_stroke()
    assert calls and window.reading.preprocessed is not before.preprocessed


def test_heatmaps_are_written_in_place_a_column_per_new_moment(qtbot, window, data):
    from digitpad.qt.panes.training import heat_index

    c = window.retrain
    panes = c.panes
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: panes._heat.get("act") is not None and panes._heat["act"][1][0] >= 2, timeout=10000)
    image = panes.act_images[0]
    pixels, shape, rect = image.image, image.image.shape, image.boundingRect()
    written = panes._heat["act"][1][0]
    first = pixels[:, :written].copy()
    assert (first > 0).all() and (pixels[:, written:] == 0).all()  # trained moments coloured, the rest clear
    np.testing.assert_array_equal(first[:, 0], heat_index(c.history.act_hist[0, 0]))
    qtbot.waitUntil(lambda: panes._heat["act"][1][0] > written + 3, timeout=10000)
    assert image.image is pixels and image.image.shape == shape  # the same array, grown by nothing
    assert image.boundingRect() == rect  # nor placed anew
    np.testing.assert_array_equal(pixels[:, :written], first)  # earlier columns as they were
    assert (pixels[:, written:panes._heat["act"][1][0]] > 0).all()
    grad = panes.grad_images[-1]
    assert grad.image.dtype == np.uint8 and grad.image.shape[1] == shape[1]
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()
    image.render()
    assert image.qimage is not None  # the uint8 image and its lookup table still make a picture


def test_a_new_run_on_the_same_layers_empties_the_plots_without_building_them_again(qtbot, window, data):
    c = window.retrain
    panes = c.panes
    run_to_end(qtbot, c, SMALL, data)
    plots = [*panes.time_plots, *panes.act_plots, *panes.grad_hist_plots]
    before = list(plots)
    titles = [w.getPlotItem().titleLabel.text for w in plots]
    assert len(panes.loss_smooth.xData) > 0 and panes.act_images[0].image is not None
    panes.prepare(SMALL)
    assert [*panes.time_plots, *panes.act_plots, *panes.grad_hist_plots] == before
    assert panes._empty_due  # emptied a group of plots per turn, not all in one
    qtbot.waitUntil(lambda: not panes._empty_due, timeout=2000)
    assert not len(panes.loss_smooth.xData if panes.loss_smooth.xData is not None else []) \
        and panes.act_images[0].image is None and panes._heat == {}
    assert [w.getPlotItem().titleLabel.text for w in plots] == titles
    start = (0.0, panes._x_span[1])
    qtbot.waitUntil(lambda: all(w.ranges["x"] == start for w in plots), timeout=2000)


def test_the_redraw_pace_slows_when_the_window_is_busy_and_recovers(window):
    """The dashboard's timer lengthens while the GUI thread is busier than BUSY_SHARE, within
    [REFRESH_MS, SLOWEST_MS], and comes back to REFRESH_MS once the thread is quiet again."""
    from digitpad.qt import retrain

    c = window.retrain
    clock = {"wall": 100.0, "cpu": 5.0}
    c.timer.setInterval(retrain.REFRESH_MS)
    c._pace_at = (clock["wall"], clock["cpu"])

    def tick(busy_share):
        dt = c.timer.interval() / 1000
        clock["wall"] += dt
        clock["cpu"] += busy_share * dt
        c._pace(clock["wall"], clock["cpu"])
        return c.timer.interval()

    slower = [tick(0.30) for _ in range(8)]  # drawing costs 30% of the thread at the fastest pace
    assert slower[0] > retrain.REFRESH_MS and slower == sorted(slower)
    assert slower[-1] == retrain.SLOWEST_MS  # capped: the plots still move
    quiet = [tick(0.01) for _ in range(8)]
    assert quiet[-1] == retrain.REFRESH_MS
    assert tick(retrain.BUSY_SHARE) == retrain.REFRESH_MS  # at the share itself it stays fast

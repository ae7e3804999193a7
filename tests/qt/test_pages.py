"""The window as pages: switching, a layout that cannot break at any size, quitting with unkept training.

Geometry is checked on the real window: every pane lies inside its page, no two panes
overlap, none overlaps the menu bar or toolbar, and the window's minimum fits the
smallest size asked for (so no layout has to squeeze a pane below its own minimum).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PySide6.QtCore import QByteArray, QPoint, QRect, QSettings, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPushButton

from digitpad.core.train import PRESETS, TrainConfig
from digitpad.qt.main_window import SETTINGS_VERSION, MainWindow
from tests.qt.test_retrain import LONG, SMALL, data, models_dir  # noqa: F401 (fixtures)

SIZES = [(1024, 640), (1280, 800), (1920, 1080)]
FOUR_LAYERS = TrainConfig(limit=2000, val_size=500, epochs=500, batch_size=16, hidden=(32, 32, 32, 16),
                          stats_every=5, snapshot_every=5)


@pytest.fixture
def open_window(qtbot, settings, models_dir):
    windows = []

    def make(size=(1280, 800), settings_=None):
        w = MainWindow(settings=settings_ if settings_ is not None else settings)
        qtbot.addWidget(w)
        if size is not None:
            w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        QApplication.processEvents()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.retrain.shutdown()


def rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def global_rect(widget) -> QRect:
    return QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())


def panes(w, page) -> list:
    """The panes of ``page`` that must each have their own room."""
    if page is w.draw_page:
        d = w.draw_page
        return [w.reading_label, w.canvas, d.probabilities, d.network_input, d.logits, d.activations]
    if page is w.train_page:
        t = w.train_page
        p = t.panes
        return [t.settings_scroll, w.canvas, t.probabilities, p.progress, p.loss_plot, p.accuracy_plot,
                p.grad_norm_plot, p.update_ratio_plot, p.dead_plot, *p.act_plots, *p.grad_hist_plots]
    if page is w.runs_page:
        r = w.runs_page
        return [r.table, r.legend, *r.plots.values()]
    if page is w.samples_page:
        s = w.samples_page
        return [s.grid_scroll, s.summary, s.import_button, s.export_button, s.delete_button, s.finetune_button]
    if page is w.explore_page:
        x = w.explore_page
        return [x.averages, x.counts, x.grid, x.random_button, x.map, x.lab_activations, x.lab_summary,
                x.save_button]
    e = w.evaluate_page
    if e.views.currentWidget() is w.robustness.view:
        return [e.summary, *w.robustness.view.plots.values()]
    return [e.summary, e.state] if e.views.currentWidget() is e.state else \
        [e.summary, e.per_class, e.confusion, e.gallery, e.reliability, e.calibration_summary]


def check_page(w, page) -> None:
    """Every pane inside its page, no two overlapping, none under the menu bar or toolbar, none clipped."""
    w.show_page(page)
    QApplication.processEvents()
    area = page.rect()
    boxes = [(pane.objectName() or type(pane).__name__, rect_in(pane, page)) for pane in panes(w, page)]
    for name, box in boxes:
        assert area.contains(box), (page.objectName(), name, box, area)
    for (a, ra), (b, rb) in itertools.combinations(boxes, 2):
        assert not ra.intersects(rb), (page.objectName(), a, ra, b, rb)
    for bar in (w.menuBar(), w.toolbar):
        assert not global_rect(page).intersects(global_rect(bar)), (page.objectName(), bar.objectName())
    for pane in panes(w, page):
        assert pane.isVisible(), pane.objectName()
        assert pane.width() >= pane.minimumWidth() and pane.height() >= pane.minimumHeight(), pane.objectName()


# ---- pages -------------------------------------------------------------------------------------------


def test_pages_have_names_and_ctrl_numbers_switch(open_window, qtbot):
    w = open_window()
    assert [p.objectName() for p in w.pages] == ["page_draw", "page_train", "page_evaluate", "page_runs",
                                                 "page_samples", "page_explore"]
    assert w.current_page() is w.draw_page and w.canvas.parent() is not None
    for key, page in (("Ctrl+2", w.train_page), ("Ctrl+3", w.evaluate_page), ("Ctrl+4", w.runs_page),
                      ("Ctrl+5", w.samples_page), ("Ctrl+6", w.explore_page), ("Ctrl+1", w.draw_page)):
        QTest.keySequence(w, QKeySequence(key))
        assert w.current_page() is page
        assert w.mode_bar.buttons[w.pages.index(page)].isChecked()
    qtbot.mouseClick(w.mode_bar.buttons[1], Qt.LeftButton)
    assert w.current_page() is w.train_page and w.canvas.isVisible()  # the same canvas, on the Train page
    assert w.findChildren(type(w.canvas)) == [w.canvas]


def test_a_page_that_trains_loads_the_compiled_training_step_once_in_the_background(open_window, qtbot):
    from digitpad.core import kernels

    w = open_window()
    for page in (w.draw_page, w.evaluate_page, w.runs_page, w.explore_page):
        w.show_page(page)
    assert w._training_prepared is None  # drawing and evaluating train nothing
    w.show_page(w.train_page)
    job = w._training_prepared
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=60000)
    assert kernels.compiled() is not None, kernels.status()
    w.show_page(w.samples_page)
    assert w._training_prepared is job


def test_retrain_opens_the_train_page_on_quick_and_enter_starts(open_window, qtbot):
    w = open_window()
    c = w.retrain
    form = w.train_page.settings_form
    form.select_preset("standard")
    started = []
    c.start = lambda config, **kwargs: started.append(config) or True  # the run itself is tested elsewhere
    w.activateWindow()
    QTest.keySequence(w, QKeySequence("Ctrl+R"))
    assert w.current_page() is w.train_page
    assert form.preset.currentData() == "quick"
    start = w.findChild(QPushButton, "train_start")
    assert start is w.train_page.start_button and start.hasFocus()
    QTest.keyClick(start, Qt.Key_Return)
    assert started == [PRESETS["quick"]]


def test_a_run_goes_on_whichever_page_is_shown_and_the_mode_bar_shows_it(open_window, qtbot, data):
    w = open_window()
    c = w.retrain
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    w.show_page(w.evaluate_page)
    qtbot.waitUntil(lambda: c.history.n_steps > 10, timeout=10000)
    n = c.history.n_steps
    qtbot.waitUntil(lambda: c.history.n_steps > n + 10, timeout=10000)
    bar = w.mode_bar.progress
    qtbot.waitUntil(lambda: bar.value() > 0, timeout=5000)
    assert bar.isVisible() and "step" in bar.toolTip()
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()
    assert bar.isVisible() and "keep" in bar.toolTip()
    c.revert()
    assert not bar.isVisible()


# ---- geometry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=[f"{a}x{b}" for a, b in SIZES])
def test_no_pane_is_clipped_or_overlapped(open_window, qtbot, data, size):
    w = open_window(size)
    hint = w.minimumSizeHint()
    assert hint.width() <= size[0] and hint.height() <= size[1]
    assert (w.width(), w.height()) == size
    for page in w.pages:
        check_page(w, page)
    w.robustness.show(True)
    check_page(w, w.evaluate_page)  # the robustness curves in place of the evaluation
    w.robustness.show(False)
    with qtbot.waitSignal(w.retrain.run_started, timeout=10000):
        w.retrain.start(FOUR_LAYERS, mnist=data)  # five columns of heatmaps
    qtbot.waitUntil(lambda: w.retrain.history.n_steps > 5, timeout=10000)
    check_page(w, w.train_page)
    if size == (1280, 800):
        p = w.train_page.panes
        for plot in (*p.time_plots, *p.act_plots, *p.grad_hist_plots):
            assert plot.height() >= 100, (plot.objectName(), plot.height())
    with qtbot.waitSignal(w.retrain.run_finished, timeout=5000):
        w.retrain.stop()
    check_page(w, w.train_page)  # the result in the page squeezes nothing


def test_the_canvas_keeps_its_size_when_training_starts(open_window, qtbot, data):
    w = open_window()
    before = w.canvas.size()
    assert before.width() >= 500 and before.height() >= 500
    with qtbot.waitSignal(w.retrain.run_started, timeout=10000):
        w.retrain.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: w.retrain.history.n_steps > 5, timeout=10000)
    QApplication.processEvents()
    assert w.current_page() is w.draw_page and w.canvas.size() == before
    with qtbot.waitSignal(w.retrain.run_finished, timeout=5000):
        w.retrain.stop()
    assert w.canvas.size() == before


def test_minimum_maximise_close_reopen_then_train(open_window, qtbot, settings, data):
    """The sequence that once put the training pane over the menus, for good."""
    first = open_window()
    first.resize(first.minimumSizeHint())
    QApplication.processEvents()
    first.showMaximized()
    qtbot.waitUntil(lambda: bool(first.windowState() & Qt.WindowMaximized), timeout=2000)
    QApplication.processEvents()
    first.close()
    again = open_window(size=None, settings_=settings)
    again.resize(1280, 800)
    QApplication.processEvents()
    again.retrain.open_page()
    with qtbot.waitSignal(again.retrain.run_started, timeout=10000):
        again.retrain.start(SMALL, mnist=data)
    qtbot.waitUntil(lambda: again.retrain.history is not None and again.retrain.history.n_steps > 5,
                    timeout=10000)
    for page in again.pages:
        check_page(again, page)


def test_a_two_layer_run_after_a_four_layer_run_gets_the_whole_width(qtbot):
    from digitpad.qt.panes.training import TrainingPanes

    panes = TrainingPanes()
    qtbot.addWidget(panes)
    panes.resize(800, 600)
    panes.show()
    panes.prepare(TrainConfig(hidden=(64, 64, 64, 32)))
    qtbot.waitUntil(lambda: len(panes.act_plots) == 5 and panes.act_plots[0].width() > 0, timeout=1000)
    panes.prepare(TrainConfig(hidden=(32,)))
    qtbot.waitUntil(lambda: len(panes.act_plots) == 2 and panes.act_plots[0].isVisible(), timeout=1000)
    qtbot.waitUntil(lambda: sum(p.width() for p in panes.act_plots) > 0.9 * panes.width(), timeout=1000)
    assert all(p.width() > 0.4 * panes.width() for p in panes.act_plots)


# ---- remembered state ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["older", "unknown", "garbage"])
def test_an_unusable_saved_layout_gives_the_default_one(open_window, qtbot, settings, damage):
    first = open_window()
    first.show_page(first.evaluate_page)
    first.close()
    if damage == "older":
        settings.setValue("layout/version", 1)
        settings.setValue("window/state", QByteArray(b"\x00\x00\x00\xff old dock state"))
    elif damage == "unknown":
        settings.setValue("layout/version", SETTINGS_VERSION + 7)
    else:
        settings.setValue("layout/draw_splitter", QByteArray(b"not a splitter state"))
    again = open_window(settings_=settings)
    assert again.current_page() is again.draw_page  # the default layout, not a broken one
    for page in again.pages:
        check_page(again, page)


def test_the_first_window_fits_on_the_screen(qtbot, tmp_path):
    w = MainWindow(settings=QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat))
    qtbot.addWidget(w)
    free = w.screen().availableGeometry()
    assert w.width() <= free.width() and w.height() <= free.height()
    assert w.width() < 1280 or free.width() > 1280  # never as large as a 1280-wide screen


# ---- quitting ---------------------------------------------------------------------------------------


def test_quitting_with_an_unkept_run_asks_and_cancel_keeps_the_window(open_window, qtbot, data, models_dir):
    w = open_window()
    with qtbot.waitSignal(w.retrain.run_finished, timeout=20000):
        w.retrain.start(SMALL, mnist=data)
    w.close()
    box = w.quit_question
    assert box is not None and box.objectName() == "quit_question" and w.isVisible()
    assert {b.objectName() for b in box.buttons()} == {"quit_keep", "quit_discard", "quit_cancel"}
    box.findChild(QPushButton, "quit_cancel").click()
    assert w.isVisible() and w.retrain.outcome is not None
    w.close()
    w.quit_question.findChild(QPushButton, "quit_discard").click()
    assert not w.isVisible() and list(models_dir.iterdir()) == []


def test_keep_and_quit_keeps_the_finished_run(open_window, qtbot, data, models_dir, settings):
    w = open_window()
    with qtbot.waitSignal(w.retrain.run_finished, timeout=20000):
        w.retrain.start(SMALL, mnist=data)
    w.close()
    with qtbot.waitSignal(w.retrain.kept, timeout=5000):
        w.quit_question.findChild(QPushButton, "quit_keep").click()
    assert not w.isVisible()
    saved = list(models_dir.iterdir())
    assert len(saved) == 1 and settings.value("model/last") == str(saved[0])


def test_keep_and_quit_during_a_run_stops_it_keeps_it_then_closes(open_window, qtbot, data, models_dir):
    w = open_window()
    with qtbot.waitSignal(w.retrain.run_started, timeout=10000):
        w.retrain.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: w.retrain.history.n_steps > 10, timeout=10000)
    w.close()
    with qtbot.waitSignal(w.retrain.kept, timeout=10000):
        w.quit_question.findChild(QPushButton, "quit_keep").click()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)
    assert len(list(models_dir.iterdir())) == 1


# ---- small things seen by a new user -------------------------------------------------------------------


def test_f1_lists_every_shortcut_including_training(open_window):
    w = open_window()
    w.action_shortcuts.trigger()
    text = w.last_message.text()
    for action in w.actions():
        for key in action.shortcuts():
            if not key.isEmpty():
                assert key.toString(QKeySequence.NativeText) in text, action.objectName()
    assert "Ctrl+R" in text and "Ctrl+P" in text and "Ctrl+." in text and "Ctrl+E" in text
    assert "Ctrl+1" in text and "right mouse button" in text


def test_a_long_status_message_stops_before_the_model_label(open_window):
    w = open_window()
    w.message("warning", "Open image", "Could not read the image:\n/" + "very/" * 80 + "long.png: not a picture")
    bar = w.statusBar()
    width = bar.fontMetrics().horizontalAdvance(bar.currentMessage())
    assert 0 < width <= bar.width() - w.status_model.width()
    assert bar.currentMessage().endswith("…")


def test_dragging_a_file_over_the_window_highlights_the_canvas(open_window, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent

    w = open_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "digit.png"))])
    normal = w.canvas.frame_color.name()
    QApplication.sendEvent(w, QDragEnterEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    assert w.drop_highlight and w.canvas.frame_color.name() == w.theme.accent != normal
    QApplication.sendEvent(w, QDragLeaveEvent())
    assert not w.drop_highlight and w.canvas.frame_color.name() == normal


def test_a_stop_is_not_reported_as_done(open_window, qtbot, data):
    w = open_window()
    c = w.retrain
    with qtbot.waitSignal(c.run_started, timeout=10000):
        c.start(LONG, mnist=data)
    qtbot.waitUntil(lambda: c.history.n_steps > 10, timeout=10000)
    with qtbot.waitSignal(c.run_finished, timeout=5000):
        c.stop()
    message = w.statusBar().currentMessage()
    assert "stopped" in message and "done" not in message


def test_train_epoch_means_span_their_epoch(open_window, qtbot, data):
    """A running mean over an epoch drawn as a dot at its end looked like an outlier on epoch 1."""
    w = open_window()
    c = w.retrain
    with qtbot.waitSignal(c.run_finished, timeout=20000):
        c.start(SMALL, mnist=data)
    qtbot.waitUntil(lambda: not c.redraw_pending, timeout=5000)  # the last data, a group of plots per turn
    p = c.panes
    x, y = p.acc_epoch_train.xData, p.acc_epoch_train.yData
    np.testing.assert_array_equal(x[np.isfinite(x)], [0.0, 1.0, 1.0, 2.0])  # a dash across each epoch
    means = [r.train_accuracy for r in c.history.epochs]
    np.testing.assert_allclose(y[np.isfinite(y)], np.repeat(means, 2))
    assert p.acc_epoch_train.opts["symbol"] is None
    assert list(p.acc_epoch_val.xData) == [1.0, 2.0]  # measured at each epoch's end
    c.revert()


def test_speed_and_time_left_leave_the_pause_out():
    from digitpad.core.train import StepRecord
    from digitpad.qt.worker import TrainWorker

    now = [100.0]
    worker = TrainWorker(SMALL, clock=lambda: now[0])
    worker.set_paused(True)
    now[0] += 30.0  # thirty seconds paused
    worker.set_paused(False)
    record = StepRecord(step=50, total_steps=100, epoch=0, epoch_progress=0.5, loss=1.0, accuracy=0.5, lr=1e-3,
                        samples_per_second=40.0, elapsed=40.0)  # 1600 digits in 40 s, 30 of them paused
    adjusted = worker._without_pauses(record)
    assert adjusted.elapsed == pytest.approx(10.0)
    assert adjusted.samples_per_second == pytest.approx(160.0)
    assert worker.paused_seconds == pytest.approx(30.0)


def test_the_train_page_reads_the_shared_drawing(open_window, qtbot):
    from tests.qt.conftest import draw_digit

    w = open_window()
    w.show_page(w.train_page)
    QApplication.processEvents()
    draw_digit(w.canvas, "1")
    QApplication.processEvents()
    np.testing.assert_allclose(w.train_page.probabilities.probabilities, w.reading.probabilities)
    w.show_page(w.draw_page)
    assert not w.canvas.is_empty()  # the same drawing on the Draw page


def test_only_the_page_on_screen_is_fed_readings_the_others_when_shown(open_window):
    from tests.qt.conftest import draw_digit

    w = open_window()
    w.show_page(w.evaluate_page)
    draw_digit(w.canvas, "1")
    r = w.read_now()
    assert not r.blank
    heights = lambda pane: np.array(pane.bars.opts["height"], dtype=float)  # noqa: E731
    assert heights(w.draw_page.probabilities).sum() == 0  # not on screen: not redrawn
    assert heights(w.train_page.probabilities).sum() == 0
    w.show_page(w.draw_page)
    np.testing.assert_allclose(heights(w.draw_page.probabilities), r.probabilities, rtol=1e-6)
    w.show_page(w.train_page)
    np.testing.assert_allclose(heights(w.train_page.probabilities), r.probabilities, rtol=1e-6)


def test_a_stopped_run_says_where_its_best_weights_come_from(qtbot):
    """Weights taken within an epoch (better on validation than the last epoch's end) are named by their step."""
    from types import SimpleNamespace

    from digitpad.qt.panes.training import ResultPanel

    panel = ResultPanel()
    qtbot.addWidget(panel)
    model = SimpleNamespace(is_finite=lambda: True)

    def outcome(best_epoch, best_step):
        result = SimpleNamespace(steps=288, best_epoch=best_epoch, best_step=best_step, epochs_done=2, seconds=3.0)
        return SimpleNamespace(diverged=False, stopped=True, message="", result=result, test_accuracy=0.976,
                               old_test_accuracy=0.9938, model=model)

    panel.show_outcome(outcome(0, 250))
    assert "best weights so far (step 250)" in panel.label.text()
    panel.show_outcome(outcome(2, 216))
    assert "best weights so far (end of epoch 2)" in panel.label.text()

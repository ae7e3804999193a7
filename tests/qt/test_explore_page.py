"""The Explore page and the robustness curves, on a small synthetic data set (and real MNIST for the curves)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from digitpad.core import model_io, runs
from digitpad.core.explore import ROBUSTNESS_LEVELS
from digitpad.core.mlp import MLP, MLPConfig
from tests.qt.test_retrain import synthetic_mnist


@pytest.fixture(scope="module")
def small():
    return synthetic_mnist(n_train=500, n_test=400, seed=3)


@pytest.fixture
def window(make_window, small, monkeypatch, tmp_path):
    monkeypatch.setattr(model_io, "user_models_dir", lambda: tmp_path)
    w = make_window(size=(1280, 800))
    w.explore.mnist = small
    return w


def wait_map(qtbot, w):
    qtbot.waitUntil(lambda: w.explore.digit_map is not None and not w.explore._running(), timeout=20000)
    return w.explore.digit_map


def test_the_map_has_the_points_of_each_class_and_the_drawing_as_a_star(window, qtbot, small):
    w = window
    with qtbot.waitSignal(w.explore.map_ready, timeout=20000):
        w.show_page(w.explore_page)
    m = wait_map(qtbot, w)
    plot = w.explore_page.map
    assert len(m.labels) == len(small.test_labels)  # fewer test digits than the map takes: all of them
    assert plot.points_per_class() == np.bincount(m.labels, minlength=10).tolist()
    for k, item in enumerate(plot.classes):
        assert (m.labels[item.data["data"].astype(int)] == k).all()
    assert len(plot.misread.data) == int(m.misread.sum())
    assert len(plot.drawing.data) == 0  # the canvas is blank
    w.show_input(small.test_images[5] / 255.0, "a test digit")
    assert len(plot.drawing.data) == 1
    xy = (plot.drawing.data["x"][0], plot.drawing.data["y"][0])
    np.testing.assert_allclose(xy, m.place(w.reading.activations[-1]), rtol=1e-5, atol=1e-5)
    # the data view: averages and counts of both sets, a grid of digits of the chosen class
    qtbot.waitUntil(lambda: w.explore.summaries is not None, timeout=10000)
    train_counts, test_counts = w.explore_page.counts.counts
    assert train_counts.tolist() == np.bincount(small.train_labels, minlength=10).tolist()
    assert test_counts.tolist() == np.bincount(small.test_labels, minlength=10).tolist()
    w.explore_page.class_choice.setCurrentIndex(4)
    grid = w.explore_page.grid
    shown = [int(grid.item(i).data(Qt.UserRole)) for i in range(grid.count())]
    assert shown and all(small.test_labels[i] == 4 for i in shown)


def test_clicking_a_point_on_the_map_puts_that_digit_on_the_canvas(window, qtbot, small):
    w = window
    w.show_page(w.explore_page)
    m = wait_map(qtbot, w)
    plot = w.explore_page.map
    row = int(np.argmax(m.coords[:, 0]))  # the rightmost point: nothing lies over it
    scene = plot.getPlotItem().vb.mapViewToScene(QPointF(*m.coords[row]))
    QTest.mouseClick(plot.viewport(), Qt.LeftButton, pos=plot.mapFromScene(scene))
    assert w.current_page() is w.draw_page
    assert w.reading.label == f"test digit #{int(m.indices[row])}: label {int(small.test_labels[m.indices[row]])}"


def test_e_puts_a_random_test_digit_on_the_canvas(window, qtbot, small):
    w = window
    w.activateWindow()
    QTest.keyClick(w, Qt.Key_E)
    assert w.current_page() is w.draw_page
    assert w.reading.label.startswith("test digit #") and not w.reading.blank
    index = int(w.reading.label.split("#")[1].split(":")[0])
    np.testing.assert_allclose(w.reading.image28, small.test_images[index] / 255.0, atol=1e-6)


def test_switching_units_off_changes_the_reading_and_reset_brings_it_back(window, qtbot, small):
    w = window
    c = w.explore
    w.show_input(small.test_images[0] / 255.0, "a test digit")
    before = w.reading.probabilities.copy()
    n = w.current_model.config.hidden[0]
    with qtbot.waitSignal(c.lab_accuracy_ready, timeout=20000):
        c.switch_off(0, range(n))  # the whole first layer: the answer no longer depends on the input
    assert w.reading_model is c.edited and w.reading_model is not w.current_model
    assert not np.allclose(w.reading.probabilities, before, atol=1e-3)
    assert len(w.activations.crosses[0].data) == n  # crossed out on the Draw page's grid as well
    w.show_page(w.explore_page)  # the lab's grid follows the model once its page is shown
    assert len(w.explore_page.lab_activations.crosses[0].data) == n
    assert "test accuracy" in w.explore_page.lab_summary.text() and c.lab_accuracy < c.base_accuracy
    w.explore_page.reset_button.click()
    assert w.reading_model is w.current_model
    np.testing.assert_allclose(w.reading.probabilities, before, rtol=1e-5, atol=1e-6)
    assert len(w.activations.crosses[0].data) == 0


def test_a_click_on_a_unit_in_the_grid_switches_it_off_and_on(window, qtbot):
    w = window
    pane = w.explore_page.lab_activations
    w.show_page(w.explore_page)
    img = pane.images[1]
    pane.grab()  # painted once, as a user sees it before clicking (the grids are laid out when painted)
    pos = pane.mapFromScene(img.mapToScene(QPointF(2.5, 0.5)))  # row 0, column 2: unit 2 of layer 2
    QTest.mouseClick(pane.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))
    assert w.explore.off == {1: {2}}
    assert w.explore.edited is not None and (w.explore.edited.weights[2][2] == 0).all()
    QTest.mouseClick(pane.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))
    assert w.explore.off == {} and w.explore.edited is None


def test_least_active_and_random_choose_units_of_the_chosen_layer(window, qtbot):
    w = window
    c = w.explore
    p = w.explore_page
    p.lab_layer.setCurrentIndex(1)
    p.lab_count.setValue(7)
    with qtbot.waitSignal(c.lab_accuracy_ready, timeout=20000):
        p.least_button.click()
    assert list(c.off) == [1] and len(c.off[1]) == 7
    p.reset_button.click()
    p.lab_fraction.setValue(40)
    p.random_units_button.click()
    n = w.current_model.config.hidden[1]
    assert len(c.off[1]) == round(0.4 * n)


def test_the_edited_copy_is_saved_as_a_new_model_and_the_current_one_is_untouched(window, qtbot, tmp_path):
    w = window
    c = w.explore
    original = w.current_model.weights[1].copy()
    c.switch_off(0, [0, 5])
    saved = c.save_edited(tmp_path / "edited.npz")
    model, meta = model_io.load_model(saved)
    assert (model.weights[1][[0, 5]] == 0).all() and meta["switched_off"] == {"1": [0, 5]}
    np.testing.assert_array_equal(w.current_model.weights[1], original)


def test_without_mnist_the_page_says_how_to_get_it(make_window, qtbot, monkeypatch):
    monkeypatch.delenv("DIGITPAD_DATA_DIR", raising=False)
    from digitpad.core import data as data_mod

    monkeypatch.setattr(data_mod, "find_data_dir", lambda data_dir=None: None)
    w = make_window()
    w.show_page(w.explore_page)
    assert w.explore_page.note.isVisible() and "Train" in w.explore_page.note.text()
    assert w.explore.digit_map is None and not w.explore._running()


def test_robustness_curves_fall_with_rotation_for_two_models(make_window, qtbot, mnist, trained_model_path,
                                                             monkeypatch):
    from digitpad.core.runs import Run

    kept = Run(folder=trained_model_path.parent / "a-run", info={"name": "older run", "kept": True,
                                                                   "model": str(trained_model_path)})
    monkeypatch.setattr(runs, "list_runs", lambda root=None: ([kept], []))
    w = make_window(size=(1280, 800))
    r = w.robustness
    r.n = 120
    w.show_page(w.evaluate_page)
    qtbot.mouseClick(r.button, Qt.LeftButton)
    assert w.evaluate_page.views.currentWidget() is r.view
    r.view.second.setCurrentIndex(1)
    with qtbot.waitSignal(r.curves_ready, timeout=120000):
        r.view.compute_button.click()
    rotation = r.curves["rotation"]
    assert rotation.shape == (2, len(ROBUSTNESS_LEVELS["rotation"]))
    assert (rotation[:, -1] < rotation[:, 0]).all()
    for kind, curves in r.view.curves.items():
        assert len(curves[0].xData) == len(ROBUSTNESS_LEVELS[kind]) == len(curves[1].xData)
    qtbot.mouseClick(r.button, Qt.LeftButton)
    assert w.evaluate_page.views.currentWidget() is not r.view


def test_a_new_model_ends_the_lab_and_reads_with_the_new_model(window, qtbot, untrained_model_path):
    w = window
    w.explore.switch_off(0, [1, 2, 3])
    assert w.reading_model is w.explore.edited
    w.load_model(untrained_model_path)
    assert w.reading_model is w.current_model and w.explore.off == {} and w.explore.edited is None
    assert [w.explore_page.lab_layer.itemText(i) for i in range(2)] == ["1 (32 units)", "2 (16 units)"]
    assert len(w.activations.crosses[0].data) == 0


def test_the_hidden_page_catches_up_with_the_model_and_the_drawing_when_shown(window, small):
    """While another page is shown, Explore's lab does no work for each new model or reading
    (a run's kept model, every stroke); it rebuilds and re-reads once it is shown."""
    w = window
    lab = w.explore_page.lab_activations
    w.show_page(w.draw_page)
    w.set_model(MLP(MLPConfig(hidden=(24, 12)), rng=3))
    w.show_input(small.test_images[1] / 255.0, "a test digit")
    assert w.explore._layers_stale and w.explore._reading_stale
    assert lab._sizes != (24, 12)  # not rebuilt yet
    w.show_page(w.explore_page)
    assert not w.explore._layers_stale and not w.explore._reading_stale
    assert lab._sizes == (24, 12) and len(lab.images) == 2
    assert w.explore_page.lab_layer.count() == 2
    assert "reads" in w.explore_page.lab_summary.text()

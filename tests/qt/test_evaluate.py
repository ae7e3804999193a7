"""The Evaluate page and View ▸ Why this answer in the real window: job, confusion, gallery, temperature, overlay."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from digitpad.core import model_io
from digitpad.core.evaluate import evaluate_model, saliency
from tests.conftest import assert_same_answers
from tests.qt.conftest import draw_digit


@pytest.fixture
def evaluated(make_window, trained_model_path, mnist, qtbot):
    """A window on a trained model whose evaluation has finished."""
    w = make_window(trained_model_path)
    ctl = w.evaluation
    ctl.mnist = mnist
    with qtbot.waitSignal(ctl.evaluation_finished, timeout=60000) as blocker:
        w.findChild(type(ctl.action_evaluate), "action_evaluate").trigger()
        assert w.current_page() is ctl.page
        assert ctl.page.progress.isVisible()  # the work runs off the GUI thread, with a progress bar
        # a progress state where the plots go, never empty axes
        assert ctl.page.views.currentWidget() is ctl.page.state and not ctl.page.confusion.isVisible()
    qtbot.waitUntil(lambda: not ctl.is_running, timeout=5000)
    assert not ctl.page.progress.isVisible() and ctl.page.confusion.isVisible()
    return w, ctl, blocker.args[0]


def test_evaluation_view_shows_accuracy_confusion_and_mistakes(evaluated, mnist):
    w, ctl, outcome = evaluated
    ev = outcome.evaluation
    assert ev.n == len(mnist.test_labels)
    assert ev.confusion.sum() == ev.n
    assert np.trace(ev.confusion) / ev.n == pytest.approx(ev.accuracy)
    # the window reads in batches; the whole set in one product may round near ties the other way
    assert_same_answers(ev.predictions, w.current_model.logits(mnist.test_images))
    assert ev.accuracy == pytest.approx(np.mean(ev.predictions == mnist.test_labels))
    dlg = ctl.page
    assert dlg.isVisible() and dlg.objectName() == "page_evaluate"
    assert f"{ev.accuracy:.2%}" in dlg.summary.text() and "95% interval" in dlg.summary.text()
    np.testing.assert_array_equal(dlg.confusion.counts, ev.confusion)
    assert dlg.confusion.texts[3][3].toPlainText() == str(ev.confusion[3, 3])
    np.testing.assert_allclose(dlg.per_class.bars.opts["height"] + dlg.per_class.bars.opts["y0"],
                               ev.per_class * 100, rtol=1e-6)
    # the gallery lists exactly the misclassified test digits, most confident first
    wrong = np.flatnonzero(ev.predictions != mnist.test_labels)
    shown = [dlg.gallery.item(i).data(Qt.UserRole) for i in range(dlg.gallery.count())]
    assert sorted(shown) == wrong.tolist()
    assert np.all(np.diff(ev.confidences[shown]) <= 0)
    assert "ECE" in dlg.calibration_summary.text()
    assert dlg.fit_button.isEnabled()


def test_clicking_a_gallery_digit_loads_it_into_the_panes(evaluated, mnist, qtbot):
    w, ctl, outcome = evaluated
    gallery = ctl.page.gallery
    ev = outcome.evaluation
    item = gallery.item(2)
    index = item.data(Qt.UserRole)
    qtbot.waitUntil(lambda: gallery.visualItemRect(item).top() >= 0, timeout=2000)  # laid out
    rect = gallery.visualItemRect(item)
    with qtbot.waitSignal(w.reading_changed, timeout=2000) as blocker:
        qtbot.mouseClick(gallery.viewport(), Qt.LeftButton, pos=rect.center())
    assert gallery.currentItem() is item
    assert w.current_page() is w.draw_page and w.canvas.isVisible()  # shown where it can be seen
    reading = w.reading
    expected = mnist.test_images[index].astype(np.float32) / 255
    np.testing.assert_allclose(reading.image28, expected, atol=1e-6)
    np.testing.assert_allclose(w.network_input.image.image, expected, atol=1e-6)
    probs = w.current_model.predict_proba(expected.reshape(1, -1))[0]
    np.testing.assert_allclose(w.probabilities.probabilities, probs, rtol=1e-5, atol=1e-7)
    assert ev.predictions[index] != mnist.test_labels[index]
    assert_same_answers([reading.digit], ev.logits[index][None])  # read alone, not in a batch
    assert f"#{index}" in reading.label and f"label {mnist.test_labels[index]}" in reading.label
    trace = w.current_model.trace(expected)
    np.testing.assert_allclose(reading.activations[0], trace.activations[0][0], rtol=1e-5, atol=1e-6)


def test_clicking_a_confusion_cell_lists_those_digits(evaluated, qtbot):
    w, ctl, outcome = evaluated
    ev = outcome.evaluation
    off = ev.confusion - np.diag(np.diag(ev.confusion))
    true, pred = np.unravel_index(int(np.argmax(off)), off.shape)
    plot = ctl.page.confusion
    scene = plot.getPlotItem().vb.mapViewToScene(pg_point(pred, true))
    pos = plot.mapFromScene(scene)
    assert plot.cell_at(scene) == (true, pred)
    qtbot.mouseClick(plot.viewport(), Qt.LeftButton, pos=QPoint(pos.x(), pos.y()))
    qtbot.waitUntil(lambda: ctl.page.cell == (true, pred), timeout=2000)
    gallery = ctl.page.gallery
    shown = [gallery.item(i).data(Qt.UserRole) for i in range(gallery.count())]
    assert sorted(shown) == sorted(ev.cell(true, pred).tolist()) and len(shown) == off[true, pred]
    assert plot.selection.isVisible()
    ctl.page.show_all.click()
    assert gallery.count() == len(ev.mistakes) and not plot.selection.isVisible()
    ctl.page.show_cell(4, 4)  # a diagonal cell: the right answers, least sure first
    shown = [gallery.item(i).data(Qt.UserRole) for i in range(gallery.count())]
    assert len(shown) == min(ev.confusion[4, 4], 600) and np.all(np.diff(ev.confidences[shown]) >= 0)


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(float(x), float(y))


def test_fitted_temperature_is_kept_as_a_copy_and_used_for_reading(evaluated, mnist, qtbot, tmp_path, monkeypatch):
    w, ctl, outcome = evaluated
    user = tmp_path / "user_models"
    user.mkdir()
    monkeypatch.setattr(model_io, "user_models_dir", lambda: user)
    original = w.current_model_path
    before = original.read_bytes()
    fitted, refused = [], []
    ctl.temperature_fitted.connect(fitted.append)
    ctl.temperature_refused.connect(refused.append)
    ctl.page.fit_button.click()
    qtbot.waitUntil(lambda: bool(fitted or refused), timeout=60000)
    if refused:  # it calibrates the test set worse (the shipped model does): kept only when asked
        assert w.current_model_path == original and "worse" in ctl.page.calibration_summary.text()
        with qtbot.waitSignal(ctl.temperature_fitted, timeout=5000):
            ctl.page.use_fit_button.click()
    t = fitted[0]
    assert 0.3 < t < 5 and t != 1.0
    assert original.read_bytes() == before  # never overwritten
    copy = w.current_model_path
    assert copy.parent == user and copy.name.endswith("-calibrated.npz")
    model, meta = model_io.load_model(copy)
    assert meta["temperature"] == pytest.approx(t, abs=1e-4)
    np.testing.assert_array_equal(model.weights[0], w.current_model.weights[0])
    assert w.current_metadata["temperature"] == meta["temperature"]
    # the calibration view now shows both curves, and the evaluation is at the new temperature
    assert ctl.outcome.evaluation.temperature == meta["temperature"]
    assert ctl.page.reliability.calibrated.isVisible()
    assert "without it" in ctl.page.calibration_summary.text()
    # the window reads with the calibrated probabilities (its "not sure" threshold uses them)
    digit = mnist.test_images[0].astype(np.float32) / 255
    reading = w.show_input(digit, "x")
    np.testing.assert_allclose(reading.probabilities, model.predict_proba(digit, meta["temperature"])[0], rtol=1e-5)
    # a second fit on a model inside the user's folder updates that file in place
    with qtbot.waitSignal(ctl.temperature_fitted, timeout=60000):
        ctl.fit_temperature()
    assert w.current_model_path == copy and sorted(p.name for p in user.iterdir()) == [copy.name]


def test_the_shipped_model_is_never_overwritten(make_window, trained_model_path, mnist, qtbot, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped" / "default.npz"
    shipped.parent.mkdir()
    shipped.write_bytes(trained_model_path.read_bytes())
    monkeypatch.setattr(model_io, "shipped_model_path", lambda: shipped)
    monkeypatch.setattr(model_io, "user_models_dir", lambda: shipped.parent)  # even when it sits in that folder
    w = make_window(shipped)
    w.evaluation.mnist = mnist
    before = shipped.read_bytes()
    w.evaluation.temperature_refused.connect(lambda t: w.evaluation.use_pending_fit())  # asked for either way
    with qtbot.waitSignal(w.evaluation.temperature_fitted, timeout=60000):
        assert w.evaluation.fit_temperature()
    assert shipped.read_bytes() == before
    assert w.current_model_path == shipped.parent / "default-calibrated.npz"


def test_why_this_answer_overlays_the_saliency_on_the_drawing(make_window, trained_model_path, qtbot):
    w = make_window(trained_model_path)
    ctl = w.why
    act = ctl.action_why
    assert act in w.menu_view.actions()
    act.setChecked(True)
    assert ctl.pane.isVisible() and ctl.pane.parent() is not None
    with qtbot.waitSignal(ctl.overlay_changed, timeout=2000, check_params_cb=lambda o: o is not None):
        draw_digit(w.canvas, "7")
    reading = w.reading
    assert reading.digit == 7
    overlay = ctl.overlay
    assert overlay.shape == (140, 140, 4) and overlay.dtype == np.uint8
    assert w.canvas._overlay is not None
    # the colour sits on the ink: nearly all of the overlay's opacity is within a few pixels of a stroke
    from scipy import ndimage as ndi

    ink = w.canvas.bitmap().reshape(140, 2, 140, 2).max(axis=(1, 3)) > 60
    near = ndi.binary_dilation(ink, iterations=6)
    alpha = overlay[..., 3].astype(float)
    assert alpha.sum() > 0 and alpha[near].sum() / alpha.sum() > 0.95
    # the pane shows the gradient-times-input of the top class and the most active units
    np.testing.assert_allclose(ctl.pane.saliency_map, saliency(w.current_model, reading.image28, 7), rtol=1e-5)
    act1 = w.current_model.trace(reading.image28).activations[0][0]
    assert act1[ctl.pane.units[0]] == act1.max()
    assert "7" in ctl.pane.title.text
    with qtbot.waitSignal(ctl.overlay_changed, timeout=1000, check_params_cb=lambda o: o is None):
        w.canvas.clear()
    act.setChecked(False)
    assert ctl.overlay is None and w.canvas._overlay is None and not ctl.pane.isVisible()


def test_evaluation_says_when_mnist_is_missing(make_window, untrained_model_path, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITPAD_DATA_DIR", str(tmp_path / "nothing"))
    w = make_window(untrained_model_path)
    with qtbot.waitSignal(w.evaluation.evaluation_failed, timeout=10000) as blocker:
        w.evaluation.evaluate()
    assert "MNIST" in blocker.args[0]
    assert "Could not evaluate" in w.evaluation.page.summary.text()
    qtbot.waitUntil(lambda: not w.evaluation.is_running, timeout=5000)
    assert w.evaluation.page.again.isEnabled()


def test_closing_the_window_during_an_evaluation_stops_it(make_window, untrained_model_path, mnist, qtbot):
    w = make_window(untrained_model_path)
    w.evaluation.mnist = mnist
    assert w.evaluation.evaluate()
    job = w.evaluation._job
    w.close()
    assert job is not None and not job.worker.is_running


def test_evaluate_model_matches_what_the_window_shows(evaluated, mnist):
    w, ctl, outcome = evaluated
    ref = evaluate_model(w.current_model, mnist.test_images, mnist.test_labels)
    np.testing.assert_array_equal(outcome.evaluation.mistakes, ref.mistakes)


def test_why_pane_follows_the_theme_at_once(make_window, untrained_model_path):
    from digitpad.qt.panes import THEMES

    w = make_window(untrained_model_path)
    why = w.why.pane
    w.set_theme("light")  # called directly, not through the menu
    assert why.backgroundBrush().color().name() == THEMES["light"].background
    # the caption is redrawn in the theme's colour (it stayed light grey on white)
    assert THEMES["light"].foreground in why.title.item.toHtml()
    w.theme_actions["dark"].trigger()
    assert why.backgroundBrush().color().name() == THEMES["dark"].background
    assert THEMES["dark"].foreground in why.title.item.toHtml()


def test_a_temperature_that_calibrates_worse_is_not_kept_unless_asked(evaluated, qtbot, monkeypatch, tmp_path):
    import digitpad.qt.evaluate as evaluate_mod

    w, ctl, outcome = evaluated
    model, path, meta = w.current_model, w.current_model_path, dict(w.current_metadata)
    monkeypatch.setattr(evaluate_mod, "fit_temperature", lambda logits, labels: 6.0)  # far too soft
    with qtbot.waitSignal(ctl.temperature_refused, timeout=60000) as refused:
        assert ctl.fit_temperature()
    assert refused.args == [6.0]
    assert w.current_model is model and w.current_model_path == path and w.current_metadata == meta
    assert "would make calibration worse" in ctl.page.calibration_summary.text()
    assert ctl.page.use_fit_button.isVisible()
    user = tmp_path / "user_models"
    user.mkdir()
    monkeypatch.setattr(model_io, "user_models_dir", lambda: user)
    with qtbot.waitSignal(ctl.temperature_fitted, timeout=5000):
        ctl.page.use_fit_button.click()  # asked for: kept
    assert w.current_metadata["temperature"] == 6.0 and not ctl.page.use_fit_button.isVisible()

"""The window reads digits drawn with real mouse events; canvas editing, pen width and the panes."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.qt.conftest import DIGIT_STROKES, draw_digit, draw_polyline, press_and_move, release


@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_drawn_digit_is_read_and_labelled(make_window, trained_model_path, qtbot, digit):
    w = make_window(trained_model_path)
    readings = []
    w.reading_changed.connect(readings.append)
    draw_digit(w.canvas, digit)
    reading = readings[-1]  # the read at the end of the stroke
    assert reading is w.reading
    assert reading.digit == int(digit), reading.top(3)
    assert w.displayed_digit() == int(digit)
    assert f">{digit}</span>" in w.reading_label.text()
    # the probabilities pane shows this reading, winner highlighted
    assert int(np.argmax(w.probabilities.probabilities)) == int(digit)
    assert w.probabilities.values[int(digit)].toPlainText().endswith("%")


def test_reading_updates_while_the_stroke_is_drawn(make_window, untrained_model_path, qtbot):
    w = make_window(untrained_model_path)
    assert w.reading.blank
    end = press_and_move(w.canvas, DIGIT_STROKES["1"][0])
    assert w.canvas.is_drawing
    qtbot.waitUntil(lambda: not w.reading.blank, timeout=2000)  # the throttled read, before release
    assert w.canvas.is_drawing
    with qtbot.waitSignal(w.reading_changed, timeout=1000):
        release(w.canvas, end)
    assert not w.canvas.is_drawing and len(w.canvas.strokes) == 1


def test_reads_are_throttled_during_a_stroke(make_window, untrained_model_path, qtbot):
    w = make_window(untrained_model_path)
    reads = []
    w.reading_changed.connect(reads.append)
    end = press_and_move(w.canvas, DIGIT_STROKES["0"][0], steps_per_segment=4)  # ~150 mouse moves
    qtbot.waitUntil(lambda: len(reads) >= 1, timeout=2000)
    assert len(reads) < 10  # coalesced by the display-rate timer, not one read per move
    release(w.canvas, end)
    assert len(reads) >= 2 and not reads[-1].blank


def test_blank_canvas_shows_no_digit(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    assert w.reading.digit is None and w.reading.blank
    assert w.displayed_digit() is None
    assert "Draw a digit" in w.reading_label.text()
    assert not np.any(w.probabilities.probabilities)
    assert all(t.toPlainText() == "" for t in w.probabilities.values)


def test_undo_redo_clear(make_window, untrained_model_path, qtbot):
    w = make_window(untrained_model_path)
    c = w.canvas
    assert not w.action_undo.isEnabled() and not w.action_redo.isEnabled()
    draw_polyline(c, [(0.3, 0.3), (0.7, 0.3)])
    one = c.bitmap()
    draw_polyline(c, [(0.5, 0.3), (0.5, 0.8)])
    two = c.bitmap()
    assert (two > 0).sum() > (one > 0).sum()
    assert w.action_undo.isEnabled()

    c.undo()
    assert len(c.strokes) == 1 and np.array_equal(c.bitmap(), one)
    assert w.action_redo.isEnabled()
    c.redo()
    assert len(c.strokes) == 2 and np.array_equal(c.bitmap(), two)

    with qtbot.waitSignal(w.reading_changed, timeout=1000) as blocker:
        c.clear()
    assert blocker.args[0].blank and not c.bitmap().any()
    assert "Draw a digit" in w.reading_label.text()
    c.undo()  # clear is undoable
    assert np.array_equal(c.bitmap(), two) and not w.reading.blank

    draw_polyline(c, [(0.2, 0.9), (0.8, 0.9)])
    assert not c.can_redo()  # a new stroke ends the redo history


def test_keyboard_shortcuts_undo_redo_clear(make_window, untrained_model_path, qtbot):
    w = make_window(untrained_model_path)
    w.activateWindow()
    qtbot.waitUntil(lambda: w.isActiveWindow(), timeout=2000)
    c = w.canvas
    c.setFocus()
    draw_polyline(c, [(0.3, 0.3), (0.7, 0.7)])
    draw_polyline(c, [(0.7, 0.3), (0.3, 0.7)])
    qtbot.keyClick(c, Qt.Key_Z, Qt.ControlModifier)
    assert len(c.strokes) == 1
    qtbot.keyClick(c, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert len(c.strokes) == 2
    qtbot.keyClick(c, Qt.Key_Escape)
    assert c.is_empty() and w.reading.blank
    qtbot.keyClick(c, Qt.Key_Z, Qt.ControlModifier)
    assert len(c.strokes) == 2
    qtbot.keyClick(c, Qt.Key_Delete)
    assert c.is_empty()


def test_pen_width_changes_the_ink(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    stroke = [(0.2, 0.5), (0.8, 0.5)]
    w.pen_width_slider.setValue(8)
    assert w.canvas.pen_width == 8.0
    draw_polyline(w.canvas, stroke)
    thin = int((w.canvas.bitmap() > 127).sum())
    w.canvas.clear()
    w.pen_width_slider.setValue(30)
    assert w.canvas.pen_width == 30.0
    draw_polyline(w.canvas, stroke)
    thick = int((w.canvas.bitmap() > 127).sum())
    # a 168 px line: ink area grows with the width (about 8 * 168 vs 30 * 168)
    assert 2.5 < thick / thin < 4.5
    w.action_wider.trigger()
    assert w.canvas.pen_width == 32.0 and w.pen_width_slider.value() == 32


def test_bitmap_does_not_depend_on_the_window_size(make_window, untrained_model_path, qtbot):
    small = make_window(untrained_model_path, size=(700, 520))
    large = make_window(untrained_model_path, size=(1500, 1000))
    assert large.canvas.drawing_rect().width() > 1.5 * small.canvas.drawing_rect().width()
    for w in (small, large):
        draw_digit(w.canvas, "7")
    a, b = small.canvas.bitmap().astype(int), large.canvas.bitmap().astype(int)
    assert a.shape == b.shape == (280, 280)
    assert (a > 127).sum() > 1000
    # the same drawing in canvas units gives the same bitmap, up to the rounding of mouse positions
    assert np.mean(np.abs(a - b)) < 4.0
    assert small.reading.digit == large.reading.digit


def test_pressure_makes_the_stroke_thinner(qtbot):
    from digitpad.qt.canvas import Canvas

    c = Canvas()
    qtbot.addWidget(c)
    for pressure in (1.0, 0.1):
        c.begin_stroke(40, 140, pressure)
        for x in range(45, 241, 5):
            c.extend_stroke(x, 140, pressure)
        c.end_stroke()
        if pressure == 1.0:
            full = int((c.bitmap() > 127).sum())
            c.clear()
    light = int((c.bitmap() > 127).sum())
    assert light < 0.6 * full


def test_panes_update_items_in_place(make_window, trained_model_path, qtbot):
    w = make_window(trained_model_path)
    bars, image, score_bars = w.probabilities.bars, w.network_input.image, w.logits.score_bars
    grids = list(w.activations.images)
    assert len(grids) == len(w.current_model.config.hidden)
    draw_digit(w.canvas, "7")
    r = w.reading
    assert w.probabilities.bars is bars and w.network_input.image is image and w.logits.score_bars is score_bars
    assert w.activations.images == grids
    # the network input pane shows the preprocessed 28x28 input
    assert image.image.shape == (28, 28) and np.array_equal(image.image, r.image28)
    # winner highlighted in both bar charts
    brushes = bars.opts["brushes"]
    assert brushes[r.digit] != brushes[(r.digit + 1) % 10]
    # logits beside probabilities that sum to 1
    assert np.allclose(w.logits.prob_bars.opts["height"], r.probabilities)
    assert np.allclose(w.logits.score_bars.opts["height"], r.logits)
    assert "Σ p = 1.000" in w.logits.caption.text
    # hidden activations: one grid per layer, silent units counted
    first = w.activations.images[0].image
    assert np.nanmax(first) == pytest.approx(float(r.activations[0].max()))
    assert 0.0 < w.activations.silent_fraction[0] < 1.0


def test_not_sure_shows_the_top_two(make_window, trained_model_path):
    w = make_window(trained_model_path)
    draw_digit(w.canvas, "1")
    (a, pa), (b, pb) = w.reading.top(2)
    w.threshold_box.setValue(100.0)  # nothing is ever that sure
    assert w.displayed_digit() is None
    text = w.reading_label.text()
    assert "not sure" in text and f"{a} {pa:.0%}" in text and f"{b} {pb:.0%}" in text
    w.threshold_box.setValue(0.0)
    assert w.displayed_digit() == a and "sure" in w.reading_label.text()


def test_widgets_have_object_names(make_window, untrained_model_path):
    from PySide6.QtWidgets import QWidget

    w = make_window(untrained_model_path)
    for name in ("canvas", "reading_label", "probabilities", "network_input", "activations", "logits",
                 "status_model", "pen_width", "threshold"):
        assert w.findChild(QWidget, name) is not None, name


def test_show_input_and_reading_model(make_window, trained_model_path, untrained_model_path, qtbot):
    from digitpad.core import model_io

    w = make_window(trained_model_path)
    draw_digit(w.canvas, "0")
    image28 = w.reading.image28.copy()
    w.canvas.clear()
    r = w.show_input(image28, label="test digit #3")
    assert r.digit == 0 and "test digit #3" in w.reading_label.text()
    assert np.array_equal(w.network_input.image.image, image28)

    other, _ = model_io.load_model(untrained_model_path)
    with qtbot.waitSignal(w.reading_changed, timeout=1000):
        w.set_reading_model(other)
    assert w.reading_model is other and len(w.activations.images) == 2  # the untrained model has (32, 16)
    assert w.reading.label == "test digit #3"  # still reading the shown input
    w.set_reading_model(None)
    assert w.reading_model is w.current_model and w.reading.digit == 0


def test_show_input_reads_once_and_reads_the_given_input(make_window, untrained_model_path, qtbot):
    w = make_window(untrained_model_path)
    draw_digit(w.canvas, "7")  # something on the canvas first: set_picture clears it (undoably)
    image28 = np.zeros((28, 28), np.float32)
    image28[2:12, 3:9] = 1.0  # off-centre: preprocessing the picture would move and rescale it
    readings = []
    w.reading_changed.connect(readings.append)
    r = w.show_input(image28, label="shown")
    assert len(readings) == 1, [x.label for x in readings]
    assert readings[0] is r is w.reading
    np.testing.assert_array_equal(r.image28, image28)
    assert r.label == "shown" and not r.blank
    np.testing.assert_allclose(r.probabilities, w.current_model.predict_proba(image28.reshape(784))[0], rtol=1e-5)
    np.testing.assert_array_equal(w.network_input.image.image, image28)
    assert w.action_undo.isEnabled()  # the drawing it replaced can still be brought back
    w.canvas.undo()  # the drawing comes back and is read again, as drawn
    assert len(readings) == 2 and readings[-1].label == "" and not readings[-1].blank


def test_the_softmax_temperature_slider_turns_the_same_scores_sure_or_spread(make_window, trained_model_path, qtbot):
    from digitpad.core.functional import softmax

    w = make_window(trained_model_path, size=(1280, 800))
    draw_digit(w.canvas, "7")
    r = w.reading
    assert not r.blank
    pane, control = w.draw_page.logits, w.draw_page.temperature
    own = control.own
    shown = lambda: np.array(pane.prob_bars.opts["height"], dtype=np.float64)  # noqa: E731
    np.testing.assert_allclose(shown(), r.probabilities, rtol=1e-6)
    control.slider.setValue(control.STEPS)  # T = 20: a spread of guesses
    hot = shown()
    np.testing.assert_allclose(hot, softmax(r.logits, 20.0), rtol=1e-4)
    assert hot.max() < r.probabilities.max() and hot.sum() == pytest.approx(1.0, abs=1e-5)
    assert int(np.argmax(hot)) == r.digit  # dividing by T never changes the order
    assert "T = 20" in pane.caption.text
    control.slider.setValue(0)  # T = 0.05: sure
    assert shown().max() > 0.999
    assert w.reading.probabilities.max() == pytest.approx(r.probabilities.max())  # the answer itself is unchanged
    qtbot.mouseClick(control.reset, Qt.LeftButton)
    np.testing.assert_allclose(shown(), r.probabilities, rtol=1e-6)
    assert control.value.text() == f"{own:.2f}" and not control.reset.isEnabled()

"""The canvas on its own: incremental painting equals a full redraw, any input sequence is safe, pen events."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QInputDevice, QPointingDevice, QTabletEvent
from PySide6.QtWidgets import QApplication

from digitpad.qt.canvas import BITMAP_SIZE, DEFAULT_PEN_WIDTH, Canvas, _Raster


def _redrawn(canvas: Canvas) -> np.ndarray:
    """The bitmap painted from scratch from the canvas' strokes."""
    from PySide6.QtGui import QImage

    r = _Raster(BITMAP_SIZE, 1.0, QImage.Format_Grayscale8)
    r.redraw(canvas.strokes)
    bpl = r.image.bytesPerLine()
    return np.frombuffer(r.image.constBits(), np.uint8).reshape(BITMAP_SIZE, bpl)[:, :BITMAP_SIZE].copy()


coordinate = st.floats(-20, BITMAP_SIZE + 20, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("begin"), coordinate, coordinate, st.floats(0, 1)),
    st.tuples(st.just("extend"), coordinate, coordinate, st.floats(0, 1)),
    st.tuples(st.just("end")),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
    st.tuples(st.just("clear")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("width"), st.floats(-5, 80, allow_nan=False)),
    st.tuples(st.just("picture")),
)


@pytest.fixture(scope="module")
def canvas(qapp):
    c = Canvas()
    c.resize(300, 300)
    c.show()
    yield c
    c.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=40))
def test_any_sequence_is_safe_and_incremental_painting_equals_a_redraw(canvas, ops):
    canvas.set_picture(None)
    canvas.clear()
    for op in ops:
        kind = op[0]
        if kind == "begin":
            canvas.begin_stroke(op[1], op[2], op[3])
        elif kind == "extend":
            canvas.extend_stroke(op[1], op[2], op[3])
        elif kind == "end":
            canvas.end_stroke()
        elif kind == "width":
            canvas.set_pen_width(op[1])
        elif kind == "picture":
            canvas.set_picture(np.full((10, 12, 4), 200, np.uint8))
        else:
            getattr(canvas, {"undo": "undo", "redo": "redo", "clear": "clear", "cancel": "cancel_stroke"}[kind])()
        canvas.repaint()  # the display path too
    canvas.end_stroke()
    assert 4.0 <= canvas.pen_width <= 48.0
    assert canvas.bitmap().shape == (BITMAP_SIZE, BITMAP_SIZE)
    assert np.array_equal(canvas.bitmap(), _redrawn(canvas))


@pytest.mark.parametrize("points", [[(40.0, -2.7e-96), (40.3, 60.1), (120.7, 90.05)],
                                    [(100.1, 100.1), (100.2, 180.3), (33.333333333, 250.000001)]])
def test_points_that_float32_cannot_hold_paint_the_same_live_and_redrawn(canvas, points):
    """Live painting used the points as given while a redraw used them as stored (float32)."""
    canvas.set_picture(None)
    canvas.clear()
    canvas.begin_stroke(*points[0], 0.37)
    for x, y in points[1:]:
        canvas.extend_stroke(x, y, 0.81)
    canvas.end_stroke()
    assert np.array_equal(canvas.bitmap(), _redrawn(canvas))


def test_a_finished_stroke_is_the_same_pixels_as_its_redraw_at_every_pen_width(canvas):
    """Painting a stroke piece by piece as it grew differed from painting it whole by a few grey
    levels at some pen widths, so undo or a resize changed what the network read."""
    rng = np.random.default_rng(5)
    pts = rng.uniform(30, 250, size=(25, 2))
    differing = []
    for width in np.arange(4.0, 48.5, 0.5):
        canvas.set_picture(None)
        canvas.clear()
        canvas.set_pen_width(float(width))
        canvas.begin_stroke(*pts[0], 0.8)
        for x, y in pts[1:]:
            canvas.extend_stroke(x, y, 0.6)
        canvas.end_stroke()
        if not np.array_equal(canvas.bitmap(), _redrawn(canvas)):
            differing.append(float(width))
    assert differing == []


def test_clear_during_a_stroke_on_an_empty_canvas_leaves_no_ink(canvas):
    canvas.set_picture(None)
    canvas.clear()
    canvas.begin_stroke(0.0, 0.0, 0.0)
    canvas.extend_stroke(0.0, 1.0, 0.0)
    canvas.clear()
    canvas.end_stroke()  # nothing in progress any more
    assert canvas.bitmap().max() == 0 and canvas.is_empty()


def test_undo_and_redo_replay_exactly(canvas):
    canvas.set_pen_width(DEFAULT_PEN_WIDTH)  # the module's canvas keeps whatever width the last test left
    canvas.set_picture(None)
    canvas.clear()
    snapshots = [canvas.bitmap()]
    rng = np.random.default_rng(3)
    for _ in range(5):
        pts = rng.uniform(20, 260, size=(12, 2))
        canvas.begin_stroke(*pts[0])
        for x, y in pts[1:]:
            canvas.extend_stroke(x, y)
        canvas.end_stroke()
        snapshots.append(canvas.bitmap())
    for expected in reversed(snapshots[:-1]):
        canvas.undo()
        assert np.array_equal(canvas.bitmap(), expected)
    for expected in snapshots[1:]:
        canvas.redo()
        assert np.array_equal(canvas.bitmap(), expected)


def _tablet(canvas, kind, x, y, pressure):
    pen = QPointingDevice("pen", 1, QInputDevice.DeviceType.Stylus, QPointingDevice.PointerType.Pen,
                          QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3)
    pos = QPointF(x, y)
    buttons = Qt.NoButton if kind == QEvent.TabletRelease else Qt.LeftButton
    event = QTabletEvent(kind, pen, pos, canvas.mapToGlobal(pos), pressure, 0.0, 0.0, 0.0, 0.0, 0.0,
                         Qt.NoModifier, Qt.LeftButton, buttons)
    QApplication.sendEvent(canvas, event)
    return event


def test_tablet_pen_pressure_sets_the_width(canvas):
    canvas.set_picture(None)
    canvas.clear()
    r = canvas.drawing_rect()
    y = r.top() + r.height() / 2
    xs = np.linspace(r.left() + 20, r.right() - 20, 30)
    widths = []
    for pressure in (1.0, 0.2):
        assert _tablet(canvas, QEvent.TabletPress, xs[0], y, pressure).isAccepted()
        for x in xs[1:]:
            _tablet(canvas, QEvent.TabletMove, x, y, pressure)
        _tablet(canvas, QEvent.TabletRelease, xs[-1], y, pressure)
        stroke = canvas.strokes[-1]
        assert len(stroke.points) == len(xs)
        widths.append(int((canvas.bitmap() > 127).sum(axis=0)[140]))  # ink height in the middle column
        canvas.clear()
    assert widths[1] < 0.6 * widths[0]


def test_a_press_without_a_release_keeps_the_stroke(canvas):
    canvas.set_picture(None)
    canvas.clear()
    canvas.begin_stroke(50, 50)
    canvas.extend_stroke(100, 50)
    canvas.begin_stroke(50, 150)  # the release of the first stroke was lost (focus changed)
    canvas.extend_stroke(100, 150)
    canvas.end_stroke()
    assert len(canvas.strokes) == 2

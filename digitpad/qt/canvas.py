"""The drawing canvas: strokes kept as vectors, rendered into a fixed-size bitmap for the network.

A stroke is a list of points ``(x, y, pressure)`` in bitmap coordinates (0..BITMAP_SIZE),
so undo and redo replay vectors, and what the network reads does not depend on the
window's size or the screen's pixel ratio. Strokes are drawn as quadratic curves through
the midpoints between input points, with round caps, anti-aliased; with a tablet pen the
width follows the pressure. The same strokes are rendered twice: into a 280x280 grey
``QImage`` (the bitmap handed to the core) and into a display image at the widget's
resolution, so the ink on screen stays crisp at any size. While a stroke grows only its
new segments are painted; the last, still-moving segment is painted on top at read and
paint time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

BITMAP_SIZE = 280  # side of the bitmap the network reads, in pixels
DEFAULT_PEN_WIDTH = 18.0  # in bitmap pixels: about MNIST's stroke once the digit is fitted in 20x20
PEN_WIDTH_RANGE = (4.0, 48.0)
MIN_POINT_DISTANCE = 0.6  # bitmap pixels: closer input points are dropped
PRESSURE_FLOOR = 0.25  # width factor at zero pen pressure (full width at pressure 1)


@dataclass(frozen=True)
class Stroke:
    """One finished stroke: points (n, 3) float32 as x, y, width factor, and the pen width."""

    points: np.ndarray  # (n, 3): x, y in bitmap pixels; width factor in (0, 1]
    width: float  # bitmap pixels at width factor 1


def _segment_count(n_points: int) -> int:
    return n_points  # one dot for a single point; otherwise a head, n-2 curves and a tail


def _paint_segments(painter: QPainter, pts, width: float, scale: float, start: int, stop: int) -> None:
    """Paint segments ``start..stop-1`` of a stroke through ``pts`` (sequence of (x, y, w)).

    Segment 0 runs from the first point to the first midpoint, segment k (0 < k < n-1) is
    the quadratic curve from midpoint k-1 to midpoint k with point k as control, and the
    last runs from the last midpoint to the last point. Adding a point changes only the
    last segment, so earlier ones can be painted once and kept.
    """
    n = len(pts)
    pen = QPen(QColor(255, 255, 255))
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    if n == 1:
        x, y, w = pts[0]
        pen.setWidthF(max(width * w * scale, 0.5))
        painter.setPen(pen)
        painter.drawPoint(QPointF(x * scale, y * scale))
        return

    def mid(i):
        return QPointF((pts[i][0] + pts[i + 1][0]) * 0.5 * scale, (pts[i][1] + pts[i + 1][1]) * 0.5 * scale)

    for k in range(start, stop):
        if k == 0:
            path = QPainterPath(QPointF(pts[0][0] * scale, pts[0][1] * scale))
            path.lineTo(mid(0))
        elif k == n - 1:
            path = QPainterPath(mid(n - 2))
            path.lineTo(QPointF(pts[-1][0] * scale, pts[-1][1] * scale))
        else:
            path = QPainterPath(mid(k - 1))
            path.quadTo(QPointF(pts[k][0] * scale, pts[k][1] * scale), mid(k))
        pen.setWidthF(max(width * pts[k][2] * scale, 0.5))
        painter.setPen(pen)
        painter.drawPath(path)


class _Raster:
    """Strokes rendered into one image at a given scale: finished strokes plus the growing one."""

    def __init__(self, side: int, scale: float, fmt: QImage.Format, dpr: float = 1.0):
        self.scale = scale
        self.image = QImage(side, side, fmt)  # device pixels; no devicePixelRatio set, so painting is 1:1
        self.dpr = dpr
        self.image.fill(QColor(0, 0, 0))
        self._drawn = 0  # segments of the growing stroke already in ``image``

    def _painter(self) -> QPainter:
        p = QPainter(self.image)
        p.setRenderHint(QPainter.Antialiasing)
        return p

    def redraw(self, strokes) -> None:
        self.image.fill(QColor(0, 0, 0))
        self._drawn = 0
        if not strokes:
            return
        p = self._painter()
        for s in strokes:
            _paint_segments(p, s.points, s.width, self.scale, 0, _segment_count(len(s.points)))
        p.end()

    def begin(self) -> None:
        self._drawn = 0

    def grow(self, pts, width: float) -> None:
        """Paint the segments of the growing stroke that no new point can change any more."""
        settled = len(pts) - 1
        if settled > self._drawn:
            p = self._painter()
            _paint_segments(p, pts, width, self.scale, self._drawn, settled)
            p.end()
            self._drawn = settled

    def paint_tail(self, painter: QPainter, pts, width: float) -> None:
        """Paint the still-moving last segment of the growing stroke with ``painter``."""
        n = len(pts)
        if n:
            _paint_segments(painter, pts, width, self.scale, n - 1, n)


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A QImage owning a copy of an (H, W, 4) uint8 RGBA array."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()


class Canvas(QWidget):
    """A square drawing area: mouse, tablet pen or finger; undo, redo, clear; a fixed-size bitmap out."""

    stroke_changed = Signal()  # a point was added to the stroke being drawn
    drawing_changed = Signal()  # a stroke ended, or undo / redo / clear / picture changed the drawing
    history_changed = Signal()  # what undo and redo can do changed
    pen_width_changed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setAccessibleName("Drawing canvas")
        self.setAccessibleDescription("Draw a digit here with the mouse, a pen or a finger")
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(160, 160)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setCursor(Qt.CrossCursor)
        self.setAttribute(Qt.WA_OpaquePaintEvent, False)
        self._pen_width = DEFAULT_PEN_WIDTH
        self._stroke_width = DEFAULT_PEN_WIDTH  # width of the stroke being drawn
        self._strokes: list[Stroke] = []
        self._undo: list[tuple] = []  # ("stroke", Stroke) or ("clear", strokes before, picture before)
        self._redo: list[tuple] = []
        self._points: list[tuple] | None = None  # the stroke being drawn: [(x, y, w), ...]
        self._picture: np.ndarray | None = None  # an opened image shown instead of ink, (H, W, 4)
        self._picture_image: QImage | None = None
        self._overlay: QImage | None = None
        self._bitmap = _Raster(BITMAP_SIZE, 1.0, QImage.Format_Grayscale8)
        self._display: _Raster | None = None
        self.background = QColor(0, 0, 0)
        self.frame_color = QColor(90, 90, 90)

    # ---- drawing state ---------------------------------------------------------------------

    @property
    def strokes(self) -> tuple[Stroke, ...]:
        return tuple(self._strokes)

    @property
    def is_drawing(self) -> bool:
        return self._points is not None

    def is_empty(self) -> bool:
        return not self._strokes and self._points is None and self._picture is None

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def pen_width(self) -> float:
        return self._pen_width

    def set_pen_width(self, width: float) -> None:
        """Pen width in bitmap pixels (the bitmap is BITMAP_SIZE wide); applies to the next stroke."""
        width = float(min(max(width, PEN_WIDTH_RANGE[0]), PEN_WIDTH_RANGE[1]))
        if width != self._pen_width:
            self._pen_width = width
            self.pen_width_changed.emit(width)

    @property
    def picture(self) -> np.ndarray | None:
        """The opened image shown on the canvas, (H, W, 4) uint8, or None when showing ink."""
        return self._picture

    def bitmap(self) -> np.ndarray:
        """The drawing as white ink on black, (BITMAP_SIZE, BITMAP_SIZE) uint8, including a stroke in progress."""
        img = self._bitmap.image
        if self._points:
            img = img.copy()
            p = QPainter(img)
            p.setRenderHint(QPainter.Antialiasing)
            self._bitmap.paint_tail(p, self._points, self._stroke_width)
            p.end()
        bpl = img.bytesPerLine()
        arr = np.frombuffer(img.constBits(), np.uint8, count=bpl * BITMAP_SIZE)
        return arr.reshape(BITMAP_SIZE, bpl)[:, :BITMAP_SIZE].copy()  # (H, W)

    def undo(self) -> None:
        if self._points is not None or not self._undo:
            return
        action = self._undo.pop()
        if action[0] == "stroke":
            self._strokes.pop()
        else:
            self._strokes = list(action[1])
            self._set_picture(action[2])
        self._redo.append(action)
        self._after_edit()

    def redo(self) -> None:
        if self._points is not None or not self._redo:
            return
        action = self._redo.pop()
        if action[0] == "stroke":
            self._strokes.append(action[1])
        else:
            self._strokes = []
            self._set_picture(None)
        self._undo.append(action)
        self._after_edit()

    def clear(self) -> None:
        """Remove every stroke (and an opened picture); undo brings them back."""
        drawing, self._points = self._points is not None, None
        if not self._strokes and self._picture is None:
            if drawing:  # the stroke in progress was already partly painted
                self._after_edit()
            return
        self._undo.append(("clear", tuple(self._strokes), self._picture))
        self._redo.clear()
        self._strokes = []
        self._set_picture(None)
        self._after_edit()

    def set_picture(self, rgba: np.ndarray | None) -> None:
        """Show an image (H, W, 4) uint8 in place of the ink; the strokes are cleared (undoably)."""
        self._points = None
        if self._strokes or self._picture is not None:
            self._undo.append(("clear", tuple(self._strokes), self._picture))
        self._redo.clear()
        self._strokes = []
        self._set_picture(None if rgba is None else np.array(rgba, dtype=np.uint8))
        self._after_edit()

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        """Draw an (H, W, 4) uint8 image above the ink, scaled to the canvas; None removes it."""
        self._overlay = None if rgba is None else rgba_to_qimage(rgba)
        self.update()

    def _set_picture(self, rgba):
        self._picture = rgba
        self._picture_image = None if rgba is None else rgba_to_qimage(rgba)

    def _after_edit(self) -> None:
        self._bitmap.redraw(self._strokes)
        if self._display is not None:
            self._display.redraw(self._strokes)
        self.update()
        self.history_changed.emit()
        self.drawing_changed.emit()

    # ---- strokes -----------------------------------------------------------------------------

    def begin_stroke(self, x: float, y: float, pressure: float = 1.0) -> None:
        """Start a stroke at (x, y) in bitmap pixels."""
        if self._points is not None:  # a release never came (focus lost): keep what was drawn
            self.end_stroke()
        if self._picture is not None:
            self.set_picture(None)
        self._stroke_width = self._pen_width  # a width change mid-stroke applies to the next one
        self._points = [self._point(x, y, pressure)]
        self._bitmap.begin()
        if self._display is not None:
            self._display.begin()
        self.update()
        self.stroke_changed.emit()

    def extend_stroke(self, x: float, y: float, pressure: float = 1.0) -> None:
        if self._points is None:
            return
        last = self._points[-1]
        if math.hypot(x - last[0], y - last[1]) < MIN_POINT_DISTANCE:
            return
        self._points.append(self._point(x, y, pressure))
        self._bitmap.grow(self._points, self._stroke_width)
        if self._display is not None:
            self._display.grow(self._points, self._stroke_width)
        self.update()
        self.stroke_changed.emit()

    def end_stroke(self) -> None:
        if self._points is None:
            return
        pts, self._points = self._points, None
        stroke = Stroke(np.array(pts, dtype=np.float32), self._stroke_width)
        self._strokes.append(stroke)
        # a finished drawing is painted the one way undo, redo and resizing paint it, so the
        # network reads the same pixels for the same strokes (painting a stroke piece by piece
        # while it grows differs from painting it whole by a few grey levels at some widths)
        self._bitmap.redraw(self._strokes)
        if self._display is not None:
            self._display.redraw(self._strokes)
        self._undo.append(("stroke", stroke))
        self._redo.clear()
        self.update()
        self.history_changed.emit()
        self.drawing_changed.emit()

    def cancel_stroke(self) -> None:
        if self._points is None:
            return
        self._points = None
        self._after_edit()

    @classmethod
    def _point(cls, x: float, y: float, pressure: float) -> tuple[float, float, float]:
        """A point as the finished stroke will store it (float32), so painting it now and
        redrawing it later (undo, resize) put the same pixels down."""
        return float(np.float32(x)), float(np.float32(y)), float(np.float32(cls._width_factor(pressure)))

    @staticmethod
    def _width_factor(pressure: float) -> float:
        pressure = min(max(float(pressure), 0.0), 1.0)
        return PRESSURE_FLOOR + (1.0 - PRESSURE_FLOOR) * pressure

    # ---- geometry ----------------------------------------------------------------------------

    def drawing_rect(self) -> QRectF:
        """The square, in widget coordinates, where the bitmap is shown."""
        side = max(min(self.width(), self.height()) - 2, 1)
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    def to_bitmap(self, pos: QPointF) -> tuple[float, float]:
        r = self.drawing_rect()
        s = BITMAP_SIZE / r.width()
        return (pos.x() - r.left()) * s, (pos.y() - r.top()) * s

    def _ensure_display(self) -> _Raster:
        r = self.drawing_rect()
        dpr = self.devicePixelRatioF()
        side = max(int(round(r.width() * dpr)), 1)
        if self._display is None or self._display.image.width() != side:
            self._display = _Raster(side, side / BITMAP_SIZE, QImage.Format_ARGB32_Premultiplied, dpr)
            self._display.redraw(self._strokes)
            if self._points:
                self._display.grow(self._points, self._stroke_width)
        return self._display

    # ---- Qt events ---------------------------------------------------------------------------

    def paintEvent(self, event):
        p = QPainter(self)
        r = self.drawing_rect()
        p.fillRect(r, self.background)
        if self._picture_image is not None:
            img = self._picture_image
            s = min(r.width() / img.width(), r.height() / img.height())
            w, h = img.width() * s, img.height() * s
            p.setRenderHint(QPainter.SmoothPixmapTransform)
            p.drawImage(QRectF(r.center().x() - w / 2, r.center().y() - h / 2, w, h), img)
        else:
            disp = self._ensure_display()
            p.drawImage(QRectF(r.topLeft(), r.size()), disp.image)
            if self._points:
                p.save()
                p.setRenderHint(QPainter.Antialiasing)
                p.translate(r.topLeft())
                p.scale(r.width() / disp.image.width(), r.width() / disp.image.width())
                disp.paint_tail(p, self._points, self._stroke_width)
                p.restore()
        if self._overlay is not None:
            p.setRenderHint(QPainter.SmoothPixmapTransform)
            p.drawImage(r, self._overlay)
        p.setPen(QPen(self.frame_color, 1))
        p.setBrush(Qt.NoBrush)
        p.drawRect(r.adjusted(-0.5, -0.5, 0.5, 0.5))
        p.end()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._display = None  # re-rendered at the new size on the next paint

    def mousePressEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.begin_stroke(*self.to_bitmap(event.position()))
            event.accept()
        elif event.button() == Qt.RightButton and self._points is not None:
            self.cancel_stroke()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._points is not None and event.buttons() & Qt.LeftButton:
            self.extend_stroke(*self.to_bitmap(event.position()))
            event.accept()
        else:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if event.button() == Qt.LeftButton and self._points is not None:
            self.extend_stroke(*self.to_bitmap(event.position()))
            self.end_stroke()
            event.accept()
        else:
            super().mouseReleaseEvent(event)

    def tabletEvent(self, event):
        x, y = self.to_bitmap(event.position())
        kind = event.type()
        if kind == event.Type.TabletPress:
            self.begin_stroke(x, y, event.pressure())
        elif kind == event.Type.TabletMove and self._points is not None:
            self.extend_stroke(x, y, event.pressure())
        elif kind == event.Type.TabletRelease and self._points is not None:
            self.end_stroke()
        event.accept()  # no synthesized mouse events for the pen

    def changeEvent(self, event):
        super().changeEvent(event)
        if event.type() == event.Type.DevicePixelRatioChange:
            self._display = None
            self.update()

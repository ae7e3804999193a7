"""View ▸ Why this answer: the saliency of the answer and the first hidden layer's most active units.

``WhyPane`` (on the Draw page) shows the gradient-times-input of the top class at 28x28 and
the weights of the most active first-layer units; ``WhyController`` owns the toggle action,
follows every reading and paints the saliency back onto the drawing as a canvas overlay.
The numbers come from ``digitpad.core.evaluate``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Signal, Slot
from PySide6.QtGui import QAction, QColor

from digitpad.core.evaluate import map_to_input, saliency, top_units
from digitpad.qt.panes import THEMES, Theme

WHY_KEY = "view/why_this_answer"
OVERLAY_SIZE = 140  # overlay side in pixels (the canvas scales it smoothly)
N_UNITS = 8  # top hidden units shown
POSITIVE = np.array([255, 150, 30], np.float32)  # pushed the answer up
NEGATIVE = np.array([70, 150, 255], np.float32)  # pushed it down


def diverging_lut(background: str) -> np.ndarray:
    """(256, 4) uint8 lookup table: blue (negative) - background (zero) - orange (positive)."""
    bg = np.array(QColor(background).getRgb()[:3], np.float32)
    t = np.linspace(-1.0, 1.0, 256)[:, None]  # (256, 1)
    rgb = np.where(t < 0, bg + (NEGATIVE - bg) * -t, bg + (POSITIVE - bg) * t)  # (256, 3)
    return np.concatenate([rgb, np.full((256, 1), 255.0)], axis=1).astype(np.uint8)


def saliency_rgba(values: np.ndarray, scale: float, max_alpha: int = 215) -> np.ndarray:
    """(H, W) signed map -> (H, W, 4) uint8: orange where positive, blue where negative, clear at 0."""
    v = np.clip(np.asarray(values, np.float32) / max(scale, 1e-12), -1.0, 1.0)  # (H, W)
    rgba = np.zeros((*v.shape, 4), np.uint8)
    pos = v > 0
    rgba[pos, :3] = POSITIVE.astype(np.uint8)
    rgba[~pos, :3] = NEGATIVE.astype(np.uint8)
    rgba[..., 3] = (np.abs(v) ** 0.7 * max_alpha).astype(np.uint8)
    return rgba



class WhyPane(pg.GraphicsLayoutWidget):
    """Why this answer: the saliency of the top class at 28x28 and the most active first-layer units' weights."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("why")
        self.setAccessibleName("Why this answer: pixels that pushed the answer up or down, and the most active units")
        self.setMinimumSize(300, 170)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self.title = self.addLabel("", row=0, col=0, colspan=1 + N_UNITS // 2, size="9pt")
        self.saliency_view = self.addViewBox(row=1, col=0, rowspan=2, lockAspect=True, invertY=True,
                                             enableMouse=False, enableMenu=False)
        self.saliency_view.setDefaultPadding(0.02)
        self.saliency_image = pg.ImageItem(axisOrder="row-major")
        self.saliency_image.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
        self.saliency_view.addItem(self.saliency_image)
        self.saliency_view.setRange(QRectF(0, 0, 28, 28), padding=0.02)
        self.ci.layout.setColumnStretchFactor(0, 3)
        self.unit_views, self.unit_images, self.unit_labels = [], [], []
        cols = N_UNITS // 2
        for k in range(N_UNITS):
            r, c = 1 + k // cols, 1 + k % cols
            sub = self.addLayout(row=r, col=c)
            sub.setContentsMargins(0, 0, 0, 0)
            label = sub.addLabel("", row=0, col=0, size="7pt")
            view = sub.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
            view.setDefaultPadding(0.02)
            img = pg.ImageItem(axisOrder="row-major")
            img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
            view.addItem(img)
            view.setRange(QRectF(0, 0, 28, 28), padding=0.02)
            self.unit_views.append(view)
            self.unit_images.append(img)
            self.unit_labels.append(label)
        for c in range(1, cols + 1):
            self.ci.layout.setColumnStretchFactor(c, 1)
        self.saliency_map = np.zeros((28, 28), np.float32)
        self.units = np.empty(0, np.intp)
        self.apply_theme(theme)

    def show_nothing(self, why: str = "Draw a digit to see why the network answers what it does.") -> None:
        self.saliency_map = np.zeros((28, 28), np.float32)
        self.saliency_image.setImage(self.saliency_map, autoLevels=False, levels=(-1.0, 1.0))
        self.units = np.empty(0, np.intp)
        for img, label in zip(self.unit_images, self.unit_labels):
            img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
            label.setText("")
        self.title.setText(why)

    def show_why(self, digit: int, sal: np.ndarray, units: np.ndarray, weights: np.ndarray,
                 activations: np.ndarray) -> None:
        self.saliency_map = sal
        m = float(np.abs(sal).max()) or 1.0
        self.saliency_image.setImage(sal, autoLevels=False, levels=(-m, m))
        self.units = units
        for k, (img, label) in enumerate(zip(self.unit_images, self.unit_labels)):
            if k < len(units):
                w = weights[k]
                s = float(np.abs(w).max()) or 1.0
                img.setImage(w, autoLevels=False, levels=(-s, s))
                label.setText(f"unit {int(units[k])}: {float(activations[k]):.2f}")
            else:
                img.setImage(np.zeros((28, 28), np.float32), autoLevels=False, levels=(-1.0, 1.0))
                label.setText("")
        tail = ("first hidden layer's most active units (their weights)" if len(units)
                else "no hidden layer: the saliency is the weights times the input")
        self.title.setText(f"Pixels that pushed <b>{digit}</b> up (orange) or down (blue) · {tail}")

    def apply_theme(self, theme: Theme) -> None:
        self.setBackground(theme.background)
        lut = diverging_lut(theme.background)
        self.saliency_image.setLookupTable(lut)
        for img in self.unit_images:
            img.setLookupTable(lut)
        # setText, not setAttr: an attribute alone would only colour the next text
        self.title.setText(self.title.text, color=theme.foreground)
        for label in self.unit_labels:
            label.setText(label.text, color=theme.muted)


class WhyController(QObject):
    """View ▸ Why this answer: the toggle, the pane on the Draw page and the overlay on the canvas."""

    overlay_changed = Signal(object)  # (H, W, 4) uint8 overlay, or None

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.pane: WhyPane = window.draw_page.why
        self.pane.show_nothing()
        self.overlay: np.ndarray | None = None
        self.action_why = QAction("&Why this answer", window, checkable=True)
        self.action_why.setObjectName("action_why")
        self.action_why.setShortcut("Ctrl+Shift+W")
        self.action_why.setToolTip("Colour the pixels that pushed the answer up or down, and show the most active units")
        self.action_why.toggled.connect(self.set_why_visible)
        window.addAction(self.action_why)
        window.reading_changed.connect(self._on_reading)
        window.theme_changed.connect(self._apply_theme)
        if str(window.settings.value(WHY_KEY, "false")).lower() == "true":
            self.action_why.setChecked(True)

    def set_why_visible(self, on: bool) -> None:
        self.window.settings.setValue(WHY_KEY, bool(on))
        self.pane.setVisible(on)
        if on:
            self._on_reading(self.window.reading)
        else:
            self._set_overlay(None)

    def _set_overlay(self, rgba) -> None:
        self.overlay = rgba
        self.window.canvas.set_overlay(rgba)
        self.overlay_changed.emit(rgba)

    @Slot(object)
    def _on_reading(self, reading) -> None:
        if not self.action_why.isChecked():
            return
        model = self.window.reading_model
        if reading is None or model is None or reading.blank or reading.digit is None:
            self.pane.show_nothing()
            self._set_overlay(None)
            return
        image28 = np.asarray(reading.image28, np.float32)  # (28, 28)
        if model.config.n_in != image28.size:
            self.pane.show_nothing("This model does not read 28x28 digits.")
            self._set_overlay(None)
            return
        digit, trace = int(reading.digit), reading.trace  # the reading's own forward pass: none here
        sal = saliency(model, image28, digit, trace)  # (28, 28)
        units, weights = top_units(model, image28, N_UNITS, trace)
        acts = trace.activations[0][0][units] if len(units) else np.empty(0)
        self.pane.show_why(digit, sal, units, weights, acts)
        pre = reading.preprocessed  # what preprocessing did to the picture: not done again here
        if pre is None or pre.blank:
            self._set_overlay(None)
            return
        values = map_to_input(sal, pre, OVERLAY_SIZE)  # (S, S)
        self._set_overlay(saliency_rgba(values, float(np.abs(sal).max())))

    @Slot(str)
    def _apply_theme(self, name: str) -> None:
        self.pane.apply_theme(THEMES.get(name, THEMES["dark"]))

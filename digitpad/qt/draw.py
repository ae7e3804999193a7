"""The Draw page: the canvas and the answer on the left, what the network sees and does on the right.

A fixed composition of splitters: the model banner, the answer, the canvas and a hint in
the left column; the probabilities beside the network's 28x28 input, "inside the
network" (logits and hidden activations) and, when View ▸ Why this answer is on, the
saliency pane in the right column. Panes can be hidden from the View menu but never move.
The canvas is the window's one canvas: it sits in ``canvas_slot`` while this page is shown.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from digitpad.qt.panes import Theme
from digitpad.qt.panes.inference import (
    ActivationsPane,
    LogitsPane,
    NetworkInputPane,
    ProbabilitiesPane,
    TemperatureControl,
)
from digitpad.qt.why import WhyPane


class ModelBanner(QFrame):
    """A bar above the canvas saying what is wrong with the model, with ways out."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("model_banner")
        self.setFrameShape(QFrame.StyledPanel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.text = QLabel()
        self.text.setObjectName("model_banner_text")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.text.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        lay.addWidget(self.text, 1)
        self.load_button = QPushButton("Load model…")
        self.retrain_button = QPushButton("Retrain…")
        self.shipped_button = QPushButton("Use shipped model")
        self.close_button = QPushButton("✕")
        self.close_button.setToolTip("Hide this message")
        self.close_button.setFixedWidth(28)
        self.close_button.setFlat(True)
        for b in (self.load_button, self.retrain_button, self.shipped_button, self.close_button):
            lay.addWidget(b, 0, Qt.AlignTop)
        self.close_button.clicked.connect(self.hide)
        self.hide()

    def set_message(self, text: str) -> None:
        self.text.setText(text)
        self.show()


def titled(title: str, widget: QWidget, name: str) -> QWidget:
    """``widget`` under a small caption, as one box named ``name``."""
    box = QWidget()
    box.setObjectName(name)
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(2)
    caption = QLabel(title)
    caption.setObjectName(f"{name}_caption")
    lay.addWidget(caption)
    lay.addWidget(widget, 1)
    box.caption = caption
    return box


class DrawPage(QWidget):
    """The Draw page: canvas and answer | probabilities, input, inside the network, why this answer."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setObjectName("page_draw")
        self.banner = ModelBanner()
        self.reading_label = QLabel()
        self.reading_label.setObjectName("reading_label")
        self.reading_label.setAccessibleName("What the network reads")
        self.reading_label.setAlignment(Qt.AlignHCenter | Qt.AlignVCenter)
        self.reading_label.setTextFormat(Qt.RichText)
        self.reading_label.setMinimumHeight(86)
        self.reading_label.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.hint = QLabel("Draw a digit · Ctrl+Z undo · Esc clear · drop an image to read it")
        self.hint.setObjectName("canvas_hint")
        self.hint.setAlignment(Qt.AlignHCenter)
        self.hint.setWordWrap(True)
        left = QWidget()
        left.setObjectName("draw_left")
        ll = QVBoxLayout(left)
        ll.setContentsMargins(10, 8, 6, 8)
        ll.setSpacing(6)
        ll.addWidget(self.banner)
        ll.addWidget(self.reading_label)
        self.canvas_slot = QVBoxLayout()  # the window's one canvas sits here while this page is shown
        self.canvas_slot.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(self.canvas_slot, 1)
        ll.addWidget(self.hint)

        self.probabilities = ProbabilitiesPane(theme=theme)
        self.network_input = NetworkInputPane(theme=theme)
        self.activations = ActivationsPane(theme=theme)
        self.logits = LogitsPane(theme=theme)
        self.why = WhyPane(theme)
        self.why.hide()  # View ▸ Why this answer shows it
        self.panes = (self.probabilities, self.network_input, self.activations, self.logits)

        self.probabilities_box = titled("Probabilities", self.probabilities, "probabilities_box")
        self.network_input_box = titled("What the network sees", self.network_input, "network_input_box")
        top = QSplitter(Qt.Horizontal)
        top.setObjectName("draw_top_splitter")
        top.addWidget(self.probabilities_box)
        top.addWidget(self.network_input_box)
        top.setChildrenCollapsible(False)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        self.temperature = TemperatureControl()
        self.temperature.changed.connect(self.logits.set_temperature)
        softmax_box = QWidget()
        softmax_box.setObjectName("softmax_box")
        sl = QVBoxLayout(softmax_box)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(2)
        sl.addWidget(self.temperature)  # above the scores: a squeezed pane only loses room at its bottom
        sl.addWidget(self.logits, 1)
        inside = QSplitter(Qt.Vertical)
        inside.setObjectName("inside_splitter")
        inside.addWidget(softmax_box)
        inside.addWidget(self.activations)
        inside.setChildrenCollapsible(False)
        self.network_box = titled("Inside the network for this drawing", inside, "network_box")
        right = QSplitter(Qt.Vertical)
        right.setObjectName("draw_right_splitter")
        right.addWidget(top)
        right.addWidget(self.network_box)
        right.addWidget(self.why)
        right.setChildrenCollapsible(False)
        right.setContentsMargins(0, 8, 8, 8)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("draw_splitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setChildrenCollapsible(False)
        self.splitters = (self.splitter, top, inside, right)
        self.captions = (self.probabilities_box.caption, self.network_input_box.caption, self.network_box.caption)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.splitter)
        self.default_sizes(1200, 720)

    def default_sizes(self, width: int, height: int) -> None:
        """Share the page between the canvas column (about square) and the panes."""
        splitter, top, inside, right = self.splitters
        left = min(max(int(height * 0.95), 360), int(width * 0.55))
        splitter.setSizes([left, max(width - left, 300)])
        top.setSizes([300, 200])
        inside.setSizes([200, 260])
        right.setSizes([int(height * 0.32), int(height * 0.68), int(height * 0.45)])

    def apply_theme(self, theme: Theme, reading) -> None:
        for pane in self.panes:
            pane.apply_theme(theme)
            pane.set_reading(reading)
        self.why.apply_theme(theme)
        self.hint.setStyleSheet(f"color: {theme.muted};")
        for caption in self.captions:
            caption.setStyleSheet(f"color: {theme.muted};")
        self.banner.setStyleSheet(f"#model_banner {{ background: {'#4a2b22' if theme.name == 'dark' else '#fde6d8'};"
                                  f" border: 1px solid {theme.negative}; border-radius: 4px; }}")

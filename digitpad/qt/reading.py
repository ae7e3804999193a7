"""Reading a drawing: bitmap or picture -> preprocess -> the network's trace -> a ``Reading``.

No Qt here: a ``Reading`` is a frozen dataclass of plain arrays that the window's panes
and signals pass around. Probabilities are the softmax of the logits divided by the
model's calibration temperature when its metadata has one.

One drawing is one vector, so the forward pass here uses NumPy's own loops (``einsum``)
rather than BLAS: a BLAS call from the GUI thread waits for BLAS's worker threads, which
on a busy machine (or while a training run keeps them busy) costs tens of milliseconds
at the tail, where the loops take a fraction of a millisecond every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitpad.core.functional import ACTIVATIONS, softmax
from digitpad.core.mlp import MLP, Trace

DEFAULT_THRESHOLD = 0.6  # below this confidence the window says it is not sure


@dataclass(frozen=True)
class Reading:
    """What the network made of one drawing (every array a copy, safe to keep)."""

    digit: int | None  # the most probable class; None for a blank drawing or no model
    confidence: float  # probability of ``digit`` (0 when None)
    probabilities: np.ndarray  # (10,) float32, sums to 1; zeros when blank
    logits: np.ndarray  # (10,) float32; zeros when blank
    activations: tuple  # per hidden layer, (n_i,) float32
    image28: np.ndarray  # (28, 28) float32 in [0, 1]: the network's input
    blank: bool
    temperature: float = 1.0
    label: str = ""  # where the input came from, when it was not drawn

    def top(self, k: int = 2) -> list[tuple[int, float]]:
        """The ``k`` most probable digits with their probabilities, best first."""
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    def is_sure(self, threshold: float) -> bool:
        return self.digit is not None and self.confidence >= threshold


def blank_reading(model: MLP | None, image28: np.ndarray | None = None, label: str = "") -> Reading:
    sizes = model.config.hidden if model is not None else ()
    return Reading(
        digit=None, confidence=0.0,
        probabilities=np.zeros(10, np.float32), logits=np.zeros(10, np.float32),
        activations=tuple(np.zeros(n, np.float32) for n in sizes),
        image28=np.zeros((28, 28), np.float32) if image28 is None else image28,
        blank=True, label=label,
    )


def model_temperature(metadata: dict | None) -> float:
    """The calibration temperature in a model's metadata, or 1."""
    try:
        t = float((metadata or {}).get("temperature", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return t if np.isfinite(t) and t > 0 else 1.0


def trace_one(model: MLP, x: np.ndarray, temperature: float = 1.0) -> Trace:
    """``model.trace`` for a single input (784,), without BLAS; arrays come back as (1, n)."""
    act = ACTIVATIONS[model.config.activation]
    a = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)  # (n_in,)
    pre, outs = [], []
    last = model.n_layers - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        z = np.einsum("i,ij->j", a, w) + b  # (n_i,)
        pre.append(z[None])
        if i < last:
            a = act(z.copy())
            outs.append(a[None])
    logits = pre[-1]  # (1, n_out)
    return Trace(pre=pre, activations=outs, logits=logits, probabilities=softmax(logits, temperature))


def read_input(model: MLP | None, image28: np.ndarray, temperature: float = 1.0,
               blank: bool = False, label: str = "") -> Reading:
    """Run the network on a 28x28 input that is already MNIST-style."""
    image28 = np.asarray(image28, dtype=np.float32).reshape(28, 28)
    if model is None or blank:
        return blank_reading(model, image28, label)
    t = trace_one(model, image28.reshape(784), temperature)  # (784,) in
    probs = t.probabilities[0].astype(np.float32)  # (10,)
    digit = int(np.argmax(probs))
    return Reading(
        digit=digit, confidence=float(probs[digit]), probabilities=probs,
        logits=t.logits[0].astype(np.float32, copy=True),
        activations=tuple(a[0].astype(np.float32, copy=True) for a in t.activations),
        image28=image28, blank=False, temperature=temperature, label=label,
    )


def read_image(model: MLP | None, image: np.ndarray, temperature: float = 1.0, label: str = "") -> Reading:
    """Preprocess a canvas bitmap (H, W) or a picture (H, W, 4) and run the network on it."""
    from digitpad.core.preprocess import preprocess

    pre = preprocess(image)
    return read_input(model, pre.image, temperature, blank=bool(pre.blank), label=label)

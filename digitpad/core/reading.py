"""Reading a digit: a picture or a 28x28 input -> preprocess -> the network's trace -> a ``Reading``.

The one read path of digitpad: the window's panes, the "Why this answer" overlay and
``digitpad predict`` all read through ``read_image`` (a canvas bitmap or a picture) or
``read_input`` (an MNIST-style 28x28 digit); ``reread`` reads the same input with new
weights (a network that is learning) without preprocessing it again. A ``Reading`` is a frozen dataclass of plain
arrays that keeps what preprocessing did (``preprocessed``) and every layer of the
forward pass (``trace``), so whatever explains the answer needs no second pass.
Probabilities are the softmax of the logits divided by the model's calibration
temperature (``model_io.model_temperature``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitpad.core.mlp import MLP, Trace

if TYPE_CHECKING:  # preprocess brings SciPy: imported on the first read, not at start-up
    from digitpad.core.preprocess import Preprocessed

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
    preprocessed: Preprocessed | None = None  # what preprocessing did to the picture; None without one
    trace: Trace | None = None  # the forward pass, arrays (1, n_i); None when blank or without a model

    def top(self, k: int = 2) -> list[tuple[int, float]]:
        """The ``k`` most probable digits with their probabilities, best first."""
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    def is_sure(self, threshold: float) -> bool:
        return self.digit is not None and self.confidence >= threshold


def blank_reading(model: MLP | None, image28: np.ndarray | None = None, label: str = "",
                  preprocessed: Preprocessed | None = None) -> Reading:
    """The reading of nothing: no digit, zero probabilities, activations shaped for ``model``."""
    sizes = model.config.hidden if model is not None else ()
    return Reading(
        digit=None, confidence=0.0,
        probabilities=np.zeros(10, np.float32), logits=np.zeros(10, np.float32),
        activations=tuple(np.zeros(n, np.float32) for n in sizes),
        image28=np.zeros((28, 28), np.float32) if image28 is None else image28,
        blank=True, label=label, preprocessed=preprocessed,
    )


def input_record(image28: np.ndarray) -> Preprocessed:
    """The ``Preprocessed`` record of a digit that already is the network's 28x28 input (nothing done)."""
    from digitpad.core.preprocess import Preprocessed

    return Preprocessed(image28, False, input_shape=(28, 28), bbox=(0, 28, 0, 28), scale=1.0)


def read_input(model: MLP | None, image28: np.ndarray, temperature: float = 1.0, blank: bool = False,
               label: str = "", preprocessed: Preprocessed | None = None) -> Reading:
    """Run the network on a 28x28 input that is already MNIST-style.

    ``preprocessed`` is the record of how ``image28`` was made; by default the input is
    taken as the picture itself (``input_record``).
    """
    image28 = np.asarray(image28, dtype=np.float32).reshape(28, 28)
    if preprocessed is None:
        preprocessed = input_record(image28)
    if model is None or blank:
        return blank_reading(model, image28, label, preprocessed)
    t = model.trace(image28.reshape(1, 784), temperature)  # one sample: no BLAS on the caller's thread
    probs = t.probabilities[0].astype(np.float32)  # (10,)
    digit = int(np.argmax(probs))
    return Reading(
        digit=digit, confidence=float(probs[digit]), probabilities=probs,
        logits=t.logits[0].astype(np.float32, copy=True),
        activations=tuple(a[0].astype(np.float32, copy=True) for a in t.activations),
        image28=image28, blank=False, temperature=temperature, label=label,
        preprocessed=preprocessed, trace=t,
    )


def reread(model: MLP | None, reading: Reading, temperature: float = 1.0) -> Reading:
    """``reading``'s input read by ``model`` (new weights, the same drawing), without preprocessing it again."""
    return read_input(model, reading.image28, temperature, blank=reading.blank, label=reading.label,
                      preprocessed=reading.preprocessed)


def read_image(model: MLP | None, image: np.ndarray, temperature: float = 1.0, label: str = "") -> Reading:
    """Preprocess a canvas bitmap (H, W) or a picture (H, W, 4) and run the network on it.

    Parameters
    ----------
    model : MLP or None
        None gives a blank reading (no model to read with).
    image : ndarray
        (H, W) grey or (H, W, 3|4) colour, any ink polarity (see ``preprocess``).
    temperature : float
        Softmax temperature for the probabilities.
    label : str
        Where the picture came from (a file name), carried in the reading.

    Returns
    -------
    Reading
        With ``preprocessed`` set; blank when preprocessing found no digit.
    """
    from digitpad.core.preprocess import preprocess

    pre = preprocess(image)
    return read_input(model, pre.image, temperature, blank=bool(pre.blank), label=label, preprocessed=pre)

"""How good a model is and where it fails: test-set evaluation, calibration, and why one answer.

``evaluate_model`` reads a labelled set in batches and returns a frozen ``Evaluation``:
accuracy with its Wilson 95% interval, per-class accuracy, the 10x10 confusion matrix
(rows are true labels, columns the model's answers), every prediction and its confidence,
the misclassified indices sorted by how sure the model was, and its calibration (expected
calibration error over 15 equal-width confidence bins, and the reliability curve).
``fit_temperature`` finds the softmax temperature that minimises the negative
log-likelihood on held-out digits (the validation split a model was trained without,
recovered by ``validation_split``). ``saliency`` and ``top_units`` explain one reading:
gradient of the top score times the input, and the first hidden layer's most active units.

NumPy, SciPy and scikit-learn (``sklearn.metrics``, imported on first use: it takes
seconds to import and the app starts without it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from digitpad.core.functional import cross_entropy, softmax
from digitpad.core.mlp import MLP, Trace, as_batch

ECE_BINS = 15
Z95 = 1.959963984540054  # two-sided 95% normal quantile
TEMPERATURE_BOUNDS = (0.05, 20.0)


class EvaluationCancelled(Exception):
    """``cancel()`` returned True between two batches."""


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Reliability:
    """Reliability curve: per confidence bin, how often the model was right against how sure it was."""

    edges: np.ndarray  # (B+1,) bin edges over [0, 1]
    confidence: np.ndarray  # (B,) mean confidence in the bin, NaN when empty
    accuracy: np.ndarray  # (B,) fraction right in the bin, NaN when empty
    counts: np.ndarray  # (B,) digits in the bin


@dataclass(frozen=True)
class Evaluation:
    """Everything measured on one labelled set at one softmax temperature (arrays are read-only)."""

    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]  # Wilson score interval
    per_class: np.ndarray  # (10,) accuracy per true label, NaN for a label with no digits
    confusion: np.ndarray  # (10, 10) int64, [true, predicted]
    labels: np.ndarray  # (N,) intp
    predictions: np.ndarray  # (N,) intp
    confidences: np.ndarray  # (N,) float32, probability of the predicted class
    logits: np.ndarray  # (N, 10) float32
    mistakes: np.ndarray  # (M,) indices of wrong answers, most confident first
    temperature: float
    nll: float  # mean negative log-likelihood at ``temperature``
    ece: float  # expected calibration error
    reliability: Reliability

    def cell(self, true: int, predicted: int) -> np.ndarray:
        """Indices of the digits labelled ``true`` that the model read as ``predicted``."""
        return np.flatnonzero((self.labels == true) & (self.predictions == predicted))

    def to_dict(self) -> dict:
        """The summary as plain JSON-able values (no per-digit arrays)."""
        per_class = [None if math.isnan(a) else float(a) for a in self.per_class]
        return {
            "accuracy": self.accuracy,
            "accuracy_ci95": list(self.accuracy_ci95),
            "n": self.n,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
            "ece": self.ece,
            "nll": self.nll,
            "temperature": self.temperature,
            "mistakes": int(len(self.mistakes)),
        }


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion.

    Parameters
    ----------
    successes, n : int
        Right answers and trials; ``n == 0`` gives ``(0.0, 1.0)``.
    z : float
        Normal quantile (1.96 for 95%).

    Returns
    -------
    (low, high) : tuple of float
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def calibration(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> tuple[float, Reliability]:
    """Expected calibration error and the reliability curve over ``bins`` equal-width bins.

    Parameters
    ----------
    confidences : ndarray, shape (N,)
        Probability the model gave its answer.
    correct : ndarray of bool, shape (N,)
        Whether that answer was right.
    bins : int

    Returns
    -------
    ece : float
        ``sum_b |B_b| / N * |accuracy_b - confidence_b|``.
    reliability : Reliability
    """
    # Counted here rather than with sklearn.calibration.calibration_curve: that returns only
    # the non-empty bins and not how many digits each holds, which the ECE weights by and
    # the reliability plot shows (so the same bincounts would be needed again), and it
    # raises on an empty set. tests/core/test_evaluate.py checks the curve against it.
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 goes to the first bin
    idx = np.clip(np.ceil(confidences * bins).astype(np.intp) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=confidences, minlength=bins)
    right_sum = np.bincount(idx, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        accuracy = np.where(counts > 0, right_sum / counts, np.nan)
    n = max(len(confidences), 1)
    ece = float(np.abs(right_sum - conf_sum).sum() / n)
    rel = Reliability(edges=_frozen(edges), confidence=_frozen(mean_conf), accuracy=_frozen(accuracy),
                      counts=_frozen(counts.astype(np.int64)))
    return ece, rel


def compute_logits(model: MLP, images: np.ndarray, batch: int = 1000, progress=None, cancel=None) -> np.ndarray:
    """Logits of ``model`` for every image, (N, 10) float32, in batches.

    ``progress(done, total)`` is called after each batch; ``cancel()`` returning True
    raises ``EvaluationCancelled`` before the next one.
    """
    n = len(images)
    out = np.empty((n, model.config.n_out), dtype=np.float32)  # (N, 10)
    for s in range(0, n, batch):
        if cancel is not None and cancel():
            raise EvaluationCancelled("evaluation cancelled")
        out[s:s + batch] = model.logits(images[s:s + batch])
        if progress is not None:
            progress(min(s + batch, n), n)
    return out


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> Evaluation:
    """An ``Evaluation`` from precomputed logits (N, 10) and labels (N,)."""
    from sklearn.metrics import confusion_matrix

    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels).astype(np.intp)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: must be a positive number, got {temperature}")
    n, n_classes = logits.shape
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels: expected values 0..{n_classes - 1}")
    probs = softmax(logits, temperature)  # (N, 10)
    pred = probs.argmax(axis=1).astype(np.intp)
    conf = probs[np.arange(n), pred].astype(np.float32)
    correct = pred == labels
    confusion = np.zeros((n_classes, n_classes), np.int64)  # (10, 10); scikit-learn refuses an empty set
    if n:
        confusion[...] = confusion_matrix(labels, pred, labels=np.arange(n_classes))
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    wrong = np.flatnonzero(~correct)
    mistakes = wrong[np.argsort(-conf[wrong], kind="stable")]
    n_right = int(correct.sum())
    # From the logits, not sklearn.metrics.log_loss of the probabilities: at temperature
    # 0.05 the shipped model gives one test digit's label a float32 probability of 0,
    # which log_loss clips, reporting 0.086 where the NLL is 0.220.
    nll = cross_entropy(logits.astype(np.float64), labels, temperature) if n else float("nan")
    ece, rel = calibration(conf, correct)
    return Evaluation(
        n=int(n), accuracy=n_right / n if n else float("nan"), accuracy_ci95=wilson_interval(n_right, n),
        per_class=_frozen(per_class), confusion=_frozen(confusion), labels=_frozen(labels),
        predictions=_frozen(pred), confidences=_frozen(conf), logits=_frozen(logits),
        mistakes=_frozen(mistakes), temperature=float(temperature), nll=nll, ece=ece, reliability=rel,
    )


def evaluate_model(model: MLP, images: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                   progress=None, cancel=None, batch: int = 1000) -> Evaluation:
    """Measure ``model`` on a labelled set.

    Parameters
    ----------
    model : MLP
    images : ndarray, (N, 28, 28) uint8 or (N, 784) float in [0, 1]
    labels : ndarray, shape (N,)
    temperature : float
        Softmax temperature for the probabilities (confidences, calibration, NLL); the
        answers themselves do not depend on it.
    progress : callable, optional
        ``progress(done, total)`` after each batch.
    cancel : callable, optional
        Returning True stops before the next batch with ``EvaluationCancelled``.

    Returns
    -------
    Evaluation
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    logits = compute_logits(model, images, batch, progress, cancel)
    return evaluate_logits(logits, labels, temperature)


def fit_temperature(source, labels: np.ndarray, images: np.ndarray | None = None,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """Softmax temperature minimising the mean negative log-likelihood of ``labels``.

    Parameters
    ----------
    source : MLP or ndarray
        A model (then ``images`` are required) or logits (N, 10).
    labels : ndarray, shape (N,)
    images : ndarray, optional
        The held-out digits when ``source`` is a model. Never the test set: use the
        validation split (``validation_split``).
    bounds : (float, float)
        Search range for T; the search runs over log T.

    Returns
    -------
    float
        The fitted temperature (> 1 softens an over-confident model).
    """
    from scipy.optimize import minimize_scalar

    if isinstance(source, MLP):
        if images is None:
            raise ValueError("fit_temperature: a model needs the images to read")
        logits = compute_logits(source, images)
    else:
        logits = np.asarray(source)
    logits = logits.astype(np.float64)  # (N, 10)
    labels = np.asarray(labels).astype(np.intp)
    if len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"fit_temperature: need matching, non-empty logits and labels, got {len(logits)} and {len(labels)}")

    def nll(log_t: float) -> float:
        return cross_entropy(logits, labels, math.exp(log_t))

    lo, hi = (math.log(b) for b in bounds)
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(res.x))


def validation_split(mnist, train_config=None) -> tuple[np.ndarray, np.ndarray]:
    """The validation digits a model was trained without: (images (V, 28, 28) uint8, labels (V,)).

    Recovers the same seeded split ``train.Trainer`` made from ``train_config`` (a
    ``TrainConfig`` or its dict, as stored in a model's metadata; default settings when
    None).

    Raises
    ------
    ValueError
        The config holds out no validation digits, or is not a training config.
    """
    from digitpad.core.train import TrainConfig, split_indices

    if train_config is None:
        config = TrainConfig()
    elif isinstance(train_config, TrainConfig):
        config = train_config
    elif not isinstance(train_config, dict):
        raise ValueError(f"train_config must be an object, not {type(train_config).__name__}")
    else:
        try:
            config = TrainConfig.from_dict(train_config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the model's train_config does not describe a run ({e})") from None
    if config.val_size == 0:
        raise ValueError("this model was trained without a validation split (val_size 0)")
    _, val = split_indices(len(mnist.train_labels), config)
    return np.asarray(mnist.train_images)[val], np.asarray(mnist.train_labels)[val]


def saliency(model: MLP, x28: np.ndarray, cls: int, trace: Trace | None = None) -> np.ndarray:
    """Which pixels pushed the score of ``cls`` up (positive) or down (negative).

    Parameters
    ----------
    model : MLP
    x28 : ndarray, (28, 28) or (784,)
        One digit, float in [0, 1] (uint8 is scaled).
    cls : int
    trace : Trace, optional
        ``model``'s trace of this digit (a ``Reading`` carries it): no forward pass then.

    Returns
    -------
    ndarray, (28, 28) float32
        Gradient of logit ``cls`` with respect to the input, times the input. For a
        network with no hidden layer this is ``W[:, cls] * x``.
    """
    x = as_batch(x28, model.config.n_in)[:1]  # (1, 784)
    grad = model.input_gradient(x, int(cls), trace)  # (1, 784)
    return (grad[0] * x[0]).astype(np.float32).reshape(28, 28)


def top_units(model: MLP, x28: np.ndarray, k: int = 8, trace: Trace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first hidden layer's ``k`` most active units for one digit, and their weight images.

    Parameters
    ----------
    model : MLP
    x28 : ndarray, (28, 28) or (784,)
    k : int
    trace : Trace, optional
        ``model``'s trace of this digit (a ``Reading`` carries it): no forward pass then.

    Returns
    -------
    indices : ndarray, (k,) intp
        Units sorted by activation, largest first (fewer when the layer is smaller; empty
        for a network with no hidden layer).
    images : ndarray, (k, 28, 28) float32
        Each unit's incoming weights as an image.
    """
    if model.n_layers < 2:
        return np.empty(0, np.intp), np.empty((0, 28, 28), np.float32)
    if trace is None:
        trace = model.trace(as_batch(x28, model.config.n_in)[:1])  # (1, 784) in
    act = trace.activations[0][0]  # (H1,)
    k = min(int(k), len(act))
    order = np.argsort(-act, kind="stable")[:k]
    images = model.weights[0][:, order].T.reshape(k, 28, 28).astype(np.float32)  # (k, 28, 28)
    return order.astype(np.intp), images


def map_to_input(image28: np.ndarray, pre, size: int) -> np.ndarray:
    """Carry a 28x28 map (a saliency) back onto the picture ``preprocess`` read.

    Parameters
    ----------
    image28 : ndarray, (28, 28)
        Values on the network's input grid.
    pre : Preprocessed
        The record of what ``preprocess`` did to the picture: ``input_shape``, the ink's
        ``bbox``, ``scale`` (output px per input px) and ``shift``. Preprocessing fits the
        ink's box centred on (14, 14) + shift, so an input point (y, x) lands at
        ``14 + shift + scale * ((y, x) - bbox centre)``.
    size : int
        Side of the result.

    Returns
    -------
    ndarray, (size, size) float32
        The map over the square in which the picture is shown centred (letterboxed), as
        the canvas shows it; zero outside the picture and where the map is zero. A blank
        result gives zeros.
    """
    from scipy import ndimage as ndi

    out = np.zeros((size, size), np.float32)
    if getattr(pre, "blank", False) or pre.bbox is None or not pre.scale > 0:
        return out
    h, w = pre.input_shape[:2]
    side = max(h, w)
    step = side / size  # input px per result px
    r0, r1, c0, c1 = pre.bbox
    dy, dx = pre.shift
    centres = (np.arange(size) + 0.5) * step  # (size,) in the square's px
    ys = 14.0 + dy + pre.scale * (centres - (side - h) / 2.0 - (r0 + r1) / 2.0) - 0.5  # (size,) output index
    xs = 14.0 + dx + pre.scale * (centres - (side - w) / 2.0 - (c0 + c1) / 2.0) - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")  # (size, size)
    ndi.map_coordinates(np.asarray(image28, np.float32), [yy, xx], output=out, order=1, mode="constant", cval=0.0)
    return out

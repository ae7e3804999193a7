"""Activations, their derivatives, softmax and cross-entropy, as small in-place functions.

Each activation lives in two name tables: ``ACTIVATIONS[name](x)`` overwrites ``x`` with
f(x), and ``DERIVATIVES[name](out, delta)`` multiplies ``delta`` in place by f'(z),
expressed through the layer's *output* ``out = f(z)`` so the pre-activation need not be
kept. The sigmoid's derivative out * (1 - out) is at most 0.25: that bound, multiplied
layer after layer, is why gradients vanish in deep sigmoid networks.
"""

from __future__ import annotations

import numpy as np

LEAKY_SLOPE = 0.01


def identity(x: np.ndarray) -> np.ndarray:
    return x


def relu(x: np.ndarray) -> np.ndarray:
    np.maximum(x, 0, out=x)
    return x


def leaky_relu(x: np.ndarray) -> np.ndarray:
    # max(x, a*x) equals x for x >= 0 and a*x below, for 0 < a < 1
    np.maximum(x, x * LEAKY_SLOPE, out=x)
    return x


def tanh(x: np.ndarray) -> np.ndarray:
    np.tanh(x, out=x)
    return x


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) written as 0.5 * (1 + tanh(x / 2)): no overflow for any x
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def identity_derivative(out: np.ndarray, delta: np.ndarray) -> np.ndarray:
    return delta


def relu_derivative(out: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # f'(z) = 1 where out > 0, else 0 (a unit whose input stays negative gets no gradient)
    np.multiply(delta, out > 0, out=delta)
    return delta


def leaky_relu_derivative(out: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # one masked multiply in place (boolean indexing would gather and scatter the entries)
    np.multiply(delta, delta.dtype.type(LEAKY_SLOPE), out=delta, where=out <= 0)
    return delta


def tanh_derivative(out: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # f'(z) = 1 - tanh(z)^2 = 1 - out^2
    delta *= 1.0 - out * out
    return delta


def sigmoid_derivative(out: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # f'(z) = s(z) (1 - s(z)) = out (1 - out) <= 0.25
    delta *= out * (1.0 - out)
    return delta


ACTIVATIONS = {
    "identity": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
}

DERIVATIVES = {
    "identity": identity_derivative,
    "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative,
    "tanh": tanh_derivative,
    "sigmoid": sigmoid_derivative,
}

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")


def _shifted(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``(logits - row max) / temperature`` in float64, every entry in [-inf, 0] and each row's max 0.

    The max is removed *before* dividing, so a tiny temperature sends the other scores to
    -inf instead of overflowing every score to inf (which would tie them all). Scores that
    overflowed in the network itself (huge weights) are kept in order: +inf ranks above any
    finite score, and a NaN score ranks below every other one.
    """
    z = np.array(logits, dtype=np.float64)  # (N, C), a copy
    z[np.isnan(z)] = -np.inf
    m = z.max(axis=-1, keepdims=True)  # (N, 1)
    z = np.where(np.isposinf(m), np.where(np.isposinf(z), 0.0, -np.inf), z)  # rows with +inf scores
    z -= np.where(np.isfinite(m), m, 0.0)
    z = np.where(np.isneginf(z).all(axis=-1, keepdims=True), 0.0, z)  # no usable score at all: all equal
    with np.errstate(over="ignore", under="ignore"):
        z /= temperature
    return z


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax, stable for any logits and any positive temperature (float64 inside)."""
    z = _shifted(logits, temperature)  # (N, C), row max 0
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))  # the sum is >= 1: the max contributes exp(0)
    with np.errstate(over="ignore"):  # a log-probability below float32's range is -inf there
        return z.astype(np.result_type(logits, np.float32), copy=False)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax: scores in, probabilities that sum to 1 out.

    Finite for any scores (including inf and NaN from a network with huge weights) and any
    positive temperature, and the most probable class is the highest score whenever the
    temperature leaves the scores apart (see ``TEMPERATURE_RANGE`` in ``model_io``).

    Parameters
    ----------
    logits : ndarray, shape (N, C) or (C,)
    temperature : float
        Divides the scores first; above 1 softens the probabilities, below 1 sharpens them.
    """
    z = _shifted(logits, temperature)  # (N, C), row max 0
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)  # >= 1: the max contributes exp(0)
    return z.astype(np.result_type(logits, np.float32), copy=False)


def row_max(z: np.ndarray) -> np.ndarray:
    """Each row's largest score of the (N, C) array ``z``, as (N, 1); NaN where a row has one.

    ``argmax`` and one gather: a few times faster than ``z.max(axis=1)``, which NumPy
    reduces slowly over rows as short as the ten class scores (the training hot path).
    """
    z = z.reshape(-1, z.shape[-1])  # (N, C), a view of contiguous scores
    idx = z.argmax(axis=1)  # (N,); argmax stops at a NaN, as max propagates it
    idx += np.arange(0, z.size, z.shape[1])
    return z.reshape(-1).take(idx)[:, None]


def cross_entropy(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                  reduction: str = "mean") -> float:
    """Cross-entropy of integer ``labels`` under softmax(``logits`` / ``temperature``): the loss.

    The one loss of digitpad: the training step, validation, the test set and the
    temperature fit all measure it here. Computed through the log-sum-exp with each row's
    max removed before dividing by the temperature, so logits of +-1e4 and temperatures
    down to 0.05 give a finite loss. Scores that are not finite (a network that blew up)
    give NaN, which training reads as divergence; unlike ``log_softmax``, which ranks such
    scores for display, a loss must not hide them. Works in the logits' precision (float32
    in training, where it runs every step).

    Parameters
    ----------
    logits : ndarray, shape (N, C)
        Scores before softmax.
    labels : ndarray of int, shape (N,)
    temperature : float
        Divides the scores (1 for training).
    reduction : {"mean", "sum"}
        Mean over the N rows, or their sum (for totals over several batches).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    z = np.asarray(logits, dtype=np.result_type(logits, np.float32))  # (N, C)
    if not np.isfinite(z).all():
        return float("nan")
    labels = np.asarray(labels, dtype=np.intp)
    with np.errstate(over="ignore"):  # a score below the range of the dtype is -inf: probability 0
        shifted = z - row_max(z)  # (N, C), <= 0
        if temperature != 1.0:
            shifted /= temperature
    lse = np.log(np.exp(shifted).sum(axis=-1))  # (N,), >= 0: the max contributes exp(0)
    lse -= shifted[np.arange(len(labels)), labels]  # (N,): the losses
    total = float(lse.sum())
    return total if reduction == "sum" else total / len(labels)


def cross_entropy_step(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """The training step's loss: overwrite the (N, C) ``logits`` with d(mean loss)/d(logits) = (softmax - onehot) / N.

    Returns the mean cross-entropy (as ``cross_entropy`` measures it) and how many rows the
    scores got right, from the one pass over the scores. Non-finite scores give a NaN loss
    and leave ``logits`` undefined (training stops there as diverged).
    """
    n = len(labels)
    if not np.isfinite(logits).all():
        return float("nan"), 0
    rows = np.arange(n)
    correct = int((logits.argmax(axis=1) == labels).sum())
    logits -= row_max(logits)  # (N, C), <= 0
    label_scores = logits[rows, labels]  # (N,), a copy
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1, keepdims=True)  # (N, 1), >= 1: the max contributes exp(0)
    loss = (float(np.log(sums).sum()) - float(label_scores.sum())) / n
    logits /= sums  # the softmax
    logits[rows, labels] -= 1.0
    logits *= logits.dtype.type(1.0 / n)
    return loss, correct

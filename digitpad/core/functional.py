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
    delta[out <= 0] *= LEAKY_SLOPE
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


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax, stable for any finite logits (log-sum-exp with the max removed)."""
    z = np.asarray(logits, dtype=np.result_type(logits, np.float32)) / temperature  # (N, C)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax: scores in, probabilities that sum to 1 out.

    Parameters
    ----------
    logits : ndarray, shape (N, C) or (C,)
    temperature : float
        Divides the scores first; above 1 softens the probabilities, below 1 sharpens them.
    """
    z = np.asarray(logits, dtype=np.result_type(logits, np.float32)) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def softmax_inplace(z: np.ndarray) -> np.ndarray:
    """Overwrite the (N, C) scores ``z`` with their softmax (the training hot path)."""
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer ``labels`` under softmax(``logits``), computed stably.

    Logits of +-1e4 give a finite loss: the log-sum-exp never exponentiates a large number.
    """
    logp = log_softmax(logits)  # (N, C)
    labels = np.asarray(labels)
    return float(-logp[np.arange(len(labels)), labels].mean())


def cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy with respect to the logits: (softmax - onehot) / N."""
    g = softmax(logits)  # (N, C)
    n = len(labels)
    g[np.arange(n), labels] -= 1.0
    g /= n
    return g

"""Per-layer statistics of a training step: activation and gradient histograms, dead units, update sizes.

The trainer asks for them every ``stats_every`` steps; the live panes draw them. Activations
are measured on a fixed probe batch (the same digits every time, so the pictures change
only because the network does); gradients are the ones of the step's own batch, read before
the optimiser changes them. Histograms count over fixed edges, so one bin means the same
range at every step and in every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitpad.core.mlp import MLP, Workspace

GRAD_LOG_EDGES = np.linspace(-10.0, 0.0, 41)  # histogram of log10 |gradient|
ACT_EDGES = {
    "relu": np.linspace(0.0, 6.0, 41),
    "leaky_relu": np.linspace(-0.5, 6.0, 41),
    "tanh": np.linspace(-1.0, 1.0, 41),
    "sigmoid": np.linspace(0.0, 1.0, 41),
}
LOGIT_EDGES = np.linspace(-20.0, 20.0, 41)
SATURATION = 0.02  # a sigmoid/tanh unit closer than this to its bounds is saturated


@dataclass(frozen=True)
class LayerStats:
    """One weight layer's health at one step (activations over the probe batch, gradients of the batch)."""

    act_mean: float
    act_std: float
    act_hist: np.ndarray  # counts over ACT_EDGES[activation] (LOGIT_EDGES for the output layer)
    dead_fraction: float  # ReLU: units that output 0 for every probe digit; sigmoid/tanh: saturated
    grad_norm: float  # L2 norm of dL/dW
    bias_grad_norm: float
    grad_hist: np.ndarray  # counts of log10|dL/dW| over GRAD_LOG_EDGES
    update_ratio: float  # ||delta W|| / ||W|| of this step's update


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts over fixed, equal-width ``edges``, values outside folded into the end bins."""
    # Python floats keep float32 values in float32 (NumPy float64 scalars would make every
    # temporary float64, several times slower here); one temporary, changed in place
    lo, hi = float(edges[0]), float(edges[-1])
    n = len(edges) - 1
    scaled = np.clip(values, lo, hi)
    scaled -= lo
    scaled *= n / (hi - lo)
    idx = scaled.astype(np.intp)
    np.minimum(idx, n - 1, out=idx)
    return np.bincount(idx.ravel(), minlength=n).astype(np.int32)


def dead_fraction(activation: str, out: np.ndarray) -> float:
    """Fraction of units dead (ReLU kinds) or saturated (sigmoid, tanh) on every probe digit.

    ``out`` is a hidden layer's output over the probe batch, (P, n_units).
    """
    if activation in ("relu", "leaky_relu"):
        dead = (out <= 0).all(axis=0)
    elif activation == "sigmoid":
        dead = ((out < SATURATION) | (out > 1 - SATURATION)).all(axis=0)
    else:
        dead = (np.abs(out) > 1 - SATURATION).all(axis=0)
    return float(dead.mean())


def gradient_stats(grad_w, grad_b) -> list[tuple[float, float, np.ndarray]]:
    """Per layer: (norm of dL/dW, norm of dL/db, histogram of log10|dL/dW|), read before the update."""
    out = []
    for g, gb in zip(grad_w, grad_b):
        sample = g.ravel()[:: max(1, g.size // 65536)]  # at most ~64k values per histogram
        with np.errstate(divide="ignore"):
            logg = np.log10(np.abs(sample))
        logg[~np.isfinite(logg)] = GRAD_LOG_EDGES[0]
        out.append((float(np.linalg.norm(g)), float(np.linalg.norm(gb)), histogram(logg, GRAD_LOG_EDGES)))
    return out


def layer_stats(model: MLP, probe: np.ndarray, grads, updates=None, ws: Workspace | None = None) -> tuple:
    """Per-layer statistics: activations on ``probe``, gradients from ``gradient_stats``.

    Parameters
    ----------
    model : MLP
    probe : ndarray, (P, 784) float32
        The fixed digits the activations are measured on.
    grads : list
        ``gradient_stats`` of this step, one tuple per layer.
    updates : list of ndarray, optional
        ``updates[i]`` is the change this step made to ``weights[i]`` (the optimiser's own
        buffer, so nothing is copied), for the update-to-weight ratio.
    ws : Workspace, optional
        Buffers for the P probe digits, reused at every call (the trainer keeps one); the
        probe goes through the training forward pass in them, without dropout.

    Returns
    -------
    tuple of LayerStats, one per weight layer
    """
    if ws is None:
        ws = Workspace.for_model(model, len(probe))
    model.forward_train(probe, ws)
    outs = ws.outs  # hidden outputs, then the logits
    act = model.config.activation
    stats = []
    for i in range(model.n_layers):
        hidden = i < model.n_layers - 1
        out = outs[i]  # (P, n_i)
        grad_norm, bias_grad_norm, grad_hist = grads[i]
        w_norm = float(np.linalg.norm(model.weights[i]))
        if updates is not None and w_norm > 0:
            ratio = float(np.linalg.norm(updates[i])) / w_norm
        else:
            ratio = float("nan")
        stats.append(LayerStats(
            act_mean=float(out.mean()),
            act_std=float(out.std()),
            act_hist=histogram(out, ACT_EDGES[act] if hidden else LOGIT_EDGES),
            dead_fraction=dead_fraction(act, out) if hidden else 0.0,
            grad_norm=grad_norm,
            bias_grad_norm=bias_grad_norm,
            grad_hist=grad_hist,
            update_ratio=ratio,
        ))
    return tuple(stats)

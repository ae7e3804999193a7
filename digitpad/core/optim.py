"""Optimisers (Adam, SGD with momentum) that update parameter lists in place, and learning-rate schedules.

An optimiser is built once per run around the model's parameter lists and keeps its state
(moments) in buffers of the same shapes; ``update(params, grads, lr)`` changes ``params``
in place. L2 weight decay is added to the gradients of weight matrices only (``decay``
flags per parameter), never to biases.
"""

from __future__ import annotations

import math

import numpy as np

from digitpad.core import kernels

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


class Adam:
    """Adam (Kingma & Ba), one fused pass per parameter vector (``kernels.adam``), bias correction in the step size.

    The moments are kept rescaled, ``M = m / (1 - beta1)`` and ``V = v / (1 - beta2)``, so
    their updates need no multiplication of the gradient (``M = b1 M + g``, ``V = b2 V + g^2``)
    and the constants go into the step size and eps instead. Same update as the textbook
    form up to float32 rounding.
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=None):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.decay = decay if decay is not None else [p.ndim > 1 for p in params]
        self.m = [np.zeros_like(p) for p in params]  # first moment / (1 - beta1)
        self.v = [np.zeros_like(p) for p in params]  # second moment / (1 - beta2)
        self.tmp = [np.empty_like(p) for p in params]
        self.last_update = self.tmp  # after update(): the step subtracted from each parameter
        self._flat_state = [(_flat(m), _flat(v), _flat(u)) for m, v, u in zip(self.m, self.v, self.tmp)]
        self.t = 0

    def update(self, params, grads, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # textbook: p -= lr_t m / (sqrt(v) + eps_t), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), eps_t = eps sqrt(1 - b2^t);
        # with m = (1 - b1) M and sqrt(v) = sqrt(1 - b2) sqrt(V) that is p -= step M / (sqrt(V) + eps_v)
        corr = math.sqrt(1.0 - b2**self.t)
        unscale = math.sqrt(1.0 - b2)
        f32 = np.float32
        step = f32(lr * corr / (1.0 - b1**self.t) * (1.0 - b1) / unscale)
        eps = f32(self.eps * corr / unscale)
        b1, b2 = f32(b1), f32(b2)
        for p, g, (m, v, u), dec in zip(params, grads, self._flat_state, self.decay):
            wd = f32(self.weight_decay if dec else 0.0)
            # u (tmp): the step subtracted; the kernel runs over flat views of contiguous arrays
            kernels.adam(_flat(p), _flat(g), m, v, u, b1, b2, step, eps, wd)


class SGD:
    """Stochastic gradient descent with momentum (optionally Nesterov)."""

    def __init__(self, params, momentum=0.9, nesterov=False, weight_decay=0.0, decay=None):
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.decay = decay if decay is not None else [p.ndim > 1 for p in params]
        self.velocity = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]
        # after update(): the step added to each parameter
        self.last_update = self.tmp if nesterov else self.velocity

    def update(self, params, grads, lr: float) -> None:
        mu = np.float32(self.momentum)
        lr = np.float32(lr)
        for p, g, vel, tmp, dec in zip(params, grads, self.velocity, self.tmp, self.decay):
            if dec and self.weight_decay:
                np.multiply(p, np.float32(self.weight_decay), out=tmp)
                g += tmp
            # v = mu v - lr g ; p += v   (Nesterov: p += mu v - lr g)
            vel *= mu
            np.multiply(g, lr, out=tmp)
            vel -= tmp
            if self.nesterov:
                if mu:  # mu v - lr g = mu (v - lr g / mu), in place in tmp (which holds lr g)
                    tmp /= mu
                    np.subtract(vel, tmp, out=tmp)
                    tmp *= mu
                else:
                    np.negative(tmp, out=tmp)
                p += tmp
            else:
                p += vel


def _flat(a: np.ndarray) -> np.ndarray:
    """``a`` as a 1-D view; a non-contiguous array would be copied, so an update would be lost."""
    if not a.flags.c_contiguous:
        raise ValueError("optimizer: parameters and gradients must be contiguous arrays")
    return a.reshape(-1)


def make_optimizer(name: str, params, weight_decay: float = 0.0, momentum: float = 0.9, nesterov: bool = False,
                   decay=None):
    """An optimiser for ``params``; ``decay[i]`` says whether L2 applies to ``params[i]`` (default: matrices)."""
    if name == "adam":
        return Adam(params, weight_decay=weight_decay, decay=decay)
    if name == "sgd":
        return SGD(params, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, decay=decay)
    raise ValueError(f"optimizer: unknown {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def learning_rate(schedule: str, base_lr: float, step: int, total_steps: int, warmup: float = 0.25) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``.

    constant: ``base_lr`` throughout. cosine: from ``base_lr`` down to ~0 along half a
    cosine. onecycle: linear warm-up from base_lr/25 to base_lr over the first ``warmup``
    fraction, then cosine annealing to base_lr/1e4.
    """
    total = max(int(total_steps), 1)
    t = min(max(step, 0), total) / total
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "onecycle":
        start, end = base_lr / 25.0, base_lr / 1e4
        if t < warmup:
            return start + (base_lr - start) * t / warmup
        u = (t - warmup) / max(1.0 - warmup, 1e-12)
        return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ValueError(f"schedule: unknown {schedule!r}; choose one of {', '.join(SCHEDULES)}")

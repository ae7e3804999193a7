"""The network: a fully connected MLP with ReLU-kind hidden layers and a softmax output.

``MLP`` holds the parameters as parallel lists ``weights[i]`` (n_in, n_out) and
``biases[i]`` (n_out,), float32. It has two forward passes: the inference family
(``trace``, ``logits``, ``predict_proba``, ``predict``: one loop, ``_forward``, with a
BLAS-free path for a single sample) keeps nothing between calls, and the training
pair ``forward_train`` / ``backward`` that works inside a ``Workspace`` of buffers
allocated once per batch size and reused every step, so a training step allocates
almost nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from digitpad.core import kernels
from digitpad.core.functional import (
    ACTIVATIONS,
    DERIVATIVES,
    HIDDEN_ACTIVATIONS,
    softmax,
)

N_PIXELS = 28 * 28
N_CLASSES = 10
MAX_PARAMS = 64 * 1024 * 1024  # 256 MB of float32: far above any MLP digitpad trains; model files are held to it


@dataclass(frozen=True)
class MLPConfig:
    """Shape of the network: input size, hidden layer sizes, output size, hidden activation."""

    n_in: int = N_PIXELS
    hidden: tuple[int, ...] = (256, 128)
    n_out: int = N_CLASSES
    activation: str = "relu"  # relu | leaky_relu | tanh | sigmoid

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"activation: unknown {self.activation!r}; choose one of {', '.join(HIDDEN_ACTIVATIONS)}"
            )
        for name, value in (("n_in", self.n_in), ("n_out", self.n_out)):
            if int(value) < 1:
                raise ValueError(f"{name}: must be at least 1, got {value}")
        for h in self.hidden:
            if h < 1 or h > 16384:
                raise ValueError(f"hidden: layer sizes must be between 1 and 16384, got {h}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_in, *self.hidden, self.n_out)

    @property
    def n_params(self) -> int:
        """Weights and biases of a network of this shape."""
        sizes = self.layer_sizes
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


@dataclass(frozen=True)
class Trace:
    """Everything one forward pass computed, layer by layer (for the panes that show inside the network)."""

    pre: list  # [z_1 .. z_L]: pre-activations, (N, n_i); the last is the logits
    activations: list  # [a_1 .. a_{L-1}]: hidden outputs, (N, n_i)
    logits: np.ndarray  # (N, n_out)
    probabilities: np.ndarray  # (N, n_out)


def _init_scale(activation: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation matched to the activation: He for ReLU kinds, Glorot for tanh/sigmoid."""
    if activation in ("relu", "leaky_relu"):
        return np.sqrt(2.0 / fan_in)
    # Glorot for tanh and sigmoid. No compensation for the sigmoid's slope of 1/4: that
    # factor per layer is the vanishing gradient this app exists to show.
    return np.sqrt(2.0 / (fan_in + fan_out))


def as_batch(x: np.ndarray, n_in: int) -> np.ndarray:
    """Accept (n_in,), (28, 28), (N, 28, 28) or (N, n_in); return (N, n_in) float (uint8 scaled to [0, 1])."""
    x = np.asarray(x)
    if x.ndim == 1 or (x.ndim == 2 and x.size == n_in and x.shape[1] != n_in):
        x = x.reshape(1, -1)
    elif x.ndim == 3:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"input: expected {n_in} values per sample, got shape {np.shape(x)}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1 / 255)
    if x.dtype == np.float64:
        return x  # kept for float64 checks (gradient tests); the app passes float32
    return np.ascontiguousarray(x, dtype=np.float32)


class MLP:
    """A fully connected network with parameters as parallel lists ``weights`` and ``biases``."""

    def __init__(self, config: MLPConfig = MLPConfig(), rng: np.random.Generator | int | None = 0):
        self.config = config
        rng = np.random.default_rng(rng)
        sizes = config.layer_sizes
        self.weights = []
        self.biases = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = _init_scale(config.activation, fan_in, fan_out)
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)  # (n_in, n_out)
            w *= np.float32(std)
            self.weights.append(w)
            self.biases.append(np.zeros(fan_out, dtype=np.float32))

    @classmethod
    def from_arrays(cls, config: MLPConfig, weights, biases) -> "MLP":
        """Build a network around given arrays (copied to float32), checking every shape."""
        model = cls.__new__(cls)
        model.config = config
        sizes = config.layer_sizes
        if len(weights) != len(sizes) - 1 or len(biases) != len(sizes) - 1:
            raise ValueError(
                f"layers: expected {len(sizes) - 1} weight matrices and bias vectors for sizes "
                f"{sizes}, got {len(weights)} and {len(biases)}"
            )
        model.weights, model.biases = [], []
        for i, (w, b, n_in, n_out) in enumerate(zip(weights, biases, sizes[:-1], sizes[1:])):
            if np.shape(w) != (n_in, n_out) or np.shape(b) != (n_out,):
                raise ValueError(
                    f"layer {i}: expected weights ({n_in}, {n_out}) and biases ({n_out},), "
                    f"got {np.shape(w)} and {np.shape(b)}"
                )
            model.weights.append(np.array(w, dtype=np.float32, order="C"))
            model.biases.append(np.array(b, dtype=np.float32))
        return model

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def n_params(self) -> int:
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def copy(self) -> "MLP":
        return MLP.from_arrays(self.config, self.weights, self.biases)

    def is_finite(self) -> bool:
        return all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in zip(self.weights, self.biases))

    def describe(self) -> str:
        """Human-readable architecture, e.g. ``784-256-128-10 relu``."""
        return "-".join(str(s) for s in self.config.layer_sizes) + f" {self.config.activation}"

    # ---- inference: keeps nothing -------------------------------------------------------------

    def _forward(self, x: np.ndarray, keep: bool) -> tuple[np.ndarray, list, list]:
        """The inference loop: (logits (N, n_out), pre-activations, hidden outputs); the lists only with ``keep``.

        One sample is one vector, so it goes through NumPy's own loops (``einsum``) rather
        than BLAS: a BLAS call from the GUI thread waits for BLAS's worker threads, which on
        a busy machine (or while a training run keeps them busy) costs tens of milliseconds
        at the tail, where the loops take a fraction of a millisecond every time.
        """
        a = as_batch(x, self.config.n_in)  # (N, n_in)
        act = ACTIVATIONS[self.config.activation]
        one = len(a) == 1
        pre, outs = [], []
        last = self.n_layers - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = np.einsum("i,ij->j", a[0], w)[None] if one else a @ w  # (N, n_i), a new array
            z += b
            if keep:
                pre.append(z)
            if i < last:
                a = act(z.copy() if keep else z)
                if keep:
                    outs.append(a)
            else:
                a = z
        return a, pre, outs

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Output scores before softmax, (N, n_out)."""
        return self._forward(x, keep=False)[0]

    def predict_proba(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Class probabilities, (N, n_out), rows summing to 1."""
        return softmax(self.logits(x), temperature)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1)

    def trace(self, x: np.ndarray, temperature: float = 1.0) -> Trace:
        """Forward pass that keeps every layer's pre-activation and output (a single sample avoids BLAS)."""
        logits, pre, outs = self._forward(x, keep=True)
        return Trace(pre=pre, activations=outs, logits=logits, probabilities=softmax(logits, temperature))

    def input_gradient(self, x: np.ndarray, cls, trace: Trace | None = None) -> np.ndarray:
        """Gradient of the score (logit) of class ``cls`` with respect to the input, (N, n_in).

        ``cls`` is an int or an (N,) array of classes, one per sample. ``trace`` is this
        model's trace of ``x`` when the caller already has it (no forward pass then).
        """
        t = self.trace(x) if trace is None else trace
        n = len(t.logits)
        delta = np.zeros_like(t.logits)  # (N, n_out)
        delta[np.arange(n), np.broadcast_to(np.asarray(cls), (n,))] = 1.0
        deriv = DERIVATIVES[self.config.activation]
        for i in range(self.n_layers - 1, -1, -1):
            delta = delta @ self.weights[i].T  # (N, n_{i})
            if i > 0:
                deriv(t.activations[i - 1], delta)
        return delta

    # ---- training: works in preallocated buffers -------------------------------------------

    def pack_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Move all weights into one flat vector and all biases into another; return both.

        ``weights[i]`` and ``biases[i]`` become views into them, so an optimiser can update
        every weight in a few whole-vector passes instead of a few passes per layer.
        """
        flat_w, views_w = _pack(self.weights)
        flat_b, views_b = _pack(self.biases)
        self.weights, self.biases = views_w, views_b
        return flat_w, flat_b

    def forward_train(self, x: np.ndarray, ws: "Workspace", dropout: float = 0.0, rng=None) -> np.ndarray:
        """Forward pass for training: fills ``ws.outs`` and returns the logits (B, n_out).

        ``x`` is (B, n_in) float32 with B == ws.batch_size. With ``dropout`` > 0, hidden
        outputs are zeroed with that probability and the rest scaled by 1 / (1 - p). The
        logits are ``ws.outs[-1]``; ``loss_step`` turns them into dL/dlogits for ``backward``.
        """
        act = ACTIVATIONS[self.config.activation]
        relu = self.config.activation == "relu"
        last = self.n_layers - 1
        a = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = ws.outs[i]  # (B, n_i)
            np.matmul(a, w, out=z)
            if i < last and relu:
                kernels.bias_relu(z, b)  # one pass for z + b and max(z, 0)
            else:
                z += b
                if i < last:
                    act(z)
            if i < last and dropout > 0.0:
                keep = ws.keep[i]
                rng.random(out=ws.rand[i], dtype=np.float32)
                np.greater_equal(ws.rand[i], np.float32(dropout), out=keep)
                np.multiply(z, keep, out=z)
                z *= np.float32(1.0 / (1.0 - dropout))
            a = z
        return ws.outs[-1]

    @staticmethod
    def loss_step(labels: np.ndarray, ws: "Workspace") -> tuple[float, int]:
        """After ``forward_train``: the batch's mean cross-entropy and correct count, the logits turned into dL/dlogits.

        The loss is NaN when the scores are not finite (the network blew up); ``backward``
        must not follow then.
        """
        labels = np.asarray(labels, dtype=np.intp)  # (B,)
        return kernels.cross_entropy_step(ws.outs[-1], labels)  # outs[-1]: (softmax - onehot) / B

    def backward(self, x: np.ndarray, ws: "Workspace", dropout: float = 0.0) -> None:
        """Backward pass after ``loss_step``: fills ``ws.grad_w`` and ``ws.grad_b`` from dL/dlogits in ``ws.outs[-1]``."""
        deriv = DERIVATIVES[self.config.activation]
        delta = ws.outs[-1]  # (B, n_out)
        for i in range(self.n_layers - 1, -1, -1):
            a_prev = x if i == 0 else ws.outs[i - 1]  # (B, n_{i-1})
            np.matmul(a_prev.T, delta, out=ws.grad_w[i])  # (n_{i-1}, n_i)
            np.matmul(ws.ones, delta, out=ws.grad_b[i])  # (n_i,): the column sums, as one product
            if i == 0:
                break  # the input needs no gradient
            prev = ws.deltas[i - 1]  # (B, n_{i-1})
            np.matmul(delta, self.weights[i].T, out=prev)
            if dropout > 0.0:
                np.multiply(prev, ws.keep[i - 1], out=prev)
                prev *= np.float32(1.0 / (1.0 - dropout))
            if self.config.activation == "relu":
                kernels.relu_backward(prev, a_prev, ws.keep[i - 1])  # the dropout mask buffer is free now
            elif dropout > 0.0 and self.config.activation in ("tanh", "sigmoid"):
                # the derivative needs the outputs before dropout scaled the kept ones
                deriv(a_prev * np.float32(1.0 - dropout), prev)
            else:
                deriv(a_prev, prev)
            delta = prev


def _pack(arrays) -> tuple[np.ndarray, list]:
    """One contiguous float32 vector holding ``arrays`` back to back, and views shaped like them."""
    flat = np.empty(sum(a.size for a in arrays), np.float32)
    views, start = [], 0
    for a in arrays:
        view = flat[start:start + a.size].reshape(a.shape)
        view[...] = a
        views.append(view)
        start += a.size
    return flat, views


@dataclass
class Workspace:
    """Buffers for one batch size, allocated once and reused every step."""

    batch_size: int
    sizes: tuple
    outs: list = field(default_factory=list)  # layer outputs, (B, n_i); last holds probabilities
    deltas: list = field(default_factory=list)  # dL/d(hidden pre-activation), (B, n_i)
    keep: list = field(default_factory=list)  # bool masks for dropout / ReLU, (B, n_i)
    rand: list = field(default_factory=list)  # uniform draws for dropout, (B, n_i)
    ones: np.ndarray = None  # (B,) ones: bias gradients as ones @ delta
    grad_w: list = field(default_factory=list)  # views into grad_flat_w, shaped like the weights
    grad_b: list = field(default_factory=list)
    grad_flat_w: np.ndarray = None
    grad_flat_b: np.ndarray = None

    @classmethod
    def for_model(cls, model: MLP, batch_size: int, dropout: bool = False) -> "Workspace":
        sizes = model.config.layer_sizes
        ws = cls(batch_size=batch_size, sizes=sizes)
        ws.outs = [np.empty((batch_size, n), np.float32) for n in sizes[1:]]
        ws.deltas = [np.empty((batch_size, n), np.float32) for n in sizes[1:-1]]
        ws.keep = [np.empty((batch_size, n), bool) for n in sizes[1:-1]]
        ws.rand = [np.empty((batch_size, n), np.float32) for n in sizes[1:-1]] if dropout else []
        ws.ones = np.ones(batch_size, np.float32)
        ws.grad_flat_w, ws.grad_w = _pack(model.weights)
        ws.grad_flat_b, ws.grad_b = _pack(model.biases)
        return ws

    def view(self, n: int) -> "Workspace":
        """The same buffers cut to a smaller batch (the last batch of an epoch)."""
        if n == self.batch_size:
            return self
        ws = copy.copy(self)
        ws.batch_size = n
        ws.outs = [o[:n] for o in self.outs]
        ws.deltas = [d[:n] for d in self.deltas]
        ws.keep = [k[:n] for k in self.keep]
        ws.rand = [r[:n] for r in self.rand]
        ws.ones = self.ones[:n]
        return ws

"""The training step's elementwise work as fused loops: Adam, the loss and its gradient, bias + ReLU, the batch.

Each kernel does in one pass over memory what NumPy does in several: Adam's update is ten
whole-vector passes in NumPy (its square root alone is a fifth of the time) and one loop
here; the softmax cross-entropy with its gradient and the batch accuracy is a dozen small
calls over a (B, 10) array in NumPy, and one loop here. The loops are compiled by numba
when it is installed (a dependency of digitpad, optional at run time); without it, or with
``DIGITPAD_JIT=0``, the same functions run as NumPy code with the same results up to float32
rounding. ``prepare()`` imports and compiles them once (compiled code is cached on disk, so
later runs only load it); the training loop calls it before its clock starts.

Every kernel works in place on float32 arrays and keeps the NumPy order of operations
where it can: bias + ReLU, the ReLU mask and the gather give the same bits both ways, Adam
the same operations in the same order (no fastmath), the loss sums in float64 here.
Non-finite values propagate as in NumPy, so a run that blew up is still seen by the loss
and finite-weights checks.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from digitpad.core.functional import cross_entropy_step as _numpy_cross_entropy_step

_lock = threading.Lock()
_compiled = None  # the numba kernels once prepared, False when numba is off or missing
_why_not = ""


def _numpy_adam(p, g, m, v, u, b1, b2, step, eps, wd):
    if wd:
        np.multiply(p, wd, out=u)
        g += u
    m *= b1  # M = b1 M + g
    m += g
    np.multiply(g, g, out=u)  # V = b2 V + g^2
    v *= b2
    v += u
    np.sqrt(v, out=u)  # p -= step M / (sqrt(V) + eps)
    u += eps
    np.divide(m, u, out=u)
    u *= step
    p -= u


def _numpy_bias_relu(z, b):
    z += b
    np.maximum(z, 0, out=z)


def _numpy_gather_scaled(images, idx, out):
    np.multiply(images[idx], np.float32(1 / 255), out=out)


def _numpy_relu_backward(delta, out, mask):
    np.greater(out, 0, out=mask)
    np.multiply(delta, mask, out=delta)


def _build(cache: bool):
    """The numba kernels, compiled (or loaded from numba's cache) by one call each on small arrays.

    Raises ImportError without numba.
    """
    import numba

    # error_model="numpy": a division by zero gives inf as in NumPy, instead of a check per
    # element that keeps the loop from being vectorised (five times slower here). No
    # fastmath: the loops keep IEEE arithmetic, so they give NumPy's results.
    jit = numba.njit(cache=cache, nogil=True, error_model="numpy")

    @jit
    def adam(p, g, m, v, u, b1, b2, step, eps, wd):
        for i in range(p.size):
            gi = g[i]
            if wd != 0:
                gi = gi + p[i] * wd
            mi = m[i] * b1 + gi
            vi = v[i] * b2 + gi * gi
            m[i] = mi
            v[i] = vi
            ui = mi / (np.sqrt(vi) + eps) * step
            u[i] = ui
            p[i] = p[i] - ui

    @jit
    def cross_entropy_step(z, labels):
        n, c = z.shape
        total = 0.0
        correct = 0
        scale = np.float32(1.0 / n)
        for r in range(n):
            best = 0
            top = z[r, 0]
            for j in range(c):
                x = z[r, j]
                if not np.isfinite(x):
                    return np.nan, 0
                if x > top:
                    top = x
                    best = j
            label = labels[r]
            if label < 0 or label >= c:
                raise IndexError("labels: a class index is out of range")
            if best == label:
                correct += 1
            total -= z[r, label] - top  # the loss is log(sum exp(z - top)) - (z_label - top)
            s = 0.0
            for j in range(c):
                e = np.exp(z[r, j] - top)
                z[r, j] = e
                s += e
            total += np.log(s)
            inv = np.float32(scale / s)
            for j in range(c):
                z[r, j] = z[r, j] * inv
            z[r, label] -= scale
        return total / n, correct

    @jit
    def bias_relu(z, b):
        n, k = z.shape
        for r in range(n):
            for j in range(k):
                x = z[r, j] + b[j]
                z[r, j] = x if not x < 0 else np.float32(0)

    @jit
    def gather_scaled(images, idx, out):
        scale = np.float32(1 / 255)
        n, k = images.shape
        for r in range(idx.size):
            row = idx[r]
            if row < 0 or row >= n:
                raise IndexError("images: a row index is out of range")
            for j in range(k):
                out[r, j] = np.float32(images[row, j]) * scale

    @jit
    def relu_backward(delta, out, mask):
        d = delta.reshape(-1)
        o = out.reshape(-1)
        for i in range(d.size):
            if not o[i] > 0:
                d[i] = d[i] * np.float32(0)

    kernels = {"adam": adam, "cross_entropy_step": cross_entropy_step, "bias_relu": bias_relu,
               "relu_backward": relu_backward, "gather_scaled": gather_scaled}
    _warm_up(kernels)
    return kernels


def _warm_up(kernels) -> None:
    """Call each kernel once on small float32 arrays: the types training uses, compiled now."""
    f32 = np.float32
    vec = [np.zeros(4, f32) for _ in range(5)]
    kernels["adam"](*vec, f32(0.9), f32(0.999), f32(1e-3), f32(1e-8), f32(0))
    z = np.zeros((2, 3), f32)
    kernels["cross_entropy_step"](z, np.zeros(2, np.intp))
    kernels["bias_relu"](z, np.zeros(3, f32))
    kernels["relu_backward"](z, z, np.zeros((2, 3), bool))
    kernels["gather_scaled"](np.zeros((3, 3), np.uint8), np.zeros(2, np.intp), z)


NUMPY = {"adam": _numpy_adam, "cross_entropy_step": _numpy_cross_entropy_step, "bias_relu": _numpy_bias_relu,
         "relu_backward": _numpy_relu_backward, "gather_scaled": _numpy_gather_scaled}

# The NumPy versions until prepare() swaps in compiled ones; callers look them up on the
# module (``kernels.adam(...)``) at each call.
adam = _numpy_adam
cross_entropy_step = _numpy_cross_entropy_step
bias_relu = _numpy_bias_relu
relu_backward = _numpy_relu_backward
gather_scaled = _numpy_gather_scaled


def prepare() -> bool:
    """Compile the kernels (or load them from numba's cache) once per process; True if they are compiled.

    Falls back to the NumPy versions, for good, when numba is missing, fails, or
    ``DIGITPAD_JIT=0`` is set; ``status()`` says which.
    """
    global _compiled, _why_not
    with _lock:
        if _compiled is None:
            kernels = None
            if os.environ.get("DIGITPAD_JIT", "1").strip() == "0":
                _why_not = "DIGITPAD_JIT=0"
            else:
                try:
                    try:
                        kernels = _build(cache=True)
                    except RuntimeError:  # no folder numba can cache in: compile every run
                        kernels = _build(cache=False)
                except ImportError:
                    _why_not = "numba is not installed"
                except Exception as e:  # a numba that cannot compile here: NumPy still trains
                    _why_not = f"numba failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            _compiled = kernels or False
            if kernels:
                globals().update(kernels)
    return bool(_compiled)


def compiled() -> dict | None:
    """The compiled kernels by name once ``prepare()`` has made them, else None."""
    return dict(_compiled) if _compiled else None


def status() -> str:
    """One line for logs and benchmarks: which kernels the training step uses."""
    if _compiled is None:
        return "NumPy kernels (not prepared)"
    if _compiled:
        import numba

        return f"compiled kernels (numba {numba.__version__})"
    return f"NumPy kernels ({_why_not})"

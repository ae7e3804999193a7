"""Random distortions of digit batches for training, and a background prefetcher.

This module owns data augmentation: a random affine map (rotation, isotropic scale,
horizontal shear, translation) combined with an elastic distortion (a smooth random
displacement field, as in Simard, Steinkraus & Platt 2003), applied to a whole batch at
once with one bilinear resampling, and a :class:`Prefetcher` that produces the next batch
in a background thread while the current one trains.

Coordinates are (row, column) with the origin at the centre of the top-left pixel; the
affine map turns about the centre of the image, ((H - 1) / 2, (W - 1) / 2). Each output
pixel ``p`` samples the input at ``A⁻¹ (p - c - t) + c + d(p)``, where ``A`` is the forward
affine matrix, ``t`` the translation and ``d`` the elastic displacement. Samples that fall
outside the image read zero (background): the result equals
``scipy.ndimage.map_coordinates(..., order=1, mode='grid-constant')``, where values fall
linearly to zero within one pixel of the border.

The elastic field has the covariance of Simard's recipe (uniform(-1, 1) noise per pixel,
smoothed by a normalised Gaussian of standard deviation ``sigma``, times ``alpha``) but is
drawn in a truncated eigenbasis of the smoothing operator, which costs two small matrix
products per batch instead of a convolution per image. The kernel is taken over a domain
extended by 4 sigma on every side, so the field is stationary: its per-component standard
deviation is ``alpha / (2 sqrt(3 pi) sigma)`` (about 1 px for alpha 36, sigma 6) at every pixel.

Work arrays are kept per thread and reused between calls (see ``_Scratch``); NumPy releases
the GIL in the array operations, so a :class:`Prefetcher` thread overlaps with training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

# Fraction of the field's variance the truncated eigenbasis may drop.
_ELASTIC_TOLERANCE = 1e-4
# Images processed together: large enough to amortise call overheads, small enough for the
# scratch arrays (about 37 kB per 28x28 image) to stay in cache; measured best near 256.
_CHUNK = 256
# Bound on padded pixels per chunk, so flat pixel indices stay exact in float32 (< 2**24).
_CHUNK_PIXELS = 1 << 22


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the random distortions; ``AugmentConfig.identity()`` changes nothing."""

    rotation_deg: float = 15.0  # angle drawn uniformly from [-rotation_deg, rotation_deg]
    scale: tuple[float, float] = (0.85, 1.15)  # isotropic zoom drawn uniformly from this range
    shear_deg: float = 10.0  # horizontal shear angle drawn uniformly from [-shear_deg, shear_deg]
    translate_px: float = 2.0  # shift per axis drawn uniformly from [-translate_px, translate_px]
    elastic_alpha: float = 36.0  # displacement magnitude; per-pixel std = alpha * 0.163 / sigma px
    elastic_sigma: float = 6.0  # smoothness (px) of the displacement field

    def __post_init__(self):
        # Accept any sequence for scale, store a tuple of floats so the config stays hashable.
        try:
            low, high = (float(v) for v in self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a (low, high) pair, got {self.scale!r}") from None
        object.__setattr__(self, "scale", (low, high))
        for name in ("rotation_deg", "shear_deg", "translate_px", "elastic_alpha", "elastic_sigma"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
            object.__setattr__(self, name, value)
        if not (0 < low <= high and math.isfinite(high)):
            raise ValueError(f"scale must satisfy 0 < low <= high, got {self.scale!r}")
        if self.shear_deg >= 90:
            raise ValueError(f"shear_deg must be < 90, got {self.shear_deg!r}")
        if self.elastic_alpha > 0 and self.elastic_sigma == 0:
            raise ValueError("elastic_sigma must be > 0 when elastic_alpha > 0")

    @classmethod
    def identity(cls) -> AugmentConfig:
        """A configuration that leaves every image unchanged (only converted to float)."""
        return cls().scaled(0.0)

    def scaled(self, strength: float) -> AugmentConfig:
        """Return this configuration with every distortion scaled by ``strength``.

        Angles, translation and elastic alpha are multiplied by ``strength``; the scale
        range is pulled towards 1 by the same factor; ``elastic_sigma`` (a smoothness, not
        a strength) is kept. ``scaled(0)`` is the identity, ``scaled(1)`` is ``self``.
        """
        strength = float(strength)
        if not math.isfinite(strength) or strength < 0:
            raise ValueError(f"strength must be finite and >= 0, got {strength!r}")
        low, high = self.scale
        return dataclasses.replace(
            self,
            rotation_deg=self.rotation_deg * strength,
            scale=(1.0 + (low - 1.0) * strength, 1.0 + (high - 1.0) * strength),
            shear_deg=self.shear_deg * strength,
            translate_px=self.translate_px * strength,
            elastic_alpha=self.elastic_alpha * strength,
        )

    @property
    def is_identity(self) -> bool:
        """True when :func:`distort` with this configuration returns its input unchanged."""
        return (
            self.rotation_deg == 0
            and self.scale == (1.0, 1.0)
            and self.shear_deg == 0
            and self.translate_px == 0
            and self.elastic_alpha == 0
        )


def distort(images, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Apply an independent random affine + elastic distortion to every image of a batch.

    Parameters
    ----------
    images : array_like, shape (B, H, W)
        uint8 images in 0..255 or floating images in [0, 1]; white ink on black.
        MNIST batches are (B, 28, 28).
    rng : numpy.random.Generator
        Source of randomness. The same generator state and inputs give the same output.
    config : AugmentConfig, optional
        Strengths of the distortions. ``AugmentConfig.identity()`` returns the input
        converted to float32 (uint8 divided by 255) and draws nothing from ``rng``.

    Returns
    -------
    numpy.ndarray, shape (B, H, W), float32
        Distorted images with values in [0, 1]; a new array (the input is not modified).

    Raises
    ------
    TypeError
        If ``images`` has an unsupported dtype or ``rng`` is not a Generator.
    ValueError
        If ``images`` is not 3-D or a floating input is outside [0, 1] or not finite.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")
    a = _check_images(images)
    n, height, width = a.shape
    if n == 0 or config.is_identity:
        return _to_float(a)  # (B, H, W), a fresh array
    # Draw all randomness first, so the result does not depend on the chunking below.
    inverse, shift = _affine_matrices(rng, n, config)  # (B, 2, 2), (B, 2)
    noise = _elastic_noise(rng, n, (height, width), config) if config.elastic_alpha > 0 else None
    out = np.empty((n, height, width), dtype=np.float32)  # (B, H, W)
    chunk = max(1, min(_CHUNK, _CHUNK_PIXELS // ((height + 2) * (width + 2))))
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        padded = _padded(a[part])  # (b, H + 2, W + 2) scratch, zero border
        chunk_noise = None if noise is None else noise[part]
        row, col = _coordinates(inverse[part], shift[part], (height, width), chunk_noise, config.elastic_sigma)
        _sample(padded, row, col, out=out[part])
    return out


def augmented_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batches: Iterable[np.ndarray],
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
    flatten: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(distorted images, labels)`` for each batch of indices.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        The whole training set, uint8 or float in [0, 1].
    labels : numpy.ndarray, shape (N,)
        Its labels; each batch's labels are ``labels[indices]``, untouched by distortion.
    batches : iterable of integer arrays
        Indices of each batch, e.g. the chunks of a shuffled permutation.
    rng : numpy.random.Generator
        Used only for the distortions. Give this generator to one thread only, e.g. a
        ``rng.spawn(1)[0]`` child when the batches are produced by a :class:`Prefetcher`.
    config : AugmentConfig, optional
        Strengths of the distortions.
    flatten : bool, optional
        Yield images as (B, H * W) rows for the network (default) instead of (B, H, W).

    Yields
    ------
    tuple of numpy.ndarray
        float32 images (B, H * W) or (B, H, W) in [0, 1], and labels (B,).
    """
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} != {len(labels)}")
    for indices in batches:
        indices = np.asarray(indices)
        x = distort(images[indices], rng, config)  # (B, H, W)
        if flatten:
            x = x.reshape(len(x), -1)  # (B, H * W)
        yield x, labels[indices]


class Prefetcher(Generic[T]):
    """Consumes an iterator in a daemon thread and keeps up to ``depth`` results ready, in order.

    ``produce`` is an iterator or iterable (e.g. :func:`augmented_batches`; for a callable
    ``f``, ``iter(f, sentinel)``), consumed until it is exhausted. Results come out in
    production order through iteration or :meth:`get`. An exception raised by the
    producer is re-raised in the consumer at the point where its result would have come,
    after which the prefetcher is finished. :meth:`close` stops the thread promptly even if
    the queue is full; a producer call already running is not interrupted, but its result
    is dropped and, the thread being a daemon, it never keeps the interpreter alive. When
    the thread ends, a producer that has a ``close`` method (a generator) is closed there,
    so its ``finally`` blocks run.

    Use as a context manager, or call :meth:`close` when done::

        with Prefetcher(augmented_batches(x, y, batches, rng)) as batches:
            for xb, yb in batches:
                ...
    """

    _END = object()  # marks that no more results will come

    def __init__(self, produce: Iterable[T], depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        if not isinstance(produce, Iterable):
            raise TypeError(f"produce must be an iterator or iterable, got {type(produce).__name__}")
        self._source: Iterator = iter(produce)
        self._next = self._source.__next__
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False  # consumer side: the end marker has been received
        self._thread = threading.Thread(target=self._run, name="digitpad-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = (True, self._next())
                except StopIteration:
                    break
                except BaseException as error:  # forwarded to the consumer, which re-raises it
                    item = (False, error)
                if not self._put(item) or not item[0]:
                    return
            self._put(self._END)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # a failing cleanup has no consumer left to report to
                    pass

    def _put(self, item) -> bool:
        """Put ``item`` unless closed first; wakes every 50 ms to notice a close."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float | None = None) -> T:
        """Return the next result, waiting for it if needed.

        Raises
        ------
        StopIteration
            When an iterator producer is exhausted, after an error was delivered, or after
            :meth:`close`.
        queue.Empty
            If ``timeout`` seconds pass without a result.
        Exception
            Whatever the producer raised, re-raised here.
        """
        if self._finished or self._stop.is_set():
            self._finished = True
            raise StopIteration
        item = self._queue.get(timeout=timeout)
        if item is self._END:
            self._finished = True
            raise StopIteration
        ok, value = item
        if not ok:
            self._finished = True
            raise value
        return value

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        return self.get()

    def close(self, timeout: float = 1.0) -> bool:
        """Stop the background thread and drop pending results.

        Returns ``True`` if the thread ended within ``timeout`` seconds (``False`` only when a
        producer call is still running; it will end on its own and its result is dropped).
        Safe to call more than once and from another thread than the consumer's.
        """
        self._stop.set()
        # Drop pending results so nothing stays referenced; wake a consumer blocked in get().
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(self._END)
        except queue.Full:
            pass
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._stop.is_set()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Scratch(threading.local):
    """Per-thread arrays reused from call to call.

    A fresh array of a batch's size costs page faults on every call (often more than the
    arithmetic done on it); reusing these keeps the distortion at the cost of its arithmetic.
    Each thread (trainer, prefetcher) gets its own set, so concurrent calls never share one.
    """

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A C-contiguous array of ``shape`` with undefined contents, valid until reused."""
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.size < size:
            buffer = np.empty(size, dtype=dtype)
            self.buffers[name] = buffer
        return buffer[:size].reshape(shape)


_scratch = _Scratch()


def _check_images(images) -> np.ndarray:
    """Validate a batch of images; return it as an array (not converted, maybe not copied)."""
    a = np.asarray(images)
    if a.ndim != 3:
        raise ValueError(f"images must have shape (B, H, W), got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {a.dtype}")
    if a.size and not (a.min() >= 0 and a.max() <= 1):  # also false for NaN
        raise ValueError("floating images must be finite and within [0, 1]")
    return a


def _to_float(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1] (or float -> float32), into ``out`` or a new array."""
    if out is None:
        out = np.empty(a.shape, dtype=np.float32)
    if a.dtype == np.uint8:
        np.divide(a, np.float32(255), out=out)
    else:
        np.copyto(out, a, casting="same_kind")
    return out


def _padded(a: np.ndarray) -> np.ndarray:
    """The batch as float32 in a scratch array with a one-pixel zero border (B, H + 2, W + 2)."""
    n, height, width = a.shape
    padded = _scratch.get("padded", (n, height + 2, width + 2))
    padded[:, 0, :] = 0
    padded[:, -1, :] = 0
    padded[:, 1:-1, 0] = 0
    padded[:, 1:-1, -1] = 0
    _to_float(a, out=padded[:, 1:-1, 1:-1])
    return padded


def _affine_matrices(rng: np.random.Generator, n: int, config: AugmentConfig):
    """Draw ``n`` affine maps; return inverse matrices (n, 2, 2) and translations (n, 2).

    Matrices act on (row, column) vectors. Five uniform(-1, 1) numbers are drawn per image
    whatever the strengths, so ``config.scaled(k)`` distorts in the same directions as
    ``config`` for the same generator state.
    """
    u = rng.uniform(-1.0, 1.0, size=(n, 5))  # (n, 5): angle, scale, shear, shift_row, shift_col
    angle = np.deg2rad(config.rotation_deg) * u[:, 0]
    low, high = config.scale
    zoom = (low + high) / 2 + (high - low) / 2 * u[:, 1]
    shear = np.tan(np.deg2rad(config.shear_deg) * u[:, 2])
    cos, sin = np.cos(angle), np.sin(angle)
    # Forward map A = zoom * R(angle) @ H(shear), R = [[cos, -sin], [sin, cos]],
    # H = [[1, 0], [shear, 1]] shifts columns in proportion to the row (horizontal shear).
    # Inverse A⁻¹ = H(-shear) @ R(-angle) / zoom.
    inverse = np.empty((n, 2, 2))
    inverse[:, 0, 0] = cos
    inverse[:, 0, 1] = sin
    inverse[:, 1, 0] = -shear * cos - sin
    inverse[:, 1, 1] = -shear * sin + cos
    inverse /= zoom[:, None, None]
    shift = config.translate_px * u[:, 3:5]  # (n, 2)
    return inverse, shift


@functools.lru_cache(maxsize=32)
def _elastic_factor(size: int, sigma: float) -> np.ndarray:
    """Factor ``F`` (size, r) such that ``F Z Fᵀ`` is distributed like smoothed white noise.

    ``K`` (size, size + 2p) maps noise on a domain padded by ``p = ceil(4 sigma)`` to its
    smoothed values on the image (normalised Gaussian, truncated at 4 sigma like SciPy's
    ``gaussian_filter``). With ``K = U S Vᵀ`` and ``N``, ``Z`` iid with the same variance v,
    ``K N Kᵀ`` and ``U S Z S Uᵀ`` have the same covariance, v (K Kᵀ ⊗ K Kᵀ), and the same
    distribution when the noise is Gaussian. ``F = U_r S_r`` keeps the r leading singular
    values, all but ``_ELASTIC_TOLERANCE`` of the variance.
    """
    pad = int(math.ceil(4 * sigma))
    taps = np.arange(-pad, pad + 1)
    norm = np.exp(-0.5 * (taps / sigma) ** 2).sum()
    offsets = np.arange(size)[:, None] - (np.arange(size + 2 * pad)[None, :] - pad)  # (size, size + 2p)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) / norm
    kernel[np.abs(offsets) > pad] = 0.0
    u, s, _ = np.linalg.svd(kernel, full_matrices=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    # The 2-D field's variance captured by r components is energy[r - 1] ** 2.
    rank = min(int(np.searchsorted(energy**2, 1 - _ELASTIC_TOLERANCE)) + 1, len(s))
    factor = np.ascontiguousarray(u[:, :rank] * s[:rank], dtype=np.float32)  # (size, r)
    factor.setflags(write=False)
    return factor


def _elastic_noise(rng: np.random.Generator, n: int, shape: tuple[int, int], config: AugmentConfig) -> np.ndarray:
    """Noise (B, 2, q, r) for the elastic fields of ``n`` images: ``M`` transposed per field.

    Each field is ``F_row M F_colᵀ`` with ``M`` (r, q) iid uniform(-alpha, alpha), the
    per-pixel noise of Simard's recipe, so the field has the covariance of
    ``alpha * gaussian_filter(uniform(-1, 1, (H, W)), sigma)`` on an unbounded image
    (and, being a sum of many terms, is near-Gaussian like it).
    """
    height, width = shape
    r = _elastic_factor(height, config.elastic_sigma).shape[1]
    q = _elastic_factor(width, config.elastic_sigma).shape[1]
    noise = rng.random((n, 2, q, r), dtype=np.float32)  # (B, 2, q, r) in [0, 1)
    noise *= np.float32(2 * config.elastic_alpha)
    noise -= np.float32(config.elastic_alpha)
    return noise


def _coordinates(
    inverse: np.ndarray,
    shift: np.ndarray,
    shape: tuple[int, int],
    noise: np.ndarray | None = None,
    sigma: float = 1.0,
) -> np.ndarray:
    """Input coordinates (2, B, H, W) sampled by each output pixel: affine map + elastic field.

    Per image and component k (row, column) the coordinate at output pixel (h, w) is
    ``c_k + A⁻¹[k, 0] (h - c_row - t_row) + A⁻¹[k, 1] (w - c_col - t_col) + (F_row M_k F_colᵀ)[h, w]``.
    Both terms make one product ``left (H, q + 2) @ right (q + 2, W)`` with
    ``left = [F_row M_k | c_k - A⁻¹[k] t + A⁻¹[k, 0] (h - c_row) | A⁻¹[k, 1]]`` and
    ``right = [F_colᵀ; 1; w - c_col]``, so the whole batch takes a single matrix product.
    ``inverse`` (B, 2, 2) and ``shift`` (B, 2) come from :func:`_affine_matrices`, ``noise``
    (B, 2, q, r) from :func:`_elastic_noise` (None: no elastic field). Returns a scratch
    array, valid until the next call in the same thread.
    """
    height, width = shape
    n = len(inverse)
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    q = 0
    if noise is not None:
        f_row = _elastic_factor(height, float(sigma))  # (H, r)
        f_col = _elastic_factor(width, float(sigma))  # (W, q)
        q = f_col.shape[1]
    right = np.empty((q + 2, width), dtype=np.float32)  # (q + 2, W)
    if noise is not None:
        right[:q] = f_col.T
    right[q] = 1
    right[q + 1] = np.arange(width) - centre[1]

    left = _scratch.get("left", (2, n, height, q + 2))  # (2, B, H, q + 2)
    if noise is not None:
        left_t = _scratch.get("left_t", (n * 2 * q, height))  # (B * 2 * q, H): (F_row M)ᵀ stacked
        np.matmul(noise.reshape(n * 2 * q, -1), f_row.T, out=left_t)
        np.copyto(left[..., :q], left_t.reshape(n, 2, q, height).transpose(1, 0, 3, 2))  # (2, B, H, q)
    m = inverse.transpose(1, 0, 2)  # (2, B, 2): [component k, image, A⁻¹[k, 0..1]]
    offset = centre[:, None] - np.einsum("bkj,bj->kb", inverse, shift)  # (2, B): c_k - A⁻¹[k] t
    rows = np.arange(height) - centre[0]  # (H,)
    left[..., q] = offset[:, :, None] + m[:, :, 0, None] * rows  # (2, B, H)
    left[..., q + 1] = m[:, :, 1, None]
    coords = _scratch.get("coords", (2, n, height, width))  # (2, B, H, W)
    np.matmul(left.reshape(2 * n * height, q + 2), right, out=coords.reshape(2 * n * height, width))
    return coords


def _sample(padded: np.ndarray, row: np.ndarray, col: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear samples of zero-bordered images at (``row``, ``col``), into ``out`` (B, H', W').

    ``padded`` is (B, H + 2, W + 2) with a zero border and fewer than 2**24 elements;
    coordinates refer to the unpadded image. Matches
    ``scipy.ndimage.map_coordinates(..., order=1, mode='grid-constant')`` per image: outside
    the image the value falls linearly to zero within one pixel; integer coordinates inside
    the image return the pixel exactly. Overwrites ``row`` and ``col``.
    """
    n, stride_rows, stride = padded.shape
    height, width = stride_rows - 2, stride - 2
    if padded.size >= 1 << 24:
        raise ValueError(f"too many pixels for one call: {padded.shape}")
    shape = row.shape  # (B, H', W')
    # Shift into padded coordinates and clamp: beyond one pixel outside, everything is zero.
    row += 1
    col += 1
    np.clip(row, 0, height + 1, out=row)
    np.clip(col, 0, width + 1, out=col)
    row0 = np.floor(row, out=_scratch.get("row0", shape))
    col0 = np.floor(col, out=_scratch.get("col0", shape))
    np.clip(row0, 0, height, out=row0)  # so that row0 + 1 stays inside the padded image
    np.clip(col0, 0, width, out=col0)
    row -= row0  # weights of the lower/right neighbours, in [0, 1]
    col -= col0

    # Flat index of each top-left neighbour in the padded batch, computed in float32
    # (exact: padded.size < 2**24): row in the stacked images, times the stride, plus column.
    row0 += (np.arange(n, dtype=np.float32) * stride_rows)[:, None, None]
    row0 *= stride
    row0 += col0
    index = _scratch.get("index", shape, np.intp)
    np.copyto(index, row0, casting="unsafe")

    # Gather the four neighbours; offset views of the flat array avoid index temporaries.
    flat = padded.reshape(-1)
    top_left = flat.take(index, out=_scratch.get("top_left", shape), mode="clip")
    top_right = flat[1:].take(index, out=_scratch.get("top_right", shape), mode="clip")
    bottom_left = flat[stride:].take(index, out=_scratch.get("bottom_left", shape), mode="clip")
    bottom_right = flat[stride + 1 :].take(index, out=_scratch.get("bottom_right", shape), mode="clip")

    top_right -= top_left
    top_right *= col
    top_left += top_right  # top pair, interpolated along the row
    bottom_right -= bottom_left
    bottom_right *= col
    bottom_left += bottom_right  # bottom pair
    bottom_left -= top_left
    bottom_left *= row
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    np.add(top_left, bottom_left, out=out)  # (B, H', W')
    return np.clip(out, 0.0, 1.0, out=out)


def _bilinear(images: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Sample ``images`` (B, H, W) at ``coords`` (2, B, H', W'); see :func:`_sample`."""
    row = np.array(coords[0], dtype=np.float32)
    col = np.array(coords[1], dtype=np.float32)
    return _sample(_padded(_check_images(images)), row, col)

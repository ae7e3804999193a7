"""What augmentation costs per epoch: ``distort`` next to SciPy references, and hidden by prefetching.

For batches of 128 and 256, the seconds to distort one epoch of MNIST (60,000 digits, in a
shuffled order, gathered from the uint8 training set as the trainer does) with:

* **distort** – this module, default ``AugmentConfig`` (affine + elastic), and affine only;
* **SciPy, batched** – the same distortions with SciPy doing the work per batch: one
  ``gaussian_filter`` over the batch's displacement fields, one 3-D ``map_coordinates``;
* **naive loop** – per image: ``affine_transform``, then two ``gaussian_filter`` fields and
  ``map_coordinates`` (the usual Simard-style recipe), timed on a subset and scaled to 60,000.

Wall-clock and CPU seconds of the timing thread are both shown (the CPU figure is the cost
on one core, and holds when other processes share the machine); the ratio column is each
CPU time over the naive loop's. Then the overlap: a 2x1024 ReLU
MLP's forward and backward matrix products (the bulk of a training step) on augmented
batches, (a) on batches distorted beforehand, (b) distorting each batch in the same thread,
(c) through ``Prefetcher``. Matrix products use one BLAS thread, so the prefetch thread
has the other core; (c) close to (a) means augmentation is hidden.

    python benchmarks/augment_speed.py [--data-dir DIR] [--repeats 3] [--naive 3000] [--overlap-batches 100]

Target (issue): augmentation well under 1 s per 60,000 digits on one core, and at most
about a third of the epoch time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits

from digitpad.core.augment import AugmentConfig, Prefetcher, distort
from digitpad.core.data import load_mnist

N_EPOCH = 60_000


def affine_params(rng: np.random.Generator, n: int, config: AugmentConfig):
    """Inverse matrices (n, 2, 2) and shifts (n, 2) with the distribution ``distort`` uses."""
    u = rng.uniform(-1.0, 1.0, size=(n, 5))
    angle = np.deg2rad(config.rotation_deg) * u[:, 0]
    low, high = config.scale
    zoom = (low + high) / 2 + (high - low) / 2 * u[:, 1]
    shear = np.tan(np.deg2rad(config.shear_deg) * u[:, 2])
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.stack([np.stack([cos, sin], -1), np.stack([-shear * cos - sin, -shear * sin + cos], -1)], 1)
    return inverse / zoom[:, None, None], config.translate_px * u[:, 3:5]


def naive(images: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Per-image SciPy: affine_transform, then a Simard elastic field and map_coordinates."""
    out = np.empty(images.shape, np.float32)
    centre = np.array([13.5, 13.5])
    grid = np.mgrid[0:28, 0:28].astype(np.float64)  # (2, 28, 28)
    inverse, shift = affine_params(rng, len(images), config)
    for i, image in enumerate(images):
        x = image / 255.0
        offset = centre - inverse[i] @ (centre + shift[i])
        x = ndi.affine_transform(x, inverse[i], offset=offset, order=1, mode="grid-constant")
        if config.elastic_alpha > 0:
            alpha, sigma = config.elastic_alpha, config.elastic_sigma
            d_row = alpha * ndi.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma, mode="constant")
            d_col = alpha * ndi.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma, mode="constant")
            x = ndi.map_coordinates(x, [grid[0] + d_row, grid[1] + d_col], order=1, mode="grid-constant")
        out[i] = x
    return out


def scipy_batched(images: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """The whole batch at once: one gaussian_filter for all fields, one 3-D map_coordinates."""
    n = len(images)
    x = images.astype(np.float32) / np.float32(255)  # (B, 28, 28)
    inverse, shift = affine_params(rng, n, config)
    p = np.mgrid[0:28, 0:28].astype(np.float32)[:, None] - 13.5 - shift.T[:, :, None, None]  # (2, B, 28, 28)
    coords = np.empty((3, n, 28, 28), np.float32)
    coords[0] = np.arange(n, dtype=np.float32)[:, None, None]
    coords[1:] = np.einsum("bkj,jbhw->kbhw", inverse.astype(np.float32), p) + 13.5
    if config.elastic_alpha > 0:
        fields = rng.uniform(-1, 1, (2, n, 28, 28)).astype(np.float32)
        fields = ndi.gaussian_filter(fields, (0, 0, config.elastic_sigma, config.elastic_sigma), mode="constant")
        coords[1:] += config.elastic_alpha * fields
    return ndi.map_coordinates(x, coords, order=1, mode="grid-constant")


def epoch_seconds(method, images, batch_size: int, config: AugmentConfig, n: int, repeats: int):
    """Best-of-``repeats`` (wall, CPU of this thread) seconds to distort ``n`` digits, scaled to 60,000."""
    best_wall = best_cpu = float("inf")
    for r in range(repeats):
        rng = np.random.default_rng(r)
        order = rng.permutation(len(images))[:n]
        wall, cpu = time.perf_counter(), time.thread_time()
        for s in range(0, n, batch_size):
            method(images[order[s : s + batch_size]], rng, config)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.thread_time() - cpu)
    return best_wall * N_EPOCH / n, best_cpu * N_EPOCH / n


def mlp_step(x: np.ndarray, weights: list[np.ndarray]) -> None:
    """Forward and backward matrix products of a 784-1024-1024-10 ReLU MLP (no update)."""
    h1 = np.maximum(x @ weights[0], 0)  # (B, 1024)
    h2 = np.maximum(h1 @ weights[1], 0)  # (B, 1024)
    g3 = h2 @ weights[2]  # (B, 10), stands in for softmax - one_hot
    _ = h2.T @ g3
    g2 = (g3 @ weights[2].T) * (h2 > 0)  # (B, 1024)
    _ = h1.T @ g2
    g1 = (g2 @ weights[1].T) * (h1 > 0)  # (B, 1024)
    _ = x.T @ g1


def overlap(images: np.ndarray, batch_size: int, n_batches: int) -> tuple[float, float, float]:
    """Seconds for ``n_batches`` MLP steps: pre-distorted, distort inline, prefetched."""
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal(s) * 0.03).astype(np.float32) for s in [(784, 1024), (1024, 1024), (1024, 10)]]
    order = rng.permutation(len(images))[: n_batches * batch_size]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

    def produce(seed):
        r = np.random.default_rng(seed)
        for idx in batches:
            yield distort(images[idx], r).reshape(len(idx), 784)

    ready = list(produce(1))
    start = time.perf_counter()
    for x in ready:
        mlp_step(x, weights)
    alone = time.perf_counter() - start

    start = time.perf_counter()
    for x in produce(1):
        mlp_step(x, weights)
    inline = time.perf_counter() - start

    start = time.perf_counter()
    with Prefetcher(produce(1), depth=3) as prefetched:
        for x in prefetched:
            mlp_step(x, weights)
    prefetch = time.perf_counter() - start
    return alone, inline, prefetch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST files (default: $DIGITPAD_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per method; the best is kept")
    parser.add_argument("--naive", type=int, default=3000, help="digits timed for the naive loop (scaled)")
    parser.add_argument("--batched", type=int, default=12_000, help="digits timed for batched SciPy (scaled)")
    parser.add_argument("--overlap-batches", type=int, default=100, help="MLP steps in the overlap test (0: skip)")
    args = parser.parse_args(argv)

    mnist = load_mnist(args.data_dir)
    images = np.ascontiguousarray(mnist.train_images.reshape(-1, 28, 28))
    config = AugmentConfig()
    affine_only = AugmentConfig(elastic_alpha=0.0)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"digitpad augment speed: python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, {os.cpu_count()} CPUs{load}, one BLAS thread")
    print(f"default {config}")
    print(f"seconds to distort one epoch of {N_EPOCH:,} digits (best of {args.repeats}; "
          f"naive timed on {args.naive:,}, batched SciPy on {args.batched:,}, both scaled)\n")
    print(f"{'batch':>5}  {'method':<31} {'wall s':>7} {'CPU s':>7} {'CPU vs naive':>13}")
    with threadpool_limits(1):
        for batch_size in (128, 256):
            runs = [
                ("distort, default", distort, config, N_EPOCH, args.repeats),
                ("distort, affine only", distort, affine_only, N_EPOCH, args.repeats),
                ("SciPy batched, default", scipy_batched, config, args.batched, 1),
                ("naive per-image loop, default", naive, config, args.naive, 1),
            ]
            rows = [(name, epoch_seconds(f, images, batch_size, c, n, r)) for name, f, c, n, r in runs]
            reference = rows[-1][1][1]
            for name, (wall, cpu) in rows:
                print(f"{batch_size:>5}  {name:<31} {wall:>7.3f} {cpu:>7.3f} {cpu / reference:>12.3f}x")
            print()

        if args.overlap_batches:
            batch_size = 128
            alone, inline, prefetch = overlap(images, batch_size, args.overlap_batches)
            scale = N_EPOCH / (args.overlap_batches * batch_size)
            print(f"overlap: {args.overlap_batches} steps of a 784-1024-1024-10 MLP (forward + backward "
                  f"products), batch {batch_size}, seconds scaled to one epoch")
            print(f"  (a) batches distorted beforehand  {alone * scale:8.2f}")
            for label, seconds in [("(b) distort inline, same thread", inline),
                                   ("(c) distort in a Prefetcher", prefetch)]:
                print(f"  {label:<33} {seconds * scale:8.2f}  ({(seconds / alone - 1) * 100:+.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

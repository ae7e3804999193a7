"""How well the network reads drawings rather than MNIST digits: rendered drawings + accuracies.

Owns the drawing generator. It takes MNIST test digits and renders each back into a
picture like one a person would make in another program: scaled x4 to x40; re-stroked
along its centre lines with a thin (1-3 px) or thick (up to 4 MNIST px: a 40 px brush on a
digit 200 px tall) round pen, blobs staying filled as a writer fills them, or kept as a
smooth enlargement (a scan); moved anywhere on a larger page, corners included; dark ink
on a light page or light on dark; specks and a little noise; as uint8 grey, RGB, or RGBA
with a transparent page. Each picture goes through ``preprocess`` and the model; the table
compares the accuracy with that on the original digits, and repeats it with the digits
rotated by 15 degrees (either way).

    python benchmarks/robustness.py [--model PATH] [--n 2000] [--data-dir DIR] [--seed 0]

Targets (issue): rendered drawings lose at most 1.5 points against the original digits
(later: at most 1 point, and >= 97% on digits rotated by 15 degrees).

The control rows draw each drawing's strokes straight at 28x28 (what preprocessing aims
for): the gap between them and the originals is what re-stroking changes in the digits
themselves; the gap between them and the rendered rows is what preprocessing loses.

Measured with the shipped model (models/default.npz, 784-1024-1024-10 ReLU), all 10,000
test digits, seed 0 (``--n 10000``):

    condition                                             accuracy  vs original
    MNIST test digits, as they are                          99.38%      +0.00 pt
    the same digits through preprocess                      99.22%      -0.16 pt
    the drawings' strokes drawn straight at 28x28           98.43%      -0.95 pt
    rendered drawings through preprocess                    98.23%      -1.15 pt
    rendered drawings squeezed to 28x28 (no preprocess)     27.34%     -72.04 pt
    MNIST digits rotated 15 deg, as they are                99.01%      -0.37 pt
    MNIST digits rotated 15 deg, through preprocess         98.73%      -0.65 pt
    rotated drawings' strokes drawn straight at 28x28       97.93%      -1.45 pt
    rendered drawings rotated 15 deg, through preprocess    97.70%      -1.68 pt
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitpad.core.preprocess import preprocess  # noqa: E402


# ---------------------------------------------------------------- centre lines of a digit


def thin(shape: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool image to one-pixel-wide centre lines."""
    b = np.pad(shape, 1).astype(np.uint8)                                    # (H + 2, W + 2)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(b, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],          # P2..P9, clockwise
                 p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]         # from north
            count = sum(x.astype(np.int32) for x in n)
            turns = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            p2, _, p4, _, p6, _, p8, _ = n
            if step == 0:
                side = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                side = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            remove = (b == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if remove.any():
                b[remove] = 0
                changed = True
        if not changed:
            return b[1:-1, 1:-1].astype(bool)


def centre_segments(digit: np.ndarray, up: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The digit's centre lines and filled parts, enlarged ``up`` times.

    Returns (segments, filled): segments (S, 2, 2) as (from, to) x (row, col) in 28-px
    units, and filled (28 up, 28 up) bool: the parts where a disc fits that is twice as wide
    as the digit's usual stroke (and at least 4.5 MNIST px): a blob or a closed-up loop,
    which a writer fills whatever the pen.
    """
    big = ndi.zoom(digit.astype(np.float32) / 255.0, up, order=1) > 0.4      # (112, 112)
    skel = thin(big)
    rows, cols = np.nonzero(skel)
    segs = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r2, c2 = rows + dr, cols + dc
        ok = (r2 < skel.shape[0]) & (c2 >= 0) & (c2 < skel.shape[1])
        ok[ok] = skel[r2[ok], c2[ok]]
        segs.append(np.stack([np.stack([rows[ok], cols[ok]], 1), np.stack([r2[ok], c2[ok]], 1)], 1))
    segs.append(np.stack([np.stack([rows, cols], 1)] * 2, 1))                 # lone pixels too
    s = np.concatenate(segs).astype(np.float64)
    depth = ndi.distance_transform_edt(big)
    radius = max(2.25 * up, 2.0 * float(np.median(depth[skel]))) if skel.any() else 2.25 * up
    core = depth > radius
    filled = ndi.distance_transform_edt(~core) <= radius if core.any() else core   # opening of big
    return (s + 0.5) / up - 0.5, filled                                      # (S, 2, 2) 28-px coords


# ---------------------------------------------------------------- drawing


def _pose(rng, scale: float, angle_deg: float, page: tuple[int, int], size: float):
    """Matrix and offset mapping 28-px digit coords to page coords, the digit placed at random."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = scale * rot                                                          # digit -> page
    centre = np.array([13.5, 13.5])
    half = size / 2.0
    corner = rng.random() < 0.35
    pos = []
    for n in page:
        lo, hi = half, n - half
        if corner:
            pos.append(lo if rng.random() < 0.5 else hi)
        else:
            pos.append(rng.uniform(lo, hi) if hi > lo else n / 2.0)
    offset = np.array(pos) - m @ centre
    return m, offset


def _stroke(segments: np.ndarray, m: np.ndarray, offset: np.ndarray, pen: float,
            page: tuple[int, int]) -> np.ndarray:
    """Coverage (H, W) of a round pen ``pen`` px wide drawn along the segments on the page."""
    pts = segments @ m.T + offset                                            # (S, 2, 2) page coords
    length = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=1).max()
    t = np.linspace(0.0, 1.0, int(math.ceil(length * 2)) + 2)[:, None, None]  # (K, 1, 1)
    dots = pts[None, :, 0] + t * (pts[None, :, 1] - pts[None, :, 0])         # (K, S, 2)
    dots = np.rint(dots.reshape(-1, 2)).astype(int)
    reach = int(math.ceil(pen / 2 + 2))
    r0, c0 = np.maximum(dots.min(0) - reach, 0)
    r1, c1 = np.minimum(dots.max(0) + reach + 1, page)
    out = np.zeros(page, np.float32)
    if r1 <= r0 or c1 <= c0:
        return out
    centre = np.ones((r1 - r0, c1 - c0), bool)
    keep = (dots[:, 0] >= r0) & (dots[:, 0] < r1) & (dots[:, 1] >= c0) & (dots[:, 1] < c1)
    centre[dots[keep, 0] - r0, dots[keep, 1] - c0] = False
    dist = ndi.distance_transform_edt(centre)
    out[r0:r1, c0:c1] = np.clip(pen / 2.0 + 0.5 - dist, 0.0, 1.0)
    return out


def _enlarge(digit: np.ndarray, m: np.ndarray, offset: np.ndarray, page: tuple[int, int],
             up: int = 1) -> np.ndarray:
    """Coverage (H, W) of a digit-sized picture (``up`` px per MNIST px) enlarged onto the page,
    edges about 2 px soft (a scan)."""
    m = m / up
    offset = offset - m @ np.full(2, (up - 1) / 2.0)                         # pixel centres line up
    inv = np.linalg.inv(m)
    v = ndi.affine_transform(digit.astype(np.float32) / (255.0 if digit.dtype == np.uint8 else 1.0),
                             inv, offset=-inv @ offset, output_shape=page, order=1, cval=0.0)  # (H, W)
    scale = math.sqrt(abs(np.linalg.det(m)))
    return np.clip((v - 0.45) * max(1.0, scale / 2.0) + 0.5, 0.0, 1.0)


def _ideal(digit: np.ndarray, angle_deg: float, pen_mnist: float | None) -> np.ndarray:
    """What the drawing should become at 28x28: the same strokes drawn there directly.

    ``pen_mnist`` None: the digit itself (rotated); else its centre lines with a pen that
    wide in MNIST px, clipped to MNIST's widths, drawn 4x larger and area-averaged.
    Returns (28, 28) float32 in [0, 1].
    """
    up = 4
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    if pen_mnist is None:
        return ndi.affine_transform(digit.astype(np.float32) / 255.0, rot.T,
                                    offset=13.5 - rot.T @ np.full(2, 13.5), order=1)
    m = up * rot
    offset = np.full(2, (28 * up - 1) / 2.0) - m @ np.full(2, 13.5)
    segments, filled = centre_segments(digit)
    big = _stroke(segments, m, offset, up * min(max(pen_mnist, 1.4), 3.6), (28 * up, 28 * up))
    if filled.any():
        big = np.maximum(big, _enlarge(filled, m, offset, (28 * up, 28 * up), up=4))
    return big.reshape(28, up, 28, up).mean((1, 3)).astype(np.float32)


def render(digit: np.ndarray, rng: np.random.Generator, angle_deg: float = 0.0,
           ideal: bool = False) -> np.ndarray:
    """One MNIST digit (28, 28) uint8 as a drawing: (H, W) uint8, (H, W, 3) or (H, W, 4) uint8.

    With ``ideal``, the same random choices give instead what preprocessing should make of
    that drawing (see ``_ideal``), so the two can be compared digit by digit.
    """
    scale = math.exp(rng.uniform(math.log(4), math.log(40)))                 # page px per MNIST px
    size = 22.0 * scale                                                      # digit box, rotation room
    margin = rng.uniform(1.1, 1.8)
    page = (int(size * margin * rng.uniform(1.0, 1.3)), int(size * margin * rng.uniform(1.0, 1.3)))
    m, offset = _pose(rng, scale, angle_deg, page, size)
    style = rng.random()
    if style < 0.25:
        if ideal:
            return _ideal(digit, angle_deg, None)
        ink = _enlarge(digit, m, offset, page)
        pen = 2.4 * scale
    else:
        pen = rng.uniform(1.0, 3.0) if style < 0.6 else rng.uniform(2.5, 4.0) * scale
        if ideal:
            return _ideal(digit, angle_deg, pen / scale)
        segments, filled = centre_segments(digit)
        ink = _stroke(segments, m, offset, pen, page)
        if filled.any():
            ink = np.maximum(ink, _enlarge(filled, m, offset, page, up=4))
    for _ in range(rng.integers(0, 5)):                                      # specks
        r = rng.uniform(0.5, max(1.0, 0.4 * pen))
        y, x = rng.uniform(0, page[0]), rng.uniform(0, page[1])
        y0, y1 = max(0, int(y - r - 2)), min(page[0], int(y + r + 3))
        x0, x1 = max(0, int(x - r - 2)), min(page[1], int(x + r + 3))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dot = np.clip(r + 0.5 - np.hypot(yy - y, xx - x), 0.0, 1.0)
        ink[y0:y1, x0:x1] = np.maximum(ink[y0:y1, x0:x1], dot)
    dark_ink = rng.random() < 0.5
    if dark_ink:
        paper, pigment = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.35)
    else:
        paper, pigment = rng.uniform(0.0, 0.2), rng.uniform(0.7, 1.0)
    kind = rng.random()
    if kind < 0.15:                                                          # RGBA on a transparent page
        rgba = np.zeros(page + (4,), np.float32)
        rgba[..., :3] = pigment
        rgba[..., 3] = ink
        return np.round(rgba * 255).astype(np.uint8)
    grey = paper + (pigment - paper) * ink + rng.normal(0.0, rng.uniform(0.0, 0.03), page)
    grey = np.round(np.clip(grey, 0.0, 1.0) * 255).astype(np.uint8)         # (H, W)
    if kind < 0.35:
        tint = rng.uniform(0.85, 1.0, 3)
        return np.round(grey[..., None] * tint).astype(np.uint8)             # (H, W, 3)
    return grey


def squeeze(picture: np.ndarray) -> np.ndarray:
    """The naive baseline: the whole picture in grey, light-on-dark, resized to 28x28 (28, 28)."""
    grey = picture.astype(np.float32) / 255.0
    if grey.ndim == 3:
        grey = grey[..., 3] if picture.shape[2] == 4 else grey.mean(2)
    if grey.mean() > 0.5:
        grey = 1.0 - grey
    h, w = grey.shape
    return ndi.zoom(grey, (28 / h, 28 / w), order=1, grid_mode=True, mode="nearest")


# ---------------------------------------------------------------- evaluation


def rotated(digits: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """MNIST digits (N, 28, 28) uint8 rotated by ``angles`` degrees about their centre, uint8."""
    out = np.empty_like(digits)
    for i, (d, a) in enumerate(zip(digits, angles)):
        out[i] = np.clip(np.round(ndi.rotate(d.astype(np.float32), a, reshape=False, order=1)), 0, 255)
    return out


def evaluate(predict, digits: np.ndarray, labels: np.ndarray, seed: int = 0, log=print) -> list[tuple]:
    """Accuracy rows (name, accuracy, n, seconds) for each condition; ``predict`` maps (N, 784) -> (N,)."""
    rng = np.random.default_rng(seed)
    n = len(digits)
    angles = rng.choice([-15.0, 15.0], n)

    def acc(x: np.ndarray) -> float:
        return float((predict(x.reshape(len(x), 784).astype(np.float32)) == labels).mean())

    def through(pictures) -> np.ndarray:
        out = np.zeros((n, 28, 28), np.float32)
        for i, p in enumerate(pictures):
            out[i] = preprocess(p).image
        return out

    rows = []

    def row(name: str, make):
        t = time.perf_counter()
        a = acc(make())
        rows.append((name, a, n, time.perf_counter() - t))
        log(f"  {name}: {a:.2%}")

    originals = digits.astype(np.float32) / 255.0
    turned = rotated(digits, angles)
    row("MNIST test digits, as they are", lambda: originals)
    row("the same digits through preprocess", lambda: through(digits))
    row("the drawings' strokes drawn straight at 28x28",
        lambda: np.stack([render(d, np.random.default_rng([seed, i]), ideal=True)
                          for i, d in enumerate(digits)]))
    row("rendered drawings through preprocess",
        lambda: through(render(d, np.random.default_rng([seed, i])) for i, d in enumerate(digits)))
    row("rendered drawings squeezed to 28x28 (no preprocess)",
        lambda: np.stack([squeeze(render(d, np.random.default_rng([seed, i])))
                          for i, d in enumerate(digits)]))
    row("MNIST digits rotated 15 deg, as they are", lambda: turned.astype(np.float32) / 255.0)
    row("MNIST digits rotated 15 deg, through preprocess", lambda: through(turned))
    row("rotated drawings' strokes drawn straight at 28x28",
        lambda: np.stack([render(d, np.random.default_rng([seed, i]), a, ideal=True)
                          for i, (d, a) in enumerate(zip(digits, angles))]))
    row("rendered drawings rotated 15 deg, through preprocess",
        lambda: through(render(d, np.random.default_rng([seed, i]), a)
                        for i, (d, a) in enumerate(zip(digits, angles))))
    return rows


def table(rows: list[tuple]) -> str:
    """The rows as a plain-text table, each accuracy beside its difference from the originals."""
    base = rows[0][1]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'condition':<{width}}  accuracy  vs original  time",
             f"{'-' * width}  --------  -----------  ------"]
    for name, a, n, sec in rows:
        lines.append(f"{name:<{width}}  {a:8.2%}  {100 * (a - base):+9.2f} pt  {sec:5.1f}s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--n", type=int, default=2000, help="test digits to use (default 2000)")
    parser.add_argument("--data-dir", help="folder with the MNIST files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from digitpad.core.data import load_mnist
    from digitpad.core.model_io import load_model, shipped_model_path

    path = Path(args.model) if args.model else shipped_model_path()
    model, meta = load_model(path)
    mnist = load_mnist(args.data_dir)
    pick = np.random.default_rng(args.seed).choice(len(mnist.test_labels), min(args.n, len(mnist.test_labels)),
                                                   replace=False)
    digits, labels = mnist.test_images[pick], mnist.test_labels[pick]
    print(f"model {path} ({meta.get('layer_sizes')}, {meta.get('activation')}); "
          f"{len(pick)} test digits, seed {args.seed}")
    rows = evaluate(model.predict, digits, labels, args.seed)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

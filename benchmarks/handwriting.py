"""Digits drawn with a pen by made-up writers, for the fine-tuning benchmark and tests.

Owns the glyphs and the writers. Each digit is a few strokes (polylines in a unit box,
y down) in one of two hands:

- ``european``: a 1 with a long flag (and for some writers a foot), a crossed 7 with a
  little lead-in, boxy 4s that close at the top or stand on a straight left side, boxy
  6s and 9s with straight stems, a flat-topped 3, a 2 looped at its foot or made as a Z, a 0
  with a slash: the hand MNIST's census workers and students did not write.
- ``plain``: the strokes MNIST is made of (a 1 as one line, a 7 without a bar, an open
  4, round loops), drawn by other writers: the "other writers" of the benchmark.

Each writer has their own slant, width, pen and habits; each drawing adds a random turn,
size, place on the page and a smooth wobble along the strokes. Strokes are rendered as
the canvas renders them: a round pen of constant width, dark ink on a white 280x280 page.

    python benchmarks/handwriting.py [--out benchmarks/data] [--per-writer 5] [--seed 0]

writes ``OUT/european/<digit>/<writer>-<k>.png`` and ``OUT/plain/<digit>/<writer>-<k>.png``.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAGE = 280  # px, as the canvas bitmap


# ---------------------------------------------------------------- stroke helpers (unit box, y down)


def line(*points) -> np.ndarray:
    """A polyline through ``points``, resampled every 0.02 units."""
    pts = np.asarray(points, float)
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(2, int(np.linalg.norm(b - a) / 0.02) + 1)
        t = np.linspace(0, 1, n)[1:, None]
        out.append(a + t * (b - a))
    return np.concatenate(out)


def arc(cx, cy, rx, ry, start, stop, box=2.0, n=None) -> np.ndarray:
    """Points on a (super)ellipse from angle ``start`` to ``stop`` in degrees (0 = right, 90 = down).

    ``box`` is the superellipse exponent: 2 is an ellipse, larger is boxier.
    """
    n = n or max(8, int(abs(stop - start) / 6))
    t = np.deg2rad(np.linspace(start, stop, n))
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / box
    x = cx + rx * np.sign(c) * np.abs(c) ** e
    y = cy + ry * np.sign(s) * np.abs(s) ** e
    return np.stack([x, y], 1)


def chain(*parts) -> np.ndarray:
    return np.concatenate(parts)


# ---------------------------------------------------------------- the two hands


def european(digit: int, habit: int, box: float) -> list[np.ndarray]:
    """Strokes of ``digit`` in a continental European hand; ``habit`` picks a writer's variant."""
    if digit == 0:
        strokes = [arc(0.3, 0.5, 0.28, 0.5, -100, 265, box)]
        if habit % 2 == 0:
            strokes.append(line((0.12, 0.85), (0.5, 0.12)))  # slashed zero
        return strokes
    if digit == 1:
        flag = line((0.05, 0.42), (0.45, 0.0), (0.45, 1.0))  # long flag, straight stem
        return [flag, line((0.15, 1.0), (0.75, 1.0))] if habit == 1 else [flag]
    if digit == 2:
        top = arc(0.3, 0.28, 0.28, 0.26, 200, 390, box)
        if habit == 2:  # a Z with a rounded shoulder
            return [line((0.02, 0.1), (0.3, 0.0), (0.58, 0.12), (0.0, 1.0), (0.65, 1.0))]
        if habit % 2:
            return [chain(top, line(top[-1], (0.05, 0.95)), arc(0.12, 0.9, 0.08, 0.08, -90, 200),
                          line((0.12, 0.98), (0.62, 1.0)))]  # a loop at the foot
        return [chain(top, line(top[-1], (0.0, 1.0), (0.62, 1.0)))]
    if digit == 3:
        return [chain(line((0.05, 0.0), (0.6, 0.0), (0.22, 0.42)),
                      arc(0.3, 0.7, 0.3, 0.3, -100, 150, box))]  # flat top
    if digit == 4:
        if habit == 2:  # closed top, the bar stopping at the stem
            return [line((0.55, 0.0), (0.02, 0.62), (0.6, 0.6)), line((0.55, 0.0), (0.55, 1.0))]
        if habit % 2:  # closed top, a triangle over the bar
            return [line((0.5, 0.0), (0.0, 0.65), (0.75, 0.65)), line((0.5, 0.0), (0.5, 1.0))]
        return [line((0.05, 0.0), (0.05, 0.6), (0.7, 0.6)), line((0.5, 0.15), (0.5, 1.0))]  # boxy, open
    if digit == 5:
        body = chain(line((0.12, 0.0), (0.08, 0.45)), arc(0.3, 0.68, 0.3, 0.3, -130, 150, box))
        return [body, line((0.12, 0.0), (0.62, 0.0))]
    if digit == 6:
        loop = arc(0.32, 0.72, 0.28, 0.28, 180, 540, box)
        return [chain(line((0.55, 0.0), (0.04, 0.72)), loop)]  # straight back, boxy loop
    if digit == 7:
        body = line((0.0, 0.12), (0.05, 0.0), (0.62, 0.0), (0.25, 1.0)) if habit % 2 else \
            line((0.0, 0.0), (0.62, 0.0), (0.3, 1.0))
        return [body, line((0.12, 0.5), (0.6, 0.5))]  # crossed
    if digit == 8:
        if habit % 2:
            return [arc(0.3, 0.24, 0.22, 0.24, 0, 360, box), arc(0.3, 0.73, 0.28, 0.27, 0, 360, box)]
        t = np.linspace(0, 2 * np.pi, 90)
        return [np.stack([0.3 + 0.26 * np.sin(2 * t), 0.5 - 0.5 * np.cos(t)], 1)]  # one stroke, crossing
    if digit == 9:
        loop = arc(0.3, 0.27, 0.28, 0.27, 0, 360, box)
        stem = line((0.58, 0.27), (0.58, 1.0)) if habit % 2 else line((0.58, 0.27), (0.5, 0.85), (0.2, 1.0))
        if habit == 2:  # a tail curling back under the loop, as a g
            stem = chain(line((0.58, 0.27), (0.58, 0.8)), arc(0.35, 0.8, 0.23, 0.2, 0, 160))
        return [chain(loop, stem)]
    raise ValueError(digit)


def plain(digit: int, habit: int, box: float) -> list[np.ndarray]:
    """Strokes of ``digit`` as MNIST's writers mostly made them."""
    if digit == 0:
        return [arc(0.3, 0.5, 0.3, 0.5, -90, 275)]
    if digit == 1:
        return [line((0.35, 0.0), (0.3, 1.0))]
    if digit == 2:
        top = arc(0.3, 0.3, 0.3, 0.3, 190, 370)
        return [chain(top, line(top[-1], (0.05, 1.0), (0.65, 0.98)))]
    if digit == 3:
        return [chain(arc(0.3, 0.25, 0.27, 0.25, 200, 450), arc(0.3, 0.75, 0.3, 0.25, 270, 520))]
    if digit == 4:
        return [line((0.25, 0.0), (0.0, 0.6), (0.7, 0.6)), line((0.52, 0.1), (0.5, 1.0))]
    if digit == 5:
        return [chain(line((0.1, 0.02), (0.05, 0.42)), arc(0.3, 0.68, 0.3, 0.3, -140, 150)),
                line((0.1, 0.02), (0.6, 0.0))]
    if digit == 6:
        return [chain(arc(0.6, 0.6, 0.58, 0.6, -100, -180), arc(0.3, 0.72, 0.28, 0.28, 180, 540))]
    if digit == 7:
        return [line((0.0, 0.0), (0.65, 0.0), (0.25, 1.0))]
    if digit == 8:
        return [chain(arc(0.3, 0.25, 0.24, 0.25, 90, 450), arc(0.3, 0.75, 0.3, 0.25, -90, 270))]
    if digit == 9:
        return [chain(arc(0.3, 0.27, 0.28, 0.27, 0, 360), line((0.58, 0.27), (0.5, 1.0)))]
    raise ValueError(digit)


HANDS = {"european": european, "plain": plain}


@dataclass(frozen=True)
class Writer:
    """A writer's habits: slant, width, pen, boxiness, how much they wobble, and their glyph variants."""

    name: str
    hand: str
    slant: float  # shear: x += slant * (0.5 - y); positive leans right
    width: float  # width of the digit's box relative to its height
    pen: float  # px on the 280 px page
    box: float  # superellipse exponent of loops
    wobble: float  # smooth jitter along the strokes, units of the digit's height
    habit: int  # glyph variant


WRITERS = {
    "european": (
        Writer("anna", "european", 0.25, 1.0, 16, 3.0, 0.012, 0),
        Writer("bert", "european", 0.05, 0.8, 12, 4.0, 0.010, 1),
        Writer("chloe", "european", 0.45, 0.8, 20, 2.5, 0.015, 2),
        Writer("dirk", "european", -0.05, 0.9, 14, 5.0, 0.008, 2),
    ),
    "plain": (
        Writer("erin", "plain", 0.15, 1.0, 18, 2.0, 0.012, 0),
        Writer("finn", "plain", 0.3, 0.9, 14, 2.0, 0.015, 0),
    ),
}


def _wobble(points: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacement along a stroke (a random walk, low-passed)."""
    n = len(points)
    noise = rng.normal(0, 1, (n + 20, 2)).cumsum(0)
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    smooth = np.stack([np.convolve(noise[:, k], kernel, "same") for k in range(2)], 1)[10:10 + n]
    smooth -= smooth.mean(0)
    scale = np.abs(smooth).max() or 1.0
    return points + amount * 3 * smooth / scale


def strokes_for(digit: int, writer: Writer, rng: np.random.Generator) -> list[np.ndarray]:
    """One drawing's strokes in page pixels: the writer's glyph, slant, size, turn, place and wobble."""
    glyph = HANDS[writer.hand](digit, writer.habit, writer.box)
    height = rng.uniform(150, 220)  # px
    angle = math.radians(rng.normal(0, 5))
    slant = writer.slant + rng.normal(0, 0.05)
    widen = writer.width * rng.uniform(0.9, 1.1)
    centre = np.array([PAGE / 2, PAGE / 2]) + rng.uniform(-25, 25, 2)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    out = []
    for stroke in glyph:
        p = _wobble(stroke, writer.wobble, rng)  # (n, 2) unit box
        x = (p[:, 0] - 0.3) * widen + slant * (0.5 - p[:, 1])
        y = p[:, 1] - 0.5
        q = np.stack([x, y], 1) * height @ rot.T + centre  # (n, 2) px
        out.append(q)
    return out


def render(strokes: list[np.ndarray], pen: float, size: int = PAGE) -> np.ndarray:
    """Dark ink on a white page, (size, size) uint8: a round pen of width ``pen`` along each stroke."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    dist = np.full((size, size), np.inf)
    for s in strokes:
        for a, b in zip(s[:-1], s[1:]):
            lo = np.floor(np.minimum(a, b) - pen).astype(int).clip(0, size)
            hi = np.ceil(np.maximum(a, b) + pen).astype(int).clip(0, size)
            if lo[0] >= hi[0] or lo[1] >= hi[1]:
                continue
            px = xx[lo[1]:hi[1], lo[0]:hi[0]]
            py = yy[lo[1]:hi[1], lo[0]:hi[0]]
            d = b - a
            t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            seg = np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])
            view = dist[lo[1]:hi[1], lo[0]:hi[0]]
            np.minimum(view, seg, out=view)
    ink = np.clip(pen / 2 - dist + 0.5, 0, 1)  # antialiased edge one pixel wide
    return np.round(255 * (1 - ink)).astype(np.uint8)


def drawings(hand: str, per_writer: int, seed: int = 0):
    """Yield (digit, writer name, k, strokes, picture) for every writer of ``hand``."""
    for w, writer in enumerate(WRITERS[hand]):
        for digit in range(10):
            rng = np.random.default_rng([seed, w, digit, 0 if hand == "european" else 1])
            for k in range(per_writer):
                strokes = strokes_for(digit, writer, rng)
                pen = writer.pen * rng.uniform(0.85, 1.15)
                yield digit, writer.name, k, strokes, render(strokes, pen)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"))
    parser.add_argument("--per-writer", type=int, default=5, help="drawings of each digit per writer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from digitpad.imageio import save_png

    for hand in HANDS:
        n = 0
        for digit, name, k, _, picture in drawings(hand, args.per_writer, args.seed):
            folder = Path(args.out) / hand / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            save_png(folder / f"{name}-{k}.png", picture)
            n += 1
        print(f"{hand}: {n} drawings in {Path(args.out) / hand}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

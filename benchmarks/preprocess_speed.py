"""How long ``preprocess`` takes: median time for canvas-sized and photo-sized inputs.

Owns the speed figures for preprocessing. Targets (issue): a 280x280 canvas in <= 2 ms and
a 1000x1000 picture in <= 20 ms (median), so the canvas can classify on every stroke.

    python benchmarks/preprocess_speed.py [--repeat 200]

Measured on the 2-core development machine with other work running (medians of 300):
280x280 canvas 1.05 ms (18 px pen) and 1.23 ms (3 px pen); 1000x1000 grey 3.2 ms (2 px
pen, dark on white) and 3.1 ms (60 px brush); 1000x1000 RGBA 6.0 ms; 3000x3000 RGB 44 ms.
Exits with status 1 if a target is missed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitpad.core.preprocess import preprocess  # noqa: E402

TARGETS_MS = {"280x280": 2.0, "1000x1000": 20.0}


def drawing(size: int, pen: float, dark_ink: bool = False, channels: int = 0) -> np.ndarray:
    """A "4"-like digit drawn with a round pen on a (size, size) page, uint8."""
    s = size / 280
    lines = [[(50, 170), (170, 60), (170, 220)], [(110, 170), (250, 170)]]
    centre = np.ones((size, size), bool)
    for line in lines:
        for (r0, c0), (r1, c1) in zip(line[:-1], line[1:]):
            t = np.linspace(0, 1, int(400 * s))
            centre[np.rint((r0 + t * (r1 - r0)) * s).astype(int), np.rint((c0 + t * (c1 - c0)) * s).astype(int)] = False
    ink = np.clip(pen / 2 + 0.5 - ndi.distance_transform_edt(centre), 0, 1)
    grey = np.round((1 - ink if dark_ink else ink) * 255).astype(np.uint8)
    if channels == 3:
        return np.dstack([grey] * 3)
    if channels == 4:
        return np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    return grey


def median_ms(image: np.ndarray, repeat: int) -> float:
    preprocess(image)                                  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        preprocess(image)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    cases = [
        ("280x280", "canvas: uint8 grey, white on black, 18 px pen", drawing(280, 18)),
        ("280x280", "canvas: thin 3 px pen", drawing(280, 3)),
        ("1000x1000", "uint8 grey, dark ink on white, 2 px pen", drawing(1000, 2, dark_ink=True)),
        ("1000x1000", "uint8 grey, 60 px brush", drawing(1000, 60)),
        ("1000x1000", "uint8 RGBA, dark ink on white, 12 px pen", drawing(1000, 12, True, 4)),
        ("3000x3000", "uint8 RGB, 30 px pen (no target)", drawing(3000, 30, True, 3)),
    ]
    print(f"{'size':<10} {'input':<46} {'median':>9} {'target':>8}")
    failed = False
    for size, name, image in cases:
        ms = median_ms(image, args.repeat if image.size < 5e6 else max(5, args.repeat // 20))
        target = TARGETS_MS.get(size)
        mark = "" if target is None else ("ok" if ms <= target else "SLOW")
        failed |= mark == "SLOW"
        print(f"{size:<10} {name:<46} {ms:7.2f}ms {'' if target is None else f'{target:6.1f}ms'} {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fine-tuning on a hand MNIST does not know: what it gains, what it forgets, how long it takes.

Fine-tunes the shipped model on half of the European drawings in ``benchmarks/data``
(made by ``benchmarks/handwriting.py``: flagged 1s, crossed 7s, boxy 4s and 6s, slashed
0s, from four writers) and reads the other half, which it never saw. Prints the accuracy
before and after on that held-out half, on the MNIST test set, and on drawings by other
writers in a plain, MNIST-like hand, and the seconds the fine-tune took.

    python benchmarks/finetune.py [--model PATH] [--data-dir DIR] [--repeats 1]
                                  [--steps N] [--lr R] [--replay F] [--batch-size N]

Targets (issue): the held-out half improves, MNIST test accuracy drops by at most 0.1
point, the other writers' drawings are read no worse, and the fine-tune of 100 samples
takes at most 20 s on 2 cores. The fine-tune's own cross-validation is off unless
``--folds`` asks for it (the held-out half plays its part); ``digitpad finetune`` runs it
with 3 folds, which takes about four times as long.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitpad.core.data import load_mnist  # noqa: E402
from digitpad.core.finetune import FineTuneConfig, SampleSet, fine_tune, read_samples  # noqa: E402
from digitpad.core.model_io import load_model, shipped_model_path  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def halves(samples: SampleSet) -> tuple[SampleSet, SampleSet]:
    """Every other drawing of each digit, in file order (``anna-0`` taught, ``anna-1`` held out, …)."""
    teach = np.zeros(len(samples), bool)
    for d in range(10):
        teach[np.flatnonzero(samples.labels == d)[::2]] = True

    def part(mask):
        return SampleSet(samples.images[mask], samples.labels[mask],
                         [p for p, m in zip(samples.paths, mask) if m])

    return part(teach), part(~teach)


def accuracy(model, s: SampleSet) -> float:
    return float((model.predict(s.images) == s.labels).mean())


def per_digit(model, s: SampleSet) -> str:
    pred = model.predict(s.images)
    return " ".join(f"{d}:{(pred[s.labels == d] == d).mean():.0%}" for d in range(10) if (s.labels == d).any())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(shipped_model_path()))
    parser.add_argument("--data-dir", help="folder with the MNIST files")
    parser.add_argument("--repeats", type=int, default=1, help="fine-tunes to time (median reported)")
    defaults = FineTuneConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--replay", type=float, default=defaults.replay)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--folds", type=int, default=0,
                        help="also cross-validate on the taught half, as `digitpad finetune` does (3 there)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model, _ = load_model(args.model)
    mnist = load_mnist(args.data_dir)
    european = read_samples(DATA / "european")
    plain = read_samples(DATA / "plain")
    teach, held = halves(european)
    config = FineTuneConfig(steps=args.steps, lr=args.lr, replay=args.replay, batch_size=args.batch_size,
                            dropout=args.dropout, augment=not args.no_augment, folds=args.folds, seed=args.seed)
    print(f"model {args.model}: {model.describe()}")
    print(f"teaching {len(teach)} European drawings, holding out {len(held)}; {len(plain)} plain drawings; "
          f"recipe: {config}")

    seconds, result = [], None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        result = fine_tune(model, teach, mnist, config)
        seconds.append(time.perf_counter() - t0)
    after = result.model
    mnist_before, mnist_after = result.mnist_accuracy_before, result.mnist_accuracy_after
    rows = [
        ("held-out European drawings", accuracy(model, held), accuracy(after, held)),
        ("MNIST test set", mnist_before, mnist_after),
        ("plain drawings by other writers", accuracy(model, plain), accuracy(after, plain)),
        ("taught European drawings", accuracy(model, teach), accuracy(after, teach)),
    ]
    print(f"\n{'':34s} {'before':>8s} {'after':>8s} {'change':>9s}")
    for name, b, a in rows:
        print(f"{name:34s} {b:8.2%} {a:8.2%} {100 * (a - b):+8.2f} pt")
    print(f"\nheld-out per digit before: {per_digit(model, held)}")
    print(f"held-out per digit after:  {per_digit(after, held)}")
    if result.folds:
        print(f"taught half, {result.folds}-fold cross-validated: {result.samples_accuracy_before:.2%} before, "
              f"{result.samples_accuracy_after:.2%} after")
    what = f"{config.steps} steps" + (f" and {result.folds} cross-validation fine-tunes" if result.folds else "")
    print(f"fine-tune of {len(teach)} samples ({what}, including the two MNIST test passes): "
          f"median {statistics.median(seconds):.2f} s over {len(seconds)} run(s): "
          + ", ".join(f"{s:.2f}" for s in seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training speed of digitpad next to scikit-learn (and PyTorch when installed), in one run.

Same work for all: full MNIST (60,000 digits, float32), hidden (256, 128), ReLU, Adam
lr 1e-3, batch 128, no L2. Prints median seconds per epoch and the ratios, the achieved
GFLOP/s next to what numpy.matmul reaches here, where one step's time goes, the Quick
preset's accuracy against time next to scikit-learn's time to 98.0% with its defaults,
and the peak memory of `digitpad train`. The trainers take turns (``--rounds`` of each) and numpy.matmul's rate
is measured before every turn, so a machine whose load changes during the run moves all
figures alike; ``--threads N`` pins every trainer (and the matmul) to N BLAS threads.

    python benchmarks/train_speed.py [--data-dir DIR] [--epochs 3] [--rounds 2] [--threads N]
                                     [--skip-sklearn-defaults] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace

import numpy as np

from digitpad.core import kernels
from digitpad.core.data import load_mnist
from digitpad.core.train import PRESETS, EpochRecord, TrainConfig, Trainer, evaluate

HIDDEN = (256, 128)


def flops_per_epoch(n: int, sizes=(784, *HIDDEN, 10)) -> float:
    """Matrix-product FLOPs of one epoch: forward, weight gradients, deltas (none for the input)."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    delta_macs = sum(a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return 2.0 * n * (2 * macs + delta_macs)


def matmul_gflops(repeats: int = 200, threads: int = 0) -> float:
    """numpy.matmul's rate on a training product, at the better of 1 thread and the BLAS's own count
    (or at ``threads`` only, when the run pins them).

    digitpad's trainer picks between those two thread counts as it runs (on a busy machine
    two threads can be many times slower), so the reference gets the same choice.
    """
    from threadpoolctl import ThreadpoolController

    rng = np.random.default_rng(0)
    a = rng.random((128, 784), dtype=np.float32)
    w = rng.random((784, 256), dtype=np.float32)
    out = np.empty((128, 256), np.float32)
    controller = ThreadpoolController().select(user_api="blas")
    most = max((lib.num_threads for lib in controller.lib_controllers), default=1)
    best = 0.0
    for n in [threads] if threads else sorted({1, most}):
        with controller.limit(limits=n):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(repeats):
                    np.matmul(a, w, out=out)
                times.append((time.perf_counter() - t) / repeats)
        best = max(best, 2 * 128 * 784 * 256 / statistics.median(times) / 1e9)
    return best


def step_profile(mnist, steps: int = 600) -> dict[str, float]:
    """Median milliseconds of each part of a training step at one BLAS thread (CPU time per part).

    The parts are the trainer's: ``forward_train``, the loss and batch accuracy,
    ``backward``, the optimiser's update; "matrix products" runs the same step's products
    alone into the same buffers, the floor the rest adds to.
    """
    from threadpoolctl import threadpool_limits

    from digitpad.core.mlp import MLP, MLPConfig, Workspace
    from digitpad.core.optim import Adam

    bs = 128
    images = mnist.train_images.reshape(-1, 784)[: 100 * bs].astype(np.float32) / 255  # (12800, 784)
    labels = mnist.train_labels[: 100 * bs].astype(np.intp)
    model = MLP(MLPConfig(hidden=HIDDEN), 0)
    params = list(model.pack_parameters())
    ws = Workspace.for_model(model, bs)
    grads = [ws.grad_flat_w, ws.grad_flat_b]
    opt = Adam(params)
    parts = {k: [] for k in ("forward", "loss + accuracy", "backward", "adam", "whole step", "matrix products")}
    clock = time.process_time
    with threadpool_limits(1, user_api="blas"):
        for k in range(steps):
            s = (k * bs) % len(labels)
            x, y = images[s:s + bs], labels[s:s + bs]
            t0 = clock()
            model.forward_train(x, ws)
            t1 = clock()
            model.loss_step(y, ws)
            t2 = clock()
            model.backward(x, ws)
            t3 = clock()
            opt.update(params, grads, 1e-3)
            t4 = clock()
            a = x
            for i, w in enumerate(model.weights):  # the same products, nothing else
                np.matmul(a, w, out=ws.outs[i])
                a = ws.outs[i]
            delta = ws.outs[-1]
            for i in range(model.n_layers - 1, -1, -1):
                np.matmul((x if i == 0 else ws.outs[i - 1]).T, delta, out=ws.grad_w[i])
                if i:
                    np.matmul(delta, model.weights[i].T, out=ws.deltas[i - 1])
                    delta = ws.deltas[i - 1]
            t5 = clock()
            for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0, t5 - t4)):
                parts[name].append(dt)
    return {k: statistics.median(v) * 1e3 for k, v in parts.items()}


def digitpad_epochs(mnist, epochs: int, instrumented: bool, threads: int = 0) -> list[float]:
    live = TrainConfig()  # the statistics and snapshots the app's live panes get by default
    cfg = TrainConfig(hidden=HIDDEN, lr=1e-3, batch_size=128, epochs=epochs, val_size=0,
                      stats_every=live.stats_every if instrumented else 0,
                      snapshot_every=live.snapshot_every if instrumented else 0, threads=threads)
    trainer = Trainer(cfg, mnist)
    times, last = [], 0.0
    for rec in trainer:
        if isinstance(rec, EpochRecord):
            times.append(rec.seconds - last)
            last = rec.seconds
    return times


def sklearn_epochs(x, y, epochs: int) -> list[float]:
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam", alpha=0.0,
                        batch_size=128, learning_rate_init=1e-3, random_state=0)
    classes = np.arange(10)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            t = time.perf_counter()
            clf.partial_fit(x, y, classes=classes)
            times.append(time.perf_counter() - t)
    return times


def torch_epochs(x, y, epochs: int) -> list[float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(len(xt))
        for s in range(0, len(xt), 128):
            idx = perm[s:s + 128]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times


def quick_curve(mnist, config: TrainConfig) -> list[tuple[float, float]]:
    """(training seconds, test accuracy) after each epoch; evaluation time not counted."""
    trainer = Trainer(config, mnist)
    curve = []
    for rec in trainer:
        if isinstance(rec, EpochRecord):
            _, acc = evaluate(trainer.model, mnist.test_images, mnist.test_labels)
            curve.append((rec.seconds, acc))
    return curve


def sklearn_time_to(x, y, xt, yt, target=0.98, max_epochs=40) -> tuple[float | None, float, int]:
    """scikit-learn with its defaults on the same layers: training seconds until test accuracy >= target."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, random_state=0)
    total, best = 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(1, max_epochs + 1):
            t = time.perf_counter()
            clf.partial_fit(x, y, classes=np.arange(10))
            total += time.perf_counter() - t
            best = max(best, clf.score(xt, yt))
            if best >= target:
                return total, best, epoch
    return None, best, max_epochs


def peak_rss_of_train(data_dir: str | None) -> tuple[float, dict]:
    """Run `digitpad train --preset quick` in a child process; return its peak RSS in MB and its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "digitpad", "train", "--preset", "quick", "--quiet", "--json",
               "--out", os.path.join(tmp, "m.npz")]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        code = ("import resource, subprocess, sys, json; p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
                "print(json.dumps({'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
                " 'out': p.stdout, 'err': p.stderr[-2000:], 'code': p.returncode}))")
        proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
        info = json.loads(proc.stdout)
        if info["code"] != 0:
            raise SystemExit(f"digitpad train failed: {info['err']}")
        return info["rss_kb"] / 1024, json.loads(info["out"].strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="turns each trainer takes (epochs each)")
    ap.add_argument("--threads", type=int, default=0, help="pin BLAS threads for every trainer (0: as is)")
    ap.add_argument("--skip-sklearn-defaults", action="store_true", help="skip the slow time-to-98%% run")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()

    from threadpoolctl import threadpool_info

    mnist = load_mnist(args.data_dir)
    t = time.perf_counter()
    kernels.prepare()  # the trainer does this before its clock starts; timed here once
    kernel_seconds = time.perf_counter() - t
    x = mnist.train_images.reshape(-1, 784).astype(np.float32) / 255
    y = mnist.train_labels.astype(np.int64)
    xt = mnist.test_images.reshape(-1, 784).astype(np.float32) / 255
    yt = mnist.test_labels.astype(np.int64)
    blas = ", ".join(f"{i['internal_api']} {i.get('version', '')} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    print(f"numpy {np.__version__}, BLAS: {blas}, cores: {os.cpu_count()}")
    print(f"training step: {kernels.status()}, ready in {kernel_seconds:.2f} s (once per process)")
    print(f"work: 60,000 digits, hidden {HIDDEN}, ReLU, Adam lr 1e-3, batch 128, float32, "
          f"{args.epochs} epochs each; median seconds per epoch\n")

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    # the trainers take turns, with numpy.matmul's rate measured before each turn
    times = {"bare": [], "inst": [], "sk": [], "torch": []}
    rates = []
    for _ in range(args.rounds):
        for name in times:
            rates.append(matmul_gflops(threads=args.threads))
            if name == "bare":
                times[name] += digitpad_epochs(mnist, args.epochs, instrumented=False, threads=args.threads)
            elif name == "inst":
                times[name] += digitpad_epochs(mnist, args.epochs, instrumented=True, threads=args.threads)
            elif name == "sk":
                times[name] += sklearn_epochs(x, y, args.epochs)
            else:
                times[name] += torch_epochs(x, y, args.epochs) or []
    mm = statistics.median(rates)
    flops = flops_per_epoch(60000)
    bare, inst, sk = (statistics.median(times[k]) for k in ("bare", "inst", "sk"))
    rows = [("digitpad (bare trainer)", bare), ("digitpad (with live statistics)", inst),
            ("scikit-learn MLPClassifier", sk)]
    if times["torch"]:
        rows.append(("PyTorch (CPU)", statistics.median(times["torch"])))
    print(f"{'trainer':34s} {'s/epoch':>8s} {'vs sklearn':>11s} {'GFLOP/s':>8s} {'of matmul':>10s}")
    for name, sec in rows:
        print(f"{name:34s} {sec:8.3f} {sec / sk:10.2f}x {flops / sec / 1e9:8.1f} {flops / sec / 1e9 / mm:9.0%}")
    if not times["torch"]:
        print("PyTorch: not installed (optional; not a dependency)")
    pinned = f"{args.threads} threads" if args.threads else "better of 1 and all threads"
    print(f"numpy.matmul (128x784 @ 784x256, {pinned}) here: {mm:.1f} GFLOP/s "
          f"(median of {len(rates)} measurements, "
          f"{min(rates):.0f} to {max(rates):.0f}); one epoch is {flops / 1e9:.1f} GFLOP of matrix products "
          f"= {flops / mm / 1e9:.3f} s at that rate")
    print(f"ratio digitpad/scikit-learn: bare {bare / sk:.2f}, with live statistics {inst / sk:.2f} (target <= 0.45)")
    print(f"fraction of the matmul rate: bare {flops / bare / 1e9 / mm:.0%} (target >= 70%); "
          f"live statistics cost {inst / bare - 1:+.1%} (target <= +5%)")

    prof = step_profile(mnist)
    print("\none step at one BLAS thread, median CPU ms: " + ", ".join(f"{k} {v:.3f}" for k, v in prof.items())
          + f"; the products are {prof['matrix products'] / prof['whole step']:.0%} of the step")

    print("\nQuick preset (the one Retrain offers first): test accuracy against training time")
    quick = PRESETS["quick"]
    # the Quick preset before its large-batch retune: wider, more epochs, about 98.4%
    wider = replace(quick, hidden=(512, 128), lr=5e-3, epochs=6)
    for label, cfg in ((f"quick ({quick.epochs} epochs)", quick), ("784-512-128-10, lr 5e-3, 6 epochs", wider)):
        curve = quick_curve(mnist, cfg)
        print("  " + label + ": " + ", ".join(f"{acc:.2%} at {sec:.2f} s" for sec, acc in curve))
        best = max(curve, key=lambda c: c[1])
        print(f"    final {curve[-1][1]:.2%} after {curve[-1][0]:.2f} s of training (best {best[1]:.2%})")
    print("  target: >= 98.0% within 2.5 s")
    if not args.skip_sklearn_defaults:
        sec, best, epochs = sklearn_time_to(x, y, xt, yt)
        shown = "not reached" if sec is None else f"{sec:.2f} s ({epochs} epochs)"
        print(f"  scikit-learn defaults, same layers: time to 98.0%: {shown}; best {best:.2%}")
    if not args.skip_memory:
        rss, summary = peak_rss_of_train(args.data_dir)
        print(f"\npeak RSS of `digitpad train --preset quick` on the full set: {rss:.0f} MB (target <= 400 MB); "
              f"test accuracy {summary['test_accuracy']:.2%} in {summary['train_seconds']:.2f} s of training")


if __name__ == "__main__":
    main()

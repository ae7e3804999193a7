"""What the live panes cost: training throughput in the app next to the bare trainer, and GUI stalls.

One run measures, side by side and alternating (bare, app, bare, app, …):

* **bare, no statistics** – ``Trainer`` iterated in a plain loop with ``stats_every=0``,
  ``snapshot_every=0``: the training alone;
* **bare, with statistics** – the same loop with the statistics and weight snapshots the
  app asks for (what the statistics themselves cost);
* **in the app** – the real main window on its Train page with a test digit on the
  canvas, the run started through ``TrainController.start`` (worker thread, 20 Hz
  pane refresh, canvas re-read with the newest weights).

Throughput is training digits per second over the trainer's own clock (``result.seconds``,
which includes the end-of-epoch validation in every case). The best of the repeats is
kept for each. While the app trains, a 5 ms heartbeat timer on the GUI thread records the
longest gap between its ticks: the worst stall a person drawing would feel.

    python benchmarks/gui_training.py [--data-dir DIR] [--epochs 1] [--repeats 2] [--preset quick]

Run it with ``QT_QPA_PLATFORM=offscreen`` or on a display (Xvfb works); both paint.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace

from digitpad.core.data import load_mnist
from digitpad.core.train import PRESETS, Trainer

HEARTBEAT_MS = 5


def bare(config, mnist) -> float:
    """Training digits per second of a plain loop over ``Trainer``."""
    trainer = Trainer(config, mnist)
    for _ in trainer:
        pass
    r = trainer.result
    return len(trainer.train_labels) * r.epochs_done / r.seconds


def in_app(config, mnist, window, app) -> tuple[float, float]:
    """(training digits per second, longest GUI heartbeat gap in ms) for one run in the app."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

    controller = window.retrain
    clock = QElapsedTimer()
    gaps = []
    last = [0]

    def beat():
        now = clock.elapsed()
        busy = time.thread_time()
        gaps.append((now - last[0], now, (busy - last_busy[0]) * 1000))
        last[0] = now
        last_busy[0] = busy

    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.PreciseTimer)
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(beat)
    outcome = []
    cpu = [0.0]
    last_busy = [time.thread_time()]
    loop = QEventLoop()
    controller.run_finished.connect(outcome.append)
    controller.run_finished.connect(loop.quit)
    controller.run_failed.connect(loop.quit)

    def started(_info):
        clock.start()
        last[0] = 0
        gaps.clear()
        cpu[0] = time.thread_time()
        last_busy[0] = cpu[0]
        heartbeat.start()

    controller.run_started.connect(started)
    if not controller.start(config, mnist=mnist):
        raise SystemExit("the controller refused to start")
    loop.exec()
    heartbeat.stop()
    gui_cpu = time.thread_time() - cpu[0]
    wall = clock.elapsed() / 1000
    controller.run_started.disconnect(started)
    controller.run_finished.disconnect(outcome.append)
    controller.run_finished.disconnect(loop.quit)
    controller.run_failed.disconnect(loop.quit)
    if not outcome:
        raise SystemExit("training failed in the app")
    controller.revert()
    result = outcome[0].result
    n_train = len(mnist.train_labels) - result.config.val_size
    if result.config.limit:
        n_train = min(n_train, result.config.limit)
    worst = sorted(gaps, reverse=True)[:3]
    print("    GUI thread busy {:.0%} of the run; longest gaps: {}".format(
        gui_cpu / max(wall, 1e-9),
        ", ".join(f"{g:.0f} ms at {t:.0f} ms ({b:.0f} ms of it computing)" for g, t, b in worst)), flush=True)
    stall = worst[0][0] if worst else float("nan")
    return n_train * result.epochs_done / result.seconds, stall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from digitpad.qt.main_window import MainWindow

    mnist = load_mnist(args.data_dir)
    config = replace(PRESETS[args.preset], epochs=args.epochs)
    no_stats = replace(config, stats_every=0, snapshot_every=0)

    app = QApplication.instance() or QApplication(sys.argv)
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "bench.ini"), QSettings.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1280, 800)
    window.show()
    window.show_input(mnist.test_images[0] / 255.0, "test digit 0")
    window.show_page(window.train_page)
    app.processEvents()

    runs = {"bare, no statistics": [], "bare, with statistics": [], "in the app": []}
    stalls = []
    for k in range(args.repeats):
        runs["bare, no statistics"].append(bare(no_stats, mnist))
        runs["bare, with statistics"].append(bare(config, mnist))
        speed, stall = in_app(config, mnist, window, app)
        runs["in the app"].append(speed)
        stalls.append(stall)
        print(f"repeat {k + 1}: " + ", ".join(f"{name} {v[-1]:,.0f}/s" for name, v in runs.items())
              + f", largest GUI stall {stall:.0f} ms", flush=True)
    window.close()

    best = {name: max(v) for name, v in runs.items()}
    print()
    print(f"preset {args.preset}, {args.epochs} epoch(s), best of {args.repeats}, "
          f"{os.cpu_count()} CPU(s), Qt platform {app.platformName()}")
    for name, v in best.items():
        print(f"  {name:24s} {v:10,.0f} training digits/s")
    print(f"  in the app / bare, no statistics:   {best['in the app'] / best['bare, no statistics']:.3f}")
    print(f"  in the app / bare, with statistics: {best['in the app'] / best['bare, with statistics']:.3f}")
    print(f"  largest GUI heartbeat gap while training: {max(stalls):.0f} ms "
          f"(timer every {HEARTBEAT_MS} ms; stall = gap beyond that)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Live training in the real window: GUI-thread stalls from Start to Keep, throughput, busy share, reading latency.

Each repeat runs a whole Quick run (or ``--preset``) in the real main window, offscreen at
1280x800 on its Train page with a drawing on the canvas, twice: on the machine as it is
("quiet") and while a busy process this script starts keeps one core busy ("busy"). A
run goes from Start (``TrainController.start`` with the data folder: MNIST is loaded by
the run, as in the app) through the steps and the final test-set evaluation to a click
on Keep, and half a second beyond. Before and after each app run the bare ``Trainer`` runs
the same config (the app's live statistics and weight snapshots) at the BLAS thread count
the app's runs settle on, in the same conditions; the throughput ratio is the app's speed
over the mean of the two (so a machine whose load drifts during the run favours neither).

Measured during each app run:

* a 10 ms heartbeat timer on the GUI thread: the gaps between its ticks, split into the
  phases of the run (loading MNIST; dashboard, up to the first step shown; steady state;
  final evaluation, after the last step; the end and Keep), p50 / p99 / max of each;
* the GUI thread's CPU time over the run's wall time (its busy share);
* every 250 ms a reading of the drawing on the canvas (``window.read_now``: bitmap,
  preprocessing, the newest weights, every pane set), p95 of its wall time while it trains.

Figures are medians over the repeats, printed beside the targets. On a shared machine
they vary from run to run: quote medians of several repeats, and compare changes
alternately in the same conditions.

    python benchmarks/gui_training.py [--data-dir DIR] [--repeats 3] [--preset quick] [--epochs N]
                                      [--conditions quiet busy]

Run it with ``QT_QPA_PLATFORM=offscreen`` (the default here) or on a display.
Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEARTBEAT_MS = 10
READ_EVERY_MS = 250
AFTER_KEEP_MS = 500  # the heartbeat runs on this long after Keep
KEEP_AFTER_MS = 300  # Keep is clicked this long after the run ended (a person reads the result first)
PHASES = ("loading MNIST", "dashboard", "steady state", "final evaluation", "end and Keep")
TRANSITIONS = PHASES[:2] + PHASES[3:]
TARGET_GAP_MS = {"quiet": 33.0, "busy": 80.0}
TARGET_RATIO = 0.9
TARGET_BUSY = 0.10
TARGET_READ_MS = 10.0


@dataclass
class AppRun:
    """What one run in the app measured."""

    gaps: dict = field(default_factory=lambda: {p: [] for p in PHASES})  # phase -> heartbeat gaps (ms)
    work: dict = field(default_factory=lambda: {p: [] for p in PHASES})  # phase -> GUI CPU ms within each gap
    reads: list = field(default_factory=list)  # ms per reading while it trains
    busy: float = float("nan")  # GUI thread CPU time / wall time
    speed: float = float("nan")  # training digits per second (trainer's clock)
    threads: int = 1  # BLAS threads the run settled on
    wall: float = 0.0

    def all_gaps(self, phases=PHASES) -> np.ndarray:
        return np.array([g for p in phases for g in self.gaps[p]], float)


def bare(config, mnist) -> float:
    """Training digits per second of a plain loop over ``Trainer``."""
    from digitpad.core.train import Trainer

    trainer = Trainer(config, mnist)
    for _ in trainer:
        pass
    r = trainer.result
    return len(trainer.train_labels) * r.epochs_done / r.seconds


def phase_of(controller, kept: bool) -> str:
    """Which phase of the run the window is in now."""
    h = controller.history
    if kept or (not controller.is_running and h is not None):
        return "end and Keep"
    if h is None:
        return "loading MNIST"
    if h.n_steps == 0:
        return "dashboard"
    if h.latest.step < h.latest.total_steps:
        return "steady state"
    return "final evaluation"


def in_app(config, data_dir, window, app) -> AppRun:
    """One run in the app from Start to Keep, measured (see the module's docstring)."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

    controller = window.retrain
    m = AppRun()
    clock = QElapsedTimer()
    state = {"last": 0, "cpu": time.thread_time(), "kept": False}
    loop = QEventLoop()

    def beat():
        now, cpu = clock.elapsed(), time.thread_time()
        phase = phase_of(controller, state["kept"])
        m.gaps[phase].append(now - state["last"])
        m.work[phase].append((cpu - state["cpu"]) * 1e3)
        state["last"], state["cpu"] = now, cpu

    def read():
        if phase_of(controller, state["kept"]) == "steady state":
            t0 = time.perf_counter()
            window.read_now()
            m.reads.append((time.perf_counter() - t0) * 1e3)

    def keep():
        window.train_page.result_panel.keep_button.click()
        state["kept"] = True
        QTimer.singleShot(AFTER_KEEP_MS, loop.quit)

    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.PreciseTimer)
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(beat)
    reader = QTimer()
    reader.setInterval(READ_EVERY_MS)
    reader.timeout.connect(read)
    outcomes = []

    def finished(outcome):
        outcomes.append(outcome)
        QTimer.singleShot(KEEP_AFTER_MS, keep)

    controller.run_finished.connect(finished)
    controller.run_failed.connect(loop.quit)
    clock.start()
    cpu0 = time.thread_time()
    heartbeat.start()
    reader.start()
    if not controller.start(config, data_dir=data_dir):
        raise SystemExit("the controller refused to start")
    loop.exec()
    heartbeat.stop()
    reader.stop()
    m.wall = clock.elapsed() / 1000
    m.busy = (time.thread_time() - cpu0) / max(m.wall, 1e-9)
    controller.run_finished.disconnect(finished)
    controller.run_failed.disconnect(loop.quit)
    if not outcomes:
        raise SystemExit("training failed in the app")
    result = outcomes[0].result
    m.threads = controller.history.latest.blas_threads if controller.history.latest else 1
    n_train = controller.history.info.n_train
    m.speed = n_train * result.epochs_done / result.seconds
    return m


def stats(gaps) -> str:
    g = np.asarray(gaps, float)
    if g.size == 0:
        return "      –"
    return f"p50 {np.percentile(g, 50):5.1f}  p99 {np.percentile(g, 99):6.1f}  max {g.max():6.1f} ms (n={g.size})"


def busy_core():
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def report(condition: str, runs: list[AppRun], ratios: list[float]) -> None:
    med = np.median
    target = TARGET_GAP_MS[condition]
    print(f"\n{condition} ({len(runs)} runs; medians over the runs; target in brackets)")
    for name, phases in (("steady state", ("steady state",)), ("transitions", TRANSITIONS)):
        p50 = med([np.percentile(r.all_gaps(phases), 50) for r in runs])
        p99 = med([np.percentile(r.all_gaps(phases), 99) for r in runs])
        mx = med([r.all_gaps(phases).max() for r in runs])
        print(f"  heartbeat gaps, {name:13s} p50 {p50:5.1f}  p99 {p99:6.1f}  max {mx:6.1f} ms   "
              f"[max <= {target:.0f} ms]")
    print("  longest gap / most GUI-thread CPU time within one gap, per phase (the second is the app's own")
    print("  work; the rest of a long gap is the thread waiting for a core or the GIL):")
    for p in PHASES:
        mx = med([max(r.gaps[p]) if r.gaps[p] else 0.0 for r in runs])
        cpu = med([max(r.work[p]) if r.work[p] else 0.0 for r in runs])
        print(f"    {p:18s} {mx:6.1f} ms / {cpu:5.1f} ms")
    print(f"  longest gap of the whole run     {med([r.all_gaps().max() for r in runs]):6.1f} ms   "
          f"[<= {target:.0f} ms]   (each run: {', '.join(f'{r.all_gaps().max():.0f}' for r in runs)})")
    print(f"  in-app / bare throughput         {med(ratios):6.3f}      [>= {TARGET_RATIO}]   "
          f"(each: {', '.join(f'{x:.2f}' for x in ratios)}; BLAS threads {', '.join(str(r.threads) for r in runs)})")
    print(f"  GUI thread busy                  {med([r.busy for r in runs]):6.1%}      [<= {TARGET_BUSY:.0%}]")
    print(f"  reading while it trains, p95     {med([np.percentile(r.reads, 95) for r in runs if r.reads]):6.1f} ms"
          f"   [<= {TARGET_READ_MS:.0f} ms]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conditions", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"])
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = tempfile.mkdtemp(prefix="digitpad-bench-")
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        os.environ[key] = os.path.join(home, key.lower())  # kept models and runs go here, not the user's
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from digitpad.core.data import find_data_dir, load_mnist
    from digitpad.core.train import PRESETS, live_config
    from digitpad.qt.main_window import MainWindow

    data_dir = find_data_dir(args.data_dir)
    if data_dir is None:
        raise SystemExit("no MNIST: pass --data-dir or set DIGITPAD_DATA_DIR")
    mnist = load_mnist(data_dir)
    config = PRESETS[args.preset]
    if args.epochs:
        config = replace(config, epochs=args.epochs)

    app = QApplication.instance() or QApplication(sys.argv)
    settings = QSettings(os.path.join(home, "bench.ini"), QSettings.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1280, 800)
    window.show()
    window.show_page(window.train_page)
    c = window.canvas
    c.begin_stroke(80, 60)  # a drawn stroke, read through the whole preprocessing
    for x, y in zip(np.linspace(80, 200, 40), np.linspace(60, 230, 40)):
        c.extend_stroke(x, y)
    c.end_stroke()
    app.processEvents()
    print(f"{args.preset}, {config.epochs} epoch(s), window {window.width()}x{window.height()}, "
          f"platform {app.platformName()}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}",
          flush=True)

    runs = {cond: [] for cond in args.conditions}
    ratios = {cond: [] for cond in args.conditions}
    bare_config = live_config(config, len(mnist.train_labels))
    threads = 1  # the BLAS threads the last app run settled on (before the first: 1, what a busy 2-core picks)
    for k in range(args.repeats):
        for cond in args.conditions:
            hog = busy_core() if cond == "busy" else None
            try:
                before = bare(replace(bare_config, threads=threads), mnist)
                m = in_app(config, data_dir, window, app)
                threads = m.threads
                speed = (before + bare(replace(bare_config, threads=threads), mnist)) / 2
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            runs[cond].append(m)
            ratios[cond].append(m.speed / speed)
            print(f"repeat {k + 1} {cond:5s}: " + "; ".join(
                f"{p} max {max(m.gaps[p]) if m.gaps[p] else 0:.0f} ms "
                f"({max(m.work[p]) if m.work[p] else 0:.0f} ms CPU)" for p in PHASES)
                + f"; in app {m.speed:,.0f}/s vs bare {speed:,.0f}/s; GUI busy {m.busy:.0%}; "
                f"read p95 {np.percentile(m.reads, 95) if m.reads else float('nan'):.1f} ms; "
                f"load {os.getloadavg()[0]:.1f}", flush=True)
    window.close()
    for cond in args.conditions:
        report(cond, runs[cond], ratios[cond])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency from a stroke update to the probabilities pane updated, in the real window.

A digit is drawn with real mouse-move events, paced like a mouse (default 125 Hz), into
a 1280x800 window reading with the shipped model (or --model). For every move it
records the time from sending the event until the window's ``reading_changed`` has
fired with a reading that includes that point (the panes are updated before the signal
is emitted), and how long the probabilities pane then takes to repaint. Reads are
throttled to the display rate, so a move that arrives just after a read waits for the
next frame; the figures below show both the work per read and that wait.

    python benchmarks/gui_latency.py [--model PATH] [--strokes 20] [--rate 125]

Prints p50 / p95 / max in milliseconds. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def percentiles(values) -> str:
    v = np.asarray(values) * 1e3
    return f"p50 {np.percentile(v, 50):6.2f}  p95 {np.percentile(v, 95):6.2f}  max {v.max():6.2f} ms  (n={len(v)})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: the shipped model)")
    ap.add_argument("--strokes", type=int, default=20, help="digits drawn (default 20)")
    ap.add_argument("--rate", type=float, default=125.0, help="mouse events per second (default 125)")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from digitpad.core import model_io
    from digitpad.qt.app import create_application
    from digitpad.qt.main_window import MainWindow

    model_path = Path(args.model) if args.model else model_io.shipped_model_path()
    if not model_path.is_file():
        print(f"no model at {model_path}; pass --model", file=sys.stderr)
        return 2
    app = create_application(["gui_latency"])
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "bench.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=model_path, settings=settings)
    w.resize(1280, 800)
    w.show()
    app.processEvents()
    c = w.canvas
    model = w.current_model
    print(f"model {model_path.name}: {model.describe()}; window {w.width()}x{w.height()}, "
          f"canvas {c.drawing_rect().width():.0f} px; platform {app.platformName()}; mouse {args.rate:.0f} Hz")

    state = {"points": 0, "read_points": -1, "t_read": 0.0}

    def on_reading(_reading):
        state["read_points"] = state["points"]
        state["t_read"] = time.perf_counter()

    w.reading_changed.connect(on_reading)

    def send(kind, u, v, button, buttons):
        r = c.drawing_rect()
        pos = QPointF(r.left() + u * r.width(), r.top() + v * r.height())
        QApplication.sendEvent(c, QMouseEvent(kind, pos, c.mapToGlobal(pos), button, buttons, Qt.NoModifier))

    rng = np.random.default_rng(0)
    period = 1.0 / args.rate
    latency, work, repaint = [], [], []
    for k in range(args.strokes):
        t = np.linspace(0, 2 * np.pi, 60)
        cx, cy = 0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05)
        path = np.stack([cx + 0.25 * np.sin(t), cy - 0.33 * np.cos(t)], 1)  # a "0", 60 points
        send(QEvent.MouseButtonPress, *path[0], Qt.LeftButton, Qt.LeftButton)
        next_t = time.perf_counter()
        for u, v in path[1:]:
            next_t += period
            while time.perf_counter() < next_t:  # the event loop runs between mouse events
                app.processEvents()
            state["points"] += 1
            t0 = time.perf_counter()
            send(QEvent.MouseMove, u, v, Qt.NoButton, Qt.LeftButton)
            t_send = time.perf_counter()
            while state["read_points"] < state["points"]:  # wait for a read that includes this point
                app.processEvents()
            latency.append(state["t_read"] - t0)
            if state["t_read"] <= t_send:  # read at once, inside the event: that is the work per read
                work.append(state["t_read"] - t0)
            t1 = time.perf_counter()
            w.probabilities.viewport().repaint()
            repaint.append(time.perf_counter() - t1)
        send(QEvent.MouseButtonRelease, *path[-1], Qt.LeftButton, Qt.NoButton)
        c.clear()
        app.processEvents()

    # the reading path alone, on a finished drawing: bitmap -> preprocess -> trace -> panes
    c.begin_stroke(80, 60)
    for x, y in zip(np.linspace(80, 200, 40), np.linspace(60, 230, 40)):
        c.extend_stroke(x, y)
    c.end_stroke()
    from digitpad.core.preprocess import preprocess

    direct, cpu, pre_cpu = [], [], []
    bitmap = c.bitmap()
    for _ in range(300):
        t0, c0 = time.perf_counter(), time.thread_time()
        w.read_now()
        direct.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        c0 = time.thread_time()
        preprocess(bitmap)
        pre_cpu.append(time.thread_time() - c0)

    print("stroke update -> probabilities updated, all moves (incl. waiting for the frame):")
    print("   ", percentiles(latency))
    print("stroke update -> probabilities updated, moves read at once (the work of one read):")
    print("   ", percentiles(work))
    print("one read on a finished drawing (bitmap, preprocess, network, all panes set):")
    print("   ", percentiles(direct))
    print("the same, CPU time of the GUI thread (what the machine's other load cannot inflate):")
    print("   ", percentiles(cpu))
    print("  of which preprocess (CPU time):")
    print("   ", percentiles(pre_cpu))
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("probabilities pane repaint after a read:")
    print("   ", percentiles(repaint))
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

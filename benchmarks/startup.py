"""Start-up time: from running ``digitpad`` to the window on screen, and what the imports cost.

Runs ``python -m digitpad`` (what the ``digitpad`` command does) several times in fresh
processes with DIGITPAD_EXIT_WHEN_SHOWN=1, which makes the app print and quit once its
window is exposed and painted; the time is measured outside, from launching the process
to reading that line. Settings and user folders point at a temporary directory, so the
runs start like a first start. Uses the offscreen platform unless DISPLAY is set and
--x11 is given.

    python benchmarks/startup.py [--runs 5] [--model PATH] [--x11]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd, env) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return elapsed, line.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", help="model file (default: the last used, else the shipped model)")
    ap.add_argument("--x11", action="store_true", help="use the X display in $DISPLAY instead of offscreen")
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="digitpad-startup-")
    env = dict(os.environ, DIGITPAD_EXIT_WHEN_SHOWN="1", DIGITPAD_ERROR_DIALOGS="0",
               XDG_CONFIG_HOME=f"{tmp}/config", XDG_DATA_HOME=f"{tmp}/data", XDG_STATE_HOME=f"{tmp}/state",
               XDG_CACHE_HOME=f"{tmp}/cache", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    if not args.x11:
        env["QT_QPA_PLATFORM"] = "offscreen"
    py = sys.executable

    # imports alone, each in a fresh interpreter
    for module in ("numpy", "PySide6.QtWidgets", "pyqtgraph", "digitpad.cli", "digitpad.qt.main_window"):
        times = []
        for _ in range(3):
            times.append(timed([py, "-c", f"import time; t = time.perf_counter(); import {module}; "
                                          f"print(time.perf_counter() - t)"], env)[1])
        print(f"import {module:28s} {1e3 * statistics.median(float(t) for t in times):7.0f} ms")

    cmd = [py, "-m", "digitpad"] + (["gui", "--model", args.model] if args.model else [])
    launch, inside = [], []
    timed(cmd, env)  # warm the file cache once
    for _ in range(args.runs):
        wall, line = timed(cmd, env)
        launch.append(wall)
        inside.append(float(line.split()[1]))
    where = "X11 " + os.environ.get("DISPLAY", "") if args.x11 else "offscreen"
    print(f"`python -m digitpad` to window shown ({where}, {args.runs} runs): median {statistics.median(launch):.2f} s, max {max(launch):.2f} s")
    print(f"  of which after the app module was imported: median {statistics.median(inside):.2f} s")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Closing the window while a training step is still computing never aborts the app.

A large network's step (hidden 8192,8192, batch 4096) takes seconds and cannot be cut
short. Closing during it used to wait 10 s and then destroy the running ``QThread``:
"QThread: Destroyed while thread is still running" and SIGABRT. The app runs in a
subprocess here (an abort would take the test run with it), with a step that lasts until
the test releases it, so the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import gc, os, sys, threading
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, {repo!r})
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QPushButton
    from digitpad.qt.app import create_application
    import digitpad.qt.retrain as retrain
    import digitpad.qt.worker as worker_mod
    from digitpad.core.train import TrainConfig
    from tests.qt.test_retrain import synthetic_mnist

    retrain.SHUTDOWN_WAIT_MS = 100  # how long closing may wait for the step: far less than the step
    in_step, release = threading.Event(), threading.Event()

    class LongStep(worker_mod.Trainer):
        """The second step lasts until the test releases it, like a large network's."""

        def __iter__(self):
            steps = super().__iter__()
            yield next(steps)
            in_step.set()
            release.wait()
            yield from steps

    worker_mod.Trainer = LongStep
    app = create_application()
    from digitpad.qt.main_window import MainWindow

    window = MainWindow(settings=QSettings({ini!r}, QSettings.IniFormat))
    window.show()
    config = TrainConfig(limit=2000, val_size=500, epochs=50, batch_size=16, hidden=(32, 16))
    window.retrain.start(config, mnist=synthetic_mnist())

    def close_mid_step():
        if not in_step.is_set():
            QTimer.singleShot(10, close_mid_step)
            return
        window.close()
        window.quit_question.findChild(QPushButton, "quit_discard").click()
        print("closed during the step:", not window.isVisible() and not release.is_set(), flush=True)
        app.quit()

    QTimer.singleShot(0, close_mid_step)
    app.exec()
    del window  # the window and its controllers go away while the step still runs
    gc.collect()
    ends = threading.Timer(1.0, release.set)  # the step ends a second later, while the interpreter exits
    ends.daemon = True
    ends.start()
    print("exited", flush=True)
''')


def test_closing_during_a_long_step_never_aborts(tmp_path):
    script = tmp_path / "close_mid_step.py"
    script.write_text(SCRIPT.format(repo=str(REPO), ini=str(tmp_path / "settings.ini")))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "QThread: Destroyed while thread" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "closed during the step: True" in done.stdout
    assert "exited" in done.stdout

"""Regression: hundreds of thousands of Qt calls that return nothing must not kill the interpreter.

PySide6-Essentials 6.12.0 on CPython < 3.12 drops a reference to ``None`` on every void
call and aborts with "Fatal Python error: none_dealloc" after a few tens of thousands of
them; a canvas makes such calls on every mouse move. Run in a subprocess so an abort
fails this test instead of killing the test run.
"""

import os
import subprocess
import sys

CALLS = 300_000

SCRIPT = f"""
import sys
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QApplication, QWidget

app = QApplication(["none-refcount"])
widget = QWidget()
widget.resize(50, 50)
image = QImage(64, 64, QImage.Format_Grayscale8)
painter = QPainter(image)
pen = QPen(QColor(255, 255, 255))
a, b = QPointF(1, 1), QPointF(60, 60)
n = {CALLS} // 4
for i in range(n):
    widget.update()            # what the canvas does on every mouse move
    pen.setWidthF(1.0 + (i & 7))
    painter.setPen(pen)
    painter.drawLine(a, b)
painter.end()
print("survived", 4 * n, sys.getrefcount(None))
"""


def test_void_qt_calls_do_not_exhaust_none():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert "none_dealloc" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"survived {CALLS}")

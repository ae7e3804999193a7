"""digitpad.core must import and work with Qt absent: checked in a subprocess that blocks PySide6."""

import subprocess
import sys
from pathlib import Path

import digitpad.core

CORE = Path(digitpad.core.__file__).parent

BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'superqt', 'qtpy', 'PyQt5', 'PyQt6'):
            raise ImportError('Qt is blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
import importlib, pkgutil, digitpad.core as core
names = [m.name for m in pkgutil.iter_modules(core.__path__)]
for n in names:
    importlib.import_module('digitpad.core.' + n)
qt = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt')]
assert not qt, qt
print(len(names))
"""


def test_every_core_module_imports_without_qt():
    proc = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 6


def test_no_core_source_mentions_qt():
    for path in CORE.glob("*.py"):
        text = path.read_text()
        for word in ("PySide6", "pyqtgraph", "superqt", "QtCore", "QtWidgets"):
            assert f"import {word}" not in text and f"from {word}" not in text, f"{path.name} imports {word}"
